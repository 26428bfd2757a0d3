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
    # int4 kernel runs 64-blocks faster (README, "Quantization").
    "int4": dict(default={"mode": "int4", "block_size": 64, "fallback_block_size": 32},
                 embedding={"mode": "int4", "block_size": 32}),
    "8da4w": dict(default={"mode": "int4", "block_size": 32}, embedding={"mode": "int4", "block_size": 32}),
    "palettize4": dict(default={"mode": "palettize4"}, embedding={"mode": "palettize4"}),
    "palettize6": dict(default={"mode": "palettize6"}, embedding={"mode": "palettize6"}),
    "palettize8": dict(default={"mode": "palettize8"}, embedding={"mode": "palettize8"}),
}


def _weight_quant(d: dict, where: str) -> WeightQuant:
    unknown = set(d) - {"mode", "block_size", "group_size", "fallback_block_size"}
    if unknown:
        raise ElmExportError(f"quant config {where}: unknown key {sorted(unknown)[0]!r} "
                             f"(mode, block_size, group_size, fallback_block_size)")
    q = WeightQuant(**d)
    if q.mode != "none" and q.kind == "none":
        raise ElmExportError(f"quant config {where}: unknown mode {q.mode!r}; choose none, "
                             f"{', '.join(LINEAR_MODES)}, {', '.join(PALETTE_MODES)}")
    return q


def load_quant_config(spec: str | None) -> QuantConfig:
    """A preset name or a path to a .yaml/.yml/.json file."""
    spec = spec or "none"
    if spec in PRESETS:
        raw, name = PRESETS[spec], spec
    else:
        path = Path(spec)
        if not path.exists():
            raise ElmExportError(f"--quant {spec!r}: not a preset ({', '.join(PRESETS)}) and no such file")
        try:
            if path.suffix == ".json":
                raw = json.loads(path.read_text())
            else:
                import yaml

                raw = yaml.safe_load(path.read_text())
        except Exception as e:
            raise ElmExportError(f"--quant {path}: cannot parse ({str(e).splitlines()[0][:120]})") from None
        if not isinstance(raw, dict) or "default" not in raw:
            raise ElmExportError(f"--quant {path}: expected a mapping with at least a 'default' entry")
        name = path.stem
    default = _weight_quant(raw["default"], "default")
    embedding = _weight_quant(raw.get("embedding", raw["default"]), "embedding")
    overrides = [(p, _weight_quant(q, p)) for p, q in (raw.get("overrides") or {}).items()]
    return QuantConfig(name, default, embedding, overrides)
