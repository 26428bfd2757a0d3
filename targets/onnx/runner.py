"""onnxruntime runner for ONNX packages: the Runner protocol (validation/runner.py) over shared KV buffers.

The package's graph takes `input_ids` [1, T], `attention_mask` [1, past + T] and per-layer
`past_key_values.%d.key/value` [1, n_kv_i, L, hd] buffers, and returns logits plus `present.%d.*`: the same buffers
with the T new rows written at `past`. One buffer per layer and kind (L = the context) is bound through IOBinding as
both the past input and the present output, so no KV byte is copied between calls (what onnxruntime-genai's
past_present_share_buffer does). `forward(ids, start_pos)` needs start_pos <= cached length; a smaller start_pos
rewinds for free (stale rows past it are never attended to and get overwritten), as speculative decoding needs.
A package exported with `--logits last` returns one row per call; forward() then feeds T > 1 tokens one call
each, so it still returns a row per token (teacher-forced validation stays exact, at decode speed).

The binding is made once per runner, not per call: the KV buffers stay bound, and for a `--logits last` package
the logits row is a buffer of ours that onnxruntime writes into, so a call only rebinds `input_ids` and
`attention_mask` and copies one row out. Building a fresh binding per decode step (34 binds) and letting
onnxruntime allocate the logits cost ~110 us of a ~4.2 ms OpenELM-270M int4 step (benchmarks/onnx_profile.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ElmExportError

DEFAULT_THREADS = None  # onnxruntime's own choice (one intra-op thread per physical core) unless a caller asks


def session_options(threads: int | None = DEFAULT_THREADS, spinning: bool = True):
    """`spinning=False` stops idle intra-op threads from busy-waiting: two sessions taking turns (a speculative
    pair) otherwise steal each other's cores while waiting."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


class OnnxRunner:
    def __init__(self, model_path: Path, context: int, threads: int | None = DEFAULT_THREADS, name: str | None = None,
                 spinning: bool = True):
        import onnxruntime as ort

        if not model_path.exists():
            raise ElmExportError(f"{model_path}: missing; re-export the ONNX package")
        self.ort = ort
        self.session = ort.InferenceSession(str(model_path), session_options(threads, spinning),
                                            providers=["CPUExecutionProvider"])
        self.context = context
        self.name = name or f"onnxruntime {ort.__version__}"
        inputs = {i.name: i for i in self.session.get_inputs()}
        if "attention_mask" not in inputs:
            raise ElmExportError(f"{model_path}: no attention_mask input (exported before the shared-KV-buffer "
                                 f"format); re-export the ONNX package")
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        self.buffer_shapes = [(1, int(inputs[n].shape[1]), context, int(inputs[n].shape[3])) for n in self.past_names]
        self.buffers = [ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=np.float32))
                        for shape in self.buffer_shapes]
        logits = next(o for o in self.session.get_outputs() if o.name == "logits")
        self.last_only = logits.shape[1] == 1
        self.binding = self.session.io_binding()
        for past, present, buffer in zip(self.past_names, self.present_names, self.buffers):
            self.binding.bind_ortvalue_input(past, buffer)
            self.binding.bind_ortvalue_output(present, buffer)
        self.logits_row = None
        if self.last_only and isinstance(logits.shape[2], int):  # one row of a fixed width: bind it once
            self.logits_row = np.zeros((1, 1, logits.shape[2]), dtype=np.float32)
            self.logits_value = ort.OrtValue.ortvalue_from_numpy(self.logits_row)
            self.binding.bind_ortvalue_output("logits", self.logits_value)
        else:
            self.binding.bind_output("logits")
        self.logits_index = len(self.present_names)  # outputs come back in the order they were first bound
        self.mask = np.ones((1, context), dtype=np.int64)
        self.cached = 0

    def reset(self) -> None:
        self.cached = 0  # buffer rows at or past `cached` are never read before they are written

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        """Logits of every fed position ([T, vocab]); a `--logits last` package is fed one token per call."""
        if self.last_only and len(ids) > 1:
            return np.concatenate([self._run([t], start_pos + i) for i, t in enumerate(ids)])
        return self._run(ids, start_pos)

    def forward_last(self, ids: list[int], start_pos: int) -> np.ndarray:
        """Logits of the last fed position ([vocab]) in one call, whatever the package's logits layout."""
        return self._run(ids, start_pos)[-1]

    def _run(self, ids: list[int], start_pos: int) -> np.ndarray:
        if start_pos > self.cached:
            raise ElmExportError(f"onnx runner: start_pos {start_pos} is past the {self.cached} cached tokens")
        total = start_pos + len(ids)
        if total > self.context:
            raise ElmExportError(f"{total} tokens exceed the package's context of {self.context}")
        self.binding.bind_cpu_input("input_ids", np.asarray([ids], dtype=np.int64))
        self.binding.bind_cpu_input("attention_mask", self.mask[:, :total])
        if self.logits_row is not None:
            self.session.run_with_iobinding(self.binding)
            self.cached = total
            return self.logits_row[0].copy()  # the buffer is overwritten by the next call
        # logits of every fed position: their shape changes with T, so onnxruntime allocates them per call, and
        # the old result has to be dropped first (a bound value of another shape would be refused)
        self.binding.bind_output("logits")
        self.session.run_with_iobinding(self.binding)
        self.cached = total
        return self.binding.get_outputs()[self.logits_index].numpy()[0].astype(np.float32, copy=False)


def open_runner(package_dir: Path, manifest: dict, threads: int | None = DEFAULT_THREADS, spinning: bool = True,
                **_options) -> OnnxRunner:
    onnx = manifest.get("onnx", {})
    model = package_dir / onnx.get("model_file", "model.onnx")
    quant = manifest.get("quantization", {}).get("name", "?")
    return OnnxRunner(model, int(manifest["context_length"]), threads=threads, spinning=spinning,
                      name=f"onnxruntime (quant {quant}, {threads or 'default'} threads)")
