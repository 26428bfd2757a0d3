"""Quantized weights for ExecuTorch, built from the IR's own codes and scales (no re-quantization).

    elm.quantized_linear(%x, %q, %s, B, bits)  ->  the dynamic-activation form ("8da4w" / "8da8w"):
        %x' = int8_per_token_quant_dequant(%x)          # once per distinct input: q, k, v share one, gate, up one
        %W  = quantized_decomposed.dequantize_per_channel_group(%q, %s_f32, %zeros, qmin, qmax, int8, B)
        %y  = aten.linear(%x', %W)
      where %x' is quantized_decomposed's choose_qparams_per_token_asymmetric -> quantize_per_token ->
      dequantize_per_token (int8 asymmetric per token). The XNNPACK partitioner fuses each linear with its
      dequantize steps into one dynamically quantized GEMM (int4 blockwise or int8 per-channel weights).
      With `activations=False` (Core ML) the activation step is dropped: torchao's weight-only dequantize_affine +
      linear.

    elm.quantized_embedding(%q, %s, %ids, B, bits)  ->  quantized_decomposed.embedding_{4bit,byte}(packed, %s, ...)
      ExecuTorch's quantized kernel library (portable CPU): it gathers rows and dequantizes only those.

Why these ops and not torchao's affine ones (what Int8DynamicActivationIntxWeightConfig traces to): XNNPACK lowers
both to the same program (same GEMMs, same bytes but debug handles), but ExecuTorch re-traces the graph on fake
tensors some 40 times while lowering (edge passes, then every XNNPACK pass on every partition), and torchao's ops
are Python decompositions there, 2-4 ms per call against ~0.6 ms for these, which have meta kernels. One
activation quantization per input instead of one per linear removes 3 of 7 chains per layer: the same int8 rows
reach every GEMM (XNNPACK converts once; the GEMMs' results are unchanged).

The integer codes are the IR's, bit for bit. fp16 scales become fp32 here (exact; fp32 also for the embedding
kernel, whose PyTorch reference would otherwise multiply in fp16); XNNPACK then stores blockwise
int4 scales as bf16, which rounds them (relative error <= 2^-9) -- the one weight difference from the IR. A tied
table keeps one set of codes: the head reads them through its dequantize step, the embedding through its packed copy.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F

from ...ir.graph_edit import add_constant
from ...ir.ops import ELM_OPS

QUANTIZED_LINEAR = ELM_OPS["quantized_linear"]
QUANTIZED_EMBEDDING = ELM_OPS["quantized_embedding"]


def linear_int8_act(x_q, qdata, scale, zero_point, block_size: int, bits: int):
    """8da{bits}w: `x_q` from int8_per_token_quant_dequant x intx weights (block_size along in_features)."""
    return F.linear(x_q, _dequantize_groups(qdata, scale, zero_point, block_size, bits))


def linear_weight_only(x, qdata, scale, zero_point, block_size: int, bits: int):
    return F.linear(x, _dequantize(qdata, scale, zero_point, block_size, bits).to(x.dtype))


def int8_per_token_quant_dequant(x):
    """Int8 asymmetric per-token activations (each row its own scale and zero point), quantized and dequantized:
    the activation half of 8da4w, which XNNPACK computes as one dynamic quantization of the row."""
    qd = torch.ops.quantized_decomposed
    scale, zero = qd.choose_qparams_per_token_asymmetric(x, torch.int8)
    q = qd.quantize_per_token(x, scale, zero, -128, 127, torch.int8)
    return qd.dequantize_per_token(q, scale, zero, -128, 127, torch.int8, torch.float32)


def _dequantize_groups(qdata, scale, zero_point, block_size: int, bits: int):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return torch.ops.quantized_decomposed.dequantize_per_channel_group(qdata, scale, zero_point, qmin, qmax,
                                                                       torch.int8, block_size, torch.float32)


def _dequantize(qdata, scale, zero_point, block_size: int, bits: int):
    """Called as the torchao op, not through torchao's @torch.no_grad()-decorated Python wrapper: each of those
    leaves a grad-mode region that torch.export later inlines with a full recompile (quadratic: minutes at 270M)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return torch.ops.torchao.dequantize_affine(qdata, [1, block_size], scale, zero_point, torch.int8, qmin, qmax,
                                               torch.float32)


def embedding_4bit(packed, scales, ids):
    return torch.ops.quantized_decomposed.embedding_4bit.dtype(packed, scales, None, -8, 7, ids, dtype=torch.float32)


def embedding_byte(qweight, scales, ids):
    return torch.ops.quantized_decomposed.embedding_byte.dtype(qweight, scales, None, -128, 127, ids,
                                                               dtype=torch.float32)


def embedding_weight_only(qdata, scale, zero_point, ids, block_size: int, bits: int):
    return F.embedding(ids, _dequantize(qdata, scale, zero_point, block_size, bits))


def pack_int4_rows(q: torch.Tensor) -> torch.Tensor:
    """ExecuTorch's embedding_4bit layout: byte = (q[2j] + 8) << 4 | (q[2j+1] + 8)."""
    u = (q.to(torch.int16) + 8).to(torch.uint8).reshape(q.shape[0], q.shape[1] // 2, 2)
    return (u[..., 0] << 4) | u[..., 1]


def lower_quantized_weights(gm: torch.fx.GraphModule, activations: bool = True,
                            packed_embedding: bool = True) -> Counter:
    """Rewrite elm quantized linears/embeddings in place; returns counts by kind ("linear_int4", ...)."""
    import executorch.exir.passes._quant_patterns_and_replacements  # noqa: F401  (quantized_decomposed ops)
    import executorch.kernels.quantized  # noqa: F401
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (quantized_decomposed per-token / per-group ops)
    import torchao.quantization.quant_primitives  # noqa: F401  (registers torch.ops.torchao.*)

    counts: Counter = Counter()
    made: dict[str, tuple] = {}  # codes target -> (scale node, zero node): a tied table gets one set
    quantized_inputs: dict[torch.fx.Node, torch.fx.Node] = {}  # x -> its int8 per-token form, made once
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (QUANTIZED_LINEAR, QUANTIZED_EMBEDDING):
            continue
        if node.target is QUANTIZED_LINEAR:
            x, q_node, s_node, block, bits = node.args
            scale, zero = _scale_and_zero(gm, q_node, s_node, made)
            if activations:
                if x not in quantized_inputs:  # first use in graph order: x is defined above it
                    with gm.graph.inserting_before(node):
                        quantized_inputs[x] = gm.graph.call_function(int8_per_token_quant_dequant, (x,))
                node.target, x = linear_int8_act, quantized_inputs[x]
            else:
                node.target = linear_weight_only
            node.args = (x, q_node, scale, zero, block, bits)
            counts[f"linear_int{bits}"] += 1
        else:
            q_node, s_node, ids, block, bits = node.args
            if packed_embedding and bits in (4, 8):
                codes = q_node
                if bits == 4:
                    codes = add_constant(gm, q_node.target + "_packed4", pack_int4_rows(gm.get_buffer(q_node.target)))
                scale = add_constant(gm, s_node.target + "_rows_f32", gm.get_buffer(s_node.target).float())
                node.target = embedding_4bit if bits == 4 else embedding_byte
                node.args = (codes, scale, ids)
            else:
                scale, zero = _scale_and_zero(gm, q_node, s_node, made)
                node.target = embedding_weight_only
                node.args = (q_node, scale, zero, ids, block, bits)
            counts[f"embedding_int{bits}"] += 1
    gm.graph.lint()
    gm.recompile()
    return counts


def _scale_and_zero(gm, q_node, s_node, made):
    if q_node.target not in made:
        s = gm.get_buffer(s_node.target).float()
        made[q_node.target] = (add_constant(gm, s_node.target + "_f32", s),
                               add_constant(gm, s_node.target + "_zero", torch.zeros(s.shape, dtype=torch.int8)))
    return made[q_node.target]


SCHEMES = {
    ("linear", 4, True): "8da4w: int8 asymmetric per-token dynamic activations x int4 symmetric weights (IR codes; "
                         "XNNPACK keeps blockwise scales in bf16)",
    ("linear", 8, True): "8da8w: int8 asymmetric per-token dynamic activations x int8 symmetric weights (IR codes and "
                         "scales)",
    ("linear", 4, False): "int4 weight-only (IR codes and scales; Core ML constexpr weights), fp16 activations",
    ("linear", 8, False): "int8 weight-only (IR codes and scales; Core ML constexpr weights), fp16 activations",
    ("embedding", 4, True): "quantized_decomposed::embedding_4bit (IR codes, fp32 scales): exact",
    ("embedding", 8, True): "quantized_decomposed::embedding_byte (IR codes, fp32 scales): exact",
    ("embedding", 4, False): "int4 dequantize + gather (IR codes and scales)",
    ("embedding", 8, False): "int8 dequantize + gather (IR codes and scales)",
}


def describe_weights(rewrites: dict, delegate: str) -> dict:
    """Manifest entry: how many linears/embeddings use which scheme; the rest is float."""
    out = {}
    for key, count in rewrites.items():
        kind, _, bits = key.partition("_int")
        if kind in ("linear", "embedding") and bits.isdigit():
            out[key] = {"count": count, "scheme": SCHEMES[(kind, int(bits), delegate == "xnnpack")]}
    out["float"] = "fp32 (XNNPACK)" if delegate == "xnnpack" else "fp16 (Core ML compute precision)"
    return out


class QuantizedWeights:
    """executorch::quantized_weights: elm quantized ops -> torchao / quantized_decomposed forms. XNNPACK gets 8-bit
    dynamic activations (8da4w / 8da8w) and the packed 4-bit embedding; the Core ML delegate weight-only forms."""

    name = "executorch::quantized_weights"

    def __init__(self, options):
        self.xnnpack = options.delegate == "xnnpack"

    def run(self, program) -> dict[str, int]:
        return lower_quantized_weights(program.gm, activations=self.xnnpack, packed_embedding=self.xnnpack)
