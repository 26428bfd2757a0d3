"""Where an ExecuTorch decode step goes: etdump of our .pte beside export_llm's, per op kind, ms per decode step.

    python benchmarks/executorch_etdump.py \\
        dist/et-peer/ours-8da4w/model.pte dist/et-peer/peer_b/smollm2_8da4w_peer_b.pte [--repeats 3] \\
        [--max-sdpa-ratio 1.1]

Why this file: the side-by-side table says how fast each program decodes; this says where the time goes, with
ExecuTorch's own profiler (etdump read by executorch.devtools.Inspector). Each program runs in a fresh process
(MKL_NUM_THREADS=1, as in the table) that prefills --prompt-tokens random tokens and then decodes --steps single
tokens; the prefill is left out. Events are grouped by kind (XNNPACK's "GEMM #3" and "GEMM #7" are one row) and
`n` counts the ops of that kind in one step. Profiling adds a per-event cost, so the totals run above the table's
un-profiled speed, more so for the program with more events; compare rows, not the totals with the table.

The box is shared: a profile taken while another process holds a core measures that process as much as the
program (a parallel kernel such as custom_sdpa waits for its slowest thread). So the programs are profiled in
--repeats interleaved rounds (ours, peer, then peer, ours, ...) and every cell is the median over rounds.

Guard: --max-sdpa-ratio R exits 1 when our `llama::custom_sdpa` costs more than R times peer B's per call (the
same kernel on the same shapes: any gap is what our program hands it), --max-sdpa-us U when it costs more than U us.

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


SDPA = "llama::custom_sdpa.out"


def median_tables(rounds: list[dict]) -> dict[str, tuple[float, int]]:
    """Per-kind medians over rounds (a kind missing from a round counts as 0 ms there)."""
    import statistics

    kinds = {k for t in rounds for k in t}
    return {k: (statistics.median(t.get(k, (0.0, 0))[0] for t in rounds), max(t.get(k, (0, 0))[1] for t in rounds))
            for k in kinds}


def sdpa_check(tables: dict, max_ratio: float | None, max_us: float | None) -> list[str]:
    """The guard's failures (empty when custom_sdpa per call is within bounds)."""
    def per_call(table):
        ms, n = table.get(SDPA, (0.0, 0))
        return 1000.0 * ms / n if n else None

    ours = per_call(tables["ours"])
    if ours is None:
        return ["ours: no llama::custom_sdpa events (the program no longer calls the kernel?)"]
    failures = []
    if max_us is not None and ours > max_us:
        failures.append(f"ours: custom_sdpa {ours:.1f} us per call > {max_us:.1f} us")
    if max_ratio is not None and "peer" in tables:
        peer = per_call(tables["peer"])
        if peer and ours > max_ratio * peer:
            failures.append(f"ours: custom_sdpa {ours:.1f} us per call > {max_ratio:.2f} x peer B's {peer:.1f} us")
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ours", help="our model.pte (positions per token)")
    ap.add_argument("peer", nargs="?", help="export_llm's .pte (start position)")
    ap.add_argument("--prompt-tokens", type=int, default=127)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--rows", type=int, default=14)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved profiling rounds; cells are their medians")
    ap.add_argument("--max-sdpa-ratio", type=float, help="exit 1 if our custom_sdpa per call > R x peer B's")
    ap.add_argument("--max-sdpa-us", type=float, help="exit 1 if our custom_sdpa per call > U microseconds")
    ap.add_argument("--worker", nargs=3, metavar=("PTE", "POSITIONS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        profile_in_this_process(args.worker[0], args.worker[1], args.prompt_tokens, args.steps, args.worker[2])
        return 0
    from elmexport.targets.executorch.runner import EXECUTORCH_PROCESS_ENV

    programs = {"ours": (args.ours, "per-token")}
    if args.peer:
        programs["peer"] = (args.peer, "start")
    for pte, _ in programs.values():
        if not Path(pte).is_file():
            ap.error(f"{pte}: no such .pte file")
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    rounds: dict[str, list[dict]] = {name: [] for name in programs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = list(programs) if r % 2 == 0 else list(programs)[::-1]  # load hits both alike
            for name in order:
                pte, positions = programs[name]
                out = str(Path(tmp) / f"{name}-{r}.etdump")
                cmd = [sys.executable, __file__, args.ours, "--prompt-tokens", str(args.prompt_tokens),
                       "--steps", str(args.steps), "--worker", pte, positions, out]
                res = subprocess.run(cmd, env={**os.environ, **EXECUTORCH_PROCESS_ENV}, capture_output=True,
                                     text=True, check=False)
                if res.returncode != 0:
                    print(f"{name}: profiling run failed:\n{res.stderr[-2000:]}", file=sys.stderr)
                    return 1
                rounds[name].append(decode_ms_by_kind(out, args.steps + 1))
    tables = {name: median_tables(rs) for name, rs in rounds.items()}
    kinds = sorted({k for t in tables.values() for k in t}, key=lambda k: -max(t.get(k, (0, 0))[0] for t in tables.values()))
    print(f"ms per decode step (etdump), prompt {args.prompt_tokens} tokens, {args.steps} steps, median of "
          f"{args.repeats} interleaved rounds; n = events per step, us = per event")
    print(f"{'event kind':52s}" + "".join(f"{name + ' ms':>10s}{'n':>5s}{'us':>8s}" for name in tables))
    for k in kinds[:args.rows]:
        cells = ""
        for t in tables.values():
            ms, n = t.get(k, (0.0, 0))
            cells += f"{ms:10.3f}{n:5d}{(1000.0 * ms / n if n else 0.0):8.1f}"
        print(f"{k[:52]:52s}" + cells)
    if SDPA in tables["ours"]:
        per_round = ", ".join(f"{1000 * t[SDPA][0] / t[SDPA][1]:.1f}" for t in rounds["ours"] if SDPA in t)
        print(f"ours custom_sdpa us per call by round: {per_round}")
    if "peer" in rounds:
        per_round = ", ".join(f"{1000 * t[SDPA][0] / t[SDPA][1]:.1f}" for t in rounds["peer"] if SDPA in t)
        print(f"peer custom_sdpa us per call by round: {per_round}")
    failures = sdpa_check(tables, args.max_sdpa_ratio, args.max_sdpa_us)
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
