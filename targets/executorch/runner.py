"""The ExecuTorch runtime as a Runner (validation/runner.py): the package's own `.pte` in executorch.runtime.

`forward(ids, start_pos)` feeds `ids` in chunks of at most `max_seq_len` tokens (what the program's memory was
planned for) with contiguous positions, and returns every position's logits. A program that returns only the last
position's logits (the default export, manifest "logits": "last") is fed one token per call when more than one
row is asked for: the same numbers, one head per token.

`reset()` has nothing to clear, by construction: attention (llama::custom_sdpa) reads cache positions
[0, start + T) only, and every one of them was written by update_cache in the same or an earlier call of the
current sequence. Stale entries from an earlier sequence sit beyond the positions read, as they do in
ExecuTorch's own TextLLMRunner, which also reuses the loaded method across prompts. Reloading the method instead
would repack every XNNPACK weight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ElmExportError

# Environment for a process that runs ExecuTorch programs beside PyTorch: llama::custom_sdpa calls the BLAS sgemm_,
# which in a Python process resolves to PyTorch's MKL, and MKL would start OpenMP threads inside each thread of
# ExecuTorch's own pool (on 2 cores: custom_sdpa ~190 instead of ~55 us per call at ~190 cached positions).
# MKL reads it when it starts, so it must be set before the process first calls into MKL.
EXECUTORCH_PROCESS_ENV = {"MKL_NUM_THREADS": "1"}


def apply_executorch_process_env(environ=None, modules=None) -> bool:
    """Set EXECUTORCH_PROCESS_ENV in this process (values the user set win) while MKL has not started yet.

    For a process that computes only with ExecuTorch (`elmexport generate PACKAGE.pte`): SmolLM2 8da4w decode goes
    75-82 -> 117-143 tok/s over 200 tokens. MKL starts when torch is imported, so this is a no-op once it is;
    -> False when it came too late for a setting the user left unset.
    """
    import os
    import sys

    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "torch" in modules:
        return all(k in environ for k in EXECUTORCH_PROCESS_ENV)
    for key, value in EXECUTORCH_PROCESS_ENV.items():
        environ.setdefault(key, value)
    return True


def load_kernel_libraries() -> None:
    """Operators a package may use beyond the portable set: llama:: attention and quantized embeddings."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    import executorch.kernels.quantized  # noqa: F401


class ExecuTorchRunner:
    def __init__(self, pte: Path, context: int, max_seq_len: int, name: str = "executorch", all_logits: bool = True):
        import torch
        from executorch.runtime import Runtime

        load_kernel_libraries()
        self._torch = torch
        self.name, self.context, self.max_seq_len = name, context, max_seq_len
        self.all_logits = all_logits
        try:
            self.program = Runtime.get().load_program(str(pte))
            self.method = self.program.load_method("forward")
        except RuntimeError as e:  # the pybindings raise RuntimeError for unreadable or incompatible programs
            raise ElmExportError(f"{pte}: ExecuTorch cannot load the program ({str(e).splitlines()[0][:160]})") from None

    def reset(self) -> None:
        """Nothing to clear: see the module docstring."""

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        """Logits of every fed position: a last-row program is fed one token per call to produce them."""
        return np.concatenate(list(self._run(ids, start_pos, self.max_seq_len if self.all_logits else 1)), axis=0)

    def forward_last(self, ids: list[int], start_pos: int) -> np.ndarray:
        """Logits of the last fed position only: full chunks whatever the program returns (generation's path)."""
        return list(self._run(ids, start_pos, self.max_seq_len))[-1][-1]

    def _run(self, ids: list[int], start_pos: int, step: int):
        torch = self._torch
        if start_pos + len(ids) > self.context:
            raise ElmExportError(f"positions {start_pos}..{start_pos + len(ids) - 1} exceed the context of "
                                 f"{self.context}; export with a larger --context")
        for i in range(0, len(ids), step):
            chunk = ids[i:i + step]
            pos = torch.arange(start_pos + i, start_pos + i + len(chunk), dtype=torch.long)
            logits = self.method.execute([torch.tensor([chunk], dtype=torch.long), pos])[0]
            yield logits[0].float().numpy()


def open_runner(package_dir: Path, manifest: dict, **options) -> ExecuTorchRunner:
    delegate = manifest.get("delegate", "xnnpack")
    if delegate != "xnnpack":
        raise ElmExportError(f"{package_dir}: the {delegate} delegate runs only on Apple platforms "
                             f"(ExecuTorch's Core ML backend); run this package on a Mac or iPhone")
    pte = Path(package_dir) / manifest.get("model_file", "model.pte")
    if not pte.exists():
        raise ElmExportError(f"{package_dir}: {pte.name} is missing; re-export the package")
    if options.get("threads"):  # ExecuTorch's one process-wide pool (XNNPACK's threads); default: one per core
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(int(options["threads"]))
    return ExecuTorchRunner(pte, int(manifest["context_length"]), int(manifest.get("max_seq_len", 1)),
                            name=options.get("name", f"executorch-{delegate}"),
                            all_logits=manifest.get("logits", "all") == "all")
