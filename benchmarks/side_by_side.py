"""Side-by-side decode/prefill speed of every runtime on one model, against the memory-bandwidth bound.

    python benchmarks/side_by_side.py [--size 270M] [--rounds 3] [--decode-tokens 32] [--prompt-tokens 32]
                                      [--configs eager,onnx:none,onnx:int4,executorch:none,executorch:8da4w]

Exports each configuration of OpenELM (random weights) with the CLI, then measures all runtimes in one process,
interleaved round by round (eager, onnx fp32, onnx int4, ... then again), 2 threads. The bound column is
(measured copy bandwidth) / (bytes of weights read per decoded token, i.e. the package's weight files; the tied
head reads the whole table every token). Also a micro-benchmark of OpenELM's RMSNorm, naive chain vs fused,
in PyTorch eager and onnxruntime (65 norms per token on 270M: the paper blames the naive chain for its slowness).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def copy_bandwidth_gbs(mib: int = 512, repeats: int = 5) -> float:
    """Bytes moved per second by a large memcpy (read + write), GB/s; the decode roofline's denominator."""
    src = np.ones(mib * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def export(target: str, quant: str, size: str, out: Path) -> Path:
    if (out / "manifest.json").exists():
        return out
    cmd = [sys.executable, "-m", "elmexport.cli", target, "--size", size, "--random-weights", "--quant", quant,
           "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"export {target}:{quant} failed: {proc.stderr.strip().splitlines()[-1:]}")
    print(f"exported {target}:{quant} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def weight_bytes(pkg: Path, manifest: dict) -> int:
    skip = {"tokenizer.json", "tokenizer_config.json", "manifest.json", "genai_config.json"}
    return sum(p.stat().st_size for p in pkg.rglob("*") if p.is_file() and p.name not in skip
               and "validation" not in p.parts)


def rmsnorm_micro(dim: int = 1280, norms: int = 65, repeats: int = 200) -> dict:
    """Time per token of `norms` RMSNorms of width `dim`: naive ATen chain vs fused kernels."""
    import torch

    x = torch.randn(1, 1, dim)
    w = torch.ones(dim)

    def naive(v):
        vf = v.float()
        return (vf * torch.rsqrt(vf.pow(2).mean(-1, keepdim=True) + 1e-6)).type_as(v) * w

    def fused(v):
        return torch.nn.functional.rms_norm(v, (dim,), w, 1e-6)

    out = {}
    for name, fn in (("torch naive chain", naive), ("torch fused rms_norm", fused)):
        with torch.inference_mode():
            for _ in range(10):
                fn(x)
            t0 = time.perf_counter()
            for _ in range(repeats):
                for _ in range(norms):
                    fn(x)
        out[name] = (time.perf_counter() - t0) / repeats * 1e3
    out.update(_onnx_rmsnorm(dim, norms, repeats))
    return out


def _onnx_rmsnorm(dim: int, norms: int, repeats: int) -> dict:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def model(fused: bool):
        nodes, prev = [], "x"
        inits = [helper.make_tensor("w", TensorProto.FLOAT, [dim], [1.0] * dim),
                 helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                 helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-6]),
                 helper.make_tensor("axes", TensorProto.INT64, [1], [-1])]
        for i in range(norms):
            o = f"n{i}"
            if fused:
                nodes.append(helper.make_node("RMSNormalization", [prev, "w"], [o], axis=-1, epsilon=1e-6))
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
    for name, fused in (("onnxruntime naive chain", False), ("onnxruntime RMSNormalization", True)):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # measure the graph as written
        sess = ort.InferenceSession(model(fused).SerializeToString(), so, providers=["CPUExecutionProvider"])
        feed = {"x": np.random.randn(1, 1, dim).astype(np.float32)}
        for _ in range(10):
            sess.run(None, feed)
        t0 = time.perf_counter()
        for _ in range(repeats):
            sess.run(None, feed)
        out[name] = (time.perf_counter() - t0) / repeats * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="270M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--configs", default="eager,onnx:none,onnx:int4",
                    help="comma list of eager and TARGET:QUANT, e.g. eager,onnx:none,onnx:int4,executorch:none,executorch:8da4w")
    ap.add_argument("--out", default="dist/bench")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    from elmexport.package import read_manifest
    from elmexport.validation.eager import EagerRunner
    from elmexport.validation.latency import measure
    from elmexport.validation.runners import open_package_runner
    from elmexport.weights.sources import load_model
    from elmexport.weights.spec import ModelSpec

    runners, sizes = {}, {}
    for cfg in args.configs.split(","):
        if cfg == "eager":
            lm = load_model(ModelSpec(size=args.size, random_weights=True, tokenizer_mode="skip"), log=lambda *a: None)
            runners[cfg] = EagerRunner(lm.model)
            sizes[cfg] = sum(p.numel() * p.element_size() for p in lm.model.parameters())
            continue
        target, quant = cfg.split(":")
        pkg = export(target, quant, args.size, Path(args.out) / f"{args.size}-{target}-{quant}")
        manifest = read_manifest(pkg)
        runners[cfg] = open_package_runner(pkg, manifest)
        sizes[cfg] = weight_bytes(pkg, manifest)

    vocab = 32000
    prompt = [(7 * i + 3) % vocab for i in range(args.prompt_tokens)]
    results = {k: [] for k in runners}
    bandwidth = []
    for r in range(args.rounds):
        bandwidth.append(copy_bandwidth_gbs())
        for name, runner in runners.items():
            results[name].append(measure(runner, prompt, args.decode_tokens, 1))
        print(f"round {r + 1}/{args.rounds} done (copy bandwidth {bandwidth[-1]:.1f} GB/s)", flush=True)
    bw = statistics.median(bandwidth)
    rows = []
    for name, rs in results.items():
        dec = [x["decode_tokens_per_s"] for x in rs]
        pre = [x["prefill_tokens_per_s"] for x in rs]
        bound = bw * 1e9 / sizes[name]
        rows.append({"config": name, "decode_tok_s": statistics.median(dec), "decode_min": min(dec),
                     "decode_max": max(dec), "prefill_tok_s": statistics.median(pre), "weight_mb": sizes[name] / 1e6,
                     "bound_tok_s": bound, "fraction_of_bound": statistics.median(dec) / bound})
    eager = next((r["decode_tok_s"] for r in rows if r["config"] == "eager"), None)
    print(f"\nOpenELM-{args.size} (random weights), 2 threads, prompt {args.prompt_tokens}, {args.decode_tokens} decode "
          f"tokens, {args.rounds} interleaved rounds; copy bandwidth median {bw:.1f} GB/s ({min(bandwidth):.1f}-"
          f"{max(bandwidth):.1f})")
    print(f"{'config':20s} {'decode tok/s (min-max)':>24s} {'x eager':>8s} {'prefill tok/s':>14s} {'weights MB':>11s} "
          f"{'bound tok/s':>12s} {'% of bound':>10s}")
    for r in rows:
        x = r["decode_tok_s"] / eager if eager else float("nan")
        print(f"{r['config']:20s} {r['decode_tok_s']:8.1f} ({r['decode_min']:.1f}-{r['decode_max']:.1f}){'':>6s} "
              f"{x:8.2f} {r['prefill_tok_s']:14.1f} {r['weight_mb']:11.1f} {r['bound_tok_s']:12.1f} "
              f"{100 * r['fraction_of_bound']:9.1f}%")
    micro = rmsnorm_micro()
    print("\nRMSNorm micro-benchmark: 65 norms of width 1280 (one OpenELM-270M token), ms per token")
    for k, v in micro.items():
        print(f"  {k:32s} {v:8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "bandwidth_gbs": bandwidth, "rmsnorm_ms": micro}, indent=2))


if __name__ == "__main__":
    main()
