"""Open the right runtime for a package: the manifest's target -> that target's `runner` module
(`targets/<name>/runner.py`), found through the one registry of targets."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ElmExportError
from ..manifest import read_manifest
from ..targets.registry import TARGETS


def open_package_runner(package_dir: str | Path, manifest: dict | None = None, **options):
    """The package's own runtime on this host (onnxruntime, ExecuTorch, Core ML or the MIL interpreter)."""
    manifest = manifest or read_manifest(package_dir)
    target = manifest["target"]
    if target not in TARGETS:
        raise ElmExportError(f"{package_dir}: unknown target {target!r} in manifest.json; known: {', '.join(TARGETS)}")
    module = importlib.import_module(f"{TARGETS[target]}.runner")
    return module.open_runner(Path(package_dir), manifest, **options)
