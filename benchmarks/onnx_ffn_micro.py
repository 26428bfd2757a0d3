"""The FFN block in onnxruntime: fused [gate; up] MatMulNBits + Split, two MatMulNBits, or one QMoE node?

    python benchmarks/onnx_ffn_micro.py                  # SmolLM2-135M widths, 30 layers, one decode row
    python benchmarks/onnx_ffn_micro.py --dim 1280 --ffn 3584 --layers 16 --rounds 21
    python benchmarks/onnx_ffn_micro.py --layouts "fused + Split" --blocks 32,64 --rounds 31   # int4 block size

Why this file: elmexport's ONNX lowering keeps fused projections fused (targets/executorch/split_projections.py is used by
ExecuTorch only). This chain of `layers` FFN blocks (x + down(silu(gate(x)) * up(x)), int4 block-32, accuracy_level
4, 2 threads, one row as in decode) times the layouts against each other, interleaved round by round; onnxruntime
turns Sigmoid + Mul into QuickGelu in the MatMulNBits layouts. The third layout is the only fused FFN kernel
onnxruntime's CPU provider has: com.microsoft QMoE with one expert (k=1, so the routing weight is exactly 1),
interleaved SwiGLU (alpha 1, beta 0, no limit: silu(gate) * up) and the same int4 codes and scales, which replaces
five nodes by one. The script first checks that all layouts compute the same block (T = 1 and T = 16), then times
them. Random weights: the kernels' time does not depend on the values. Prints the median (min-max) over rounds of
each round's median step, per layer, and each row's per-round speed-up over the first. `--blocks 32,64` times each
layout at each int4 block size (why the int4 preset's layers use blocks of 64).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from paired_stats import paired_ratios

BLOCK = 32


def _int4_codes(k: int, n: int, rng, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Random int4 codes [n, k/block, block/2] (two per byte, as MatMulNBits packs them), fp32 scales [n, k/block]."""
    blocks = k // block
    return (rng.integers(0, 255, (n, blocks, block // 2), dtype=np.uint8),
            rng.random((n, blocks), dtype=np.float32) * 0.002)


def _matmul(x: str, name: str, codes, scales, nodes: list, inits: list) -> str:
    n, blocks, half_block = codes.shape
    inits += [numpy_helper.from_array(codes, name + "_B"), numpy_helper.from_array(scales, name + "_S")]
    nodes.append(helper.make_node("MatMulNBits", [x, name + "_B", name + "_S"], [name], domain="com.microsoft",
                                  K=blocks * 2 * half_block, N=n, bits=4, block_size=2 * half_block, accuracy_level=4))
    return name


def _qmoe(x: str, p: str, gate, up, down, nodes: list, inits: list) -> str:
    """One QMoE node: a single expert whose FC1 rows interleave gate and up (swiglu_fusion=1), FC2 = down."""
    (g, gs), (u, us), (d, ds) = gate, up, down
    fc1 = np.stack([g, u], 1).reshape(2 * g.shape[0], -1)[None]         # rows g0, u0, g1, u1, ...
    fc1_scales = np.stack([gs, us], 1).reshape(2 * g.shape[0], -1)[None]
    inits += [numpy_helper.from_array(fc1, p + "fc1"), numpy_helper.from_array(fc1_scales, p + "fc1_S"),
              numpy_helper.from_array(d.reshape(d.shape[0], -1)[None], p + "fc2"),
              numpy_helper.from_array(ds[None], p + "fc2_S")]
    nodes.append(helper.make_node("QMoE", [x, "router", p + "fc1", p + "fc1_S", "", p + "fc2", p + "fc2_S"],
                                  [p + "ffn"], domain="com.microsoft", k=1, activation_type="swiglu",
                                  swiglu_fusion=1, expert_weight_bits=4, block_size=2 * g.shape[2],
                                  accuracy_level=4,
                                  normalize_routing_weights=0))
    return p + "ffn"


def _router_logits(nodes: list, inits: list) -> None:
    """router [B*T, 1] of zeros from x's shape, once per forward: one expert gets softmax weight exactly 1."""
    inits += [numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
              numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "rows_by_one"),
              numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero")]
    nodes += [helper.make_node("ReduceSum", ["x", "last_axis"], ["x_sum"], keepdims=1),
              helper.make_node("Mul", ["x_sum", "zero"], ["x_zero"]),
              helper.make_node("Reshape", ["x_zero", "rows_by_one"], ["router"])]


LAYOUTS = ("two MatMulNBits", "fused + Split", "QMoE (1 expert)")


def ffn_chain(layout: str, dim: int, ffn: int, layers: int, seed: int = 0, block: int = BLOCK):
    """-> ONNX model: `layers` residual FFN blocks in one of LAYOUTS; the same codes and scales for every layout
    of one int4 block size."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    if layout == "QMoE (1 expert)":
        _router_logits(nodes, inits)
    for i in range(layers):
        p = f"l{i}_"
        gate, up, down = (_int4_codes(dim, ffn, rng, block), _int4_codes(dim, ffn, rng, block),
                          _int4_codes(ffn, dim, rng, block))
        if layout == "QMoE (1 expert)":
            out = _qmoe(x, p, gate, up, down, nodes, inits)
        else:
            if layout == "fused + Split":
                both = _matmul(x, p + "gate_up", np.concatenate([gate[0], up[0]]), np.concatenate([gate[1], up[1]]),
                               nodes, inits)
                inits.append(numpy_helper.from_array(np.array([ffn, ffn], dtype=np.int64), p + "sizes"))
                nodes.append(helper.make_node("Split", [both, p + "sizes"], [p + "gate", p + "up"], axis=-1))
                g, u = p + "gate", p + "up"
            else:
                g, u = _matmul(x, p + "gate", *gate, nodes, inits), _matmul(x, p + "up", *up, nodes, inits)
            nodes += [helper.make_node("Sigmoid", [g], [p + "sig"]),
                      helper.make_node("Mul", [g, p + "sig"], [p + "silu"]),
                      helper.make_node("Mul", [p + "silu", u], [p + "h"])]
            out = _matmul(p + "h", p + "down", *down, nodes, inits)
        nodes.append(helper.make_node("Add", [x, out], [p + "out"]))
        x = p + "out"
    graph = helper.make_graph(nodes, "ffn_chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", dim])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])


def check_same_block(sessions: dict, dim: int) -> None:
    """Every layout of one block size must compute the same chain, or its timing means nothing."""
    for t in (1, 16):
        x = {"x": np.random.default_rng(t).standard_normal((1, t, dim), dtype=np.float32) * 0.1}
        outs = {key: s.run(None, x)[0] for key, s in sessions.items()}
        for (layout, block), out in outs.items():
            ref_key = next(k for k in outs if k[1] == block)
            ref = outs[ref_key]
            err = float(np.abs(out - ref).max())
            if err > 1e-4 * max(1.0, float(np.abs(ref).max())):
                raise SystemExit(f"{layout} differs from {ref_key[0]} by {err:.2e} at T={t}, block {block}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per layout per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma list of: {', '.join(LAYOUTS)}")
    ap.add_argument("--blocks", default=str(BLOCK), help="comma list of int4 block sizes, each timed with every layout")
    args = ap.parse_args(argv)
    layouts = args.layouts.split(",")
    if unknown := [name for name in layouts if name not in LAYOUTS]:
        ap.error(f"--layouts: unknown {unknown[0]!r}; choose from {', '.join(LAYOUTS)}")
    blocks = [int(b) for b in args.blocks.split(",")]
    if any(args.dim % b or args.ffn % b for b in blocks):
        ap.error(f"--dim and --ffn must be multiples of every int4 block ({args.blocks})")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    sessions = {(name, b): ort.InferenceSession(ffn_chain(name, args.dim, args.ffn, args.layers, block=b)
                                                .SerializeToString(), opts, providers=["CPUExecutionProvider"])
                for b in blocks for name in layouts}
    check_same_block(sessions, args.dim)
    x = {"x": np.random.default_rng(1).standard_normal((1, 1, args.dim), dtype=np.float32)}
    for s in sessions.values():
        for _ in range(20):
            s.run(None, x)
    per_layer = {key: [] for key in sessions}
    for r in range(args.rounds):
        for key in (list(sessions) if r % 2 == 0 else list(sessions)[::-1]):  # nobody always first
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                sessions[key].run(None, x)
                times.append(time.perf_counter() - t0)
            per_layer[key].append(statistics.median(times) * 1e6 / args.layers)
    print(f"FFN block dim {args.dim}, ffn {args.ffn}, {args.layers} layers, one row, {args.threads} threads, "
          f"{args.rounds} rounds: us per layer, median (min-max); speed-up vs the first row per round "
          f"(geometric mean, 95% CI, rounds faster)")
    first = next(iter(per_layer))
    for (name, b), xs in per_layer.items():
        line = f"  {name:16s} block {b:3d} {statistics.median(xs):7.1f} ({min(xs):.1f}-{max(xs):.1f})"
        if (name, b) != first:
            s = paired_ratios(per_layer[first], xs)  # time of the first / time of this one: > 1 = this is faster
            line += f"  {s['geomean']:.3f}x ({s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}), {s['ahead']}/{s['rounds']}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
