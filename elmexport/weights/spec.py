"""What the user asked for: which model, which weights. Import-light (no torch) so `info` stays instant."""

from __future__ import annotations

from dataclasses import dataclass

from ..models.config import ConfigError, size_to_preset

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass
class ModelSpec:
    """What the user asked for on the command line."""

    model: str | None = None  # preset name
    size: str | None = None  # --size shorthand for an OpenELM base preset
    weights: str | None = None
    random_weights: bool = False
    seed: int = 0
    tokenizer: str | None = None
    context: int | None = None
    # "required": fail without one (generate); "optional": random-weight exports may go without; "skip": don't look
    tokenizer_mode: str = "required"

    def preset_name(self) -> str | None:
        if self.size and self.model:
            raise ConfigError("give either --size or --model, not both")
        if self.size:
            return size_to_preset(self.size)
        return self.model

    def to_dict(self) -> dict:
        return dict(self.__dict__)
