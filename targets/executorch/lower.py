"""IR -> ExecuTorch program: rewrite a copy of the IR graph, torch.export it, partition, serialise.

    IR gm (ATen + elm ops, KV caches [1, n_kv_i, context, hd])
      | copy (shares the IR's weights; the IR itself is left untouched for validation), then the target passes
      | (`pipeline`, run by the PassManager with its numeric check after each):
      |   xnnpack: executorch::lower_attention (attention.py: elm.attention -> token-major q/k/v,
      |              llama::update_cache + llama::custom_sdpa)
      |            common::last_position_logits (unless all_logits: the head on the last position only)
      |            executorch::xnnpack_form (no dynamic slices/splits/symbolic views)
      |            executorch::token_rows (token_rows.py: the layer stack on [T, D] rows, cheaper to re-trace)
      |            executorch::quantized_weights (quant.py: elm quantized ops -> quantized_decomposed ops)
      |   coreml:  coreml::lower_attention (targets/coreml/attention.py's form), executorch::quantized_weights,
      |            executorch::rms_norm_reference (elm.rms_norm -> its fp16-safe reference kernel)
      v
    torch.export: forward(tokens [1, T] int64, input_pos [T] int64) -> logits [1, 1 or T, vocab], T dynamic in
    [1, max_seq_len]; KV caches stay mutable buffers inside the program
      | to_edge_transform_and_lower(partitioner, constant_methods = the LLM-runner metadata): run_decompositions,
      | the edge passes, partitioning and XNNPACK's passes on every partition, each a re-trace of the graph on fake
      | tensors -- the minutes of an export, which the graph's form above keeps short (benchmarks/export_profile.py)
      | check: every linear and every quantize/dequantize step of the export is inside the delegate
      v
    .pte
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.export import Dim

from ...errors import ElmExportError
from ...ir.decompose import remaining_elm_ops
from ...ir.graph_edit import drop_unused_attributes
from ...progress import step
from .attention import load_custom_ops
from .quant import describe_weights

DELEGATES = ("xnnpack", "coreml")
# ops that must never be left to portable kernels: a linear outside the delegate is a silent 10-100x slowdown
MUST_DELEGATE = ("linear", "mm", "bmm", "addmm", "quantized_decomposed::choose_qparams_per_token_asymmetric",
                 "quantized_decomposed::quantize_per_token", "quantized_decomposed::dequantize_per_token",
                 "quantized_decomposed::dequantize_per_channel_group", "torchao::dequantize_affine")


@dataclass
class Lowered:
    program: object  # ExecutorchProgramManager
    rewrites: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    states: list = field(default_factory=list)
    ops: dict = field(default_factory=dict)  # delegated / portable op counts (see op_report)
    seconds: dict = field(default_factory=dict)
    reports: list = field(default_factory=list)  # the target passes' PassReports


def pipeline(delegate: str, all_logits: bool = True) -> list[str]:
    """The target passes, in order (passes/registry.py names them)."""
    if delegate == "xnnpack":
        return ["executorch::lower_attention", *([] if all_logits else ["common::last_position_logits"]),
                "executorch::xnnpack_form", "executorch::token_rows", "executorch::quantized_weights"]
    return ["coreml::lower_attention", "executorch::quantized_weights", "executorch::rms_norm_reference"]


def prepare_graph(compiled, delegate: str, all_logits: bool = True, log=None) -> tuple[torch.fx.GraphModule, dict,
                                                                                      list]:
    """The target pipeline on a copy of the IR (a CompiledModel or an IRProgram): a graph with no elm ops left,
    the rewrite counts and the pass reports."""
    from ...pipeline import run_target_passes
    from . import ExecuTorchOptions

    options = ExecuTorchOptions(delegate=delegate)  # what the passes read of the options: the delegate
    program, reports = run_target_passes(compiled, "executorch", pipeline(delegate, all_logits), options,
                                         log or (lambda *_: None))
    gm = program.gm
    rewrites = {k: v for r in reports for k, v in r.changed.items()}
    left = remaining_elm_ops(gm.graph)
    if left:
        raise ElmExportError(f"executorch: no lowering for {dict(left)}; use --quant none, int8, int4 or 8da4w")
    drop_unused_attributes(gm)  # weights the rewrites replaced must not be exported into the program
    return gm, rewrites, reports


def export_program(gm: torch.fx.GraphModule, max_seq_len: int) -> torch.export.ExportedProgram:
    """One `forward` with T dynamic in [1, max_seq_len]: prefill chunks and single-token decode alike."""
    n = min(2, max_seq_len)
    args = (torch.zeros(1, n, dtype=torch.long), torch.arange(n, dtype=torch.long))
    dynamic = None
    if max_seq_len > 1:
        T = Dim("T", min=1, max=max_seq_len)
        dynamic = ({1: T}, {0: T})
    with torch.no_grad():
        return torch.export.export(gm, args, dynamic_shapes=dynamic, strict=False)


def partitioners(delegate: str) -> list:
    if delegate == "xnnpack":
        return [_xnnpack_partitioner()]
    if delegate == "coreml":
        from .coreml_delegate import coreml_partitioner

        return [coreml_partitioner()]
    raise ElmExportError(f"--delegate {delegate!r}: choose one of {', '.join(DELEGATES)}")


def _xnnpack_partitioner():
    """XNNPACK's partitioner, asking to keep its ops (aten.linear, ...) whole without a per-node filter.

    With a filter (`ops_to_not_decompose`'s second value, which XNNPACK's partitioner returns) ExecuTorch decomposes
    the whole program twice more to tag the nodes that pass it; without one it keeps every node of those ops and
    decomposes once. The outcome is the same program whenever every such node passes XNNPACK's check, which
    check_delegated asserts for every linear after lowering (a linear left undelegated fails the export); this
    saves one full re-trace of the program (~15 s of a 135M model's lowering).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class WholeOpsXnnpackPartitioner(XnnpackPartitioner):
        def ops_to_not_decompose(self, ep):
            ops, _filter = super().ops_to_not_decompose(ep)
            return ops, None

    return WholeOpsXnnpackPartitioner()


def lower(compiled, delegate: str, max_seq_len: int, constant_methods: dict, log=None,
          all_logits: bool = True) -> Lowered:
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower

    log = log or (lambda *_: None)
    load_custom_ops()
    seconds = {}
    t0 = time.perf_counter()
    gm, rewrites, reports = prepare_graph(compiled, delegate, all_logits=all_logits, log=log)
    states = [{"name": n, "shape": list(b.shape),
               "dtype": str(b.dtype).removeprefix("torch.") if delegate == "xnnpack" else "float16 (Core ML state)",
               "layout": "[batch, position, kv_head, head_dim]" if delegate == "xnnpack"
               else "[batch, kv_head, position, head_dim]"}
              for n, b in sorted(gm.named_buffers(), key=lambda nb: _layer_order(nb[0]))
              if n.endswith(("k_cache", "v_cache"))]
    with step("torch.export of the rewritten graph", log):
        ep = export_program(gm, max_seq_len)
    if delegate == "coreml":
        ep = ep.run_decompositions({})
    exported = Counter(_op_name(n.target) for n in ep.graph.nodes if n.op == "call_function")
    seconds["export"] = round(time.perf_counter() - t0, 1)
    shape = f"T dynamic in [1, {max_seq_len}]" if max_seq_len > 1 else "T = 1"
    log(f"exported forward ({shape}) in {seconds['export']:.1f} s; rewrites {rewrites}")
    t0 = time.perf_counter()
    with step(f"lowering to {delegate}", log):
        try:
            edge = to_edge_transform_and_lower(
                ep, partitioner=partitioners(delegate), constant_methods=constant_methods,
                compile_config=EdgeCompileConfig(_check_ir_validity=False),
            )
        except RuntimeError as e:  # an op kept whole for XNNPACK that XNNPACK then refused (see _xnnpack_partitioner)
            if "was not decomposed or delegated" not in str(e):
                raise
            raise ElmExportError(f"executorch: {str(e).splitlines()[0][:200]}; the program would run it on slow "
                                 f"portable kernels") from None
    seconds["lower"] = round(time.perf_counter() - t0, 1)
    ops = op_report(edge.exported_program())
    check_delegated(exported, ops, delegate)
    log(f"lowered to {delegate} in {seconds['lower']:.1f} s: {ops['delegated_total']} ops in "
        f"{ops['delegate_calls']} delegate calls ({ops['delegated'].get('linear', 0)} linears), "
        f"{ops['portable_total']} ops on portable/custom kernels")
    t0 = time.perf_counter()
    with step("serialising the program", log):
        program = edge.to_executorch(ExecutorchBackendConfig())
    seconds["serialize"] = round(time.perf_counter() - t0, 1)
    return Lowered(program, rewrites, describe_weights(rewrites, delegate), states, ops, seconds, reports)


def _layer_order(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in name.split("."))


def check_delegated(exported: Counter, ops: dict, delegate: str) -> None:
    """Every linear / quantize step of the export must sit inside the delegate: count and assert, by name."""
    for name in MUST_DELEGATE:
        left = ops["portable"].get(name, 0)
        if left:
            raise ElmExportError(f"executorch: {left} of {exported.get(name, left)} {name} ops were not delegated "
                                 f"to {delegate}; the program would run them on slow portable kernels")
        if delegate == "xnnpack" and exported.get(name, 0) != ops["delegated"].get(name, 0):
            raise ElmExportError(f"executorch: export has {exported.get(name, 0)} {name} ops but {delegate} "
                                 f"took {ops['delegated'].get(name, 0)}")


_BOOKKEEPING = ("getitem", "sym_size", "_assert", "sym_constrain", "executorch_call_delegate", "_local_scalar_dense",
                "scalar_tensor", "alloc", "sym_numel", "sym_storage_offset")


def _op_name(target) -> str:
    """'linear', 'llama::custom_sdpa', 'torchao::dequantize_affine' for ATen/edge/custom ops and functions."""
    op = target if isinstance(target, torch._ops.OpOverload) else getattr(target, "_op", target)  # edge op wraps one
    if isinstance(op, torch._ops.OpOverload):
        name = op._schema.name
    else:
        name = getattr(op, "__name__", str(op))
    name = name.removeprefix("aten::")
    for suffix in (".default", ".Tensor", ".int", ".dim", ".dtype", ".Scalar", ".self", ".out"):
        name = name.removesuffix(suffix)
    return name


def op_report(ep) -> dict:
    """Ops inside delegates vs ops left to ExecuTorch's portable/custom kernels (bookkeeping nodes not counted)."""
    delegated, portable = Counter(), Counter()
    calls = 0
    gm = ep.graph_module
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = _op_name(node.target)
        if name == "executorch_call_delegate":
            calls += 1
            lowered = getattr(gm, node.args[0].target)
            for inner in lowered.original_module.graph.nodes:
                inner_name = _op_name(inner.target) if inner.op == "call_function" else ""
                if inner_name and not any(b in inner_name for b in _BOOKKEEPING):
                    delegated[inner_name] += 1
        elif name.startswith("auto_functionalized"):
            portable[_op_name(node.args[0])] += 1
        elif not any(b in name for b in _BOOKKEEPING):
            portable[name] += 1
    return {"delegate_calls": calls, "delegated_total": sum(delegated.values()),
            "portable_total": sum(portable.values()), "delegated": dict(sorted(delegated.items())),
            "portable": dict(sorted(portable.items()))}
