"""Open the right runtime for a package: target name in the manifest -> runner class (validation/runner.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ElmExportError
from ..manifest import read_manifest

RUNNERS = {
    "coreml": "elmexport.validation.coreml_runner",
    "onnx": "elmexport.targets.onnx.runner",
    "executorch": "elmexport.targets.executorch.runner",
}


def open_package_runner(package_dir: str | Path, manifest: dict | None = None, **options):
    """The package's own runtime on this host (onnxruntime, ExecuTorch, Core ML or the MIL interpreter)."""
    manifest = manifest or read_manifest(package_dir)
    target = manifest["target"]
    if target not in RUNNERS:
        raise ElmExportError(f"{package_dir}: unknown target {target!r} in manifest.json")
    module = importlib.import_module(RUNNERS[target])
    return module.open_runner(Path(package_dir), manifest, **options)
