"""Artifact packages: a directory with the model file(s), tokenizer.json and manifest.json, written atomically.

Every target writes through `write_package`: the target fills a temporary sibling directory, the manifest and
checksums are added, and only then is it renamed into place. An interrupted or failed export leaves nothing
that looks like a package. `read_manifest` is what `validate` and `generate` use to find their way back.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from . import strict_json
from .errors import ElmExportError

FORMAT_VERSION = 1
_TOOLS = ("elmexport", "torch", "coremltools", "onnx", "onnxruntime", "onnxscript", "executorch", "torchao")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in _TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under root except the manifest, keyed by relative path."""
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def base_manifest(compiled, target: str, name: str, **extra) -> dict:
    """The fields every package carries; targets add their own (files, inputs/outputs/states, extras)."""
    loaded, ir = compiled.loaded, compiled.ir
    cfg = loaded.cfg
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "target": target,
        "model": {"name": cfg.name, "family": cfg.family, "config": cfg.to_dict(),
                  "num_parameters": cfg.num_parameters},
        "weights": loaded.source,
        "random_weights": bool(loaded.source.get("random_weights")),
        "seed": loaded.source.get("seed"),
        "context_length": ir.context,
        "tokenizer": "tokenizer.json" if loaded.tokenizer is not None else None,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_ids": list(cfg.eos_token_ids),
        "chat_template": cfg.chat_template,
        "system_prompt": cfg.system_prompt,
        "quantization": compiled.quant.to_dict(),
        "passes": [r.to_dict() for r in compiled.reports],
        "tool_versions": tool_versions(),
        **extra,
    }


@contextmanager
def write_package(out_dir: str | Path, overwrite: bool = True):
    """Yield a temporary directory to fill; on success it becomes out_dir, on any error it is removed."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ElmExportError(f"{out_dir} exists; remove it or choose another --out")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def finish_manifest(tmp_dir: Path, manifest: dict, tokenizer) -> dict:
    """Write tokenizer.json, then manifest.json with checksums of everything else."""
    if tokenizer is not None:
        tokenizer.save(tmp_dir / "tokenizer.json")
    manifest["files"] = sorted(str(p.relative_to(tmp_dir)) for p in tmp_dir.iterdir() if p.name != "manifest.json")
    manifest["checksums"] = checksums(tmp_dir)
    manifest["size_bytes"] = sum(p.stat().st_size for p in tmp_dir.rglob("*") if p.is_file())
    (tmp_dir / "manifest.json").write_text(strict_json.dumps(manifest))
    return manifest


def read_manifest(package_dir: str | Path) -> dict:
    package_dir = Path(package_dir)
    path = package_dir / "manifest.json"
    if not package_dir.is_dir():
        raise ElmExportError(f"{package_dir}: not a package directory (expected a directory written by an export)")
    if not path.exists():
        raise ElmExportError(f"{package_dir}: no manifest.json; is this a package written by elmexport?")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ElmExportError(f"{path}: corrupt manifest ({e})") from None
    for key in ("target", "model", "context_length"):
        if key not in manifest:
            raise ElmExportError(f"{path}: manifest lacks {key!r}; re-export the package")
    return manifest


def verify_checksums(package_dir: str | Path, manifest: dict) -> list[str]:
    """Relative paths whose sha256 differs from the manifest (missing files included)."""
    root = Path(package_dir)
    bad = []
    for rel, digest in manifest.get("checksums", {}).items():
        p = root / rel
        if not p.exists() or sha256(p) != digest:
            bad.append(rel)
    return bad
