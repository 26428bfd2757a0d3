"""The latency run's memory numbers are the package runtime's own, not its parent's: a validator that has just
run the eager model must not lend its peak to the package it measures."""

import subprocess
import sys

import numpy as np

from elmexport.validation.latency import measure_in_subprocess, proc_status_mib
from elmexport.validation.report import to_markdown


def test_peak_rss_is_the_latency_process_own(tmp_path):
    pkg = tmp_path / "tiny-onnx"
    proc = subprocess.run([sys.executable, "-m", "elmexport.cli", "onnx", "--model", "openelm-tiny", "--random-weights",
                           "--context", "32", "--out", str(pkg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parent_peak = 1200
    touched = np.ones(parent_peak * 2**20 // 8)  # this process now peaks above parent_peak MiB
    assert proc_status_mib("VmHWM") > parent_peak
    del touched
    out = measure_in_subprocess(pkg, 8, 4, 1)
    assert "error" not in out, out
    assert 10 < out["load_rss_mib"] <= out["peak_rss_mib"] < parent_peak / 2, out
    assert out["decode_tokens_per_s"] > 0
    report = {"package": str(pkg), "target": "onnx", "model": "openelm-tiny", "quantization": "none",
              "random_weights": True, "text": None, "stages": [], "checks": [], "gates": [], "passed": False,
              "latency": {"onnx": out}}
    row = next(line for line in to_markdown(report).splitlines() if line.startswith("| onnx"))
    assert f"{out['load_rss_mib']:.4g}" in row and f"{out['peak_rss_mib']:.4g}" in row
