"""`--quant`: named presets or a YAML/JSON file with per-layer overrides, resolved per weight.

A config file looks like:

    default:   {mode: int4, block_size: 32}
    embedding: {mode: int8}                      # the tied embedding / LM head (quantized once, shared)
    overrides:                                   # fnmatch patterns on module names, first match wins
      "layers.0.*":  {mode: int8}
      "layers.15.*": {mode: none}

Modes: none, int8, int4 (symmetric, per-block `block_size` (`fallback_block_size` where it does not divide a
weight's input width) or per-channel with `block_size: 0`) and
palettize2/3/4/6/8 (k-means LUT, per-grouped-channel `group_size` or per-tensor with `group_size: 0`).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ElmExportError
from ..raw_fields import Fields, first_line, shown, type_name

LINEAR_MODES = {"int8": 8, "int4": 4}
PALETTE_MODES = {f"palettize{n}": n for n in (2, 3, 4, 6, 8)}


@dataclass(frozen=True)
class WeightQuant:
    mode: str = "none"
    block_size: int = 32  # linear modes: 0 = per-channel
    group_size: int = 16  # palettize modes: output channels per LUT; 0 = per-tensor
    fallback_block_size: int = 0  # linear modes: used where block_size does not divide a weight's input width

    def block_for(self, in_features: int) -> int:
        """The block a weight with `in_features` inputs is quantized in (in_features itself = per-channel)."""
        block = self.block_size or in_features
        if in_features % block and self.fallback_block_size and not in_features % self.fallback_block_size:
            return self.fallback_block_size
        return block

    @property
    def bits(self) -> int:
        return LINEAR_MODES.get(self.mode) or PALETTE_MODES.get(self.mode) or 0

    @property
    def kind(self) -> str:
        return "linear" if self.mode in LINEAR_MODES else "palettize" if self.mode in PALETTE_MODES else "none"


@dataclass
class QuantConfig:
    name: str
    default: WeightQuant
    embedding: WeightQuant
    overrides: list[tuple[str, WeightQuant]] = field(default_factory=list)
    positive_scales: bool = False  # set by targets whose kernels reject negative scales (XNNPACK): see quant_math

    def for_module(self, module_name: str) -> WeightQuant:
        if module_name in ("token_embeddings", "lm_head"):
            return self.embedding
        for pattern, q in self.overrides:
            if fnmatch.fnmatch(module_name, pattern):
                return q
        return self.default

    @property
    def is_none(self) -> bool:
        return all(q.mode == "none" for q in [self.default, self.embedding] + [q for _, q in self.overrides])

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        """Inverse of to_dict (what a package manifest stores)."""
        overrides = [(o["pattern"], WeightQuant(**{k: v for k, v in o.items() if k != "pattern"}))
                     for o in d.get("overrides", [])]
        return cls(d["name"], WeightQuant(**d["default"]), WeightQuant(**d["embedding"]), overrides,
                   d.get("positive_scales", False))

    def to_dict(self) -> dict:
        return {"name": self.name, "default": asdict(self.default), "embedding": asdict(self.embedding),
                "overrides": [{"pattern": p, **asdict(q)} for p, q in self.overrides],
                "positive_scales": self.positive_scales}


PRESETS = {
    "none": dict(default={"mode": "none"}, embedding={"mode": "none"}),
    "int8": dict(default={"mode": "int8", "block_size": 0}, embedding={"mode": "int8", "block_size": 0}),
    # Blocks of 64 in the layers, 32 for the tied embedding/head: as good as 32 everywhere (SmolLM2 GPL-3
    # perplexity 30.94 vs 30.98 in the IR; 64 everywhere: 34.41), ~10% fewer bytes in the layers, and onnxruntime's
    # int4 kernel runs 64-blocks faster (docs/benchmarks.md, quantization quality).
    "int4": dict(default={"mode": "int4", "block_size": 64, "fallback_block_size": 32},
                 embedding={"mode": "int4", "block_size": 32}),
    "8da4w": dict(default={"mode": "int4", "block_size": 32}, embedding={"mode": "int4", "block_size": 32}),
    "palettize4": dict(default={"mode": "palettize4"}, embedding={"mode": "palettize4"}),
    "palettize6": dict(default={"mode": "palettize6"}, embedding={"mode": "palettize6"}),
    "palettize8": dict(default={"mode": "palettize8"}, embedding={"mode": "palettize8"}),
}


WEIGHT_KEYS = ["mode", "block_size", "group_size", "fallback_block_size"]
TOP_KEYS = ["default", "embedding", "overrides"]
MAX_BLOCK = 1_048_576  # larger than any weight's width: a block this size is per-channel in all but name


def _weight_quant(raw, where: str) -> WeightQuant:
    f = Fields(raw, where, ElmExportError, what="a mapping like {mode: int4, block_size: 32}")
    f.only_keys(WEIGHT_KEYS)
    defaults = WeightQuant()
    mode = f.string("mode", default=defaults.mode)
    if mode != "none" and mode not in LINEAR_MODES and mode not in PALETTE_MODES:
        raise f.fail(f"unknown mode {mode!r}; choose none, {', '.join(LINEAR_MODES)}, {', '.join(PALETTE_MODES)}")
    return WeightQuant(mode=mode, block_size=f.integer("block_size", 0, MAX_BLOCK, default=defaults.block_size),
                       group_size=f.integer("group_size", 0, MAX_BLOCK, default=defaults.group_size),
                       fallback_block_size=f.integer("fallback_block_size", 0, MAX_BLOCK,
                                                     default=defaults.fallback_block_size))


def quant_config_from_raw(raw, name: str, where: str) -> QuantConfig:
    """A parsed quant config (any YAML/JSON value: it is checked) -> QuantConfig; errors name the key."""
    f = Fields(raw, where, ElmExportError, what="a mapping with at least a 'default' entry")
    f.only_keys(TOP_KEYS)
    default = _weight_quant(f.get("default"), f"{where} default")
    embedding = _weight_quant(f.get("embedding"), f"{where} embedding") if "embedding" in raw else default
    overrides = f.get("overrides", default={})
    if not isinstance(overrides, dict):
        raise f.fail(f"'overrides' must be a mapping of module-name pattern -> weight spec, e.g. "
                     f"\"layers.0.*\": {{mode: int8}}; got {type_name(overrides)}")
    patterns = []
    for pattern, q in overrides.items():
        if not isinstance(pattern, str) or not pattern:
            raise f.fail(f"override pattern {shown(pattern)} must be a non-empty string like \"layers.0.*\"")
        patterns.append((pattern, _weight_quant(q, f"{where} overrides[{pattern!r}]")))
    return QuantConfig(name, default, embedding, patterns)


def load_quant_config(spec: str | None) -> QuantConfig:
    """A preset name or a path to a .yaml/.yml/.json file."""
    spec = spec or "none"
    if spec in PRESETS:
        return quant_config_from_raw(PRESETS[spec], spec, f"--quant {spec}")
    path = Path(spec)
    if not path.is_file():
        raise ElmExportError(f"--quant {spec!r}: not a preset ({', '.join(PRESETS)}) and no such file")
    try:
        if path.suffix == ".json":
            raw = json.loads(path.read_bytes())
        else:
            import yaml

            raw = yaml.safe_load(path.read_bytes())
    except Exception as e:  # JSON, YAML and decoding errors alike: the file is not what it claims to be
        mark = getattr(e, "problem_mark", None)  # YAML's first line is context; the problem and line say more
        detail = f"{e.problem} at line {mark.line + 1}" if mark and getattr(e, "problem", None) else first_line(e, 120)
        raise ElmExportError(f"--quant {path}: cannot parse ({detail})") from None
    return quant_config_from_raw(raw, path.stem, f"--quant {path}")


def unmatched_override(config: QuantConfig, module_names: set[str], model: str) -> None:
    """Refuse an override pattern that selects no layer module: a typo there silently quantizes as the default.

    The tied embedding / head is configured by `embedding` and never by an override, so it does not count.
    """
    layers = sorted(n for n in module_names if n not in ("token_embeddings", "lm_head"))
    for pattern, _ in config.overrides:
        if not any(fnmatch.fnmatch(n, pattern) for n in layers):
            examples = ", ".join(repr(n) for n in layers[:1] + layers[-1:]) or "none"
            hint = " (the embedding/head is set by 'embedding', not by an override)" \
                if any(fnmatch.fnmatch(n, pattern) for n in module_names) else ""
            raise ElmExportError(f"quant config override {pattern!r} matches no module of {model}{hint}; "
                                 f"module names look like {examples}")
