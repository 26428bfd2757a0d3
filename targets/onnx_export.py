"""torch.onnx (dynamo) export of the explicit-cache module, and the small ONNX-side touches after it.

Dynamic axes: `sequence_length` (tokens fed this call, 1..context) and `past_sequence_length` (tokens already
cached, 0..context-1); present.* come out as `total_sequence_length`. Weights go to one external-data file
(`model.onnx.data`) beside `model.onnx`, as onnxruntime and onnxruntime-genai expect.
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

from ..errors import ElmExportError
from .onnx_form import ExplicitCacheModule
from .onnx_lowering import OPSET, TRANSLATIONS


def export_onnx(form: ExplicitCacheModule, log=None):
    """-> torch.onnx.ONNXProgram with the graph's inputs/outputs named as onnxruntime-genai expects."""
    ctx = form.context
    seq = Dim("sequence_length", min=1, max=ctx)
    past = Dim("past_sequence_length", min=0, max=ctx - 1)
    # example sizes: distinct and > 1, or torch.export specialises / unifies them (hence MIN_CONTEXT = 8)
    args = (torch.zeros(1, 3, dtype=torch.long), *form.empty_past(5))
    dynamic = ({1: seq},) + tuple({2: past} for _ in range(2 * form.num_layers))
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
    _name_total_length(program.model)
    return program


def _name_total_length(model) -> None:
    """present.* sequence axis: 'past_sequence_length + sequence_length' -> 'total_sequence_length'."""
    import onnx_ir as ir

    for value in model.graph.outputs:
        if value.name.startswith("present.") and value.shape is not None:
            dims = list(value.shape)
            dims[2] = ir.SymbolicDim("total_sequence_length")
            value.shape = ir.Shape(dims)


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
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))
