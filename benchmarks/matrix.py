"""Every OpenELM size to every target with the 4-bit preset: export wall/CPU time and peak RSS, package size, bytes
per parameter, and a short decode run in the package's own runtime (its wall time and peak RSS).

    python benchmarks/matrix.py                                  # 270M, 450M, 1.1B, 3B x coreml, onnx, executorch
    python benchmarks/matrix.py --sizes 270M --targets onnx      # one cell
    python benchmarks/matrix.py --table                          # print the Markdown table of what is recorded

Each cell runs in its own processes under GNU time (`/usr/bin/time -v`), so the peak RSS is the export's or the
runtime's own, not this script's. One JSON line per cell goes to --results as soon as the cell is done; cells
already there are skipped (a long matrix survives an interruption; --redo measures again). Packages are built with
--no-cache (a cache hit would time a copy) into --work and removed once measured unless --keep: the 3B packages are
1.6 GB each.

Weights are random (seeded, fp32 like every elmexport load) since the real checkpoints are not on this machine;
speed and memory depend on shapes and bytes, not on the values. The decode run feeds a fixed 16-token prompt and
times --decode-tokens single-token steps through the package's runner (the MIL interpreter for Core ML on Linux,
which is a reference executor, not a device: its speed is reported but is not a Core ML number).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

SIZES = ("270M", "450M", "1.1B", "3B")
TARGETS = ("coreml", "onnx", "executorch")
FOUR_BIT = {"coreml": "int4", "onnx": "int4", "executorch": "8da4w"}
DEFAULT_RESULTS = Path(__file__).parent / "results" / "matrix.jsonl"

_DECODE_PROBE = """
import json, sys, time
from elmexport.validation.runner import last_logits
from elmexport.validation.runners import open_package_runner
runner = open_package_runner(sys.argv[1], threads=int(sys.argv[3]) if sys.argv[3] != "0" else None)
steps, prompt = int(sys.argv[2]), [1 + i for i in range(16)]
t0 = time.perf_counter(); logits = last_logits(runner, prompt, 0); prefill = time.perf_counter() - t0
token, t0 = int(logits.argmax()), time.perf_counter()
for i in range(steps):
    token = int(last_logits(runner, [token], len(prompt) + i).argmax())
decode = time.perf_counter() - t0
print(json.dumps({"prefill_s": prefill, "decode_tokens_per_s": steps / decode}))
"""


def timed(cmd: list[str], log_file: Path) -> dict:
    """Run `cmd` under GNU time; its stdout+stderr go to log_file. -> exit code, wall, CPU seconds, peak RSS."""
    time_file = log_file.with_suffix(".time")
    with open(log_file, "w") as log:
        t0 = time.perf_counter()
        rc = subprocess.call(["/usr/bin/time", "-v", "-o", str(time_file), *cmd], stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
    fields = {}
    for line in time_file.read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    return {"exit": rc, "wall_s": round(wall, 1),
            "cpu_s": round(float(fields.get("User time (seconds)", 0)) + float(fields.get("System time (seconds)", 0)), 1),
            "peak_rss_mib": round(int(fields.get("Maximum resident set size (kbytes)", 0)) / 1024)}


def measure_cell(size: str, target: str, args) -> dict:
    work = args.work / f"openelm-{size}-{target}"
    if work.exists():  # a leftover package of an interrupted run of this script, or something to leave alone
        if not (work / "manifest.json").is_file():
            raise SystemExit(f"error: {work} exists and is not a package this script wrote; move it or pick "
                             f"another --work")
        shutil.rmtree(work)
    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    row = {"size": size, "target": target, "quant": FOUR_BIT[target], "context": args.context,
           "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg()[0]}
    export = timed([sys.executable, "-m", "elmexport", target, "--size", size, "--random-weights", "--quant",
                    FOUR_BIT[target], "--context", str(args.context), "--out", str(work), "--no-cache"],
                   logs / f"{size}-{target}-export.log")
    row["export"] = export
    if export["exit"] != 0:
        row["error"] = f"export exited {export['exit']}; see {logs / f'{size}-{target}-export.log'}"
        return row
    manifest = json.loads((work / "manifest.json").read_text())
    params = manifest["model"]["num_parameters"]
    row.update(num_parameters=params, package_mib=round(manifest["size_bytes"] / 2**20, 1),
               bytes_per_param=round(manifest["size_bytes"] / params, 3))
    steps = args.decode_tokens if target != "coreml" else args.coreml_decode_tokens
    probe_log = logs / f"{size}-{target}-decode.log"
    decode = timed([sys.executable, "-c", _DECODE_PROBE, str(work), str(steps), str(args.threads)], probe_log)
    row["decode"] = decode
    if decode["exit"] == 0:
        row["decode"].update(json.loads(probe_log.read_text().strip().splitlines()[-1]))
        row["decode"]["steps"] = steps
    row["load_after"] = os.getloadavg()[0]
    if not args.keep:
        shutil.rmtree(work)
    return row


def recorded(results: Path) -> list[dict]:
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


def table(rows: list[dict]) -> str:
    head = ("| size | target | export wall (CPU) | export peak RSS | package | bytes/param | decode tok/s | "
            "runtime peak RSS | load |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in sorted(rows, key=lambda r: (SIZES.index(r["size"]), TARGETS.index(r["target"]))):
        e, d = r["export"], r.get("decode", {})
        if "error" in r:
            lines.append(f"| {r['size']} | {r['target']} {r['quant']} | {e['wall_s']:.0f} s | {e['peak_rss_mib']} MiB "
                         f"| failed: {r['error']} | | | | {r['load_before']:.1f} |")
            continue
        speed = f"{d['decode_tokens_per_s']:.1f}" if "decode_tokens_per_s" in d else f"exit {d.get('exit')}"
        if r["target"] == "coreml":
            speed += " (MIL interpreter)"
        lines.append(f"| {r['size']} | {r['target']} {r['quant']} | {e['wall_s']:.0f} s ({e['cpu_s']:.0f} s) | "
                     f"{e['peak_rss_mib']:,} MiB | {r['package_mib']:,.1f} MiB | {r['bytes_per_param']:.3f} | {speed} | "
                     f"{d.get('peak_rss_mib', 0):,} MiB | {r['load_before']:.1f} -> {r['load_after']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--coreml-decode-tokens", type=int, default=4, help="the MIL interpreter is slow at 3B")
    ap.add_argument("--threads", type=int, default=2, help="runtime threads for the decode run (0: runtime default)")
    ap.add_argument("--work", type=Path, default=Path("dist/matrix"))
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    ap.add_argument("--keep", action="store_true", help="keep the packages")
    ap.add_argument("--redo", action="store_true", help="measure cells already in --results again")
    ap.add_argument("--table", action="store_true", help="only print the table of --results")
    args = ap.parse_args(argv)
    if args.table:
        print(table(recorded(args.results)))
        return 0
    sizes, targets = args.sizes.split(","), args.targets.split(",")
    bad = [s for s in sizes if s not in SIZES] + [t for t in targets if t not in TARGETS]
    if bad:
        print(f"error: unknown size or target {bad[0]!r}; sizes {', '.join(SIZES)}, targets {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    args.results.parent.mkdir(parents=True, exist_ok=True)
    print(f"# {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}", flush=True)
    for size in sizes:
        for target in targets:
            done = {(r["size"], r["target"]) for r in recorded(args.results)}
            if (size, target) in done and not args.redo:
                print(f"{size} {target}: recorded already (--redo measures it again)", flush=True)
                continue
            print(f"{size} {target}: exporting ...", flush=True)
            row = measure_cell(size, target, args)
            kept = [r for r in recorded(args.results) if (r["size"], r["target"]) != (size, target)]
            args.results.write_text("".join(json.dumps(r) + "\n" for r in kept + [row]))
            print(table([row]).splitlines()[-1], flush=True)
    print(table(recorded(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
