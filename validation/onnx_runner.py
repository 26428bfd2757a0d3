"""onnxruntime runner for ONNX packages: the Runner protocol (validation/runner.py) over explicit KV tensors.

The package's graph takes `input_ids` [1, T] and per-layer `past_key_values.%d.key/value` [1, n_kv_i, past, hd]
and returns logits plus `present.%d.*` = past + the T new positions; token positions are the past length, so
`forward(ids, start_pos)` needs start_pos <= cached length (a smaller start_pos rewinds the cache, as speculative
decoding does). KV tensors stay OrtValues between calls: no numpy round trip of the cache per token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ElmExportError

DEFAULT_THREADS = 2


def session_options(threads: int = DEFAULT_THREADS):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


class OnnxRunner:
    def __init__(self, model_path: Path, context: int, threads: int = DEFAULT_THREADS, name: str | None = None):
        import onnxruntime as ort

        if not model_path.exists():
            raise ElmExportError(f"{model_path}: missing; re-export the ONNX package")
        self.ort = ort
        self.session = ort.InferenceSession(str(model_path), session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.context = context
        self.name = name or f"onnxruntime {ort.__version__}"
        inputs = self.session.get_inputs()
        self.past_names = [i.name for i in inputs if i.name.startswith("past_key_values.")]
        self.past_shapes = [(int(i.shape[1]), int(i.shape[3])) for i in inputs if i.name in self.past_names]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.reset()

    @property
    def cached(self) -> int:
        return self.past[0].shape()[2] if self.past else 0

    def reset(self) -> None:
        self.past = [self.ort.OrtValue.ortvalue_from_numpy(np.zeros((1, h, 0, d), dtype=np.float32))
                     for h, d in self.past_shapes]

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        if start_pos > self.cached:
            raise ElmExportError(f"onnx runner: start_pos {start_pos} is past the {self.cached} cached tokens")
        if start_pos + len(ids) > self.context:
            raise ElmExportError(f"{start_pos + len(ids)} tokens exceed the package's context of {self.context}")
        if start_pos < self.cached:  # rewind: keep the first start_pos positions
            self.past = [self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(p.numpy()[:, :, :start_pos]))
                         for p in self.past]
        feeds = {"input_ids": self.ort.OrtValue.ortvalue_from_numpy(np.asarray([ids], dtype=np.int64))}
        feeds.update(zip(self.past_names, self.past))
        outputs = self.session.run_with_ort_values(self.output_names, feeds)
        self.past = list(outputs[1:])
        return outputs[0].numpy()[0].astype(np.float32, copy=False)


def open_runner(package_dir: Path, manifest: dict, threads: int = DEFAULT_THREADS, **_options) -> OnnxRunner:
    onnx = manifest.get("onnx", {})
    model = package_dir / onnx.get("model_file", "model.onnx")
    quant = manifest.get("quantization", {}).get("name", "?")
    return OnnxRunner(model, int(manifest["context_length"]), threads=threads,
                      name=f"onnxruntime (quant {quant}, {threads} threads)")
