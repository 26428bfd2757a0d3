"""Where an ONNX package's decode step goes: onnxruntime's per-node profile, the session call and the runner around it.

    python benchmarks/onnx_profile.py /work/bench-270m/openelm-270m/onnx-int4
    python benchmarks/onnx_profile.py PKG --prompt-tokens 128 --steps 128 --threads 2 --json profile.json

Why this exists: the side-by-side table says how far a package's decode is from the memory-bandwidth bound, not
where the rest of the step goes. This opens the package with the runner's own session options (the ones a user
gets from `elmexport generate`/`validate`), plus onnxruntime's profiler, feeds a prompt in one call, then decodes
greedily one token per call, and splits each decode step into three parts:

  kernels   the sum of the step's node times from the profiler, by op type (MatMulNBits is the part that reads
            the weights; everything else is what the graph adds around it)
  session   onnxruntime's own `model_run` time minus its kernels (graph walk, allocations, thread hand-offs)
  runner    the wall time of the runner's call (`OnnxRunner.forward_last`) minus `model_run` (IOBinding set-up,
            the logits copy into numpy)

The profiler itself costs a little per node, so the step here is slower than in the side-by-side runs; the split
is what to read. Random-weight packages are fine: token ids are a fixed pattern, as in side_by_side.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path


def profiled_runner(package: Path, threads: int):
    """The package's runner with onnxruntime's profiler switched on in the runner's own session options."""
    from elmexport.manifest import read_manifest
    from elmexport.targets.onnx import runner as onnx_runner

    plain = onnx_runner.session_options

    def with_profiling(*args, **kwargs):
        so = plain(*args, **kwargs)
        so.enable_profiling = True
        so.profile_file_prefix = "/tmp/elmexport_onnx_profile"
        return so

    onnx_runner.session_options = with_profiling
    try:
        return onnx_runner.open_runner(package, read_manifest(package), threads=threads)
    finally:
        onnx_runner.session_options = plain


def decode_steps(events: list[dict], n_steps: int) -> list[dict]:
    """The last n_steps `model_run`s of a profile, each with its node times (us) by op type."""
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    steps = []
    for run in runs[-n_steps:]:
        start, end = run["ts"], run["ts"] + run["dur"]
        by_op: dict[str, float] = defaultdict(float)
        for e in nodes:
            if start <= e["ts"] <= end:
                by_op[e["args"]["op_name"]] += e["dur"]
        steps.append({"model_run_us": run["dur"], "by_op": dict(by_op)})
    return steps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("package", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--json", type=Path, help="also write the per-step numbers here")
    args = ap.parse_args(argv)

    runner = profiled_runner(args.package, args.threads)
    vocab = runner.session.get_outputs()[0].shape[-1]
    prompt = [(7 * i + 3) % vocab for i in range(args.prompt_tokens)]
    for _ in range(2):  # the first pass pays page faults on freshly mapped weights; the second is the measured one
        runner.reset()
        token = int(runner.forward_last(prompt, 0).argmax())
        walls = []
        for step in range(args.steps):
            t0 = time.perf_counter()
            logits = runner.forward_last([token], args.prompt_tokens + step)
            walls.append(1e6 * (time.perf_counter() - t0))
            token = int(logits.argmax())
    profile = Path(runner.session.end_profiling())
    steps = decode_steps(json.loads(profile.read_text()), args.steps)
    profile.unlink()

    ops = sorted({op for s in steps for op in s["by_op"]})
    med = {op: statistics.median(s["by_op"].get(op, 0.0) for s in steps) for op in ops}
    kernels = statistics.median(sum(s["by_op"].values()) for s in steps)
    model_run = statistics.median(s["model_run_us"] for s in steps)
    wall = statistics.median(walls)
    counts = defaultdict(int)
    import onnx

    for node in onnx.load(str(args.package / "model.onnx"), load_external_data=False).graph.node:
        counts[node.op_type] += 1
    print(f"{args.package}: {args.steps} decode steps after a {args.prompt_tokens}-token prompt, {args.threads} "
          f"threads, medians per step (profiler on)\n")
    print("| part | us per step | share of the step | nodes | us per node |")
    print("|---|---|---|---|---|")
    for op in sorted(ops, key=lambda o: -med[o]):
        n = counts.get(op, 0)
        print(f"| {op} | {med[op]:.0f} | {100 * med[op] / wall:.1f}% | {n} | {med[op] / n:.1f} |" if n else
              f"| {op} | {med[op]:.0f} | {100 * med[op] / wall:.1f}% | - | - |")
    print(f"| all kernels | {kernels:.0f} | {100 * kernels / wall:.1f}% | {sum(counts.values())} | - |")
    print(f"| session outside kernels | {model_run - kernels:.0f} | {100 * (model_run - kernels) / wall:.1f}% | - | - |")
    print(f"| runner outside the session | {wall - model_run:.0f} | {100 * (wall - model_run) / wall:.1f}% | - | - |")
    print(f"| whole step (runner call) | {wall:.0f} | 100% | - | - |")
    if args.json:
        args.json.write_text(json.dumps({"package": str(args.package), "threads": args.threads, "walls_us": walls,
                                         "steps": steps, "median_by_op_us": med, "node_counts": dict(counts)},
                                        indent=1))


if __name__ == "__main__":
    sys.exit(main())
