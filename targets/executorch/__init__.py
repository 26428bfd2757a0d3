"""ExecuTorch target: one `.pte` with a single dynamic-shape `forward` and in-program KV caches.

    forward(tokens [1, T] int64, input_pos [T] int64) -> logits [1, 1, vocab] fp32,  1 <= T <= max_seq_len

The logits are the last position's (what LLM runners read; the head is then computed once per call, not T
times); --all-logits returns all T rows instead. Our own runner (validation) feeds one token per call when it
needs every row of a last-logits program.

The same method prefills a chunk of the prompt and decodes one token; positions are explicit (contiguous,
start .. start + T - 1). Per-layer KV caches are mutable buffers inside the program, one shape per layer
([1, context, n_kv_i, head_dim] with XNNPACK; OpenELM's KV head count varies by layer). The program also carries
the constant methods ExecuTorch's LLM runners read (TextLLMRunner, llama_main), so the package runs there
with its tokenizer.json as is.

--delegate xnnpack (default): linears (fp32, or 8da4w / 8da8w from the IR's codes), norms, RoPE, SiLU and the
  residual adds go to XNNPACK; attention runs ExecuTorch's llama::custom_sdpa / update_cache kernels; the
  quantized embedding uses quantized_decomposed::embedding_4bit / embedding_byte (portable).
--delegate coreml: ExecuTorch's Core ML partitioner (iOS 18, caches as Core ML states). Exports on Linux; runs
  only on Apple platforms.

Lowering steps: targets/executorch/lower.py. Quantization: targets/executorch/quant.py.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ...errors import ElmExportError
from ...package import base_manifest, finish_manifest, pass_records, write_package
from ..options import TargetOptions, option

DESCRIPTION = "export an ExecuTorch program (.pte: XNNPACK or Core ML delegate, KV cache inside, 8da4w)"
DEFAULT_MAX_SEQ_LEN = 128
MODEL_FILE = "model.pte"


@dataclass(frozen=True)
class ExecuTorchOptions(TargetOptions):
    delegate: str = option("xnnpack", "ExecuTorch backend (coreml exports on Linux, runs on Apple platforms)",
                           choices=("xnnpack", "coreml"))
    max_seq_len: int | None = option(None, f"most tokens per forward call: prompts are prefilled in chunks of N and "
                                           f"memory is planned for N (default min({DEFAULT_MAX_SEQ_LEN}, context))",
                                     minimum=1, metavar="N")
    all_logits: bool = option(False, "return the logits of every position of a call (default: the last one only, "
                                     "which is all LLM runners read; the head then runs once per prefill chunk "
                                     "instead of once per token)")

    def check(self, context: int | None) -> None:
        if context is not None and self.max_seq_len is not None and self.max_seq_len > context:
            raise ElmExportError(f"--max-seq-len {self.max_seq_len} exceeds --context {context}")
        if self.delegate == "coreml" and self.max_seq_len not in (None, 1):
            raise ElmExportError("--delegate coreml exports a single-token forward (T = 1); drop --max-seq-len")


OPTIONS = ExecuTorchOptions
FOUR_BIT_PRESET = "8da4w"  # what the quickstart exports it with
SUPPORTED_MODES = ("none", "int8", "int4")  # IR weight modes this target lowers (8da4w = int4 block 32)
OWN_PRESETS = ("8da4w",)  # 8-bit dynamic activations: only XNNPACK's kernels compute them


def adapt_quant(config):
    """XNNPACK rejects negative weight scales (ExecuTorch cannot load such a program): quantize with positive ones."""
    import dataclasses

    return dataclasses.replace(config, positive_scales=True)


@contextlib.contextmanager
def quiet_executorch():
    """ExecuTorch and torchao warn per node and per pass; our own progress lines replace them."""
    for name in ("executorch", "torch._export", "torch.export", "coremltools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def constant_methods(compiled, max_seq_len: int, delegate: str) -> dict:
    """The metadata methods ExecuTorch's LLM runners read (see extension/llm/runner/llm_runner_helper.cpp)."""
    cfg, ir = compiled.loaded.cfg, compiled.ir
    return {
        "get_max_seq_len": max_seq_len,
        "get_max_context_len": ir.context,
        "get_vocab_size": cfg.vocab_size,
        "get_bos_id": cfg.bos_token_id,
        "get_eos_ids": list(cfg.eos_token_ids),
        "get_n_layers": cfg.num_layers,
        "use_kv_cache": True,
        "use_sdpa_with_kv_cache": delegate == "xnnpack",
        "enable_dynamic_shape": max_seq_len > 1,
    }


def export(compiled, options: ExecuTorchOptions, out_dir: Path, log) -> dict:
    from .lower import lower

    ir, cfg = compiled.ir, compiled.loaded.cfg
    delegate = options.delegate
    max_seq_len = options.max_seq_len or min(DEFAULT_MAX_SEQ_LEN, ir.context)
    if delegate == "coreml":
        from .coreml_delegate import COREML_MAX_SEQ_LEN

        max_seq_len = COREML_MAX_SEQ_LEN
    if max_seq_len > ir.context:
        raise ElmExportError(f"--max-seq-len {max_seq_len} exceeds the context length {ir.context}")
    methods = constant_methods(compiled, max_seq_len, delegate)
    all_logits = options.all_logits or delegate != "xnnpack"  # coreml: T = 1 anyway
    t0 = time.perf_counter()
    with quiet_executorch():
        lowered = lower(compiled, delegate, max_seq_len, methods, log=log, all_logits=all_logits)
    with write_package(out_dir) as tmp:
        (tmp / MODEL_FILE).write_bytes(lowered.program.buffer)
        log(f"wrote {MODEL_FILE} ({(tmp / MODEL_FILE).stat().st_size / 2**20:.1f} MiB) in "
            f"{time.perf_counter() - t0:.0f} s")
        manifest = base_manifest(
            compiled, "executorch", out_dir.name,
            model_file=MODEL_FILE, delegate=delegate, method="forward", max_seq_len=max_seq_len,
            constant_methods=methods,
            inputs=[{"name": "tokens", "shape": [1, "T"], "dtype": "int64"},
                    {"name": "input_pos", "shape": ["T"], "dtype": "int64",
                     "note": f"contiguous positions start..start+T-1; 1 <= T <= {max_seq_len}"}],
            logits="all" if all_logits else "last",
            outputs=[{"name": "logits", "shape": [1, "T" if all_logits else 1, cfg.vocab_size], "dtype": "float32",
                      "note": "every position of the call" if all_logits else "the call's last position"}],
            states=lowered.states,
            lowering={"rewrites": lowered.rewrites, "weights": lowered.weights},  # timings only in the log: they vary run to run
            target_passes=pass_records(lowered.reports),
            ops=lowered.ops,
        )
        return finish_manifest(tmp, manifest, compiled.loaded.tokenizer)
