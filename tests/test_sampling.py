"""Properties of the reference sampler (elmexport/sampling.py) that the Swift port is later held to.

The golden-file comparison with Swift lives in ios_demo; here the Python sampler itself is checked against
independent facts: published SplitMix64 outputs, arg-max, softmax frequencies, and hand-computed values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from elmexport import sampling
from elmexport.sampling import SplitMix64, sample_next


def test_splitmix64_matches_published_reference_outputs():
    # Outputs of the reference C implementation (splitmix64.c) for seeds 0 and 1234567.
    rng = SplitMix64(0)
    assert [rng.next_u64() for _ in range(4)] == [
        0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC,
    ]
    rng = SplitMix64(1234567)
    assert [rng.next_u64() for _ in range(5)] == [
        6457827717110365317, 3203168211198807973, 9817491932198370423,
        4593380528125082431, 16408922859458223821,
    ]


def test_next_double_uses_the_top_53_bits():
    a, b = SplitMix64(99), SplitMix64(99)
    for _ in range(100):
        u = a.next_double()
        assert 0.0 <= u < 1.0
        assert u == (b.next_u64() >> 11) / 2.0**53


def test_greedy_is_argmax_with_lowest_id_on_ties():
    logits = np.array([0.5, 2.0, -1.0, 2.0, 1.9], dtype=np.float32)
    assert sample_next(logits) == 1
    assert sample_next(logits, temperature=0.0, top_k=3, top_p=0.1) == 1  # greedy ignores top-k/top-p
    gen = np.random.default_rng(0)
    for _ in range(50):
        row = gen.standard_normal(300).astype(np.float32)
        assert sample_next(row) == int(np.argmax(row))


def test_greedy_draws_no_random_number():
    rng = SplitMix64(5)
    sample_next(np.array([1.0, 2.0]), rng=rng)
    assert rng.next_u64() == SplitMix64(5).next_u64()


def test_top_k_one_equals_greedy_for_any_temperature_and_seed():
    gen = np.random.default_rng(1)
    for seed in range(40):
        row = gen.standard_normal(100).astype(np.float32)
        for temperature in (0.3, 1.0, 5.0):
            got = sample_next(row, temperature=temperature, top_k=1, rng=SplitMix64(seed))
            assert got == sample_next(row)


def test_same_seed_same_draws_and_different_seed_different_draws():
    row = np.linspace(-1.0, 1.0, 50)

    def draws(seed):
        rng = SplitMix64(seed)
        return [sample_next(row, temperature=1.0, rng=rng) for _ in range(64)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_frequencies_match_softmax():
    logits = np.array([1.0, 0.0, -0.5, 2.0, 0.3])
    temperature = 0.8
    rng = SplitMix64(2024)
    n = 40_000
    counts = np.bincount([sample_next(logits, temperature=temperature, rng=rng) for _ in range(n)], minlength=5)
    expected = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
    # 4 standard deviations of a binomial proportion at n = 40000 is below 0.01.
    np.testing.assert_allclose(counts / n, expected, atol=0.01)


def test_top_k_limits_support_to_the_k_best():
    logits = np.array([0.1, 3.0, 2.0, -1.0, 2.5, 0.0])
    rng = SplitMix64(3)
    seen = {sample_next(logits, temperature=2.0, top_k=3, rng=rng) for _ in range(2000)}
    assert seen == {1, 4, 2}


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(probs)
    for top_p, nucleus in ((0.4, {0}), (0.75, {0, 1}), (0.9, {0, 1, 2}), (0.99, {0, 1, 2, 3})):
        ids, cum = sampling.candidate_weights(logits, temperature=1.0, top_p=top_p)
        assert set(ids) == nucleus
        rng = SplitMix64(11)
        assert {sample_next(logits, temperature=1.0, top_p=top_p, rng=rng) for _ in range(3000)} == nucleus


def test_candidate_weights_are_sorted_running_sums_of_softmax_numerators():
    logits = np.array([0.0, 1.0, 1.0, -2.0])
    ids, cum = sampling.candidate_weights(logits, temperature=1.0)
    assert ids == [1, 2, 0, 3]  # descending, lower id first among the tied 1.0s
    assert cum == pytest.approx([1.0, 2.0, 2.0 + math.exp(-1.0), 2.0 + math.exp(-1.0) + math.exp(-3.0)])


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    x = np.array([2.0, -1.0, 0.5, 3.0])
    out = sampling.apply_repetition_penalty(x.copy(), [0, 1, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5, 3.0]  # id 1 penalised once although repeated


def test_repetition_penalty_changes_the_greedy_choice():
    logits = np.array([2.0, 1.9, 0.0])
    assert sample_next(logits) == 0
    assert sample_next(logits, repetition_penalty=1.2, previous_tokens=[0]) == 1
    assert sample_next(logits, repetition_penalty=1.0, previous_tokens=[0]) == 0


def test_repetition_penalty_lowers_sampling_frequency():
    logits = np.zeros(4)
    rng = SplitMix64(9)
    plain = sum(sample_next(logits, temperature=1.0, rng=rng) == 2 for _ in range(4000))
    rng = SplitMix64(9)
    logits[2] = 1.0
    penalised = sum(
        sample_next(logits, temperature=1.0, repetition_penalty=3.0, previous_tokens=[2], rng=rng) == 2
        for _ in range(4000)
    )
    # Unpenalised id 2 has p = e/(e+3) ~ 0.475; penalised (1/3) p ~ 0.318; flat logits give 0.25.
    assert plain < 1200 and 1100 < penalised < 1450


def test_sampling_without_rng_is_an_error():
    with pytest.raises(ValueError):
        sample_next(np.array([1.0, 2.0]), temperature=1.0)


def test_zero_weight_candidates_are_never_drawn():
    logits = np.array([0.0, -np.inf, 0.0, -np.inf])
    rng = SplitMix64(4)
    assert {sample_next(logits, temperature=1.0, rng=rng) for _ in range(500)} == {0, 2}
