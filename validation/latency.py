"""Latency of one runtime, measured in its own process so peak RSS is the runtime's alone.

    python -m elmexport.validation.latency PACKAGE_DIR [--prompt-tokens 64] [--decode-steps 16] [--rounds 3]

Prints JSON: prefill tokens/s, decode tokens/s (median over steps and rounds, with min and max), time to first
token (prefill of the prompt), load seconds, and memory: load RSS (resident right after the runtime opened the
package) and peak RSS (the high-water mark of the whole run), in MiB.

Memory is read from /proc/self/status (VmRSS, VmHWM), not from getrusage: on Linux a forked child's ru_maxrss
starts at its parent's peak and survives exec, so a latency process started by a validator that had just run
the eager model reported the validator's ~4 GiB instead of the package's ~0.2 GiB. The kernel starts VmHWM
afresh for the new program image, so it is this process's own peak. Where /proc is missing (macOS) the memory
fields are null rather than a misleading number.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .. import strict_json
from .runner import last_logits


def measure(runner, prompt: list[int], decode_steps: int, rounds: int) -> dict:
    prefill, decode = [], []
    for _ in range(rounds):
        runner.reset()
        t0 = time.perf_counter()
        logits = last_logits(runner, prompt, 0)
        prefill.append(time.perf_counter() - t0)
        token = int(logits.argmax())
        for step in range(decode_steps):
            t0 = time.perf_counter()
            logits = last_logits(runner, [token], len(prompt) + step)
            decode.append(time.perf_counter() - t0)
            token = int(logits.argmax())
    per_token = [1.0 / d for d in decode]
    return {
        "prompt_tokens": len(prompt), "decode_steps": decode_steps, "rounds": rounds,
        "prefill_tokens_per_s": len(prompt) / statistics.median(prefill),
        "decode_tokens_per_s": statistics.median(per_token),
        "decode_tokens_per_s_min": min(per_token), "decode_tokens_per_s_max": max(per_token),
        "time_to_first_token_ms": 1000 * statistics.median(prefill),
        # every sample, for the report's latency distribution (one prefill per round, one per decode step)
        "prefill_ms": [round(1000 * t, 4) for t in prefill], "decode_ms": [round(1000 * t, 4) for t in decode],
    }


def proc_status_mib(key: str) -> float | None:
    """A memory line of /proc/self/status ("VmRSS", "VmHWM") in MiB; None where the file does not exist."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # the kernel reports kB
    except OSError:
        return None
    return None


def measure_package(package_dir: str, prompt_tokens: int, decode_steps: int, rounds: int,
                    threads: int | None = None) -> dict:
    from ..manifest import read_manifest
    from .runners import open_package_runner

    manifest = read_manifest(package_dir)
    t0 = time.perf_counter()
    runner = open_package_runner(package_dir, manifest, threads=threads)
    load = time.perf_counter() - t0
    load_rss = proc_status_mib("VmRSS")
    vocab = manifest["model"]["config"]["vocab_size"]
    prompt = [(7 * i + 3) % vocab for i in range(min(prompt_tokens, runner.context - decode_steps - 1))]
    if rounds:
        out = measure(runner, prompt, decode_steps, rounds)
    else:  # a probe: does the runtime open the package and compute at all (see measure_in_subprocess)
        last_logits(runner, prompt, 0)
        out = {"prompt_tokens": len(prompt), "rounds": 0}
    out.update(runtime=runner.name, threads=threads or "runtime default", load_seconds=load, load_rss_mib=load_rss, peak_rss_mib=proc_status_mib("VmHWM"),
               memory_source="/proc/self/status of the latency process (VmRSS after load, VmHWM at the end)")
    return out


def measure_in_subprocess(package_dir: Path, prompt_tokens: int, decode_steps: int, rounds: int,
                          threads: int | None = None) -> dict:
    """The latency run in a new interpreter; {"error": ...} if it failed or died.

    With rounds=0 it is a probe: open the package and run one prefill. Validate probes before it opens a
    package in its own process, because some runtimes abort the whole process on a corrupt model (ExecuTorch
    terminates on a damaged .pte header) instead of raising.
    """
    cmd = [sys.executable, "-m", "elmexport.validation.latency", str(package_dir), "--prompt-tokens",
           str(prompt_tokens), "--decode-steps", str(decode_steps), "--rounds", str(rounds)]
    if threads:
        cmd += ["--threads", str(threads)]
    from ..targets.executorch.runner import EXECUTORCH_PROCESS_ENV

    env = {**EXECUTORCH_PROCESS_ENV, **os.environ}  # no runtime measured here computes with PyTorch itself
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()] or ["no output"]
        how = f"died of {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else \
            f"exited {proc.returncode}"
        return {"error": f"the runtime's own process {how}: {' | '.join(lines[-2:])[:300]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--decode-steps", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="the runtime's threads (default: its own choice)")
    a = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    print(strict_json.dumps(measure_package(a.package, a.prompt_tokens, a.decode_steps, a.rounds, a.threads), nonfinite="null",
                            indent=None))


if __name__ == "__main__":
    main()
