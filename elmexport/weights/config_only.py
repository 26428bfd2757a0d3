"""The model config a command will use, read without loading any weights.

Presets, an HF folder's config.json or a GGUF's metadata: enough for `info` and for sizing a package before any
slow step, so a destination without room is refused in a second, not after the export.
"""

from __future__ import annotations

from pathlib import Path

from ..models.config import ModelConfig, config_from_hf, get_preset
from .spec import DEFAULT_MODEL, ModelSpec


def config_without_weights(spec: ModelSpec) -> ModelConfig:
    if spec.hub_id:
        from .hub import hub_file

        config, how = hub_file(spec.hub_id, "config.json")
        if config is None:
            from ..errors import WeightsError

            raise WeightsError(f"--model {spec.hub_id}: its config.json is not in the HF cache and not downloadable "
                               f"({how}); pass a local checkpoint (--model PATH)")
        return config_from_hf(config.parent)
    if spec.weights:
        if str(spec.weights).endswith(".gguf"):
            from .gguf_file import GGUFFile

            return GGUFFile(Path(spec.weights)).config
        return config_from_hf(spec.weights)
    return get_preset(spec.preset_name() or DEFAULT_MODEL)
