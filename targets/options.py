"""Typed target options: one frozen dataclass per target, from which the CLI flags and the API's keywords follow.

A target declares its options once:

    @dataclass(frozen=True)
    class OnnxOptions(TargetOptions):
        accuracy_level: int = option(4, "MatMulNBits compute type ...", choices=range(5))
        logits: str = option("last", "last: ...; all: ...", choices=("all", "last"))

and gets, without writing them again: `--accuracy-level` / `--logits` flags with their defaults and help
(`add_flags`), the same names as keywords of `elmexport.export(..., accuracy_level=0)` (`from_kwargs`, which
refuses unknown names and wrong types with one line), and a value the export code reads as `options.logits`.
The defaults live in the dataclass and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass

from ..errors import ElmExportError


def option(default, help: str, *, choices=None, minimum=None, metavar: str | None = None):
    """A dataclass field carrying what its command-line flag needs."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum,
                                                        "metavar": metavar})


@dataclass(frozen=True)
class TargetOptions:
    """Base of every target's options; a target without options of its own uses it as is."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_value(f, hints[f.name], getattr(self, f.name))

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser, title: str) -> None:
        """One flag per field, defaults and help from the field."""
        group = parser.add_argument_group(title)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, meta = _base_type(hints[f.name]), f.metadata
            flag = "--" + f.name.replace("_", "-")
            default_note = "" if f.default in (None, False) else f" (default {f.default})"
            if kind is bool:
                group.add_argument(flag, action="store_true", help=meta["help"])
                continue
            choices = list(meta["choices"]) if meta["choices"] is not None else None
            metavar = meta["metavar"] or (f"{choices[0]}-{choices[-1]}" if choices and kind is int else None)
            group.add_argument(flag, type=kind, default=f.default, choices=choices, metavar=metavar,
                               help=meta["help"] + default_note)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace):
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def from_kwargs(cls, target: str, kwargs: dict):
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ElmExportError(f"unknown option {unknown[0]!r} for target {target}; "
                                 f"known: {', '.join(known) or 'none'}")
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self, context: int | None) -> None:
        """Checks that need more than one field or the model's context; targets override."""


def _base_type(hint):
    """int for `int` and `int | None`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _check_value(f: dataclasses.Field, hint, value) -> None:
    name = "--" + f.name.replace("_", "-")
    optional = type(None) in typing.get_args(hint)
    if value is None and optional:
        return
    kind = _base_type(hint)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ElmExportError(f"{name}: expected {kind.__name__}, got {value!r}")
    choices, minimum = f.metadata.get("choices"), f.metadata.get("minimum")
    if choices is not None and value not in choices:
        shown = f"{min(choices)}-{max(choices)}" if isinstance(choices, range) else ", ".join(map(str, choices))
        raise ElmExportError(f"{name} {value!r}: choose one of {shown}")
    if minimum is not None and value < minimum:
        raise ElmExportError(f"{name} {value}: must be at least {minimum}")
