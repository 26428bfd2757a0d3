"""Speculative sampling: the pair's output follows the target's own sampling distribution, whatever the draft.

Fake runners over a 4-token vocabulary make the exact target distribution of a whole continuation computable by
enumeration, so a chi-square test over a few thousand seeded runs can compare the pair's output with it.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from elmexport.generation import SamplingOptions
from elmexport.sampling import SplitMix64, sample_next, token_distribution
from elmexport.speculative import speculative_generate

VOCAB = 4
PROMPT = [0, 2]
NEW = 3


class PrefixRunner:
    """A runner whose logits after a prefix are a fixed pseudo-random function of that whole prefix; like the real
    runners it keeps a cache written at `start_pos`, so rejected positions must be overwritten to stay correct."""

    def __init__(self, seed: int, context: int = 16, scale: float = 2.0):
        self.seed, self.context, self.scale, self.cache = seed, context, scale, []

    def reset(self):
        self.cache = []

    def row(self, prefix) -> np.ndarray:
        key = hash((self.seed, tuple(prefix))) & 0xFFFFFFFF
        return np.random.default_rng(key).normal(size=VOCAB) * self.scale

    def forward(self, ids, start_pos):
        assert start_pos <= len(self.cache), "a position was skipped"
        self.cache = self.cache[:start_pos] + list(ids)
        return np.stack([self.row(self.cache[:start_pos + i + 1]) for i in range(len(ids))])


def exact_distribution(runner, options: SamplingOptions) -> dict[tuple, float]:
    """P(continuation) under the target's own sampler, by enumerating every continuation of NEW tokens."""
    probs = {}
    for cont in itertools.product(range(VOCAB), repeat=NEW):
        p, prefix = 1.0, list(PROMPT)
        for token in cont:
            p *= token_distribution(runner.row(prefix), temperature=options.temperature, top_k=options.top_k,
                                    top_p=options.top_p, repetition_penalty=options.repetition_penalty,
                                    previous_tokens=prefix)[token]
            prefix.append(token)
        probs[cont] = p
    return probs


def chi_square(counts: Counter, probs: dict[tuple, float], n: int) -> tuple[float, int]:
    """Pearson's statistic over cells with expected count >= 5 (the rest pooled into one cell) and its dof."""
    stat, pooled_obs, pooled_exp, cells = 0.0, 0, 0.0, 0
    for cell, p in probs.items():
        if n * p >= 5:
            stat += (counts[cell] - n * p) ** 2 / (n * p)
            cells += 1
        else:
            pooled_obs += counts[cell]
            pooled_exp += n * p
    if pooled_exp > 0:
        stat += (pooled_obs - pooled_exp) ** 2 / pooled_exp
        cells += 1
    return stat, cells - 1


def critical(dof: int, z: float = 3.09) -> float:
    """The chi-square 99.9% quantile (Wilson-Hilferty)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def pair_counts(options: SamplingOptions, k: int, runs: int, target_seed=0, draft_seed=7):
    target, draft = PrefixRunner(target_seed), PrefixRunner(draft_seed, scale=1.0)
    counts, accepted, proposed = Counter(), 0, 0
    for seed in range(runs):
        opts = SamplingOptions(**{**options.__dict__, "seed": seed})
        result = speculative_generate(target, draft, PROMPT, NEW, k=k, sampling=opts)
        counts[tuple(result.tokens)] += 1
        accepted, proposed = accepted + result.accepted, proposed + result.proposed
    return counts, accepted / proposed


@pytest.mark.parametrize("options,k", [
    (SamplingOptions(temperature=1.0), 2),
    (SamplingOptions(temperature=0.7, top_k=3), 1),
    (SamplingOptions(temperature=1.3, top_p=0.8), 3),
    (SamplingOptions(temperature=1.0, repetition_penalty=1.5), 2),
])
def test_pair_output_follows_the_target_sampling_distribution(options, k):
    runs = 3000
    counts, acceptance = pair_counts(options, k, runs)
    assert 0.05 < acceptance < 0.95  # the draft differs from the target: both accept and reject branches ran
    probs = exact_distribution(PrefixRunner(0), options)
    assert sum(probs.values()) == pytest.approx(1.0)
    stat, dof = chi_square(counts, probs, runs)
    assert stat < critical(dof), (stat, dof)
    # the test has power: the draft's own distribution is rejected on the same counts
    draft_probs = exact_distribution(PrefixRunner(7, scale=1.0), options)
    wrong, wrong_dof = chi_square(counts, draft_probs, runs)
    assert wrong > critical(wrong_dof), (wrong, wrong_dof)


def test_temperature_zero_is_the_greedy_path():
    target, draft = PrefixRunner(0), PrefixRunner(7, scale=1.0)
    greedy = speculative_generate(target, draft, PROMPT, 10, k=3)
    for seed in (0, 1, 99):
        sampled = speculative_generate(target, draft, PROMPT, 10, k=3,
                                       sampling=SamplingOptions(temperature=0.0, top_k=2, seed=seed))
        assert sampled.tokens == greedy.tokens
        assert (sampled.accepted, sampled.proposed, sampled.target_calls) == \
            (greedy.accepted, greedy.proposed, greedy.target_calls)


def test_greedy_with_a_repetition_penalty_equals_the_target_alone():
    """Temperature 0 with a penalty goes through accept/reject with one-hot distributions: still exact."""
    target = PrefixRunner(0)
    seq = list(PROMPT)
    for _ in range(10):
        seq.append(sample_next(target.row(seq), temperature=0.0, repetition_penalty=2.0, previous_tokens=seq))
    result = speculative_generate(target, PrefixRunner(7, scale=1.0), PROMPT, 10, k=3,
                                  sampling=SamplingOptions(temperature=0.0, repetition_penalty=2.0))
    assert result.tokens == seq[len(PROMPT):]


def test_sampling_is_seeded():
    target, draft = PrefixRunner(0), PrefixRunner(7, scale=1.0)
    runs = [speculative_generate(target, draft, PROMPT, 12, k=2, sampling=SamplingOptions(temperature=1.0, seed=s))
            .tokens for s in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert len({tuple(r) for r in runs}) == 2 or runs[0] != runs[2]


def test_token_distribution_matches_sample_next():
    """The distribution the pair uses is the one the shared sampler draws from (frequencies over seeded draws)."""
    logits = np.array([1.0, 0.2, -0.5, 0.9, 0.0])
    opts = dict(temperature=0.8, top_k=4, top_p=0.9)
    probs = token_distribution(logits, **opts)
    rng = SplitMix64(3)
    n = 20000
    freq = np.bincount([sample_next(logits, rng=rng, **opts) for _ in range(n)], minlength=5) / n
    assert np.abs(freq - probs).max() < 0.015
    assert probs[2] == 0.0  # cut by top-k
