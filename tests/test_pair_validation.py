"""`elmexport validate PAIR_DIR`: greedy equivalence, acceptance and speed-up by k, reported in JSON and Markdown."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from elmexport import speculative
from elmexport.pair import export_pair
from elmexport.pair_validation import validate_pair


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory, llama2_style_tokenizer):
    out = tmp_path_factory.mktemp("pair-validate") / "pair"
    return export_pair("openelm-tiny", "openelm-tiny", "onnx", k=3, draft_quant="int4", out=out, context=48,
                       random_weights=True, seed=0, draft_seed=3, tokenizer=llama2_style_tokenizer)


def test_validate_pair_writes_the_report(onnx_pair, tmp_path):
    out = subprocess.run([sys.executable, "-m", "elmexport.cli", "validate", str(onnx_pair), "--k-values", "1", "3",
                          "--out", str(tmp_path / "v")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "v" / "pair_validation.json").read_text())
    assert report["passed"] and [r["k"] for r in report["runs"]] == [1, 3]
    for run in report["runs"]:
        assert run["greedy_equivalent"] and run["prompts_matching"] == report["prompts"] == 4
        assert 0.0 <= run["acceptance_rate"] <= 1.0 and 1.0 <= run["tokens_per_target_call"] <= run["k"] + 1
        assert run["speedup"] > 0
    assert "elmexport validate" in report["not_checked"] and "target-" in report["not_checked"]
    md = (tmp_path / "v" / "pair_validation.md").read_text()
    assert "PASSED" in md and "| 3 |" in md and "Not checked here" in md


def test_a_pair_that_differs_from_the_target_fails(onnx_pair, tmp_path, monkeypatch):
    real = speculative.speculative_generate

    def off_by_one(*args, **kwargs):
        result = real(*args, **kwargs)
        result.tokens[-1] = (result.tokens[-1] + 1) % 512
        return result

    monkeypatch.setattr(speculative, "speculative_generate", off_by_one)
    report = validate_pair(onnx_pair, k_values=[2], max_new_tokens=6)
    assert not report["passed"] and report["runs"][0]["prompts_matching"] == 0


def test_pair_sessions_do_not_spin(onnx_pair):
    """Both ONNX sessions of a pair open with spinning off; a package opened alone keeps onnxruntime's default."""
    from elmexport.api import load
    from elmexport.pair import load_pair

    pair = load_pair(onnx_pair)
    for runner in (pair.target.runner, pair.draft.runner):
        options = runner.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    alone = load(onnx_pair / pair.pair["target"]["package"]).runner.session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):  # unset: onnxruntime's default
        alone.get_session_config_entry("session.intra_op.allow_spinning")
