"""ONNX target: `elmexport onnx` -> model.onnx (+ .data), genai_config.json, tokenizer.json, manifest.json.

Target passes (`pipeline`, run by the PassManager on a copy of the IR, each checked in PyTorch):
  onnx::explicit_cache (form.py) IR with in-graph static KV cache and elm.attention -> GroupQueryAttention over
                   past_key_values.%d / present.%d buffers that onnxruntime(-genai) shares between past and present
  onnx::skip_norm (skip_norm.py) residual add + RMSNorm -> SkipSimplifiedLayerNormalization
  common::last_position_logits (--logits last) the head reads the last position only
  onnx::matmul_nbits (quant.py) elm.quantized_linear/embedding codes and scales -> MatMulNBits /
                   GatherBlockQuantized layout
Then:
  lowering.py elm ops -> one ONNX node each (RMSNormalization, SkipSimplifiedLayerNormalization,
                   GroupQueryAttention, MatMulNBits, GatherBlockQuantized)
  to_onnx.py  torch.onnx dynamo export with dynamic sequence / total / KV-buffer lengths
  genai.py    genai_config.json for onnxruntime-genai
Before the package is renamed into place, the ONNX model runs in onnxruntime on a fixed token stream (prefill,
then single-token decode steps) against the IR; the error goes into the manifest, as does each target pass's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...errors import ElmExportError
from ...passes.quant_config import LINEAR_MODES
from ..options import TargetOptions, option

DESCRIPTION = "ONNX package for onnxruntime / onnxruntime-genai (int4/int8 as MatMulNBits, fused norms/attention)"
MODEL_FILE = "model.onnx"
SUPPORTED_MODES = ("none", *LINEAR_MODES)
MIN_CONTEXT = 8  # the export traces 3 new tokens, a mask of 5, buffers of 7 (distinct, > 1: torch.export
#                  specialises 0/1)


@dataclass(frozen=True)
class OnnxOptions(TargetOptions):
    accuracy_level: int = option(4, "MatMulNBits compute type: 4 = int8 activations (fastest), 0 = fp32 (about 2/3 "
                                    "of the decode speed; logits match the quantized IR to ~1e-5)",
                                 choices=range(5))
    logits: str = option("last", "last: the head runs on the last fed position only (as for ExecuTorch: a "
                                 "generator samples only that row, and prefill skips T-1 rows of the vocab-wide "
                                 "head; logits [1, 1, vocab]); all: logits for every fed position (teacher-forced "
                                 "scoring, speculative decoding in one call)", choices=("all", "last"))
    threads: int | None = option(None, "intra-op threads onnxruntime-genai runs the model with, written into "
                                       "genai_config.json (default: onnxruntime's choice, one per physical core)",
                                 minimum=1, metavar="N")

    def check(self, context: int | None) -> None:
        if context is not None and context < MIN_CONTEXT:
            raise ElmExportError(f"--context {context}: the ONNX target needs at least {MIN_CONTEXT} positions")


OPTIONS = OnnxOptions
FOUR_BIT_PRESET = "int4"  # what the quickstart exports it with


def check_quant(config) -> None:
    """MatMulNBits takes blocks of 16 or more, a power of two."""
    from .quant import check_block_size

    for q in [config.default, config.embedding, *(q for _, q in config.overrides)]:
        if q.mode != "none":
            check_block_size(q.block_size)


def pipeline(options: OnnxOptions) -> list[str]:
    """The target passes, in order (passes/registry.py names them)."""
    return ["onnx::explicit_cache", "onnx::skip_norm",
            *(["common::last_position_logits"] if options.logits == "last" else []), "onnx::matmul_nbits"]


def export(compiled, options: OnnxOptions, out_dir, log) -> dict:
    from ...package import base_manifest, finish_manifest, pass_records, write_package
    from ...pipeline import run_target_passes
    from .genai import write_genai_files
    from ...progress import step
    from .to_onnx import export_onnx, io_specs, op_counts, save

    ir, cfg = compiled.ir, compiled.loaded.cfg
    if ir.context < MIN_CONTEXT:
        raise ElmExportError(f"context {ir.context}: the ONNX target needs at least {MIN_CONTEXT} positions")
    accuracy_level, logits = options.accuracy_level, options.logits
    t0 = time.perf_counter()
    program, reports = run_target_passes(compiled, "onnx", pipeline(options), options, log)
    form = program.explicit
    changed = {r.name: r.changed for r in reports}
    skip_norms = changed["onnx::skip_norm"]["skip_norms_fused"]
    quant_counts = changed["onnx::matmul_nbits"]
    log(f"onnx: GroupQueryAttention graph, {form.num_layers} layers, KV heads per layer {form.kv_heads}, "
        f"{skip_norms} skip norms; weights lowered: {quant_counts}")
    with step("torch.onnx export", log):
        onnx_program = export_onnx(form)
    after = op_counts(onnx_program.model)
    inputs, outputs = io_specs(onnx_program.model)
    log(f"onnx: exported in {time.perf_counter() - t0:.0f} s: {_short_counts(after)}")
    name = f"{cfg.name}-onnx-{compiled.quant.name}"
    with write_package(out_dir) as tmp:
        model_files = save(onnx_program, tmp / MODEL_FILE)
        del onnx_program
        genai_files = write_genai_files(tmp, cfg, form, MODEL_FILE, options.threads)
        ort_check = _check_onnxruntime(ir, tmp / MODEL_FILE)
        log(f"onnx: onnxruntime vs IR max abs logit err {ort_check['max_abs_err']:.3g}, "
            f"top-1 {ort_check['top1_agreement']:.3f}")
        manifest = base_manifest(
            compiled, "onnx", name,
            inputs=inputs, outputs=outputs, states=[],
            onnx={
                "model_file": MODEL_FILE, "model_files": model_files, "opset": 23, "extra_files": genai_files,
                "kv_cache": {"layout": "[batch, kv_heads, max_sequence_length, head_dim]",
                             "num_kv_heads": form.kv_heads, "head_dim": form.head_dim,
                             "past": "past_key_values.%d.key/value",
                             "present": "present.%d.key/value (the same buffer, new rows written at past_length; "
                                        "bind one buffer to both)",
                             "attention_mask": "int64 [1, past_length + sequence_length], all ones",
                             "positions": "past_length + arange(sequence_length)"},
                "skip_norms_fused": skip_norms,
                "logits": logits,
                "matmul_nbits_accuracy_level": accuracy_level,
                "weight_lowering": quant_counts,
                "node_counts": {"ir": _ir_counts(ir), "onnx": after},
                "checks": {"onnxruntime_vs_ir": ort_check},
            },
            target_passes=pass_records(reports),
        )
        manifest = finish_manifest(tmp, manifest, compiled.loaded.tokenizer)
    return manifest


# ---------------------------------------------------------------------------------------------- checks
def _check_stream(vocab: int, context: int) -> tuple[list[int], int]:
    from ...passes.manager import check_tokens

    n = min(12, context)
    return check_tokens(vocab, n), max(1, n - 4)  # prefill of n-4 tokens, then 4 single-token decode steps


def _ir_reference(ir, ids: list[int]) -> np.ndarray:
    ir.reset_cache()
    ref = ir.logits(ids).numpy()
    ir.reset_cache()
    return ref


def _check_onnxruntime(ir, model_path) -> dict:
    from ...validation.metrics import step_metrics
    from .runner import OnnxRunner
    from ...validation.streams import teacher_forced

    runner = OnnxRunner(model_path, ir.context)
    ids, prefill = _check_stream(ir.cfg.vocab_size, ir.context)
    metrics = step_metrics(_ir_reference(ir, ids), teacher_forced(runner, ids, prefill))
    return {"tokens": len(ids), "prefill": prefill, "max_abs_err": metrics["max_abs_err"],
            "top1_agreement": metrics["top1_agreement"]}


# ---------------------------------------------------------------------------------------------- facts
def _ir_counts(ir) -> dict[str, int]:
    counts = ir.op_counts()
    return dict(sorted(((k, v) for k, v in counts.items() if k != "<built-in function getitem>"),
                       key=lambda kv: (-kv[1], kv[0])))


def _short_counts(counts: dict[str, int]) -> str:
    keys = ("RMSNormalization", "com.microsoft.SkipSimplifiedLayerNormalization", "com.microsoft.GroupQueryAttention",
            "com.microsoft.MatMulNBits", "com.microsoft.GatherBlockQuantized", "MatMul", "Gather")
    shown = [f"{k.removeprefix('com.microsoft.')} x{counts[k]}" for k in keys if k in counts]
    return f"{sum(counts.values())} nodes ({', '.join(shown)})"
