"""Where an export's time goes: one `elmexport.export` under pyinstrument, summary written as text.

    pip install -e '.[bench]'
    python benchmarks/export_profile.py --model openelm-tiny --random-weights --quant 8da4w \
        --save benchmarks/results/export_profile_tiny_8da4w.txt
    python benchmarks/export_profile.py --quant 8da4w --save benchmarks/results/export_profile_smollm2_8da4w.txt

The summary keeps frames above --min-percent of the wall time (pyinstrument's own filter), so the few calls that
own the minutes stand out; the exporter's own timing lines (export / lower / serialize) are printed as it runs.
Sampling adds a few percent of overhead: compare wall times without the profiler (`time elmexport ...`).

`--stages` skips the sampler and times the lowering's retraces directly instead: how many times torch.export's
run_decompositions, the edge-program generation and XNNPACK's preprocess run, and each XNNPACK pass summed over
every partition (each pass re-traces its partition once).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="executorch")
    ap.add_argument("--model", default=None, help="preset (default: the exporter's, SmolLM2-135M-Instruct)")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--quant", default="8da4w")
    ap.add_argument("--context", type=int, default=None)
    ap.add_argument("--min-percent", type=float, default=1.0, help="hide frames below this share of the time")
    ap.add_argument("--save", type=Path, default=None, help="write the text summary here as well")
    ap.add_argument("--session", type=Path, default=None, help="also save pyinstrument's raw session (re-render "
                                                                 "with `pyinstrument --load FILE`)")
    ap.add_argument("--load", type=Path, default=None, help="summarise a saved session instead of exporting")
    ap.add_argument("--stages", action="store_true", help="count and time the lowering's retraces, no sampler")
    args = ap.parse_args(argv)
    if args.stages:
        return stage_counts(args)

    from pyinstrument.session import Session

    session = Session.load(str(args.load)) if args.load else profile_export(args)
    if args.session and not args.load:
        session.save(str(args.session))
    text = branch_tree(session.root_frame(), args.min_percent / 100) + "\n" + stage_table(session.root_frame())
    header = (f"# elmexport.export({args.model or 'default model'!r}, {args.target!r}, quant={args.quant!r}, "
              f"random_weights={args.random_weights}): {session.duration:.1f} s wall, {session.cpu_time:.1f} s CPU"
              f"\n# command: python {' '.join(sys.argv)}\n")
    print(header + text)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(header + text)
    return 0


def profile_export(args):
    from pyinstrument import Profiler

    import elmexport

    with tempfile.TemporaryDirectory() as tmp:
        profiler = Profiler(interval=0.01)
        profiler.start()
        elmexport.export(args.model, args.target, quant=args.quant, out=Path(tmp) / "pkg", cache=False,
                         random_weights=args.random_weights, context=args.context, log=print)
        profiler.stop()
    return profiler.last_session


def stage_counts(args) -> int:
    """Wrap the lowering's retracing entry points with timers for one export, then print calls and seconds each."""
    import time
    from collections import defaultdict

    import torch.export.exported_program as exported_program
    from executorch.backends.xnnpack import _passes as xnnpack_passes
    from executorch.backends.xnnpack import xnnpack_preprocess
    from executorch.exir.program import _program

    seconds, calls = defaultdict(float), Counter()

    def timed(key, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                name = key(*a) if callable(key) else key
                seconds[name] += time.perf_counter() - t0
                calls[name] += 1
        return wrapper

    exported_program.ExportedProgram.run_decompositions = timed(
        "torch.export run_decompositions", exported_program.ExportedProgram.run_decompositions)
    _program._generate_edge_program = timed("executorch _generate_edge_program", _program._generate_edge_program)
    backend = xnnpack_preprocess.XnnpackBackend
    backend.preprocess = staticmethod(timed("xnnpack preprocess (per partition)", backend.preprocess))
    xnnpack_passes._transform = timed(lambda ep, p: f"  xnnpack pass {type(p).__name__}", xnnpack_passes._transform)

    import elmexport

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        elmexport.export(args.model, args.target, quant=args.quant, out=Path(tmp) / "pkg", cache=False,
                         random_weights=args.random_weights, context=args.context, log=print)
    rows = [f"{s:8.2f} s  x{calls[k]:<4d} {k}" for k, s in sorted(seconds.items(), key=lambda kv: -kv[1])]
    text = (f"# stages of elmexport.export({args.model or 'default model'!r}, {args.target!r}, quant={args.quant!r},"
            f" random_weights={args.random_weights}): {time.perf_counter() - t0:.1f} s wall\n"
            f"# command: python {' '.join(sys.argv)}\n" + "\n".join(rows) + "\n")
    print(text)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(text)
    return 0


def branch_tree(root, threshold: float) -> str:
    """The call tree cut at `threshold` of the wall time, library frames included, with single-child chains
    collapsed: only the frames where the time splits are printed, so a 60-deep torch stack reads in a few lines."""
    lines, total = [], root.time

    def visit(frame, indent):
        kids = [c for c in frame.children if c.time >= threshold * total]
        if frame is not root and len(kids) == 1 and frame.time - kids[0].time < 0.03 * total:
            return visit(kids[0], indent)
        lines.append(f"{'  ' * indent}{frame.time:8.2f} s  {frame.function}  {frame.file_path_short}:{frame.line_no}")
        for child in sorted(kids, key=lambda c: -c.time):
            visit(child, indent + 1)

    visit(root, 0)
    return "\n".join(lines)


def stage_table(root, prefixes=("executorch/", "torch/export/"), top: int = 40) -> str:
    """Inclusive seconds per ExecuTorch / torch.export function, summed over every call (a recursive frame counts
    once per stack): how much each stage and each XNNPACK pass costs over all partitions."""
    totals: Counter = Counter()

    def visit(frame, seen):
        key = f"{frame.function}  {frame.file_path_short}:{frame.line_no}"
        if (frame.file_path_short or "").startswith(prefixes) and key not in seen:
            totals[key] += frame.time
            seen = seen | {key}
        for child in frame.children:
            visit(child, seen)

    visit(root, frozenset())
    rows = [f"{seconds:8.2f} s  {key}" for key, seconds in totals.most_common(top)]
    return "# inclusive time per function, summed over calls\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
