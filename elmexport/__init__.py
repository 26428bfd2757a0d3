"""elmexport: export OpenELM and Llama-family small LMs to Core ML, ONNX and ExecuTorch."""

__version__ = "0.1.0"
