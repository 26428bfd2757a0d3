"""torch.onnx (dynamo) export of the explicit-cache module, and the small ONNX-side touches after it.

Dynamic axes: `sequence_length` (tokens fed this call, 1..context), `total_sequence_length` (the attention mask:
cached + new tokens) and `max_sequence_length` (the positions each KV buffer holds; past and present share it, so
present.* have the same axis). Weights go to one external-data file (`model.onnx.data`) beside `model.onnx`, as
onnxruntime and onnxruntime-genai expect.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.export import Dim

from ...errors import ElmExportError
from .form import ExplicitCacheModule
from .lowering import OPSET, TRANSLATIONS


def export_onnx(form: ExplicitCacheModule, log=None):
    """-> torch.onnx.ONNXProgram with the graph's inputs/outputs named as onnxruntime-genai expects."""
    ctx = form.context
    seq = Dim("sequence_length", min=1, max=ctx)
    total = Dim("total_sequence_length", min=1, max=ctx)
    buffer = Dim("max_sequence_length", min=2, max=ctx)
    # example sizes: distinct and > 1, or torch.export specialises / unifies them (hence MIN_CONTEXT = 8)
    args = (torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 5, dtype=torch.long), *form.kv_buffers(7))
    dynamic = ({1: seq}, {1: total}) + tuple({2: buffer} for _ in range(2 * form.num_layers))
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                form.gm, args, dynamo=True, opset_version=OPSET, custom_translation_table=TRANSLATIONS,
                dynamic_shapes=dynamic, input_names=form.input_names(), output_names=form.output_names(),
                external_data=True, optimize=True, verbose=False)
    except Exception as e:  # the exporter's own report is many screens long; keep its first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ElmExportError(f"torch.onnx export failed: {first[:300]}") from e
    finally:
        quiet.setLevel(level)
    return program


def op_counts(model) -> dict[str, int]:
    """ONNX node count by (domain-qualified) op type, main graph."""
    counts = Counter((f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in model.graph)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def io_specs(model) -> tuple[list[dict], list[dict]]:
    def spec(v):
        shape = [d if isinstance(d, int) else str(d) for d in v.shape] if v.shape is not None else None
        return {"name": v.name, "shape": shape, "dtype": v.dtype.numpy().name}

    return [spec(v) for v in model.graph.inputs], [spec(v) for v in model.graph.outputs]


def save(program, path: Path) -> list[str]:
    """Write model.onnx + model.onnx.data; returns the file names written."""
    program.save(str(path), external_data=True)
    drop_unused_norm_statistics(path)
    strip_exporter_metadata(path)
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


def drop_unused_norm_statistics(path: Path) -> int:
    """SkipSimplifiedLayerNormalization's optional outputs 1-2 (mean, inv_std_var) -> "" when nothing reads them.

    The exporter names every declared output; onnxruntime then computes and allocates the statistics on every call
    (a decode step's 60 norms took ~24 us each instead of ~16, measured with onnxruntime's profiler). Only the graph
    file is rewritten; the weights stay in model.onnx.data untouched.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dropped = set()
    for node in model.graph.node:
        if node.op_type == "SkipSimplifiedLayerNormalization":
            for k in (1, 2):
                if k < len(node.output) and node.output[k] and node.output[k] not in read:
                    dropped.add(node.output[k])
                    node.output[k] = ""
    if dropped:
        kept = [v for v in model.graph.value_info if v.name not in dropped]
        del model.graph.value_info[:]
        model.graph.value_info.extend(kept)
        onnx.save(model, str(path))
    return len(dropped)


def strip_exporter_metadata(path: Path) -> int:
    """Drop the exporter's debugging annotations (per-node FX node text, class hierarchy, stack traces with source
    file paths, the ExportedProgram's signature) from the graph file; returns how many were dropped.

    No runtime reads them, and they name where elmexport's own source files sit on the exporting machine, so two
    identical exports from different checkouts would differ and every package would carry a local path.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dropped = len(model.graph.metadata_props) + sum(len(n.metadata_props) for n in model.graph.node)
    del model.graph.metadata_props[:]
    for node in model.graph.node:
        del node.metadata_props[:]
    for function in model.functions:
        for node in function.node:
            dropped += len(node.metadata_props)
            del node.metadata_props[:]
    if dropped:
        onnx.save(model, str(path))
    return dropped

