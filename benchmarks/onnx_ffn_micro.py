"""The FFN's [gate; up] projection in onnxruntime: one fused MatMulNBits + Split, or two MatMulNBits?

    python benchmarks/onnx_ffn_micro.py                  # SmolLM2-135M widths, 30 layers, one decode row
    python benchmarks/onnx_ffn_micro.py --dim 1280 --ffn 3584 --layers 16 --rounds 21

Why this file: elmexport's ONNX lowering keeps fused projections fused (targets/split_projections.py is used by
ExecuTorch only). This chain of `layers` FFN blocks (x + down(silu(gate(x)) * up(x)), int4 block-32 MatMulNBits,
accuracy_level 4, 2 threads, one row as in decode) times the two layouts against each other, interleaved round by
round; onnxruntime turns Sigmoid + Mul into QuickGelu in both. Random weights: the kernels' time does not depend
on the values. Prints the median (min-max) over rounds of each round's median step, per layer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BLOCK = 32


def _int4_weight(name: str, k: int, n: int, inits: list, rng) -> list[str]:
    blocks = k // BLOCK
    inits.append(numpy_helper.from_array(rng.integers(0, 255, (n, blocks, BLOCK // 2), dtype=np.uint8), name + "_B"))
    inits.append(numpy_helper.from_array(rng.random((n, blocks), dtype=np.float32) * 0.002, name + "_S"))
    return [name + "_B", name + "_S"]


def _matmul(x: str, name: str, k: int, n: int, nodes: list, inits: list, rng) -> str:
    nodes.append(helper.make_node("MatMulNBits", [x, *_int4_weight(name, k, n, inits, rng)], [name],
                                  domain="com.microsoft", K=k, N=n, bits=4, block_size=BLOCK, accuracy_level=4))
    return name


def ffn_chain(fused: bool, dim: int, ffn: int, layers: int, seed: int = 0):
    """-> ONNX model: `layers` residual FFN blocks with [gate; up] fused (+ Split) or as two MatMulNBits."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        p = f"l{i}_"
        if fused:
            both = _matmul(x, p + "gate_up", dim, 2 * ffn, nodes, inits, rng)
            inits.append(numpy_helper.from_array(np.array([ffn, ffn], dtype=np.int64), p + "sizes"))
            nodes.append(helper.make_node("Split", [both, p + "sizes"], [p + "gate", p + "up"], axis=-1))
            gate, up = p + "gate", p + "up"
        else:
            gate = _matmul(x, p + "gate", dim, ffn, nodes, inits, rng)
            up = _matmul(x, p + "up", dim, ffn, nodes, inits, rng)
        nodes += [helper.make_node("Sigmoid", [gate], [p + "sig"]),
                  helper.make_node("Mul", [gate, p + "sig"], [p + "silu"]),
                  helper.make_node("Mul", [p + "silu", up], [p + "h"])]
        down = _matmul(p + "h", p + "down", ffn, dim, nodes, inits, rng)
        nodes.append(helper.make_node("Add", [x, down], [p + "out"]))
        x = p + "out"
    graph = helper.make_graph(nodes, "ffn_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, dim])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per layout per round")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.dim % BLOCK or args.ffn % BLOCK:
        ap.error(f"--dim and --ffn must be multiples of the int4 block ({BLOCK})")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    layouts = {"two MatMulNBits": False, "fused + Split": True}
    sessions = {name: ort.InferenceSession(ffn_chain(fused, args.dim, args.ffn, args.layers).SerializeToString(),
                                           opts, providers=["CPUExecutionProvider"]) for name, fused in layouts.items()}
    x = {"x": np.random.default_rng(1).standard_normal((1, 1, args.dim), dtype=np.float32)}
    for s in sessions.values():
        for _ in range(20):
            s.run(None, x)
    per_layer = {name: [] for name in sessions}
    for _ in range(args.rounds):
        for name, s in sessions.items():
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                s.run(None, x)
                times.append(time.perf_counter() - t0)
            per_layer[name].append(statistics.median(times) * 1e6 / args.layers)
    print(f"FFN block dim {args.dim}, ffn {args.ffn}, {args.layers} layers, one row, {args.threads} threads, "
          f"{args.rounds} rounds: us per layer, median (min-max)")
    for name, xs in per_layer.items():
        print(f"  {name:16s} {statistics.median(xs):7.1f} ({min(xs):.1f}-{max(xs):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
