"""The contention table's arithmetic: the busy/quiet ratio is per (config, threads) and the graceful pick is the
thread count fastest under load, not the one fastest when quiet."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import contention  # noqa: E402


def test_ratio_and_graceful_pick():
    rounds = [{"config": "onnx:int4", "threads": t, "condition": c, "decode_tok_s": v, "prefill_tok_s": 2 * v}
              for t, c, vs in [(1, "quiet", [200, 210, 190]), (1, "busy", [180, 190, 170]),
                               (2, "quiet", [300, 320, 310]), (2, "busy", [150, 160, 140])] for v in vs]
    rows = {(r["threads"], r["condition"]): r for r in contention.summarize(rounds)}
    assert rows[(2, "busy")]["decode_busy_over_quiet"] == 150 / 310
    assert rows[(1, "busy")]["prefill_busy_over_quiet"] == 360 / 400
    assert (rows[(2, "quiet")]["decode_min"], rows[(2, "quiet")]["decode_max"]) == (300, 320)
    assert contention.most_graceful(list(rows.values()), "onnx:int4") == 1
