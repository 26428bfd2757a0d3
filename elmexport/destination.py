"""Where a package may be written: every refusal is decided here, before any slow step runs.

An export replaces whatever sits at `--out`, so a mistyped `--out` is the one way this tool could destroy a
user's work. The rules, each a one-line refusal (exit 2):

- `--out` must be absent, an empty directory, or a package an earlier export wrote (its `manifest.json` says
  `"generator": "elmexport"`, or carries the fields every elmexport manifest has); a package is replaced only
  with `--overwrite`, and a folder that is not a package never is, flag or not.
- Never a symlink, a regular file or any other non-directory; never the current directory or one of its
  ancestors, the home folder or `/`; never the weights or tokenizer path, nor a folder that contains them.
- The parent must be writable and its filesystem must have room for the package (an estimate from the model's
  parameter count and bits per weight, a lower bound, so a refusal is never a false alarm).

The checks are cheap and purely about paths; the lock and the atomic swap live in `atomic_dir.py`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import ElmExportError

SPACE_MARGIN_BYTES = 64 << 20  # room for the manifest, tokenizer and filesystem overhead beyond the weights


class DestinationError(ElmExportError):
    """`--out` names a place the tool must not write to."""


def is_elmexport_package(path: Path) -> bool:
    """A directory whose manifest.json an elmexport export wrote."""
    manifest = path / "manifest.json"
    if manifest.is_symlink() or not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    if data.get("generator") == "elmexport":
        return True
    # packages written before the generator field: every one of them carries these three
    return isinstance(data.get("format_version"), int) and isinstance(data.get("target"), str) and \
        isinstance(data.get("checksums"), dict)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _is_within(inner: Path, outer: Path) -> bool:
    """inner == outer or inner is below outer (both already resolved)."""
    return inner == outer or outer in inner.parents


def check_destination(out: str | Path, *, overwrite: bool = False, protected: tuple = (),
                      estimated_bytes: int = 0, flag: str = "--out") -> Path:
    """Return the absolute destination path, or raise DestinationError naming the problem and the fix.

    `protected` are input paths (weights, tokenizer) the destination must not be or contain.
    """
    if not str(out).strip():
        raise DestinationError(f"{flag}: empty path; name a new directory such as dist/my-model")
    out = Path(os.path.abspath(os.path.expanduser(str(out))))
    real = _real(out)
    cwd = _real(Path.cwd())
    home = _real(Path.home())
    if out.is_symlink():
        raise DestinationError(f"{flag} {out}: is a symlink; name the real directory (or a new one) instead")
    if real == Path(real.anchor):
        raise DestinationError(f"{flag} {out}: is the filesystem root; name a new directory such as dist/my-model")
    if real == home:
        raise DestinationError(f"{flag} {out}: is your home folder; name a new directory such as ~/dist/my-model")
    if _is_within(cwd, real):
        what = "the current directory" if real == cwd else "an ancestor of the current directory"
        raise DestinationError(f"{flag} {out}: is {what}; name a new directory such as dist/my-model")
    for p in protected:
        if p is None:
            continue
        src = _real(Path(os.path.expanduser(str(p))))
        if _is_within(src, real):
            raise DestinationError(f"{flag} {out}: would replace the input {p}; choose another {flag}")
    if out.exists():
        if not out.is_dir():
            raise DestinationError(f"{flag} {out}: exists and is not a directory; choose another {flag}")
        if is_elmexport_package(out):
            if not overwrite:
                raise DestinationError(f"{flag} {out}: a package is already there; pass --overwrite to replace it "
                                       f"or choose another {flag}")
        elif any(out.iterdir()):
            raise DestinationError(f"{flag} {out}: exists and is not an elmexport package; it is never replaced, "
                                   f"even with --overwrite; choose another {flag}")
    _check_parent(out, estimated_bytes, flag)
    return out


def _check_parent(out: Path, estimated_bytes: int, flag: str) -> None:
    """The nearest existing ancestor must let us create the package and have room for it."""
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DestinationError(f"{flag} {out}: {ancestor} is not a directory; choose another {flag}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DestinationError(f"{flag} {out}: cannot write in {ancestor} (permission denied); choose another {flag}")
    if estimated_bytes:
        free = shutil.disk_usage(ancestor).free
        need = estimated_bytes + SPACE_MARGIN_BYTES
        if free < need:
            raise DestinationError(f"{flag} {out}: {free / 2**20:.0f} MiB free on that filesystem, the package needs "
                                   f"about {need / 2**20:.0f} MiB; free some space or choose another {flag}")


def estimate_package_bytes(num_parameters: int, bits_per_weight: int) -> int:
    """A lower bound on a package's size: every parameter stored once at the given width (16 when unquantized,
    which no target goes below), without scales, tokenizer or graph."""
    return num_parameters * (bits_per_weight or 16) // 8
