"""Typed reads out of a parsed JSON/YAML mapping (config.json, GGUF metadata, quant configs).

Why: these files come from users and from the internet. A string where a count belongs, a negative width or a
size of 10**12 must stop the run with one line that names the file, the key and the range we accept, before
any of it reaches a tensor allocation; `raw["hidden_size"]` gives a KeyError traceback instead.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ElmExportError

REQUIRED = object()  # the `default` of a key that must be present


def shown(value: Any) -> str:
    """A value as a message may quote it: short, one line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type when the message is empty), for a one-line error."""
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:limit]


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


class Fields:
    """One mapping read key by key; every error names `where`, the key (as the file spells it) and the fix.

    `labels` renames keys in messages, for readers that map another format's keys onto HF names (GGUF).
    A key whose value is null counts as absent, as it does for HF's own config classes.
    """

    def __init__(self, raw: Any, where: str, error: type[ElmExportError] = ElmExportError,
                 labels: dict[str, str] | None = None, what: str = "a JSON object (a mapping of keys to values)",
                 above_max: str = ""):
        """`above_max` is said after a number over its upper bound (why sizes are capped, for size fields)."""
        self.where, self.error, self.labels, self.above_max = where, error, labels or {}, above_max
        if not isinstance(raw, dict):
            raise error(f"{where}: expected {what}, got {type_name(raw)}")
        self.raw = raw

    def label(self, key: str) -> str:
        return self.labels.get(key, key)

    def fail(self, message: str) -> ElmExportError:
        return self.error(f"{self.where}: {message}")

    def given(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def get(self, key: str, default: Any = REQUIRED) -> Any:
        value = self.raw.get(key)
        if value is None:
            if default is REQUIRED:
                raise self.fail(f"required key {self.label(key)!r} is missing; add it (is this the right file?)")
            return default
        return value

    def integer(self, key: str, lo: int, hi: int, default: Any = REQUIRED, *, size: bool = True) -> int:
        """A whole number in [lo, hi]; `size=False` for ids, whose upper bound is not a size limit."""
        return self._check_int(self.label(key), self.get(key, default), lo, hi, size)

    def _check_int(self, label: str, value: Any, lo: int, hi: int, size: bool = True) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{label!r} must be a whole number in [{lo:,}, {hi:,}], got {type_name(value)} "
                            f"{shown(value)}")
        if not lo <= value <= hi:
            note = self.above_max if size and value > hi else ""
            raise self.fail(f"{label!r} is {value:,}, outside [{lo:,}, {hi:,}]{note}; fix the value")
        return value

    def int_list(self, key: str, lo: int, hi: int, max_len: int, *, size: bool = True) -> list[int]:
        """A per-layer list of whole numbers (at least one, at most `max_len`)."""
        value = self.get(key)
        label = self.label(key)
        if not isinstance(value, list) or not 1 <= len(value) <= max_len:
            size = f" of {len(value):,} entries" if isinstance(value, list) else ""
            raise self.fail(f"{label!r} must be a list of 1 to {max_len:,} whole numbers (one per layer), "
                            f"got {type_name(value)}{size}")
        return [self._check_int(f"{label}[{i}]", v, lo, hi, size) for i, v in enumerate(value)]

    def ids(self, key: str, lo: int, hi: int, default: Any = REQUIRED) -> list[int]:
        """One id or a list of ids (HF writes `eos_token_id` either way)."""
        value = self.get(key, default)
        label = self.label(key)
        if isinstance(value, list):
            return [self._check_int(f"{label}[{i}]", v, lo, hi, False) for i, v in enumerate(value)]
        return [self._check_int(label, value, lo, hi, False)]

    def number(self, key: str, lo: float, hi: float, default: Any = REQUIRED, *, open_lo: bool = False) -> float:
        return self._check_number(self.label(key), self.get(key, default), lo, hi, open_lo)

    def _check_number(self, label: str, value: Any, lo: float, hi: float, open_lo: bool) -> float:
        interval = f"{'(' if open_lo else '['}{lo:g}, {hi:g}]"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"{label!r} must be a number in {interval}, got {type_name(value)} {shown(value)}")
        value = float(value)
        if not math.isfinite(value) or value < lo or value > hi or (open_lo and value == lo):
            raise self.fail(f"{label!r} is {value!r}, outside {interval}; fix the value")
        return value

    def number_list(self, key: str, lo: float, hi: float, max_len: int, *, open_lo: bool = False) -> list[float]:
        value = self.get(key)
        label = self.label(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [self._check_number(label, value, lo, hi, open_lo)]
        if not isinstance(value, list) or not 1 <= len(value) <= max_len:
            raise self.fail(f"{label!r} must be a number or a list of 1 to {max_len:,} numbers, got {type_name(value)}")
        return [self._check_number(f"{label}[{i}]", v, lo, hi, open_lo) for i, v in enumerate(value)]

    def boolean(self, key: str, default: Any = REQUIRED) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):  # bool("false") is True: a string here would silently flip the meaning
            raise self.fail(f"{self.label(key)!r} must be true or false, got {type_name(value)} {shown(value)}")
        return value

    def string(self, key: str, default: Any = REQUIRED) -> str | None:
        """A string; with `default=None` the key is optional and None comes back when it is absent."""
        value = self.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{self.label(key)!r} must be a string, got {type_name(value)} {shown(value)}")
        return value

    def only_keys(self, known: list[str], section: str = "") -> None:
        """Refuse keys we do not read: a typo (`overides:`) would otherwise be ignored without a word."""
        unknown = sorted(str(k) for k in self.raw if k not in known)
        if unknown:
            inside = f" in {section}" if section else ""
            raise self.fail(f"unknown key {unknown[0]!r}{inside}; known keys: {', '.join(known)}")
