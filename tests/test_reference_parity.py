"""The export-first model against the independent reference implementation (tests/reference_impl.py)."""

import pytest
import torch

from elmexport.models.config import get_preset, llama_from_hf_dict
from elmexport.weights.assemble import assemble

from .checkpoints import TINY_LLAMA_CONFIG, llama_hf_tensors, openelm_hf_tensors
from .reference_impl import llama_forward, openelm_forward


def _model_from(cfg, tensors, context=64):
    return assemble(cfg, tensors.keys(), tensors.__getitem__, origin="test", context=context)


@pytest.mark.parametrize("preset,seq", [("openelm-tiny", 24), ("openelm-270m", 10)])
def test_openelm_matches_reference(preset, seq):
    cfg = get_preset(preset)
    w = openelm_hf_tensors(cfg, seed=1)
    model = _model_from(cfg, w)
    ids = torch.randint(0, cfg.vocab_size, (1, seq), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(ids, torch.arange(seq))
        ref = openelm_forward(w, cfg.num_layers, cfg.num_query_heads, cfg.num_kv_heads, cfg.head_dim, ids)
    assert ours.shape == ref.shape == (1, seq, cfg.vocab_size)
    err = (ours - ref).abs().max().item()
    assert err <= 1e-4, f"max abs logit error {err}"
    assert ref.abs().max() > 1e-2  # the comparison is not between two near-zero tensors


def test_llama_matches_reference():
    raw = TINY_LLAMA_CONFIG
    cfg = llama_from_hf_dict(raw, "tiny-llama")
    w = llama_hf_tensors(raw, seed=2)
    model = _model_from(cfg, w)
    ids = torch.randint(0, raw["vocab_size"], (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(ids, torch.arange(20))
        ref = llama_forward(w, raw["num_hidden_layers"], raw["num_attention_heads"], raw["num_key_value_heads"],
                            raw["hidden_size"] // raw["num_attention_heads"], ids, raw["rms_norm_eps"], raw["rope_theta"])
    assert (ours - ref).abs().max().item() <= 1e-4


def test_reference_is_sensitive_to_rope_theta():
    """Guard against a comparison that cannot fail: a wrong theta must be caught by the same check."""
    cfg = get_preset("openelm-tiny")
    w = openelm_hf_tensors(cfg, seed=1)
    model = _model_from(cfg, w)
    ids = torch.arange(3, 19).unsqueeze(0)
    with torch.no_grad():
        ours = model(ids, torch.arange(16))
        wrong = openelm_forward(w, cfg.num_layers, cfg.num_query_heads, cfg.num_kv_heads, cfg.head_dim, ids, theta=5000.0)
    assert (ours - wrong).abs().max().item() > 1e-3
