"""Greedy speculative decoding equals the target alone, token for token, whatever the draft proposes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from elmexport.errors import ElmExportError
from elmexport.models.config import openelm_config
from elmexport.models.transformer import Transformer, init_random_weights
from elmexport.speculative import speculative_generate
from elmexport.validation.eager import EagerRunner
from elmexport.validation.streams import greedy

CONTEXT = 64
PROMPT = [1, 17, 305, 44, 9, 210, 77]


def tiny_model(seed: int, vocab: int = 512) -> Transformer:
    cfg = openelm_config(f"openelm-tiny-v{vocab}", 4, 256, 32, vocab_size=vocab)
    return init_random_weights(Transformer(cfg, CONTEXT), seed=seed).eval()


def noisy_copy(model: Transformer, scale: float, seed: int = 1) -> Transformer:
    """A draft that agrees with the target often but not always: the same weights plus noise."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * p.std())
    return other


class CountingRunner(EagerRunner):
    """An eager runner that records every call's (start_pos, number of tokens)."""

    def __init__(self, model, name="counting"):
        super().__init__(model, name)
        self.calls = []

    def forward(self, ids, start_pos):
        self.calls.append((start_pos, len(ids)))
        return super().forward(ids, start_pos)


@pytest.fixture(scope="module")
def target():
    return tiny_model(0)


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("draft_kind", ["self", "other_seed", "noisy"])
def test_greedy_output_equals_target_alone(target, draft_kind, k):
    draft = {"self": lambda: tiny_model(0), "other_seed": lambda: tiny_model(5),
             "noisy": lambda: noisy_copy(target, 0.3)}[draft_kind]()
    expected = greedy(EagerRunner(target), PROMPT, 40)
    result = speculative_generate(EagerRunner(target), EagerRunner(draft), PROMPT, 40, k=k)
    assert result.tokens == expected
    assert result.proposed > 0
    if draft_kind == "self":
        assert result.acceptance_rate == 1.0
        # every round keeps k proposals plus the target's own token
        assert result.target_calls == 1 + int(np.ceil((40 - 1) / (k + 1)))


def test_partial_acceptance_is_exercised(target):
    """The noisy draft is right sometimes and wrong sometimes: both branches of the check run."""
    result = speculative_generate(EagerRunner(target), EagerRunner(noisy_copy(target, 0.3)), PROMPT, 50, k=4)
    assert 0.0 < result.acceptance_rate < 1.0, result.summary()
    assert result.tokens == greedy(EagerRunner(target), PROMPT, 50)


def test_target_is_called_once_per_round_with_k_plus_one_tokens(target):
    runner = CountingRunner(target)
    result = speculative_generate(runner, EagerRunner(tiny_model(0)), PROMPT, 11, k=4)
    assert runner.calls == [(0, len(PROMPT)), (7, 5), (12, 5)]  # prefill, then seq[-1] + 4 proposals per round
    assert len(result.tokens) == 11
    assert result.tokens_per_target_call == pytest.approx(11 / 3)


def test_stops_at_eos_and_at_the_context(target):
    expected = greedy(EagerRunner(target), PROMPT, 30)
    eos = expected[12]
    result = speculative_generate(EagerRunner(target), EagerRunner(tiny_model(3)), PROMPT, 30, k=3, eos_ids=[eos])
    assert result.stopped_by == "eos"
    assert result.tokens == expected[:expected.index(eos)]
    full = speculative_generate(EagerRunner(target), EagerRunner(tiny_model(0)), PROMPT, 10_000, k=6)
    assert len(full.tokens) == CONTEXT - len(PROMPT)
    assert full.tokens == greedy(EagerRunner(target), PROMPT, CONTEXT - len(PROMPT))


def test_reuse_runs_the_same(target):
    """A second generation on the same runners starts from fresh caches."""
    t, d = EagerRunner(target), EagerRunner(tiny_model(5))
    first = speculative_generate(t, d, PROMPT, 20, k=3).tokens
    speculative_generate(t, d, [4, 5, 6], 20, k=3)
    assert speculative_generate(t, d, PROMPT, 20, k=3).tokens == first


@pytest.mark.parametrize("k", [0, -1, True, 2.0])
def test_bad_k_is_one_line(target, k):
    with pytest.raises(ElmExportError, match="k >= 1"):
        speculative_generate(EagerRunner(target), EagerRunner(target), PROMPT, 5, k=k)


def test_prompt_must_fit(target):
    with pytest.raises(ElmExportError, match="does not fit"):
        speculative_generate(EagerRunner(target), EagerRunner(target), list(range(3, 3 + CONTEXT)), 5)
    with pytest.raises(ElmExportError, match="empty"):
        speculative_generate(EagerRunner(target), EagerRunner(target), [], 5)
