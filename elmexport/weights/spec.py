"""What the user asked for: which model, which weights. Import-light (no torch) so `info` stays instant."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..models.config import ConfigError, check_positive_context, size_to_preset

DEFAULT_MODEL = "smollm2-135m-instruct"
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit value


@dataclass
class ModelSpec:
    """What the user asked for on the command line."""

    model: str | None = None  # a preset name, a local checkpoint (HF folder or .gguf) or a hub id ("org/name")
    size: str | None = None  # --size shorthand for an OpenELM base preset
    weights: str | None = None
    random_weights: bool = False
    seed: int = 0
    tokenizer: str | None = None
    context: int | None = None
    # "required": fail without one (generate); "optional": random-weight exports may go without; "skip": don't look
    tokenizer_mode: str = "required"
    hub_id: str | None = None  # set from `model` when it names a hub repository that is not a preset's

    def __post_init__(self) -> None:
        """Refuse what would otherwise crash deep inside torch or be silently replaced by a default (context 0)."""
        self._resolve_model_reference()
        if self.context is not None:
            check_positive_context(self.context)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed {self.seed}: must be a whole number in [0, {MAX_SEED}] (torch's seed range)")

    def _resolve_model_reference(self) -> None:
        """`--model` takes what the ecosystem passes around: a preset, a local checkpoint, or a hub id.

        A path that exists is a checkpoint (the same as --weights, with the checkpoint's own config); a hub id of a
        preset's checkpoint is that preset (its chat template, system prompt and offline source come with it); any
        other `org/name` is fetched from the HF cache or the hub with its own config.json.
        """
        ref = self.model
        if not ref or self.hub_id:
            return
        from ..models.config import get_preset, preset_names

        canonical = ref.lower().replace(".", "_")  # openelm-1.1b as people write it is the preset openelm-1_1b
        if canonical in preset_names():
            self.model = canonical
            return
        looks_like_path = ref.endswith(".gguf") or ref.startswith((".", "/", "~")) or os.path.exists(ref)
        if looks_like_path:
            path = os.path.expanduser(ref)
            if not os.path.exists(path):
                raise ConfigError(f"--model {ref}: no such file or directory (a checkpoint folder with config.json, "
                                  f"a .gguf file, a preset from `elmexport info --list`, or a hub id org/name)")
            if self.weights:
                raise ConfigError(f"--model {ref} is already a checkpoint; drop --weights {self.weights}")
            self.model, self.weights = None, path
            return
        if ref.count("/") == 1 and all(ref.split("/")):
            repos = {n: get_preset(n).hf_repo for n in preset_names()}
            by_repo = {repo.lower(): n for n, repo in repos.items() if repo}
            if ref.lower() in by_repo:
                self.model = by_repo[ref.lower()]
            else:
                self.model, self.hub_id = None, ref
            return
        raise ConfigError(f"--model {ref}: unknown model; give a preset ({', '.join(preset_names())}), a local "
                          f"checkpoint (HF folder or .gguf) or a hub id org/name")

    def preset_name(self) -> str | None:
        if self.size and self.model:
            raise ConfigError("give either --size or --model, not both")
        if self.size:
            return size_to_preset(self.size)
        return self.model

    def to_dict(self) -> dict:
        return dict(self.__dict__)
