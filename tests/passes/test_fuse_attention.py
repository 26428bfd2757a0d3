"""fuse_attention turns each layer's attention block into one elm.attention with the same numbers, and leaves
anything that is not exactly the model's block alone (reporting it)."""

import pytest
import torch

from elmexport.frontend import capture
from elmexport.ir.ops import ELM_OPS, attention_kernel
from elmexport.models.config import get_preset, llama_from_hf_dict
from elmexport.models.transformer import Transformer, init_random_weights
from elmexport.passes.cleanup import Cleanup
from elmexport.passes.fuse_attention import FuseAttention
from elmexport.passes.fuse_rmsnorm import FuseRMSNorm
from elmexport.passes.manager import PassManager

from ..checkpoints import TINY_LLAMA_CONFIG

aten = torch.ops.aten


def _config(family):
    return get_preset("openelm-tiny") if family == "openelm" else llama_from_hf_dict(TINY_LLAMA_CONFIG, "tiny-llama")


def _fused_ir(family, seed=3):
    cfg = _config(family)
    ir = capture(init_random_weights(Transformer(cfg, 32), seed=seed))
    reports = PassManager([Cleanup(), FuseRMSNorm(), FuseAttention()]).run(ir)
    return cfg, ir, reports[-1]


@pytest.mark.parametrize("family", ["openelm", "llama"])
def test_every_layer_fused_without_changing_the_numbers(family):
    cfg, ir, report = _fused_ir(family)
    assert report.changed == {"attention_fused": cfg.num_layers, "attention_unmatched": 0}
    counts = ir.op_counts()
    assert counts["elm.attention.default"] == cfg.num_layers
    # nothing of the block is left around the op: no SDPA, cache write, RoPE concat or head split
    for gone in ("aten.scaled_dot_product_attention.default", "aten.index_put_.default", "aten.cat.default",
                 "aten.split_with_sizes.default", "aten.neg.default"):
        assert counts[gone] == 0, gone
    # OpenELM's q/k norms went into the op (2 per layer), the others stay
    assert counts["elm.rms_norm.default"] == 2 * cfg.num_layers + 1
    assert report.max_abs_err == 0.0 and report.top1_agreement == 1.0
    per_layer_kv = [n.args[9] for n in ir.gm.graph.nodes if n.target is ELM_OPS["attention"]]
    assert per_layer_kv == cfg.num_kv_heads  # OpenELM's per-layer KV head counts are the op's own arguments


@pytest.mark.parametrize("family", ["openelm", "llama"])
def test_decode_after_prefill_writes_the_caches_in_place(family):
    """The op mutates its cache arguments: prefill then single-token decode through the fused IR gives the
    eager model's logits, and the IR's caches hold the same rows as the eager model's."""
    cfg = _config(family)
    model = init_random_weights(Transformer(cfg, 32), seed=4).eval()
    ir = capture(model)
    PassManager([Cleanup(), FuseRMSNorm(), FuseAttention()]).run(ir)
    ids = [(5 * i + 1) % cfg.vocab_size for i in range(9)]
    model.reset_cache()
    ir.reset_cache()
    with torch.no_grad():
        eager = [model(torch.tensor([ids[:6]]), torch.arange(6))[0]]
        eager += [model(torch.tensor([[t]]), torch.tensor([6 + i]))[0] for i, t in enumerate(ids[6:])]
    fused = [ir.logits(ids[:6])] + [ir.logits([t], 6 + i) for i, t in enumerate(ids[6:])]
    assert (torch.cat(eager) - torch.cat(fused)).abs().max().item() < 1e-4
    eager_k = model.layers[1].attn.k_cache
    ir_k = ir.gm.get_buffer("layers.1.attn.k_cache")
    assert (eager_k[:, :, :9] - ir_k[:, :, :9]).abs().max().item() < 1e-4 and not ir_k[:, :, 9:].any()


def test_reference_kernel_is_the_grouped_attention_definition():
    """attention_kernel against a by-hand computation: repeat K/V per group, softmax over slots <= position."""
    g = torch.Generator().manual_seed(0)
    n_q, n_kv, hd, ctx = 4, 2, 8, 10
    qkv = torch.randn(1, 3, (n_q + 2 * n_kv) * hd, generator=g)
    kc, vc = torch.randn(1, n_kv, ctx, hd, generator=g), torch.randn(1, n_kv, ctx, hd, generator=g)
    pos = torch.tensor([4, 5, 6])
    cos, sin = torch.ones(3, hd), torch.zeros(3, hd)  # RoPE as the identity, so the check is about attention
    old_k, old_v = kc.clone(), vc.clone()
    out = attention_kernel(qkv, kc, vc, pos, cos, sin, None, None, n_q, n_kv, 0.0, hd ** -0.5)
    q, k, v = qkv.view(1, 3, n_q + 2 * n_kv, hd).transpose(1, 2).split([n_q, n_kv, n_kv], 1)
    keys, values = old_k.clone(), old_v.clone()
    keys[:, :, 4:7], values[:, :, 4:7] = k, v
    assert torch.equal(kc, keys) and torch.equal(vc, values)
    expected = torch.empty(1, n_q, 3, hd)
    for h in range(n_q):
        kv = h // (n_q // n_kv)
        for t, p in enumerate(pos.tolist()):
            w = torch.softmax(q[0, h, t] @ keys[0, kv, :p + 1].T * hd ** -0.5, dim=-1)
            expected[0, h, t] = w @ values[0, kv, :p + 1]
    assert (out - expected.transpose(1, 2).reshape(1, 3, n_q * hd)).abs().max().item() < 1e-5


def test_attention_without_the_cache_mask_is_left_alone_and_reported():
    """A block whose mask is not `cache_positions <= input_pos` (here: no mask at all) must not be fused: the
    lowerings assume the causal cache mask."""
    cfg = _config("llama")
    ir = capture(init_random_weights(Transformer(cfg, 32), seed=1))
    sdpas = [n for n in ir.gm.graph.nodes if n.target is aten.scaled_dot_product_attention.default]
    sdpas[0].args = sdpas[0].args[:3]  # drop layer 0's mask
    ir.gm.recompile()
    fuse = FuseAttention()
    PassManager([Cleanup(), FuseRMSNorm(), fuse]).run(ir)
    assert ir.op_counts()["elm.attention.default"] == cfg.num_layers - 1
    assert len(fuse.extra["unmatched"]) == 1 and "causal cache mask" in fuse.extra["unmatched"][0]
