"""Paired statistics for "ours vs peer" speed runs taken round by round on a noisy shared box.

Why this file: on this VM one run of a package swings +-20% with the neighbours' load, while the two packages of a
pair run next to each other in every round and see nearly the same load. So the evidence is in the per-round ratios
ours / peer, not in two medians taken apart. `paired_ratios` summarises them three ways:

- the median ratio and its range (what the table prints),
- the geometric mean of the ratios with a 95% confidence interval (normal approximation on the log ratios): an
  interval above 1 says the lead is larger than the round-to-round noise,
- a one-sided sign test (exact binomial): the chance of seeing at least this many rounds ahead if both packages
  were equally fast. It ignores how far ahead, so it is robust to a few wild rounds.

    python benchmarks/paired_stats.py RUN.json [RUN.json ...]   # pool the rounds of side_by_side --json files
"""

from __future__ import annotations

import math
import statistics

Z95 = 1.959964  # two-sided 95% quantile of the standard normal
PEERS = {"peer-a": ("onnx", "int4"), "peer-b": ("executorch", "8da4w")}  # peer config -> (target, quant) it builds


def peer_of(config: str) -> str | None:
    """The peer a config of ours ("onnx:int4", "executorch:none", ...) is judged against: the one of its runtime."""
    return next((peer for peer, (target, _) in PEERS.items() if config.startswith(target + ":")), None)


def sign_test_p(ahead: int, rounds: int) -> float:
    """P(at least `ahead` of `rounds` fair coin flips come up heads): one-sided sign test, ties counted as behind."""
    if not 0 <= ahead <= rounds:
        raise ValueError(f"ahead={ahead} is not within 0..{rounds}")
    return sum(math.comb(rounds, k) for k in range(ahead, rounds + 1)) / 2 ** rounds


def paired_ratios(ours: list[float], peer: list[float]) -> dict:
    """Summary of ours[i] / peer[i] over rounds i (both lists in round order, same length, positive)."""
    if len(ours) != len(peer) or not ours:
        raise ValueError(f"need the same non-zero number of rounds, got {len(ours)} and {len(peer)}")
    ratios = [a / b for a, b in zip(ours, peer)]
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    half = Z95 * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else math.inf
    ahead = sum(r > 1 for r in ratios)
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "ahead": ahead, "rounds": len(ratios), "geomean": math.exp(mean),
            "ci95": (math.exp(mean - half), math.exp(mean + half)), "sign_p": sign_test_p(ahead, len(ratios))}


def pool_runs(paths: list[str]) -> dict:
    """Per-round ratios of every config of ours against its peer in side_by_side --json files, pooled over the files."""
    import json
    from pathlib import Path

    pooled = {}
    for path in paths:
        rows = {r["config"]: r for r in json.loads(Path(path).read_text())["rows"]}
        for ours in rows:
            peer = peer_of(ours)
            if peer in rows:
                for kind in ("decode", "prefill"):
                    a, b = pooled.setdefault((ours, peer, kind), ([], []))
                    a += rows[ours][f"{kind}_per_round"]
                    b += rows[peer][f"{kind}_per_round"]
    return {key: paired_ratios(a, b) for key, (a, b) in pooled.items()}


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 2:
        raise SystemExit("usage: python benchmarks/paired_stats.py RUN.json [RUN.json ...]  (side_by_side --json files)")
    for (ours, peer, kind), s in pool_runs(sys.argv[1:]).items():
        print(f"{ours} {kind} vs {peer}, {s['rounds']} rounds pooled: {s['geomean']:.3f} "
              f"(95% CI {s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}), ahead {s['ahead']}/{s['rounds']}, p = {s['sign_p']:.3g}")
