"""The paired statistics the side-by-side benchmark reports (benchmarks/paired_stats.py), on hand-checkable cases."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from paired_stats import paired_ratios, sign_test_p  # noqa: E402


def test_sign_test_tail_probabilities():
    assert sign_test_p(5, 5) == 1 / 32                      # all five rounds ahead
    assert sign_test_p(0, 5) == 1.0                         # "at least none" is certain
    assert sign_test_p(4, 5) == 6 / 32                      # C(5,4) + C(5,5) = 6 outcomes
    assert sign_test_p(3, 4) == 5 / 16
    with pytest.raises(ValueError):
        sign_test_p(6, 5)


def test_a_constant_lead_has_a_zero_width_interval():
    s = paired_ratios([110.0, 55.0, 220.0], [100.0, 50.0, 200.0])
    assert s["median"] == pytest.approx(1.1) and s["geomean"] == pytest.approx(1.1)
    assert s["ci95"] == pytest.approx((1.1, 1.1))
    assert (s["ahead"], s["rounds"]) == (3, 3) and s["sign_p"] == 1 / 8


def test_ratios_that_cancel_give_an_even_result():
    # rounds at 2x and 0.5x: geometric mean exactly 1, one of two ahead, the interval straddles 1
    s = paired_ratios([2.0, 1.0], [1.0, 2.0])
    assert s["geomean"] == pytest.approx(1.0)
    lo, hi = s["ci95"]
    assert lo < 1 < hi and lo * hi == pytest.approx(1.0)
    assert s["ahead"] == 1 and s["sign_p"] == 3 / 4
    assert (s["min"], s["max"]) == (0.5, 2.0)


def test_interval_half_width_is_1_96_standard_errors_of_the_log_ratio():
    logs = [0.1, -0.05, 0.2, 0.0]
    ours, peer = [math.exp(v) for v in logs], [1.0] * 4
    mean = sum(logs) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / 3)
    lo, hi = paired_ratios(ours, peer)["ci95"]
    assert math.log(hi) - mean == pytest.approx(1.959964 * sd / 2)
    assert mean - math.log(lo) == pytest.approx(1.959964 * sd / 2)


def test_mismatched_rounds_are_refused():
    with pytest.raises(ValueError, match="same non-zero number of rounds"):
        paired_ratios([1.0, 2.0], [1.0])
