"""Helpers for the ExecuTorch target tests: tiny compiled models, the 8da4w reference, greedy decoding, the CLI."""
# ruff: noqa: I001  (elmexport.ir.ops must be imported before elmexport.passes)

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from elmexport.ir import ops as _elm_ops  # noqa: F401  (registers elm:: ops; passes/ reads them at import)
from elmexport.frontend import capture
from elmexport.models.config import openelm_config
from elmexport.models.transformer import Transformer, init_random_weights
from elmexport.passes.manager import PassManager
from elmexport.passes.quant_config import load_quant_config
from elmexport.passes.registry import build_passes
from elmexport.pipeline import CompiledModel
from elmexport.tokenizer import make_text_tokenizer, read_tokenizer_json
from elmexport.weights.sources import LoadedModel
from elmexport.validation.streams import teacher_forced  # noqa: F401  (re-exported for the tests)


def tiny_compiled(quant: str = "none", vocab_size: int = 32000, tokenizer: Path | None = None, context: int = 64,
                  seed: int = 0) -> CompiledModel:
    """openelm-tiny's layer-wise-scaled shapes (heads 4,4,8,8 / kv 1,1,2,2) with any vocabulary, through the IR."""
    cfg = openelm_config(f"openelm-tiny-v{vocab_size}", 4, 256, 32, vocab_size=vocab_size)
    model = init_random_weights(Transformer(cfg, context), seed=seed).eval()
    tok = make_text_tokenizer(read_tokenizer_json(tokenizer), cfg) if tokenizer else None
    loaded = LoadedModel(model, cfg, tok, {"kind": "random", "random_weights": True, "seed": seed})
    ir = capture(model)
    qconfig = load_quant_config(quant)
    reports = PassManager(build_passes(None, qconfig)).run(ir)
    return CompiledModel(loaded, ir, qconfig, reports)


def export_args(**overrides):
    from elmexport.targets.executorch import ExecuTorchOptions

    return ExecuTorchOptions(**overrides)


def simulated_8da4w(ir) -> torch.fx.GraphModule:
    """What the XNNPACK program computes, in PyTorch: the lowered graph run eagerly (int8 per-token dynamic
    activations, the IR's int4 codes) with blockwise scales rounded to bf16 as XNNPACK stores them."""
    from elmexport.targets.executorch.lower import prepare_graph
    from elmexport.targets.executorch.quant import linear_int8_act

    gm, _, _ = prepare_graph(ir, "xnnpack")
    for node in gm.graph.nodes:
        if node.target is not linear_int8_act:
            continue
        _, qdata, scale, _, block, bits = node.args
        if bits == 4 and block < gm.get_buffer(qdata.target).shape[1]:  # per-channel scales stay fp32
            s = gm.get_buffer(scale.target)
            s.copy_(s.bfloat16().float())
    return gm


class GraphRunner:
    """Runner protocol over a GraphModule with forward(tokens, input_pos) (caches live inside it)."""

    def __init__(self, gm, context: int, name: str = "graph"):
        self.gm, self.context, self.name = gm, context, name

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        pos = torch.arange(start_pos, start_pos + len(ids))
        return self.gm(torch.tensor([ids]), pos)[0].float().numpy()


def prefill_and_decode(runner, ids: list[int], steps: int) -> np.ndarray:
    """Logits [len(ids) + steps, vocab]: the prompt, then `steps` greedy single-token decodes."""
    runner.reset()
    out = [runner.forward(ids, 0)]
    pos = len(ids)
    for _ in range(steps):
        token = int(np.argmax(out[-1][-1]))
        out.append(runner.forward([token], pos))
        pos += 1
    return np.concatenate(out, axis=0)


class count_calls:
    """Count the calls of `owner.name` made directly from a function named `caller` inside the `with` block (the
    method still runs)."""

    def __init__(self, owner, name: str, caller: str):
        self.owner, self.name, self.caller, self.calls = owner, name, caller, 0

    def __enter__(self):
        original = getattr(self.owner, self.name)

        def counted(*args, **kwargs):
            self.calls += sys._getframe(1).f_code.co_name == self.caller
            return original(*args, **kwargs)

        self._original = original
        setattr(self.owner, self.name, counted)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self._original)


def run_cli(*args, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elmexport.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)
