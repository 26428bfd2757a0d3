"""Fill a meta-device Transformer from a tensor source, one tensor at a time.

Why streaming: a 3B fp32 checkpoint is 12 GB; building the module on the meta device and assigning each tensor
as it is read (cast once to the target dtype) keeps peak memory near one copy of the weights.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import WeightsError
from ..models.config import ModelConfig
from ..models.transformer import Transformer
from .naming import plan_for

# Names that appear in some checkpoints but carry no weights we need (e.g. HF's cached RoPE frequencies).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def build_empty(cfg: ModelConfig, context: int | None) -> Transformer:
    with torch.device("meta"):
        return Transformer(cfg, context)


def assemble(
    cfg: ModelConfig,
    names: Iterable[str],
    read: Callable[[str], torch.Tensor],
    *,
    origin: str,
    context: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Transformer:
    """Build the module from `read(name)` for every tensor the plan needs; errors name the tensor and the fix."""
    available = set(names)
    plan = plan_for(cfg, available)
    model = build_empty(cfg, context)
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if set(plan) != set(expected):  # a programming error, not a user one
        raise AssertionError(f"load plan and module disagree: {sorted(set(plan) ^ set(expected))[:5]}")
    missing = [src for sources in plan.values() for src in sources if src not in available]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WeightsError(
            f"{origin}: missing tensor {missing[0]!r}{more} required by {cfg.name} "
            f"({cfg.family}, {cfg.num_layers} layers, d={cfg.model_dim}); is this the right checkpoint for the model?"
        )
    state = {}
    for dst, sources in plan.items():
        parts = [_checked(read(src), src, origin).to(dtype) for src in sources]
        for src, part in zip(sources, parts):  # catch a wrong width before torch.cat turns it into a cryptic error
            if part.dim() != len(expected[dst]) or part.shape[1:] != expected[dst][1:]:
                raise _shape_error(origin, src, part, dst, expected[dst], cfg)
        tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        if tuple(tensor.shape) != expected[dst]:
            raise _shape_error(origin, " + ".join(sources), tensor, dst, expected[dst], cfg)
        state[dst] = tensor
    unused = sorted(n for n in available - {s for v in plan.values() for s in v} if not n.endswith(_IGNORED_SUFFIXES))
    if unused:
        raise WeightsError(
            f"{origin}: tensor {unused[0]!r} is not part of {cfg.name} ({len(unused)} unexpected tensors); "
            f"the checkpoint has more layers or a different architecture than the config"
        )
    model.load_state_dict(state, assign=True, strict=True)
    model.materialize_buffers(dtype)
    return model.eval()


def _checked(tensor: torch.Tensor, name: str, origin: str) -> torch.Tensor:
    """A checkpoint tensor that is floating point and finite everywhere.

    Why here: a NaN or inf weight exports without complaint and every package built from it answers garbage;
    this is the one place each tensor passes through once, so the check costs one read of each tensor.
    An integer tensor where a weight belongs would be cast silently by `.to(dtype)`.
    """
    if not tensor.is_floating_point():
        raise WeightsError(f"{origin}: tensor {name!r} has dtype {str(tensor.dtype).removeprefix('torch.')}, "
                           f"not a floating-point weight; the checkpoint is not a model of this architecture")
    if not torch.isfinite(tensor).all():
        bad = ~torch.isfinite(tensor)
        nan = int(torch.isnan(tensor).sum())
        first = [int(i) for i in bad.nonzero()[0]]
        raise WeightsError(f"{origin}: tensor {name!r} has {int(bad.sum()):,} non-finite values ({nan:,} NaN, "
                           f"first at index {first}); the checkpoint is damaged: re-download or re-convert it")
    return tensor


def _shape_error(origin, src, tensor, dst, shape, cfg) -> WeightsError:
    return WeightsError(
        f"{origin}: tensor {src!r} has shape {list(tensor.shape)} but {cfg.name} expects {list(shape)} for {dst}; "
        f"the checkpoint does not match the model config (check --size/--model)"
    )
