"""Strict JSON out of everything the project writes.

Python's `json` writes `NaN` and `Infinity` by default, which no other JSON reader accepts (Swift's
JSONDecoder, JavaScript, jq). A manifest that carried one would be a package no client can open. Two policies:

- `dumps(obj)`: a non-finite number is an error, naming where it is (`passes[2].max_abs_err`). Manifests use
  this, because a non-finite number in a manifest means something upstream already went wrong.
- `dumps(obj, nonfinite="null")`: a non-finite number becomes `null`. Validation reports use this: a broken
  package legitimately measures an infinite perplexity, and the report must still be readable (the failing check
  says what happened).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import ElmExportError


class NonFiniteError(ElmExportError):
    """A NaN or infinity reached something that is about to be written as JSON."""


def _clean(obj, where: str, nonfinite: str):
    if isinstance(obj, float) and not math.isfinite(obj):
        if nonfinite == "null":
            return None
        raise NonFiniteError(f"non-finite number {obj!r} at {where or 'top level'}; the export produced NaN or "
                             f"infinity (check the weights for NaN/inf values)")
    if isinstance(obj, dict):
        return {k: _clean(v, f"{where}.{k}" if where else str(k), nonfinite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, f"{where}[{i}]", nonfinite) for i, v in enumerate(obj)]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return _clean(obj.item(), where, nonfinite)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj, *, nonfinite: str = "error", indent: int | None = 2) -> str:
    """JSON text that every reader accepts; `nonfinite` is "error" or "null" (see the module docstring)."""
    if nonfinite not in ("error", "null"):
        raise ValueError(f"nonfinite must be 'error' or 'null', not {nonfinite!r}")
    return json.dumps(_clean(obj, "", nonfinite), indent=indent, allow_nan=False, default=str)
