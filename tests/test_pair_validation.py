"""`elmexport validate PAIR_DIR`: greedy equivalence, acceptance and speed-up by k, reported in JSON, Markdown and
a self-contained HTML page with the speed-up figure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from elmexport import speculative
from elmexport.pair import export_pair
from elmexport.pair_validation import validate_pair

from .screenshot import has_colour, screenshot


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory, llama2_style_tokenizer):
    out = tmp_path_factory.mktemp("pair-validate") / "pair"
    return export_pair("openelm-tiny", "openelm-tiny", "onnx", k=3, draft_quant="int4", out=out, context=48,
                       random_weights=True, seed=0, draft_seed=3, tokenizer=llama2_style_tokenizer)


def test_validate_pair_writes_the_report(onnx_pair, tmp_path):
    out = subprocess.run([sys.executable, "-m", "elmexport.cli", "validate", str(onnx_pair), "--k-values", "1", "3",
                          "--threads", "1", "--out", str(tmp_path / "v")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "v" / "pair_validation.json").read_text())
    assert report["passed"] and [r["k"] for r in report["runs"]] == [1, 3] and report["threads"] == 1
    for run in report["runs"]:
        assert run["greedy_equivalent"] and run["prompts_matching"] == report["prompts"] == 4
        assert 0.0 <= run["acceptance_rate"] <= 1.0 and 1.0 <= run["tokens_per_target_call"] <= run["k"] + 1
        assert run["speedup"] > 0 and len(run["speedup_per_prompt"]) == 4
    assert "elmexport validate" in report["not_checked"] and "target-" in report["not_checked"]
    md = (tmp_path / "v" / "pair_validation.md").read_text()
    assert "PASSED" in md and "| 3 |" in md and "Not checked here" in md and ", 1 thread;" in md
    page = (tmp_path / "v" / "pair_validation.html").read_text()
    assert page.count("<svg") == 1 and "<table>" in page and "PASSED" in page and "<script" not in page
    assert "target alone" in page and "tokens per target call" in page  # the 1x line and the second axis


def test_pair_reports_never_replace_what_validate_did_not_write(onnx_pair, tmp_path):
    """A pair_validation.json of another tool at --out is refused in one line (exit 2) before anything runs."""
    foreign = tmp_path / "v"
    foreign.mkdir()
    (foreign / "pair_validation.json").write_text('{"mine": true}')
    out = subprocess.run([sys.executable, "-m", "elmexport.cli", "validate", str(onnx_pair), "--out", str(foreign)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "not written by elmexport validate" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert (foreign / "pair_validation.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in foreign.iterdir()) == ["pair_validation.json"]


def test_the_pair_page_renders_in_chromium(tmp_path):
    """The page of a failing multi-k report, screenshotted by headless Chromium: not blank, the figure drawn."""
    from PIL import ImageStat

    from elmexport.validation.pair_report import write_pair_reports

    runs = [{"k": k, "greedy_equivalent": k != 4, "prompts_matching": 4 - (k == 4), "acceptance_rate": 0.9 - k / 10,
             "tokens_per_target_call": 1 + k * (0.9 - k / 10), "pair_seconds": 1.0, "speedup": 1.4 - k / 10,
             "speedup_per_prompt": [1.3 - k / 10, 1.5 - k / 10, 1.4 - k / 10, 1.45 - k / 10]} for k in (2, 3, 4, 5)]
    report = {"kind": "speculative-pair-validation", "pair": "dist/pair-x", "runtime": "onnx", "random_weights": True,
              "threads": None, "prompts": 4, "new_tokens_per_prompt": 32, "target_alone_seconds": 1.2, "runs": runs,
              "passed": False, "not_checked": "the packages' numeric parity"}
    paths = write_pair_reports(report, tmp_path / "r")
    page = paths[-1].read_text()
    assert "FAILED" in page and "class='fail'" in page and "Random weights" in page
    assert "default threads" in page
    image = screenshot(paths[-1], tmp_path / "pair.png", 1200, 1000)
    assert ImageStat.Stat(image.convert("L")).stddev[0] > 20  # a blank or one-colour page has ~0
    assert has_colour(image, (0xFF, 0x7F, 0x0E)) and has_colour(image, (0x1F, 0x77, 0xB4))  # speed-up, acceptance
    assert has_colour(image, (0xC6, 0x28, 0x28))  # the red FAILED badge


def test_a_parting_at_an_exact_tie_is_told_from_a_real_difference():
    """Core ML computes in fp16: where the target's top two logits are equal there, its one-token and (k+1)-token
    calls may pick either. Only a gap within one step of the precision is a tie; anything more is a defect."""
    import numpy as np

    from elmexport.pair_validation import first_divergence, logit_precision
    from elmexport.validation.pair_report import to_markdown

    row = np.array([0.0, 18.609375, 18.609375, 3.0], dtype=np.float32)  # tokens 1 and 2 tie in fp16
    assert first_divergence([5, 1], [5, 1], [row, row], "float16") is None
    tie = first_divergence([5, 2, 7], [5, 1, 1], [row, row, row], "float16")
    assert tie == {"index": 1, "target_token": 1, "pair_token": 2, "logit_gap": 0.0, "tie": True}
    near = row.copy()
    near[2] = 18.609375 - 0.015625  # one fp16 step below at this magnitude: still a tie
    assert first_divergence([2], [1], [near], "float16")["tie"]
    far = row.copy()
    far[2] = 18.609375 - 0.04  # about three fp16 steps: a real difference
    assert not first_divergence([2], [1], [far], "float16")["tie"]
    near32 = row.copy()
    near32[2] = 18.609375 - 0.015625
    assert not first_divergence([2], [1], [near32], "float32")["tie"]  # far beyond one fp32 step
    assert not first_divergence([5], [5, 1], [row, row], "float16")["tie"]  # a length difference is never a tie
    assert logit_precision({"target": "coreml", "compute_precision": "float16"}) == "float16"
    assert logit_precision({"target": "executorch", "delegate": "coreml"}) == "float16"
    assert logit_precision({"target": "onnx"}) == "float32"
    run = {"k": 3, "greedy_equivalent": False, "prompts_matching": 2, "prompts_tied": 1,
           "ties": [{"prompt": 0, **tie}], "differences": [{"prompt": 3, **first_divergence([2], [1], [far], "float16")}],
           "acceptance_rate": 0.5, "tokens_per_target_call": 2.0, "pair_seconds": 1.0, "speedup": 1.1,
           "speedup_per_prompt": [1.1] * 4}
    md = to_markdown({"pair": "p", "runtime": "coreml", "threads": None, "prompts": 4, "new_tokens_per_prompt": 32,
                      "target_alone_seconds": 1.0, "runs": [run], "passed": False, "logit_precision": "float16",
                      "not_checked": "x"})
    assert "| 2/4 + 1 at a tie |" in md and "tie at token 1: target alone 1, pair 2" in md
    assert "difference at token 0" in md and "FAILED" in md


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
