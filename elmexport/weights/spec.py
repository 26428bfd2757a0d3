"""What the user asked for: which model, which weights. Import-light (no torch) so `info` stays instant."""

from __future__ import annotations

from dataclasses import dataclass

from ..models.config import ConfigError, check_positive_context, size_to_preset

DEFAULT_MODEL = "smollm2-135m-instruct"
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit value


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

    def __post_init__(self) -> None:
        """Refuse what would otherwise crash deep inside torch or be silently replaced by a default (context 0)."""
        if self.context is not None:
            check_positive_context(self.context)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed {self.seed}: must be a whole number in [0, {MAX_SEED}] (torch's seed range)")

    def preset_name(self) -> str | None:
        if self.size and self.model:
            raise ConfigError("give either --size or --model, not both")
        if self.size:
            return size_to_preset(self.size)
        return self.model

    def to_dict(self) -> dict:
        return dict(self.__dict__)
