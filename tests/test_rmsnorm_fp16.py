"""The fused elm::rms_norm: reference eps semantics in fp32, and no fp16 overflow for |x| up to 60000."""

import pytest
import torch

from elmexport.ir import ops  # noqa: F401  (registers elm::)


def reference(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)) * w.float()


def outlier_activations(rows=64, dim=1280, peak=60000.0, seed=0):
    """OpenELM-like activations: mostly O(1) with a few huge channels, as seen in real checkpoints."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, dim, generator=g)
    channels = torch.randint(0, dim, (rows, 3), generator=g)
    x.scatter_(1, channels, peak * (torch.rand(rows, 3, generator=g) * 0.5 + 0.5))
    x[0, 0] = -peak  # the extreme itself, with a negative sign
    return x


def test_naive_fp16_overflows():
    x = outlier_activations().half()
    naive = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)  # the unfused chain, all in fp16
    assert not torch.isfinite(x.pow(2)).all()  # squares above 65504 are inf
    assert (naive.abs() < 1e-3).all(dim=-1).any()  # whole rows collapse to zero


@pytest.mark.parametrize("peak", [300.0, 6000.0, 60000.0])
def test_fused_fp16_within_1e_2_of_fp32(peak):
    x = outlier_activations(peak=peak)
    w = 1 + 0.1 * torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(1))
    ref = reference(x, w, 1e-6)
    out = torch.ops.elm.rms_norm(x.half(), w.half(), 1e-6)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    rel = ((out.float() - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()
    assert rel <= 1e-2, rel
    # the big channels themselves come out right too
    big = x.abs() > peak / 4
    assert torch.allclose(out.float()[big], ref[big], rtol=1e-2)


def test_eps_semantics_match_reference_in_fp32():
    g = torch.Generator().manual_seed(2)
    for scale in (1e-4, 1e-3, 1.0, 100.0):  # small inputs are where eps matters
        x = scale * torch.randn(8, 64, generator=g)
        w = torch.randn(64, generator=g)
        for eps in (1e-6, 1e-5):
            out = torch.ops.elm.rms_norm(x, w, eps)
            assert torch.allclose(out, reference(x, w, eps), rtol=1e-5, atol=1e-6), (scale, eps)


def test_unweighted_and_zero_rows():
    x = torch.zeros(2, 16)
    x[1] = torch.arange(16.0)
    out = torch.ops.elm.rms_norm(x, None, 1e-6)
    assert torch.equal(out[0], torch.zeros(16))
    assert torch.allclose(out[1], reference(x[1:], torch.ones(16), 1e-6)[0], rtol=1e-5)
