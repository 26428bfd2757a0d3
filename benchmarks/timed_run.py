"""Wall time and peak RSS of one export command: shared by every benchmark that builds a package.

The peak comes from wait4() on the command's own process, so it is that export's alone (and its children's),
not the benchmark's or an earlier build's.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def run_measured(cmd: list[str], log_path: Path, env=None, cwd=None) -> tuple[float, float, int]:
    """Run cmd with stdout+stderr to log_path; (wall s, peak RSS MiB of the process tree that was waited for, rc)."""
    t0 = time.perf_counter()
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def log_tail(log_path: Path) -> str:
    """The last line of a build log: what a one-line failure message quotes."""
    lines = Path(log_path).read_text(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else "no output"
