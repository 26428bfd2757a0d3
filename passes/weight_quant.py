"""Shared machinery of the weight-quantization passes: find each weight's linear/embedding uses, encode it once.

Before (tied embedding and head share one parameter):
    %W    = get_attr[token_embeddings.weight]
    %emb  = aten.embedding.default(%W, %ids)
    %Wq   = get_attr[layers.0.attn.qkv_proj.weight]
    %y    = aten.linear.default(%x, %Wq)
    %log  = aten.linear.default(%h, %W)
After (codes registered next to the old weight, which is deleted):
    %emb  = elm.<kind>_embedding(%codes..., %ids, ...)
    %y    = elm.<kind>_linear(%x, %Wq_codes..., ...)
    %log  = elm.<kind>_linear(%h, %codes..., ...)   # same %codes as the embedding: quantized once, shared

A pass subclass says which modes it owns (`kind`), how to encode a weight and which elm ops to emit. Weights whose
shape does not fit the block/group size raise an error naming the layer: nothing is silently left unquantized.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict

import torch

from ..errors import ElmExportError
from ..ir.graph_edit import add_constant, owner_and_attr
from ..ir.program import IRProgram
from .quant_config import QuantConfig, WeightQuant, unmatched_override

aten = torch.ops.aten


def weight_uses(gm: torch.fx.GraphModule) -> dict[str, dict[str, list]]:
    """{weight attr target: {"linear": [nodes], "embedding": [nodes]}} for 2-D weights fed to linear/embedding."""
    uses: dict[str, dict[str, list]] = defaultdict(lambda: {"linear": [], "embedding": []})
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target is aten.linear.default and node.args[1].op == "get_attr" and \
                (len(node.args) < 3 or node.args[2] is None):
            uses[node.args[1].target]["linear"].append(node)
        elif node.target is aten.embedding.default and node.args[0].op == "get_attr":
            uses[node.args[0].target]["embedding"].append(node)
    return uses


def quantizable_modules(gm: torch.fx.GraphModule, uses: dict) -> set[str]:
    """Config names of every weight a quant pass could touch: float ones still used by linear/embedding, and
    those an earlier quant pass already encoded (their buffers are named `<module>.weight_<tensor>`)."""
    names = {module_name(target, kinds) for target, kinds in uses.items()}
    encoded = (n.target for n in gm.graph.nodes if n.op == "get_attr" and ".weight_" in n.target)
    return names | {t.rsplit(".weight_", 1)[0] for t in encoded}


def module_name(weight_target: str, kinds: dict) -> str:
    """Config name of a weight: its module path, with the tied table called token_embeddings."""
    name = weight_target.removesuffix(".weight")
    return "token_embeddings" if kinds["embedding"] else name


class WeightQuantPass(ABC):
    name = "weight_quant"
    kind = ""  # "linear" | "palettize": which modes of the config this pass owns
    linear_op = None
    embedding_op = None
    tensor_names: tuple[str, ...] = ()  # the encoded tensors, in the elm ops' argument order
    codes_name = ""  # which of them holds the packed integer codes

    def __init__(self, config: QuantConfig):
        self.config = config
        self.extra: dict = {}

    @abstractmethod
    def encode(self, w: torch.Tensor, q: WeightQuant, where: str) -> tuple[list[torch.Tensor], list]:
        """-> (tensors in `tensor_names` order, trailing int args for the elm ops)."""

    def run(self, ir: IRProgram) -> dict[str, int]:
        gm = ir.gm
        counts = {"linear": 0, "embedding": 0, "tied_shared": 0, "weights": 0, "bytes_before": 0, "bytes_after": 0}
        layers = {}
        uses = weight_uses(gm)
        unmatched_override(self.config, quantizable_modules(gm, uses), ir.cfg.name)
        for target, kinds in uses.items():
            q = self.config.for_module(module_name(target, kinds))
            if q.kind != self.kind:
                continue
            weight = gm.get_parameter(target) if target in dict(gm.named_parameters()) else gm.get_buffer(target)
            tensors, int_args = self.encode(weight.detach(), q, target)
            getters = [add_constant(gm, f"{target}_{tname}", t) for tname, t in zip(self.tensor_names, tensors)]
            for node in kinds["linear"]:
                self._swap(gm, node, self.linear_op, (node.args[0], *getters, *int_args))
                counts["linear"] += 1
            for node in kinds["embedding"]:
                self._swap(gm, node, self.embedding_op, (*getters, node.args[1], *int_args))
                counts["embedding"] += 1
            if kinds["linear"] and kinds["embedding"]:
                counts["tied_shared"] += 1
            counts["weights"] += 1
            counts["bytes_before"] += weight.numel() * weight.element_size()
            counts["bytes_after"] += self.packed_bytes(tensors, q)
            layers[module_name(target, kinds)] = q.mode
            # drop the float weight: its get_attr node is now unused
            for n in list(gm.graph.nodes):
                if n.op == "get_attr" and n.target == target and not n.users:
                    gm.graph.erase_node(n)
            delattr(*owner_and_attr(gm, target))
        self.extra = {"modes": layers}
        return counts

    def packed_bytes(self, tensors, q: WeightQuant) -> int:
        """Bytes on a device that packs codes at their bit width (what the targets store)."""
        total = 0
        for name, t in zip(self.tensor_names, tensors):
            total += t.numel() * q.bits // 8 if name == self.codes_name else t.numel() * t.element_size()
        return total

    @staticmethod
    def _swap(gm, node, op, args):
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(op, tuple(args))
        new.meta["val"] = node.meta.get("val")
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)


def check_divisible(size: int, by: int, what: str, where: str, key: str) -> None:
    """Refuse a block/group size that does not tile the weight, naming sizes that would."""
    if by and size % by:
        fits = [b for b in (16, 32, 64, 128, 256) if size % b == 0]
        hint = f" (e.g. {' or '.join(map(str, fits[:2]))})" if fits else ""
        fallback = " and no fallback_block_size fits" if key == "block_size" else ""
        raise ElmExportError(f"{where}: {what} {size} is not a multiple of {by} ({key}){fallback}; set {key} in "
                             f"the quant config to a divisor of {size}{hint}")
