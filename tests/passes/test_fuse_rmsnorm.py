"""fuse_rmsnorm finds every norm pattern (reference float-cast chain, plain chains, weighted/unweighted, nn.RMSNorm)."""

import pytest
import torch
from torch import nn

from elmexport.frontend import capture
from elmexport.ir.program import IRProgram
from elmexport.models.config import get_preset, llama_from_hf_dict
from elmexport.models.transformer import Transformer, init_random_weights
from elmexport.passes.cleanup import Cleanup
from elmexport.passes.fuse_rmsnorm import FuseRMSNorm
from elmexport.passes.manager import PassManager

from ..checkpoints import TINY_LLAMA_CONFIG


def _count(ir, target="elm.rms_norm.default"):
    return ir.op_counts()[target]


@pytest.mark.parametrize("with_cleanup", [False, True])
def test_openelm_tiny_all_norms(with_cleanup):
    cfg = get_preset("openelm-tiny")
    ir = capture(init_random_weights(Transformer(cfg, 32), seed=1))
    passes = ([Cleanup()] if with_cleanup else []) + [FuseRMSNorm()]
    reports = PassManager(passes).run(ir)
    assert reports[-1].changed["rms_norm_fused"] == cfg.num_norms == 17
    assert _count(ir) == 17 and ir.op_counts()["aten.rsqrt.default"] == 0
    assert reports[-1].max_abs_err < 1e-4 and reports[-1].top1_agreement == 1.0


def test_llama_has_2l_plus_1():
    cfg = llama_from_hf_dict(TINY_LLAMA_CONFIG, "tiny-llama")
    ir = capture(init_random_weights(Transformer(cfg, 32), seed=1))
    report = PassManager([Cleanup(), FuseRMSNorm()]).run(ir)[-1]
    assert report.changed["rms_norm_fused"] == 2 * 3 + 1


def test_openelm_270m_finds_65():
    cfg = get_preset("openelm-270m")
    ir = capture(init_random_weights(Transformer(cfg, 64), seed=0))
    report = PassManager([Cleanup(), FuseRMSNorm()], check_len=4).run(ir)[-1]
    assert report.changed["rms_norm_fused"] == 65 and report.max_abs_err < 1e-3


class Chains(nn.Module):
    """Five RMSNorm spellings: reference cast chain (on fp16 input), x*x, pow, unweighted, and nn.RMSNorm."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.rand(16) + 0.5)
        self.w2 = nn.Parameter(torch.rand(16) + 0.5)
        self.norm = nn.RMSNorm(16, eps=1e-5)

    def forward(self, x, pos):
        h = x.half()
        hf = h.float()
        a = (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + 1e-6)).type_as(h) * self.w1.half()
        b = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * self.w2
        c = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)
        d = self.norm(x)
        return a.float() + b + c + d


def test_all_spellings_fused():
    m = Chains()
    x = torch.randn(1, 3, 16)
    ep = torch.export.export(m, (x, torch.arange(3)))
    ir = IRProgram(gm=ep.module(), cfg=get_preset("openelm-tiny"), context=8)
    expected = m(x, torch.arange(3))
    changed = FuseRMSNorm().run(ir)
    ir.gm.graph.eliminate_dead_code()
    ir.gm.recompile()
    assert changed == {"rms_norm_fused": 4, "weighted": 3, "unweighted": 1}
    assert ir.op_counts()["aten.rsqrt.default"] == 0
    torch.testing.assert_close(ir.gm(x, torch.arange(3)), expected, rtol=2e-3, atol=2e-3)


def test_non_norm_rsqrt_is_left_alone():
    class NotANorm(nn.Module):
        def forward(self, x, pos):
            return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + 1e-6)  # sum, not mean

    ep = torch.export.export(NotANorm(), (torch.randn(1, 2, 8), torch.arange(2)))
    ir = IRProgram(gm=ep.module(), cfg=get_preset("openelm-tiny"), context=8)
    assert FuseRMSNorm().run(ir)["rms_norm_fused"] == 0
