"""Reading a package back: manifest.json, type-checked, and the package's files checked against its checksums.

`validate`, `generate` and the quickstart trust what they read here, so every field they use is checked once,
at the door: a manifest edited by hand (or by a broken tool) gives one line naming the field and the fix, never
a KeyError or TypeError from deep inside a runtime.

The integrity check is deliberately strict, because it runs before anything opens the model files: a runtime
handed a corrupt `model.onnx` or `.pte` crashes or, worse, runs. So every checksum key must be a relative path
inside the package naming a regular file (checked with lstat before anything is opened: a key naming a FIFO or
`/dev/zero` must not block or read forever), every file present must be listed (an unlisted file is something
the export did not write), and a manifest without checksums fails, since then nothing was checked at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import fields
from pathlib import Path, PurePosixPath

from .errors import ElmExportError

MANIFEST = "manifest.json"
# what `validate` writes into the package by default; everything else in a package must be in its checksums
VALIDATION_OUTPUT = "validation"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 22


class ManifestError(ElmExportError):
    """A manifest that is missing, not JSON, or has a field of the wrong type; the fix is a re-export."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and v == v and v not in (float("inf"), float("-inf"))


_SIMPLE = {"str": lambda v: isinstance(v, str), "int": _is_int, "float": _is_number,
           "bool": lambda v: isinstance(v, bool)}


def _fits(value, annotation: str) -> bool:
    """Does a JSON value fit a dataclass field annotation ("int", "str", "bool", "str | None")?"""
    options = [a.strip() for a in annotation.split("|")]
    if value is None:
        return "None" in options
    return any(_SIMPLE[a](value) for a in options if a in _SIMPLE)


def check_model_config(config, where: str):
    """The model config as ModelConfig.from_dict accepts it (that reader checks every field's type and range)."""
    from .models.config import ModelConfig

    if not isinstance(config, dict):
        raise ManifestError(f"{where}: model.config must be a mapping, got {type(config).__name__}; re-export the package")
    try:
        return ModelConfig.from_dict(config, f"{where}: model.config")
    except ElmExportError as e:
        raise ManifestError(f"{e}; re-export the package") from None
    except (TypeError, ValueError, ArithmeticError) as e:
        raise ManifestError(f"{where}: model.config is not a valid model config ({str(e)[:120]}); "
                            f"re-export the package") from None


def check_quantization(quant, where: str):
    """The quantization entry as QuantConfig.from_dict (which rebuilds the reference) accepts it."""
    from .passes.quant_config import QuantConfig, WeightQuant

    if not isinstance(quant, dict):
        raise ManifestError(f"{where}: quantization must be a mapping, got {type(quant).__name__}; re-export the package")
    if not isinstance(quant.get("name"), str):
        raise ManifestError(f"{where}: quantization.name must be a string; re-export the package")
    weight_fields = {f.name: f.type for f in fields(WeightQuant)}

    def weight(entry, label):
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: quantization.{label} must be a mapping; re-export the package")
        for key, value in entry.items():
            expected = weight_fields.get(key)
            if expected is None or not _fits(value, expected if isinstance(expected, str) else expected.__name__) \
                    or (expected == "int" and value < 0):
                raise ManifestError(f"{where}: quantization.{label}.{key} is not a valid setting "
                                    f"({json.dumps(value)[:40]}); re-export the package")

    weight(quant.get("default"), "default")
    weight(quant.get("embedding"), "embedding")
    overrides = quant.get("overrides", [])
    if not isinstance(overrides, list):
        raise ManifestError(f"{where}: quantization.overrides must be a list; re-export the package")
    for i, o in enumerate(overrides):
        if not isinstance(o, dict) or not isinstance(o.get("pattern"), str):
            raise ManifestError(f"{where}: quantization.overrides[{i}] needs a string 'pattern'; re-export the package")
        weight({k: v for k, v in o.items() if k != "pattern"}, f"overrides[{i}]")
    if not isinstance(quant.get("positive_scales", False), bool):
        raise ManifestError(f"{where}: quantization.positive_scales must be true or false; re-export the package")
    return QuantConfig.from_dict(quant)


def _optional(manifest: dict, key: str, check, expected: str, where: str) -> None:
    if key in manifest and manifest[key] is not None and not check(manifest[key]):
        raise ManifestError(f"{where}: {key} must be {expected}, got {json.dumps(manifest[key])[:60]}; "
                            f"re-export the package")


def check_manifest(manifest, where: str) -> dict:
    """Type-check every field validate/generate read; returns the manifest unchanged."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: the manifest must be a JSON object; re-export the package")
    for key in ("target", "model", "context_length", "quantization"):
        if key not in manifest:
            raise ManifestError(f"{where}: manifest lacks {key!r}; re-export the package")
    target = manifest["target"]
    from .targets.registry import TARGETS

    if not isinstance(target, str) or target not in TARGETS:
        raise ManifestError(f"{where}: unknown target {json.dumps(target)[:40]} (known: {', '.join(TARGETS)}); "
                            f"re-export the package")
    context = manifest["context_length"]
    if not _is_int(context) or context <= 0:
        raise ManifestError(f"{where}: context_length must be a positive integer, got {json.dumps(context)[:40]}")
    model = manifest["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise ManifestError(f"{where}: model must be a mapping with a string 'name'; re-export the package")
    check_model_config(model.get("config"), where)
    check_quantization(manifest["quantization"], where)
    if "checksums" in manifest:
        sums = manifest["checksums"]
        if not isinstance(sums, dict) or not all(isinstance(k, str) and k and isinstance(v, str) and _HEX64.fullmatch(v)
                                                 for k, v in sums.items()):
            raise ManifestError(f"{where}: checksums must map file paths to sha256 hex digests (64 lowercase hex "
                                f"characters); re-export the package")
    is_str = lambda v: isinstance(v, str)  # noqa: E731
    for key in ("tokenizer", "chat_template", "system_prompt", "model_file", "delegate", "logits"):
        _optional(manifest, key, is_str, "a string", where)
    _optional(manifest, "random_weights", lambda v: isinstance(v, bool), "true or false", where)
    _optional(manifest, "weights", lambda v: isinstance(v, dict), "a mapping", where)
    _optional(manifest, "onnx", lambda v: isinstance(v, dict), "a mapping", where)
    _optional(manifest, "files", lambda v: isinstance(v, list) and all(map(is_str, v)), "a list of names", where)
    for key in ("prefill_chunk", "max_seq_len"):
        _optional(manifest, key, lambda v: _is_int(v) and v > 0, "a positive integer", where)
    _optional(manifest, "size_bytes", lambda v: _is_int(v) and v >= 0, "a non-negative integer", where)
    for key in ("passes", "target_passes"):
        _optional(manifest, key, lambda v: isinstance(v, list) and all(isinstance(p, dict) and is_str(p.get("name"))
                                                                     for p in v), "a list of {name: ...}", where)
    weights = manifest.get("weights") or {}
    _optional(weights, "seed", lambda v: _is_int(v) and v >= 0, "a non-negative integer", f"{where}: weights")
    for key in ("kind", "path"):
        _optional(weights, key, is_str, "a string", f"{where}: weights")
    _optional(weights, "random_weights", lambda v: isinstance(v, bool), "true or false", f"{where}: weights")
    if manifest["target"] == "coreml":
        for key, check, expected in (("model_file", is_str, "a string"),
                                     ("prefill_chunk", lambda v: _is_int(v) and v > 0, "a positive integer")):
            if not check(manifest.get(key)):
                raise ManifestError(f"{where}: a Core ML manifest needs {key} ({expected}); re-export the package")
    return manifest


def read_manifest(package_dir: str | Path) -> dict:
    """manifest.json of a package directory, type-checked (ManifestError, one line, on anything wrong)."""
    package_dir = Path(package_dir)
    path = package_dir / MANIFEST
    if not package_dir.is_dir():
        raise ManifestError(f"{package_dir}: not a package directory (expected a directory written by an export)")
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise ManifestError(f"{package_dir}: no manifest.json; is this a package written by elmexport?") from None
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError(f"{path}: not a regular file; re-export the package")

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    try:
        manifest = json.loads(path.read_bytes(), parse_constant=no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ManifestError(f"{path}: corrupt manifest ({str(e)[:120]}); re-export the package") from None
    return check_manifest(manifest, str(path))


def _unsafe_key(key: str) -> str | None:
    """Why a checksum key is not a plain relative path inside the package (None if it is one)."""
    if "\\" in key or "\x00" in key:
        return "not a plain relative path"
    p = PurePosixPath(key)
    if p.is_absolute():
        return "an absolute path"
    if any(part in ("..", ".", "") for part in key.split("/")):
        return "a path that leaves or re-enters the package ('..' or '.')"
    return None


def _digest_regular_file(root: Path, key: str) -> tuple[str | None, str | None]:
    """(sha256, None) for a regular file reached without following any symlink; (None, why not) otherwise."""
    path = root
    for part in PurePosixPath(key).parts:
        path = path / part
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None, "missing"
        except OSError as e:
            return None, f"unreadable ({e.strerror})"
        if stat.S_ISLNK(st.st_mode):
            return None, "a symlink (a package holds regular files only)"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        return None, f"unreadable ({e.strerror})"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped between lstat and open
            return None, "not a regular file"
        return stream_sha256(f), None


def stream_sha256(f) -> str:
    """sha256 of an open binary file, read in chunks (packages hold files of gigabytes)."""
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _present_entries(root: Path) -> tuple[set[str], list[str]]:
    """Relative paths of the files in the package (manifest and validate's own output excluded), and problems
    with entries that are neither files nor directories (symlinks, FIFOs, devices)."""
    files, problems = set(), []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        for name in list(dirnames):
            if (Path(dirpath) / name).is_symlink():
                problems.append(f"{(rel_dir / name).as_posix()}: a symlink (a package holds regular files only)")
                dirnames.remove(name)
            elif rel_dir == Path(".") and name == VALIDATION_OUTPUT:
                dirnames.remove(name)
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if rel == MANIFEST:
                continue
            mode = (Path(dirpath) / name).lstat().st_mode
            if stat.S_ISREG(mode):
                files.add(rel)
            else:
                problems.append(f"{rel}: {'a symlink' if stat.S_ISLNK(mode) else 'not a regular file'} "
                                f"(a package holds regular files only)")
    return files, problems


def integrity_problems(package_dir: str | Path, manifest: dict) -> list[str]:
    """Everything wrong with the package's files against its manifest; [] means every byte is as exported."""
    root = Path(package_dir)
    sums = manifest.get("checksums")
    if not sums:
        return ["the manifest lists no checksums, so nothing in the package can be checked; re-export it"]
    problems = []
    listed = set()
    for key, expected in sorted(sums.items()):
        why = _unsafe_key(key)
        if why:
            problems.append(f"checksum key {key!r}: {why}")
            continue
        listed.add(key)
        digest, why = _digest_regular_file(root, key)
        if why:
            problems.append(f"{key}: {why}")
        elif digest != expected:
            problems.append(f"{key}: changed since export (sha256 differs)")
    present, entry_problems = _present_entries(root)
    problems += entry_problems
    problems += [f"{rel}: not listed in the manifest's checksums (not written by the export)"
                 for rel in sorted(present - listed)]
    return problems
