"""Decode speed of an OpenELM model (random weights) in onnxruntime, fp32 and int4, vs the PyTorch eager model.

    python benchmarks/onnx_speed.py                      # OpenELM-270M, 2 threads, 3 interleaved rounds
    python benchmarks/onnx_speed.py --size 270M --threads 2 --rounds 5 --decode-tokens 64 --workdir /tmp/onnx_bench
    python benchmarks/onnx_speed.py --quants int4 --no-eager --genai --rounds 5 --decode-tokens 128   # vs roofline

All runners go through the same Runner protocol (prefill the prompt, then one token per call, greedy) in the same
process with the same thread count; `--genai` adds onnxruntime-genai's own generator on the same packages
(benchmarks/ort_genai_driver.py). The roofline is memory bandwidth / weight bytes read per decoded token: numpy
copy bandwidth (read + write bytes, measured in every round between the runners) over the size of the package's
model.onnx.data (every weight is read once per token; the tied table once, by the head). The box's memory bandwidth drifts and other jobs share its cores, so the
runners are interleaved round by round and the table shows medians with min-max; the speed-up is computed per
round (same minute for both runners) and its median is reported. Packages are exported once into --workdir
and reused while their manifest matches (model, quant, context, accuracy level).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is not a package: its sibling modules
from side_by_side import copy_bandwidth_gbs  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="270M", help="OpenELM size (default 270M)")
    p.add_argument("--context", type=int, default=None, help="KV-cache length (default: the model's, 2048)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--accuracy-level", type=int, default=4, help="MatMulNBits accuracy level of the int4 export")
    p.add_argument("--quants", default="none,int4", help="ONNX packages to measure (comma-separated)")
    p.add_argument("--workdir", default="/tmp/elmexport-onnx-bench", help="where the packages are exported/reused")
    p.add_argument("--no-eager", action="store_true", help="skip the PyTorch eager runner (slow at 270M+)")
    p.add_argument("--genai", action="store_true", help="also run each package with onnxruntime-genai's generator")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def package(spec_kwargs: dict, quant: str, accuracy_level: int, workdir: Path) -> Path:
    """Export (or reuse) one ONNX package through the target module, exactly as `elmexport onnx` does."""
    from elmexport.targets import onnx as onnx_target

    from elmexport.manifest import read_manifest
    from elmexport.pipeline import build_ir
    from elmexport.weights.spec import ModelSpec

    spec = ModelSpec(**spec_kwargs)
    out = workdir / f"{spec.preset_name()}-ctx{spec.context or 'default'}-{quant}-acc{accuracy_level}"
    if (out / "manifest.json").exists():
        m = read_manifest(out)
        if m["quantization"]["name"] == quant and m["onnx"]["matmul_nbits_accuracy_level"] == accuracy_level \
                and "attention_mask" in m["onnx"]["kv_cache"]:  # older packages (no shared KV buffers) are rebuilt
            return out
    options = onnx_target.OnnxOptions(accuracy_level=accuracy_level)
    options.check(spec.context)

    def log(*a):
        print("  ", *a, file=sys.stderr)

    compiled = build_ir(spec, quant, log=log)
    onnx_target.export(compiled, options, out, log)
    return out


def decode_speed(runner, prompt: list[int], n: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) for a prompt then n greedy single-token steps."""
    runner.reset()
    t0 = time.perf_counter()
    logits = runner.forward(prompt, 0)
    t1 = time.perf_counter()
    pos = len(prompt)
    for _ in range(n):
        token = int(np.argmax(logits[-1]))
        logits = runner.forward([token], pos)
        pos += 1
    t2 = time.perf_counter()
    return len(prompt) / (t1 - t0), n / (t2 - t1)


class GenaiSpeed:
    """onnxruntime-genai's generator on a package, in the (prefill, decode) shape decode_speed returns."""

    def __init__(self, path: Path, threads: int):
        from ort_genai_driver import OrtGenaiGenerator

        self.gen = OrtGenaiGenerator(path, threads)

    def speed(self, prompt: list[int], n: int) -> tuple[float, float]:
        r = self.gen.run(prompt, n + 1)  # n forwards after the first token, as decode_speed counts
        return r["prefill_tok_s"], r["decode_tok_s"]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from elmexport.validation.eager import EagerRunner
    from elmexport.targets.onnx.runner import open_runner

    from elmexport.manifest import read_manifest
    from elmexport.weights.sources import load_model
    from elmexport.weights.spec import ModelSpec

    spec_kwargs = {"size": args.size, "random_weights": True, "seed": 0, "context": args.context,
                   "tokenizer_mode": "skip"}
    workdir = Path(args.workdir)
    quants = [q for q in args.quants.split(",") if q]
    packages = {q: package(spec_kwargs, q, args.accuracy_level, workdir) for q in quants}
    loaded = load_model(ModelSpec(**spec_kwargs), log=lambda *a: None)
    speeds = {} if args.no_eager else {"eager fp32 (PyTorch)": (EagerRunner(loaded.model), None)}
    weight_bytes = {}
    for q, path in packages.items():
        m = read_manifest(path)
        label = "fp32" if q == "none" else q
        speeds[f"onnxruntime {label}"] = (open_runner(path, m, threads=args.threads), q)
        if args.genai:
            speeds[f"onnxruntime-genai {label}"] = (GenaiSpeed(path, args.threads), q)
        weight_bytes[q] = (path / "model.onnx.data").stat().st_size
    prompt = [int(t) for t in np.random.default_rng(0).integers(3, loaded.cfg.vocab_size, args.prompt_tokens)]

    def measure(runner, n_prompt, n):
        if isinstance(runner, GenaiSpeed):
            return runner.speed(prompt[:n_prompt], n)
        return decode_speed(runner, prompt[:n_prompt], n)

    for r, _ in speeds.values():  # warm-up: first-call allocations and prepacking out of the timings
        measure(r, 4, 2)
    results = {name: {"prefill": [], "decode": []} for name in speeds}
    bandwidth = []
    for rnd in range(args.rounds):
        for name, (r, _) in speeds.items():
            pre, dec = measure(r, args.prompt_tokens, args.decode_tokens)
            results[name]["prefill"].append(pre)
            results[name]["decode"].append(dec)
            bandwidth.append(copy_bandwidth_gbs() * 1e9)
            print(f"round {rnd + 1}: {name:28s} prefill {pre:7.1f} tok/s  decode {dec:6.1f} tok/s  "
                  f"copy {bandwidth[-1] / 1e9:5.1f} GB/s", file=sys.stderr)
    bw = statistics.median(bandwidth)
    base = results.get("eager fp32 (PyTorch)", {}).get("decode")
    print(f"\nOpenELM-{args.size} (random weights), context {loaded.model.context}, {args.threads} threads, "
          f"prompt {args.prompt_tokens}, {args.decode_tokens} decode steps, {args.rounds} rounds (median, min-max); "
          f"copy bandwidth {bw / 1e9:.1f} GB/s ({min(bandwidth) / 1e9:.1f}-{max(bandwidth) / 1e9:.1f})")
    print(f"{'runner':28s} {'decode tok/s':>22s} {'prefill tok/s':>22s} {'x eager':>8s} {'MB weights':>11s} "
          f"{'roofline':>9s} {'% roofline':>10s}")
    summary = {}
    for name, res in results.items():
        dec, pre = res["decode"], res["prefill"]
        speedup = statistics.median(d / b for d, b in zip(dec, base)) if base else None
        q = speeds[name][1]
        roof = bw / weight_bytes[q] if q is not None else None
        cols = (f"{weight_bytes[q] / 1e6:11.1f} {roof:9.1f} {100 * statistics.median(dec) / roof:9.0f}%"
                if q is not None else f"{'-':>11s} {'-':>9s} {'-':>10s}")
        print(f"{name:28s} {_fmt(dec):>22s} {_fmt(pre):>22s} {speedup or 0:8.2f} {cols}")
        summary[name] = {"decode_tok_s": dec, "prefill_tok_s": pre, "speedup_vs_eager_median": speedup,
                         "weight_bytes": weight_bytes.get(q), "roofline_tok_s": roof}
    summary["copy_bandwidth_bytes_s"] = bandwidth
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": summary}, indent=2))
    return 0


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


if __name__ == "__main__":
    sys.exit(main())
