"""What one XNNPACK op costs per call at one token, by kind: the fixed price behind every op-count rewrite.

    python benchmarks/xnnpack_op_cost.py                     # 200 ops per chain, 2 threads
    python benchmarks/xnnpack_op_cost.py --ops 400 --threads 1

Why this file: at T = 1 a decode step's ops are tiny, so what an ExecuTorch program pays per step is mostly a fixed
cost per op (reshape + setup + invoke in the XNNPACK delegate, thread-pool hand-offs), not arithmetic. The
ExecuTorch rewrites in targets/ (one delegate per block, token-major attention, RMSNorm's mean and rotate-half as
fp32 GEMMs) trade one kind of op for another, so they are only as good as these prices. Each chain is `--ops` ops
of one kind on a [1, T, 576] activation (SmolLM2's width), lowered to one XNNPACK delegate with a dynamic T like our
programs, then run at T = 1; the per-op cost is the chain's time per call over `--ops`:

  add        x + w                                   elementwise, as the norms, RoPE tables and residuals
  mean_gemm  x * linear(x, [1/576] row)              the fp32 GEMM that stands in for RMSNorm's mean (+ a multiply)
  rotate     view heads, x + linear(x, R 64x64)      the fp32 GEMM that stands in for rotate-half (+ views, add)
  transpose  heads-major and back, a multiply between  what token-major attention removed (2 transposes + mul)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

KINDS = ("add", "mean_gemm", "rotate", "transpose")
DIM, HEADS, HEAD_DIM = 576, 9, 64


def chain_module(kind: str, ops: int):
    import torch
    import torch.nn.functional as F

    class Chain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.randn(1, DIM) * 0.01)
            self.register_buffer("r", torch.randn(HEAD_DIM, HEAD_DIM) * 0.01)
            self.register_buffer("s", torch.randn(HEADS, 1, HEAD_DIM) * 0.01)

        def forward(self, x):
            for _ in range(ops):
                if kind == "add":
                    x = x + self.w
                elif kind == "mean_gemm":
                    x = x * F.linear(x, self.w)
                elif kind == "rotate":
                    h = x.view(1, -1, HEADS, HEAD_DIM)
                    x = (h + F.linear(h, self.r)).view(1, -1, DIM)
                else:
                    h = x.view(1, -1, HEADS, HEAD_DIM).transpose(1, 2) * self.s   # [1, H, T, hd]
                    x = h.transpose(1, 2).reshape(1, -1, DIM)
            return x

    return Chain()


def lower(kind: str, ops: int, path: Path) -> None:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torch.export import Dim, export

    ep = export(chain_module(kind, ops), (torch.randn(1, 4, DIM),), dynamic_shapes=({1: Dim("T", min=1, max=128)},))
    path.write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)


def time_per_call(path: Path, threads: int, calls: int) -> float:
    import torch
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    x = torch.randn(1, 1, DIM)
    for _ in range(100):
        method.execute([x])
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        method.execute([x])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main(argv=None) -> int:
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=200, help="ops per chain")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args(argv)
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        ap.error(f"unknown kind(s) {unknown}; choose from {', '.join(KINDS)}")
    print(f"XNNPACK delegate, dynamic T run at T = 1, width {DIM}, {args.threads} threads, {args.ops} ops per chain")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            path = Path(tmp) / f"{kind}.pte"
            lower(kind, args.ops, path)
            us = time_per_call(path, args.threads, args.calls)
            print(f"  {kind:10s} {us / args.ops:6.2f} us per op ({us:.0f} us per call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
