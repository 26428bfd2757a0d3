"""Artifact packages: a directory with the model file(s), tokenizer.json and manifest.json, written atomically.

Every target writes through `write_package`: the target fills a unique temporary sibling directory, the manifest
and checksums are added, and only then is it swapped into place (destination.py decides where a package may go,
atomic_dir.py does the locking and the swap). An interrupted or failed export leaves the old package or the new
one, never a mixture, and never touches anything the tool did not write.
`elmexport.manifest` reads packages back (validate, generate, load).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from . import strict_json
from .atomic_dir import locked, new_temp_sibling, remove_tree, swap_in
from .destination import check_destination
from .hf_files import write_hf_files
from .manifest import stream_sha256

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
    with open(path, "rb") as f:
        return stream_sha256(f)


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under root except the manifest, keyed by relative path."""
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def pass_records(reports) -> list[dict]:
    """What each pass did and its numeric check; not how long it took, which differs run to run and would make
    two identical exports differ."""
    return [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in reports]


def base_manifest(compiled, target: str, name: str, **extra) -> dict:
    """The fields every package carries; targets add their own (files, inputs/outputs/states, extras)."""
    loaded, ir = compiled.loaded, compiled.ir
    cfg = loaded.cfg
    return {
        "generator": "elmexport",
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
        "passes": pass_records(compiled.reports),
        "tool_versions": tool_versions(),
        **extra,
    }


_CLAIMED: dict[Path, bool] = {}  # destinations this process holds the lock on -> --overwrite given


@contextmanager
def claim_output(out_dir: str | Path, *, overwrite: bool = False, protected: tuple = (), estimated_bytes: int = 0):
    """Check `out_dir` (see destination.py) and hold its lock until the block ends; yields the absolute path.

    Commands claim their destination before any slow step, so a refusal costs nothing and no other export can
    start writing the same place meanwhile; `write_package` inside the block then only builds and swaps.
    """
    out = check_destination(out_dir, overwrite=overwrite, protected=protected, estimated_bytes=estimated_bytes)
    with locked(out):
        _CLAIMED[out] = overwrite
        try:
            yield out
        finally:
            _CLAIMED.pop(out, None)


@contextmanager
def write_package(out_dir: str | Path, overwrite: bool = False):
    """Yield a fresh temporary sibling of out_dir to fill; when the block succeeds it is swapped in atomically.

    On any error the temporary directory is removed and whatever was at out_dir is untouched. Called inside
    `claim_output` (the CLI and the API do that) it reuses the claim; called on its own it claims out_dir for
    the duration of the write.
    """
    out = Path(os.path.abspath(out_dir))
    if out not in _CLAIMED:
        with claim_output(out, overwrite=overwrite) as claimed, write_package(claimed) as tmp:
            yield tmp
        return
    tmp = new_temp_sibling(out)
    try:
        yield tmp
        check_destination(out, overwrite=_CLAIMED[out])  # nothing appeared there meanwhile that we must not replace
        swap_in(tmp, out)
    except BaseException:
        remove_tree(tmp)
        raise


def finish_manifest(tmp_dir: Path, manifest: dict, tokenizer) -> dict:
    """Write tokenizer.json, then manifest.json with checksums of everything else."""
    if tokenizer is not None:
        tokenizer.save(tmp_dir / "tokenizer.json")
    write_hf_files(tmp_dir, manifest, tokenizer)
    manifest["files"] = sorted(str(p.relative_to(tmp_dir)) for p in tmp_dir.iterdir() if p.name != "manifest.json")
    manifest["checksums"] = checksums(tmp_dir)
    manifest["size_bytes"] = sum(p.stat().st_size for p in tmp_dir.rglob("*") if p.is_file())
    (tmp_dir / "manifest.json").write_text(strict_json.dumps(manifest))
    return manifest
