"""Checkpoint tensor names -> the module's parameter names, per family.

The module stores one layout for both families (fused qkv_proj and proj_1). A `LoadPlan` says, for every module
parameter, which checkpoint tensors make it (concatenated along rows) so loaders can stream one tensor at a time.
"""

from __future__ import annotations

from ..models.config import ModelConfig

# A plan entry: module parameter name -> checkpoint tensor names whose rows are concatenated in this order.
LoadPlan = dict[str, list[str]]


def openelm_plan(cfg: ModelConfig, prefix: str = "transformer.") -> LoadPlan:
    """HF OpenELM names (`transformer.*`); corenet and MLX checkpoints use the same names without the prefix."""
    plan: LoadPlan = {"token_embeddings.weight": [f"{prefix}token_embeddings.weight"], "norm.weight": [f"{prefix}norm.weight"]}
    for i in range(cfg.num_layers):
        src, dst = f"{prefix}layers.{i}.", f"layers.{i}."
        for name in ("attn_norm.weight", "attn.qkv_proj.weight", "attn.out_proj.weight", "ffn_norm.weight",
                     "ffn.proj_1.weight", "ffn.proj_2.weight"):
            plan[dst + name] = [src + name]
        if cfg.qk_norm:
            plan[dst + "attn.q_norm.weight"] = [src + "attn.q_norm.weight"]
            plan[dst + "attn.k_norm.weight"] = [src + "attn.k_norm.weight"]
    if not cfg.tie_word_embeddings:
        plan["lm_head.weight"] = [f"{prefix}lm_head.weight"]
    return plan


def llama_plan(cfg: ModelConfig) -> LoadPlan:
    """HF Llama names (`model.*`, `lm_head.weight`); q/k/v and gate/up are fused into the module's layout."""
    plan: LoadPlan = {"token_embeddings.weight": ["model.embed_tokens.weight"], "norm.weight": ["model.norm.weight"]}
    for i in range(cfg.num_layers):
        src, dst = f"model.layers.{i}.", f"layers.{i}."
        plan[dst + "attn_norm.weight"] = [src + "input_layernorm.weight"]
        plan[dst + "attn.qkv_proj.weight"] = [src + f"self_attn.{p}_proj.weight" for p in "qkv"]
        plan[dst + "attn.out_proj.weight"] = [src + "self_attn.o_proj.weight"]
        plan[dst + "ffn_norm.weight"] = [src + "post_attention_layernorm.weight"]
        plan[dst + "ffn.proj_1.weight"] = [src + "mlp.gate_proj.weight", src + "mlp.up_proj.weight"]
        plan[dst + "ffn.proj_2.weight"] = [src + "mlp.down_proj.weight"]
    if not cfg.tie_word_embeddings:
        plan["lm_head.weight"] = ["lm_head.weight"]
    return plan


def plan_for(cfg: ModelConfig, checkpoint_names: set[str]) -> LoadPlan:
    if cfg.family == "llama":
        return llama_plan(cfg)
    prefix = "transformer." if any(n.startswith("transformer.") for n in checkpoint_names) else ""
    return openelm_plan(cfg, prefix)
