"""Where an ExecuTorch decode step goes: etdump of our .pte beside export_llm's, per op kind, ms per decode step.

    python benchmarks/executorch_etdump.py \\
        dist/bench/smollm2-135m-instruct/executorch-8da4w/model.pte dist/et-peer/peer_b/smollm2_8da4w_peer_b.pte

Why this file: the side-by-side table says how fast each program decodes; this says where the time goes, with
ExecuTorch's own profiler (etdump read by executorch.devtools.Inspector). Each program runs in a fresh process
(MKL_NUM_THREADS=1, as in the table) that prefills --prompt-tokens random tokens and then decodes --steps single
tokens; the prefill is left out. Events are grouped by kind (XNNPACK's "GEMM #3" and "GEMM #7" are one row) and
`n` counts the ops of that kind in one step. Profiling adds a per-event cost, so the totals run above the table's
un-profiled speed, more so for the program with more events; compare rows, not the totals with the table.

The two programs differ in their position argument: ours takes one position per token (`input_pos [T]`),
export_llm's the start position (`[1]`).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def profile_in_this_process(pte: str, positions: str, prompt_tokens: int, steps: int, out: str) -> None:
    """Prefill + `steps` decode steps of `pte` with etdump on; writes the etdump to `out`."""
    import torch
    from elmexport.targets.executorch.runner import load_kernel_libraries
    from executorch.runtime import Runtime

    load_kernel_libraries()
    program = Runtime.get().load_program(pte, enable_etdump=True)
    method = program.load_method("forward")

    def pos(start: int, n: int):
        return torch.arange(start, start + n) if positions == "per-token" else torch.tensor([start])

    method.execute([torch.randint(100, 1000, (1, prompt_tokens)), pos(0, prompt_tokens)])
    for i in range(steps):
        method.execute([torch.tensor([[500 + i]]), pos(prompt_tokens + i, 1)])
    program.write_etdump_result_to_file(out, out + ".debug")


def decode_ms_by_kind(etdump: str, runs: int) -> dict[str, tuple[float, int]]:
    """-> {event kind: (ms per decode step, events of that kind per step)}; the first run (the prefill) dropped."""
    from executorch.devtools import Inspector

    ms, count = collections.Counter(), collections.Counter()
    for block in Inspector(etdump_path=etdump).event_blocks:
        if block.name != "Execute":
            continue
        for event in block.events:
            raw = list(event.perf_data.raw) if event.perf_data is not None else []
            if len(raw) != runs:  # load/init events, or ones that do not run every step
                continue
            kind = re.sub(r" #\d+$", "", event.name)
            ms[kind] += sum(raw[1:]) / (runs - 1)
            count[kind] += 1
    return {k: (ms[k], count[k]) for k in ms}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ours", help="our model.pte (positions per token)")
    ap.add_argument("peer", nargs="?", help="export_llm's .pte (start position)")
    ap.add_argument("--prompt-tokens", type=int, default=127)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--rows", type=int, default=14)
    ap.add_argument("--worker", nargs=3, metavar=("PTE", "POSITIONS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        profile_in_this_process(args.worker[0], args.worker[1], args.prompt_tokens, args.steps, args.worker[2])
        return 0
    from elmexport.targets.executorch.runner import EXECUTORCH_PROCESS_ENV

    programs = {"ours": (args.ours, "per-token")}
    if args.peer:
        programs["peer"] = (args.peer, "start")
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (pte, positions) in programs.items():
            if not Path(pte).is_file():
                ap.error(f"{pte}: no such .pte file")
            out = str(Path(tmp) / f"{name}.etdump")
            cmd = [sys.executable, __file__, args.ours, "--prompt-tokens", str(args.prompt_tokens),
                   "--steps", str(args.steps), "--worker", pte, positions, out]
            res = subprocess.run(cmd, env={**os.environ, **EXECUTORCH_PROCESS_ENV}, capture_output=True, text=True,
                                 check=False)
            if res.returncode != 0:
                print(f"{name}: profiling run failed:\n{res.stderr[-2000:]}", file=sys.stderr)
                return 1
            tables[name] = decode_ms_by_kind(out, args.steps + 1)
    kinds = sorted({k for t in tables.values() for k in t}, key=lambda k: -max(t.get(k, (0, 0))[0] for t in tables.values()))
    print(f"ms per decode step (etdump), prompt {args.prompt_tokens} tokens, {args.steps} steps; n = events per step")
    print(f"{'event kind':56s}" + "".join(f"{name + ' ms':>10s}{'n':>6s}" for name in tables))
    for k in kinds[:args.rows]:
        print(f"{k[:56]:56s}" + "".join(f"{t.get(k, (0, 0))[0]:10.3f}{t.get(k, (0, 0))[1]:6d}" for t in tables.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
