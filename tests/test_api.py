"""The Python API as a user calls it: export -> validate -> load/generate, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import elmexport
from elmexport.errors import ElmExportError


@pytest.fixture(scope="module")
def onnx_package(tmp_path_factory, llama2_style_tokenizer):
    out = tmp_path_factory.mktemp("api") / "tiny-onnx"
    return elmexport.export("openelm-tiny", "onnx", random_weights=True, context=64, tokenizer=llama2_style_tokenizer,
                            out=out, logits="all")


def test_export_returns_the_package(onnx_package):
    assert onnx_package.target == "onnx"
    assert "model.onnx" in onnx_package.files
    assert onnx_package.path.is_dir() and onnx_package.size_bytes > 0
    assert onnx_package.manifest["random_weights"] is True


def test_load_and_generate_match_the_eager_model(onnx_package):
    model = elmexport.load(onnx_package)
    result = model.generate("hello world", max_new_tokens=5, chat=False)
    assert len(result.tokens) == 5

    from elmexport.validation.eager import EagerRunner
    from elmexport.weights.sources import load_model
    from elmexport.weights.spec import ModelSpec

    eager = load_model(ModelSpec(model="openelm-tiny", random_weights=True, context=64, tokenizer_mode="skip"))
    runner = EagerRunner(eager.model)
    ids = list(result.prompt_tokens)
    for token in result.tokens:  # greedy: each new token is the eager model's argmax after the same prefix
        runner.reset()
        assert int(runner.forward(ids, 0)[-1].argmax()) == token
        ids.append(token)


def test_validate_through_the_api(onnx_package, tmp_path):
    report = elmexport.validate(onnx_package, latency=False, prefill_tokens=8, decode_steps=2, greedy_tokens=4,
                                ppl_tokens=16, max_abs_err=1e-3)
    assert report.passed, report.failed_checks
    assert any(c["name"] == "max_abs_err" for c in report.checks)
    paths = report.write(tmp_path / "rep")
    assert paths["json"].exists()


def test_api_refuses_bad_options_with_one_line(tmp_path):
    cases = [
        (dict(model="openelm-tiny", target="onnx", random_weights=True, out=tmp_path / "a", accuracy_levle=0),
         "unknown option 'accuracy_levle' for target onnx"),
        (dict(model="openelm-tiny", target="onnx", random_weights=True, out=tmp_path / "b", accuracy_level="4"),
         "--accuracy-level: expected int"),
        (dict(model="openelm-tiny", target="coreml", random_weights=True, out=tmp_path / "c", quant="8da4w"),
         "only on executorch"),
        (dict(model="openelm-tiny", target="tflite", random_weights=True), "unknown target 'tflite'"),
        (dict(model="openelm-tiny", target="executorch", random_weights=True, context=16, max_seq_len=32),
         "exceeds --context"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ElmExportError) as e:
            elmexport.export(**kwargs)
        assert message in str(e.value) and "\n" not in str(e.value)
    assert not any(tmp_path.iterdir())


def test_python_m_elmexport_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "elmexport", "info", "--size", "270M", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_parameters"] == 271_527_168
