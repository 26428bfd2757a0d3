"""KV-cached prefill + decode must equal one full forward over the same tokens."""

import pytest
import torch

from elmexport.models.config import get_preset, llama_from_hf_dict
from elmexport.models.transformer import Transformer, init_random_weights

from .checkpoints import TINY_LLAMA_CONFIG


def _configs():
    return [get_preset("openelm-tiny"), llama_from_hf_dict(TINY_LLAMA_CONFIG, "tiny-llama")]


@pytest.mark.parametrize("cfg", _configs(), ids=lambda c: c.name)
@pytest.mark.parametrize("prefill_len", [1, 5, 12])
def test_prefill_then_decode_equals_full_forward(cfg, prefill_len):
    model = init_random_weights(Transformer(cfg, context=48), seed=3).eval()
    total = 20
    ids = torch.randint(0, cfg.vocab_size, (1, total), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids, torch.arange(total))
        model.reset_cache()
        steps = [model(ids[:, :prefill_len], torch.arange(prefill_len))]
        for t in range(prefill_len, total):
            steps.append(model(ids[:, t:t + 1], torch.tensor([t])))
    incremental = torch.cat(steps, dim=1)
    assert (incremental - full).abs().max().item() <= 1e-5


def test_chunked_prefill_and_cache_contents():
    cfg = get_preset("openelm-tiny")
    model = init_random_weights(Transformer(cfg, context=32), seed=4).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids, torch.arange(16))
        caches = {k: v.clone() for k, v in model.cache_buffers().items()}
        model.reset_cache()
        a = model(ids[:, :8], torch.arange(8))
        b = model(ids[:, 8:], torch.arange(8, 16))
    assert (torch.cat([a, b], 1) - full).abs().max().item() <= 1e-5
    for name, buf in model.cache_buffers().items():
        assert torch.allclose(buf, caches[name], atol=1e-5), name
        assert buf[:, :, 16:].abs().max() == 0  # nothing written past the last position


def test_cache_shapes_follow_per_layer_kv_heads():
    cfg = get_preset("openelm-tiny")
    with torch.device("meta"):
        model = Transformer(cfg, context=128)
    shapes = [tuple(layer.attn.k_cache.shape) for layer in model.layers]
    assert shapes == [(1, kv, 128, cfg.head_dim) for kv in cfg.num_kv_heads]
    assert len(set(cfg.num_kv_heads)) > 1
