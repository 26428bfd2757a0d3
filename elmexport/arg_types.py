"""Command-line numbers checked where they are parsed, so a bad value is one line and exit 2, never a traceback
from deep inside an export.

Each function is an argparse `type=`: it returns the parsed value or raises `argparse.ArgumentTypeError`, whose
message argparse puts after the flag's name (`argument --context: must be a positive integer, got -5`).
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
            from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _bounded(kind, ok, requirement: str):
    """An argparse type: parse `kind`, then require `ok(value)`, else say the requirement."""
    def parse(text: str):
        value = _number(text, kind)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    return parse


positive_int = _bounded(int, lambda v: v > 0, "a positive integer")
non_negative_int = _bounded(int, lambda v: v >= 0, "0 or more")
non_negative_float = _bounded(float, lambda v: v >= 0, "0 or more")
positive_float = _bounded(float, lambda v: v > 0, "greater than 0")
probability = _bounded(float, lambda v: 0 < v <= 1, "in (0, 1]")  # top-p's nucleus mass


def finite_float(text: str) -> float:
    return _number(text, float)


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage block before an error; a user needs the one line that says what is wrong
    and where to look, and exit 2 as for every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")
