"""The eager PyTorch runner: the fp32 reference stage of every validation."""

from __future__ import annotations

import numpy as np
import torch

from ..models.transformer import Transformer


class EagerRunner:
    def __init__(self, model: Transformer, name: str = "eager"):
        self.model = model
        self.name = name
        self.context = model.context

    def reset(self) -> None:
        self.model.reset_cache()

    @torch.inference_mode()
    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        x = torch.tensor([ids], dtype=torch.long)
        pos = torch.arange(start_pos, start_pos + len(ids), dtype=torch.long)
        return self.model(x, pos)[0].float().numpy()
