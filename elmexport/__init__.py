"""elmexport: export OpenELM and Llama-family small LMs to Core ML, ONNX and ExecuTorch."""

__version__ = "0.1.0"

from .api import LoadedPackage, Package, Report, export, load, validate  # noqa: E402  (the public API)
from .errors import ElmExportError  # noqa: E402

__all__ = ["export", "validate", "load", "Package", "Report", "LoadedPackage", "ElmExportError", "__version__"]
