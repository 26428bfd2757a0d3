"""Target pipelines are namespaced passes run by the one PassManager: each is checked in PyTorch against the graph
it received, its error lands in the manifest, and --dump-ir writes the graph after each one."""

import pytest
import torch

import elmexport
from elmexport.frontend import capture
from elmexport.ir.target_graph import LAST_POSITION_ROWS
from elmexport.models.config import get_preset
from elmexport.models.transformer import Transformer, init_random_weights
from elmexport.passes.manager import PassManager
from elmexport.passes.quant_config import load_quant_config
from elmexport.passes.registry import TARGET_PASSES, build_passes
from elmexport.pipeline import run_target_passes


def _ir(quant="none"):
    ir = capture(init_random_weights(Transformer(get_preset("openelm-tiny"), 32), seed=5))
    PassManager(build_passes(None, load_quant_config(quant))).run(ir)
    return ir


def test_every_pass_has_a_namespace_and_loads():
    from elmexport.passes.registry import IR_PASSES, _load

    for name in [*IR_PASSES, *TARGET_PASSES]:
        namespace, _, short = name.partition("::")
        assert namespace in ("common", "onnx", "executorch", "coreml") and short
        assert _load({**IR_PASSES, **TARGET_PASSES}, name).name == name


def test_onnx_pipeline_is_checked_pass_by_pass():
    from elmexport.targets.onnx import OnnxOptions, pipeline

    ir = _ir()
    program, reports = run_target_passes(ir, "onnx", pipeline(OnnxOptions()), OnnxOptions(), log=None)
    assert [r.name for r in reports] == ["onnx::explicit_cache", "onnx::skip_norm", "common::last_position_logits",
                                         "onnx::matmul_nbits"]
    # fp32 weights: every rewrite is exact up to float summation order
    assert all(r.max_abs_err < 1e-4 and r.top1_agreement == 1.0 for r in reports)
    ir.reset_cache()
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    program.reset_cache()
    rows = program.logits(ids)  # the last-position graph: a prefill's last row, then decode steps through its cache
    assert rows.shape[0] == LAST_POSITION_ROWS
    assert (rows - ir.logits(ids)[-LAST_POSITION_ROWS:]).abs().max().item() < 1e-4
    assert ir.op_counts()["elm.attention.default"] == 4  # the IR itself is untouched


@pytest.mark.parametrize("all_logits", [False, True])
def test_executorch_pipeline_is_checked_pass_by_pass(all_logits):
    from elmexport.targets.executorch.lower import prepare_graph

    gm, rewrites, reports = prepare_graph(_ir("int4"), "xnnpack", all_logits=all_logits)
    names = [r.name for r in reports]
    assert names[0] == "executorch::lower_attention" and names[-1] == "executorch::quantized_weights"
    assert ("common::last_position_logits" in names) == (not all_logits)
    assert rewrites["attention_lowered"] == 4
    # the IR is already int4, so only the 8-bit dynamic activations of the last pass move the logits
    assert all(r.max_abs_err < 1e-4 for r in reports[:-1]) and 0 < reports[-1].max_abs_err < 0.5


def test_last_position_pass_returns_one_row_and_the_check_sees_all(tmp_path):
    """After common::last_position_logits a call returns [1, 1, vocab]; the pass manager's check still compares
    every row (one token per call), so a wrong row anywhere would show."""
    from elmexport.ir.target_graph import TargetGraph
    from elmexport.passes.last_position_logits import LastPositionLogits

    ir = _ir()
    program = TargetGraph.from_ir(ir, "test")
    report = PassManager([LastPositionLogits()]).run(program)[0]
    assert report.max_abs_err < 1e-5 and report.top1_agreement == 1.0
    program.reset_cache()
    out = program.gm(torch.tensor([[1, 2, 3]]), torch.arange(3))
    assert tuple(out.shape) == (1, 1, get_preset("openelm-tiny").vocab_size)


def test_export_records_target_passes_and_dumps_them(tmp_path, llama2_style_tokenizer):
    package = elmexport.export("openelm-tiny", "onnx", random_weights=True, context=32, out=tmp_path / "pkg",
                               tokenizer=llama2_style_tokenizer, dump_ir=tmp_path / "ir")
    records = package.manifest["target_passes"]
    assert [r["name"] for r in records][:2] == ["onnx::explicit_cache", "onnx::skip_norm"]
    assert all(isinstance(r["max_abs_err"], float) and r["max_abs_err"] < 1e-3 for r in records)
    dumps = sorted(p.name for p in (tmp_path / "ir" / "onnx").iterdir())
    assert dumps[0] == "00_ir.txt" and "01_onnx__explicit_cache.txt" in dumps
    assert "group_query_attention" in (tmp_path / "ir" / "onnx" / "01_onnx__explicit_cache.txt").read_text()
    ir_dumps = sorted(p.name for p in (tmp_path / "ir").iterdir() if p.is_file())
    assert "03_common__fuse_attention.txt" in ir_dumps
