"""The numeric gates `elmexport validate` applies: which metrics, default limits per quantization preset, and
parsing of the limits a user gives (`--min-top1 0.9`, `--thresholds FILE`).

Two kinds of error are gated separately, because they have different causes and different healthy sizes:

- lowering error, package vs the optimised IR (`vs_previous_stage` in the report): the IR already holds the
  quantized weights, so this is only what the target's conversion and runtime add. It is small for every preset
  (fp16 compute, int8 activations in some int4 kernels), and a damaged or mismatched package (a changed weight,
  swapped layers, a wrong RoPE theta in the manifest) shows up here first. Gated with scale-free metrics (minimum
  cosine of the logits over positions, top-1 agreement), so one limit fits real and random weights.
- quantization error, package vs eager fp32: grows with the preset. SmolLM2 int4 disagrees with fp32 on a
  third of next-token argmaxes yet reads text as well (its perplexity on the GPL-3 text even dropped), so the
  end-to-end gate is the perplexity increase, not top-1 or greedy agreement. Random weights give near-uniform
  logits whose argmax is a near-tie, so top-1 vs eager says nothing about them; only perplexity is gated.

Measured on healthy packages with this validator's default options (prefill 32 + 8 decode steps, 256 perplexity
tokens of the GPL-3 text, or seeded random ids without a tokenizer); "lowering" = package vs IR, "ppl +" = package
perplexity / eager - 1. Real weights: the quickstart's SmolLM2-135M packages (`elmexport quickstart`) and
`elmexport onnx --quant Q --context 512`; random: `elmexport onnx --size 270M --random-weights --quant Q
--context 256` and `--model openelm-tiny --random-weights --context 64` exports, then `elmexport validate PKG
--no-latency`.

| preset | package                              | lowering cos min | lowering top-1 | lowering ppl change | ppl + vs eager |
|--------|--------------------------------------|------------------|----------------|---------------------|----------------|
| none   | ONNX SmolLM2 real                    | 1.00000          | 1.000          | 0.0000              | -0.0000        |
| none   | ONNX openelm-tiny random             | 1.00000          | 1.000          | 0.0000              | 0.0000         |
| none   | ONNX OpenELM-270M random             | 1.00000          | 1.000          | 0.0000              | 0.0000         |
| none   | Core ML openelm-tiny random (fp16)   | 1.00000          | 1.000          | 0.0001              | -0.0001        |
| int8   | ONNX SmolLM2 real                    | 0.96268          | 1.000          | 0.0242              | 0.0046         |
| int8   | ONNX openelm-tiny random             | 0.99974          | 0.950          | 0.0004              | 0.0013         |
| int4   | ONNX SmolLM2 real                    | 0.97336          | 0.825          | 0.0253              | -0.1536        |
| int4   | Core ML SmolLM2 real                 | 0.99991          | 1.000          | 0.0003              | -0.1743        |
| int4   | ONNX OpenELM-270M random             | 0.99954          | 1.000          | 0.0013              | 0.0116         |
| int4   | ONNX openelm-tiny random             | 0.99986          | 0.950          | 0.0001              | 0.0119         |
| int4   | Core ML openelm-tiny random          | 1.00000          | 1.000          | 0.0000              | 0.0117         |
| 8da4w  | ExecuTorch SmolLM2 real              | 0.91062          | 0.925          | 0.0014              | 0.1092         |

Broken packages (openelm-tiny ONNX fp32, numbers edited and the checksums rewritten so integrity passes), package
vs IR: one FFN weight x1.1: cosine 0.9964, top-1 0.875; x1.5: 0.9073, 0.375; one norm weight x1.2: 0.9918, 0.725;
two layers' output projections swapped: 0.0114, 0.000. SmolLM2 int4 ONNX (the quickstart's), layer 10's FFN up
projection scales x1.5: cosine -0.433, top-1 0.625, ppl change 0.387 (fails three gates); x1.1: cosine 0.974,
top-1 0.900, ppl change 0.060, which passes: damage that small hides inside int4's own lowering error (healthy
0.973 / 0.825 / 0.025), and only a per-target gate or a tighter --max-lowering-ppl-change would see it. Random weights barely move perplexity (all four stayed
within 0.052 of the IR's), so the cosine and top-1 gates carry the lowering check; perplexity carries the
quantization check on real weights.

Defaults keep a margin over the worst healthy value of their preset: a lowering cosine gate at least ~3x the
worst healthy distance from 1 (1 - cos), top-1 at least 0.1 below the worst healthy, perplexity gates several
times the worst healthy change. Presets without a measured row (palettize*, custom quant files) get the loosest
measured preset's gates (8da4w), and the report says so. Lowering for int8, int4 and 8da4w cannot be as tight as
for none: onnxruntime's int4/int8 kernels (MatMulNBits, accuracy level 4) and XNNPACK's 8da4w quantize activations to
int8, which the IR does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ElmExportError


@dataclass(frozen=True)
class Metric:
    """What a threshold key limits: a field of the package stage (`against` "eager") or of its comparison with
    the IR ("ir"), and which way is good."""

    field: str
    against: str  # "eager" | "ir"
    op: str  # ">=" | "<="
    about: str


METRICS = {
    "max_abs_err": Metric("max_abs_err", "eager", "<=", "largest logit difference, package vs eager fp32"),
    "min_top1": Metric("top1_agreement", "eager", ">=", "next-token argmax agreement, package vs eager fp32"),
    "max_ppl_increase": Metric("ppl_increase", "eager", "<=", "relative perplexity increase, package vs eager fp32"),
    "min_greedy_match": Metric("greedy_match_tokens", "eager", ">=", "greedy tokens identical to eager fp32's"),
    "min_cosine": Metric("cosine_min", "eager", ">=", "worst per-position logit cosine, package vs eager fp32"),
    "min_lowering_cosine": Metric("cosine_min", "ir", ">=", "worst per-position logit cosine, package vs IR"),
    "min_lowering_top1": Metric("top1_agreement", "ir", ">=", "next-token argmax agreement, package vs IR"),
    "max_lowering_ppl_change": Metric("ppl_change", "ir", "<=", "relative perplexity change, package vs IR"),
}
THRESHOLD_KEYS = tuple(METRICS)

# preset -> limits; each traced to the table above
DEFAULTS: dict[str, dict[str, float]] = {
    "none": {"min_lowering_cosine": 0.995, "min_lowering_top1": 0.9, "max_lowering_ppl_change": 0.02,
             "max_ppl_increase": 0.02},
    "int8": {"min_lowering_cosine": 0.88, "min_lowering_top1": 0.8, "max_lowering_ppl_change": 0.1,
             "max_ppl_increase": 0.1},
    "int4": {"min_lowering_cosine": 0.9, "min_lowering_top1": 0.7, "max_lowering_ppl_change": 0.1,
             "max_ppl_increase": 0.5},
    "8da4w": {"min_lowering_cosine": 0.7, "min_lowering_top1": 0.8, "max_lowering_ppl_change": 0.05,
              "max_ppl_increase": 0.5},
}
MEASURED = {
    "none": "measured worst healthy lowering cosine 1.0000, top-1 1.000, ppl +0.0000 (SmolLM2/270M/tiny ONNX, tiny "
            "Core ML)",
    "int8": "measured worst healthy lowering cosine 0.963, top-1 0.950, lowering ppl change 0.024, ppl +0.005 "
            "(SmolLM2/tiny ONNX)",
    "int4": "measured worst healthy lowering cosine 0.973, top-1 0.825, ppl +0.012 (SmolLM2 ONNX/Core ML, 270M/tiny)",
    "8da4w": "measured worst healthy lowering cosine 0.911, top-1 0.925, ppl +0.109 (SmolLM2 ExecuTorch)",
}
DEFAULT_SOURCES = {preset: f"default for {preset}: {MEASURED[preset]}; table in validation/gates.py"
                   for preset in DEFAULTS}
LOOSEST = "8da4w"


@dataclass(frozen=True)
class Gate:
    key: str
    limit: float
    source: str


def parse_thresholds(raw, where: str) -> dict[str, float]:
    """User limits as {key: number}: unknown keys and non-numbers are one-line errors naming `where`."""
    if not isinstance(raw, dict):
        raise ElmExportError(f"{where}: expected a mapping like 'min_top1: 0.9' (keys: {', '.join(THRESHOLD_KEYS)})")
    out = {}
    for key, value in raw.items():
        if key not in METRICS:
            raise ElmExportError(f"{where}: unknown threshold {key!r}; known: {', '.join(THRESHOLD_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ElmExportError(f"{where}: threshold {key} must be a finite number, got {value!r}")
        out[key] = float(value)
    return out


def gates_for(preset: str, given: dict[str, float], given_sources: dict[str, str]) -> list[Gate]:
    """The preset's defaults, each overridden by a limit the user gave, plus the user's extra keys."""
    if preset in DEFAULTS:
        defaults, source = DEFAULTS[preset], DEFAULT_SOURCES[preset]
    else:
        defaults = DEFAULTS[LOOSEST]
        source = f"no measured default for quantization {preset!r}; using {LOOSEST}'s (the loosest measured)"
    gates = [Gate(key, given[key], given_sources.get(key, "given")) if key in given else Gate(key, limit, source)
             for key, limit in defaults.items()]
    gates += [Gate(key, value, given_sources.get(key, "given")) for key, value in given.items() if key not in defaults]
    return gates


def evaluate(gates: list[Gate], final: dict) -> list[dict]:
    """One check per gate on the package stage `final` (its `vs_previous_stage` is the comparison with the IR)."""
    checks = []
    for g in gates:
        m = METRICS[g.key]
        values = final if m.against == "eager" else final.get("vs_previous_stage", {})
        value = values.get(m.field)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            passed, shown = False, "not finite" if value is not None else "not measured"
        else:
            passed = value >= g.limit if m.op == ">=" else value <= g.limit
            shown = f"{value:.6g}"
        checks.append({"name": g.key, "passed": bool(passed), "value": value, "threshold": g.limit,
                       "source": g.source, "numeric": True,
                       "detail": f"{final['name']} vs {m.against}: {m.about} = {shown} (must be {m.op} {g.limit:g}; "
                                 f"{g.source})"})
    return checks
