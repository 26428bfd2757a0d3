"""OpenELM's RMSNorm, naive chain vs fused, in each runtime: the cost of one token's 65 norms (OpenELM-270M).

    python benchmarks/rmsnorm_micro.py [--dim 1280] [--norms 65] [--repeats 200]

The OpenELM paper blames the model's slowness on its naive RMSNorm (a chain of small kernels per norm, 4L+1 norms
per token). Each runtime gets the same stack of `norms` norms of width `dim` on one token, written two ways:
  naive: the reference chain  x.float() -> pow(2) -> mean -> + eps -> rsqrt -> mul -> cast -> mul w
  fused: what elmexport lowers to -- torch.nn.functional.rms_norm (eager), one RMSNormalization node
         (onnxruntime), and the XNNPACK form of targets/executorch/xnnpack_form.py (mean as a [1, D] GEMM,
         so the whole norm stays inside one delegate call) for ExecuTorch.
Prints milliseconds per token; 2 threads everywhere. side_by_side.py calls `rmsnorm_micro()`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-6


class NormStack(torch.nn.Module):
    """`norms` RMSNorms applied one after the other, as on one token's path through the model."""

    def __init__(self, dim: int, norms: int, fused: bool, xnnpack_form: bool = False):
        super().__init__()
        self.dim, self.norms, self.fused, self.xnnpack_form = dim, norms, fused, xnnpack_form
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.register_buffer("mean_row", torch.full((1, dim), 1.0 / dim))

    def norm(self, x):
        if self.xnnpack_form:
            from elmexport.targets.executorch.xnnpack_form import rms_norm_for_xnnpack

            return rms_norm_for_xnnpack(x, self.weight, EPS, self.mean_row)
        if self.fused:
            return F.rms_norm(x, (self.dim,), self.weight, EPS)
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).type_as(x) * self.weight

    def forward(self, x):
        for _ in range(self.norms):
            x = self.norm(x)
        return x


def _time_ms(fn, repeats: int) -> float:
    for _ in range(10):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1e3


def torch_eager(dim: int, norms: int, repeats: int) -> dict:
    x = torch.randn(1, 1, dim)
    out = {}
    for name, fused in (("torch naive chain", False), ("torch fused rms_norm", True)):
        model = NormStack(dim, norms, fused)
        with torch.inference_mode():
            out[name] = _time_ms(lambda: model(x), repeats)
    return out


def onnxruntime_graphs(dim: int, norms: int, repeats: int) -> dict:
    """Graphs written node by node (no exporter in between), run with graph optimisations off: as written."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def model(fused: bool):
        nodes, prev = [], "x"
        inits = [helper.make_tensor("w", TensorProto.FLOAT, [dim], [1.0] * dim),
                 helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                 helper.make_tensor("eps", TensorProto.FLOAT, [], [EPS]),
                 helper.make_tensor("axes", TensorProto.INT64, [1], [-1])]
        for i in range(norms):
            o = f"n{i}"
            if fused:
                nodes.append(helper.make_node("RMSNormalization", [prev, "w"], [o], axis=-1, epsilon=EPS))
            else:
                nodes += [helper.make_node("Pow", [prev, "two"], [f"p{i}"]),
                          helper.make_node("ReduceMean", [f"p{i}", "axes"], [f"m{i}"], keepdims=1),
                          helper.make_node("Add", [f"m{i}", "eps"], [f"a{i}"]),
                          helper.make_node("Sqrt", [f"a{i}"], [f"s{i}"]),
                          helper.make_node("Reciprocal", [f"s{i}"], [f"r{i}"]),
                          helper.make_node("Mul", [prev, f"r{i}"], [f"q{i}"]),
                          helper.make_node("Mul", [f"q{i}", "w"], [o])]
            prev = o
        g = helper.make_graph(nodes, "rms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, dim])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 1, dim])], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)])

    out = {}
    feed = {"x": np.random.randn(1, 1, dim).astype(np.float32)}
    for name, fused in (("onnxruntime naive chain", False), ("onnxruntime RMSNormalization", True)):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(model(fused).SerializeToString(), so, providers=["CPUExecutionProvider"])
        out[name] = _time_ms(lambda: sess.run(None, feed), repeats)
    return out


def executorch_programs(dim: int, norms: int, repeats: int) -> dict:
    """The naive chain and the XNNPACK form, each lowered with the XNNPACK partitioner, run by the ET runtime."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    x = torch.randn(1, 1, dim)
    out = {}
    for name, module in (("executorch naive chain (XNNPACK)", NormStack(dim, norms, fused=False)),
                         ("executorch XNNPACK form (ours)", NormStack(dim, norms, fused=True, xnnpack_form=True))):
        ep = torch.export.export(module.eval(), (x,))
        program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
        method = Runtime.get().load_program(program.buffer).load_method("forward")
        out[name] = _time_ms(lambda: method.execute([x]), repeats)
    return out


def rmsnorm_micro(dim: int = 1280, norms: int = 65, repeats: int = 200) -> dict:
    torch.set_num_threads(2)
    results = torch_eager(dim, norms, repeats)
    results.update(onnxruntime_graphs(dim, norms, repeats))
    results.update(executorch_programs(dim, norms, repeats))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--norms", type=int, default=65)
    ap.add_argument("--repeats", type=int, default=200)
    a = ap.parse_args()
    print(f"{a.norms} RMSNorms of width {a.dim} on one token, ms per token")
    for k, v in rmsnorm_micro(a.dim, a.norms, a.repeats).items():
        print(f"  {k:36s} {v:8.3f}")


if __name__ == "__main__":
    main()
