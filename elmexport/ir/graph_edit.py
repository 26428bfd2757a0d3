"""Weights on a GraphModule: the few edits every pass and target makes, written once.

On an unlifted GraphModule a weight is an attribute of the submodule that owns it (`layers.3.attn.qkv_proj.weight`)
read by a `get_attr` node. Passes add weights (quantized codes, packed tables, constant matrices), replace them
(a KV cache in another layout) and drop the ones nothing reads any more (so an export does not carry them).
"""

from __future__ import annotations

import torch


def owner_and_attr(gm: torch.nn.Module, target: str) -> tuple[torch.nn.Module, str]:
    """('layers.0.attn', 'k_cache') -> (the submodule, 'k_cache'); a top-level name is owned by gm itself."""
    owner_path, _, attr = target.rpartition(".")
    return (gm.get_submodule(owner_path) if owner_path else gm), attr


def constant_tensor(gm: torch.nn.Module, target: str) -> torch.Tensor:
    """The tensor behind a get_attr target, parameter or buffer."""
    try:
        return gm.get_parameter(target).detach()
    except AttributeError:
        return gm.get_buffer(target)


def add_constant(gm: torch.fx.GraphModule, target: str, tensor: torch.Tensor) -> torch.fx.Node:
    """Register `tensor` as a buffer at `target` and return a get_attr node for it at the top of the graph (so
    it is defined before every user)."""
    owner, attr = owner_and_attr(gm, target)
    owner.register_buffer(attr, tensor)
    with gm.graph.inserting_before(next(iter(gm.graph.nodes))):
        return gm.graph.get_attr(target)


def replace_buffer(gm: torch.nn.Module, target: str, tensor: torch.Tensor) -> None:
    """Swap the buffer at `target` for `tensor` (another shape or layout); get_attr nodes keep reading `target`."""
    owner, attr = owner_and_attr(gm, target)
    delattr(owner, attr)
    owner.register_buffer(attr, tensor)


def drop_unused_attributes(gm: torch.fx.GraphModule) -> list[str]:
    """Delete every parameter and buffer no get_attr node reads (weights the rewrites replaced); returns them."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    dropped = [name for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()) if name not in used]
    for name in dropped:
        owner, attr = owner_and_attr(gm, name)
        delattr(owner, attr)
    return dropped


def attribute(module: torch.nn.Module, target: str):
    """getattr along a dotted path (any attribute, not only weights)."""
    for part in target.split("."):
        module = getattr(module, part)
    return module
