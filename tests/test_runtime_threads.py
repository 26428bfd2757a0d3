"""Run-time threads: left to the runtime unless the user asks, and then applied to the runtime actually used."""

from __future__ import annotations

import pytest

import elmexport


@pytest.fixture(scope="module")
def onnx_package(tmp_path_factory, llama2_style_tokenizer):
    return elmexport.export("openelm-tiny", "onnx", random_weights=True, context=64, tokenizer=llama2_style_tokenizer,
                            out=tmp_path_factory.mktemp("threads") / "pkg", cache=False)


def _intra_op(model) -> int:
    return model.runner.session.get_session_options().intra_op_num_threads


def test_onnx_runtime_threads_follow_the_request(onnx_package):
    assert _intra_op(elmexport.load(onnx_package, threads=1)) == 1
    assert _intra_op(elmexport.load(onnx_package)) == 0  # 0 is onnxruntime's "choose for me"


def test_validate_runs_and_reports_the_requested_threads(onnx_package):
    report = elmexport.validate(onnx_package, threads=1, prefill_tokens=8, decode_steps=2, greedy_tokens=2,
                                ppl_tokens=16)
    latency = report.data["latency"]["onnx"]
    assert latency["threads"] == 1 and "1 threads" in latency["runtime"]
    default = elmexport.validate(onnx_package, prefill_tokens=8, decode_steps=2, greedy_tokens=2, ppl_tokens=16)
    assert default.data["latency"]["onnx"]["threads"] == "runtime default"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_a_bad_thread_count_is_refused(onnx_package, bad):
    with pytest.raises(elmexport.ElmExportError, match="--threads"):
        elmexport.validate(onnx_package, threads=bad)


def test_executorch_pool_size_follows_the_request(tmp_path, llama2_style_tokenizer):
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    pkg = elmexport.export("openelm-tiny", "executorch", random_weights=True, context=32,
                           tokenizer=llama2_style_tokenizer, out=tmp_path / "et", cache=False)
    before = _threadpool_get_thread_count()
    try:
        elmexport.load(pkg, threads=1)
        assert _threadpool_get_thread_count() == 1
    finally:
        _unsafe_reset_threadpool(before)
