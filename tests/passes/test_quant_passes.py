"""Quantization passes: exact dequantized weights, bit ranges, shared tied table, configs and overrides."""

import json

import pytest
import torch

from elmexport.errors import ElmExportError
from elmexport.frontend import capture
from elmexport.ir.ops import dequantize_blockwise, dequantize_palettized
from elmexport.models.config import openelm_config
from elmexport.models.transformer import Transformer, init_random_weights
from elmexport.passes.manager import PassManager
from elmexport.passes.quant_config import load_quant_config
from elmexport.passes.registry import build_passes


def _compiled(quant, seed=0):
    """openelm-tiny's layer-wise-scaled shapes with a 512-token vocabulary, so k-means tests stay fast."""
    cfg = openelm_config("openelm-tiny-v512", 4, 256, 32, vocab_size=512)
    model = init_random_weights(Transformer(cfg, 32), seed=seed)
    originals = {k: v.clone() for k, v in model.state_dict().items()}
    ir = capture(model)
    reports = PassManager(build_passes(None, load_quant_config(quant))).run(ir)
    return ir, reports, originals


def _elm_nodes(ir, name):
    return [n for n in ir.gm.graph.nodes if n.op == "call_function" and str(n.target) == f"elm.{name}.default"]


def test_int4_blockwise_codes_scales_and_error():
    ir, reports, originals = _compiled("int4")
    nodes = _elm_nodes(ir, "quantized_linear")
    assert len(nodes) == 4 * 4 + 1  # every linear including the tied head
    blocks_seen = set()
    for node in nodes:
        q = ir.gm.get_buffer(node.args[1].target)
        s = ir.gm.get_buffer(node.args[2].target)
        block, bits = node.args[3], node.args[4]
        name = node.args[1].target.removesuffix("_qweight")
        head = name not in originals or name == "token_embeddings.weight"  # the tied table
        # the preset: blocks of 64 in the layers (32 where 64 does not divide the width), 32 for the tied head
        assert block == (32 if head or q.shape[1] % 64 else 64) and bits == 4, (name, block)
        blocks_seen.add(block)
        assert q.dtype == torch.int8 and s.dtype == torch.float16
        assert q.min() >= -8 and q.max() <= 7 and s.shape == (q.shape[0], q.shape[1] // block)
        assert (q == -8).any(dim=1).all()  # every row's blocks use the full range: their extreme is the -8 code
        w = originals.get(name, originals["token_embeddings.weight"])
        deq = dequantize_blockwise(q, s, block)
        # independent bound: round-to-nearest error is at most half a step of each block's scale, except where
        # the top code (7) clamps a value of the opposite sign to the block's extreme: at most one step there (plus
        # the fp16 rounding of the scale, 8 * 2^-11 of a step)
        step = s.float().abs().repeat_interleave(block, dim=1)
        err = (deq - w).abs()
        assert (err <= step * (1 + 2 ** -7) + 1e-6).all() and (err[q < 7] <= step[q < 7] / 2 + 1e-6).all()
    assert blocks_seen == {32, 64}
    assert reports[-1].changed["tied_shared"] == 1


@pytest.mark.parametrize("positive_scales", [False, True])
def test_int4_block_extremes_are_exact(positive_scales):
    """Each block's largest-magnitude weight is a code times the (fp16) scale: -8 * s, or +-7 * s with positive
    scales (ExecuTorch's grid, [-7, 7])."""
    from elmexport.ir.quant_math import quantize_blockwise

    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(3))
    q, s = quantize_blockwise(w, 4, 32, positive_scales=positive_scales)
    assert q.min() >= (-7 if positive_scales else -8) and q.max() <= 7
    assert bool((s > 0).all()) if positive_scales else bool((s < 0).any() and (s > 0).any())
    blocks, codes = w.reshape(48, 4, 32), q.reshape(48, 4, 32)
    at = blocks.abs().argmax(-1, keepdim=True)
    extreme_codes = codes.gather(-1, at).squeeze(-1)
    sign = torch.sign(blocks.gather(-1, at).squeeze(-1)).long()
    expected = sign * 7 if positive_scales else torch.full_like(sign, -8)
    assert torch.equal(extreme_codes.long(), expected)
    deq = dequantize_blockwise(q, s, 32).reshape(48, 4, 32).gather(-1, at).squeeze(-1)
    assert torch.allclose(deq, blocks.gather(-1, at).squeeze(-1), rtol=2 ** -10)  # only the scale's fp16 rounding


def test_positive_scales_survive_the_manifest_round_trip():
    from elmexport.passes.quant_config import QuantConfig
    from elmexport.targets.executorch import adapt_quant

    config = adapt_quant(load_quant_config("8da4w"))
    assert config.positive_scales and QuantConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert not QuantConfig.from_dict({k: v for k, v in load_quant_config("int4").to_dict().items()
                                      if k != "positive_scales"}).positive_scales  # manifests written before


def test_tied_table_quantized_once_and_shared():
    ir, _, _ = _compiled("int4")
    emb = _elm_nodes(ir, "quantized_embedding")
    head = [n for n in _elm_nodes(ir, "quantized_linear") if n.args[1] is emb[0].args[0]]
    assert len(emb) == 1 and len(head) == 1
    assert "token_embeddings.weight" not in dict(ir.gm.named_parameters())


def test_int8_per_channel():
    ir, _, originals = _compiled("int8")
    node = _elm_nodes(ir, "quantized_linear")[0]
    q, s = ir.gm.get_buffer(node.args[1].target), ir.gm.get_buffer(node.args[2].target)
    assert node.args[4] == 8 and s.shape == (q.shape[0], 1) and q.abs().max() <= 127


@pytest.mark.parametrize("nbits,group_size", [(2, 16), (3, 16), (4, 16), (6, 16), (8, 16), (4, 0)])
def test_palettize_bits_and_groups(tmp_path, nbits, group_size):
    cfg = tmp_path / "pal.json"
    cfg.write_text(json.dumps({"default": {"mode": f"palettize{nbits}", "group_size": group_size}}))
    ir, reports, originals = _compiled(str(cfg))
    nodes = _elm_nodes(ir, "palettized_linear")
    assert len(nodes) == 17 and len(_elm_nodes(ir, "palettized_embedding")) == 1
    for node in nodes[:4]:
        lut = ir.gm.get_buffer(node.args[1].target)
        idx = ir.gm.get_buffer(node.args[2].target)
        group = node.args[3]
        assert lut.shape[1] == 2 ** nbits and int(idx.max()) < 2 ** nbits and idx.dtype == torch.uint8
        assert lut.shape[0] == (idx.shape[0] // 16 if group_size else 1)
        name = node.args[1].target.removesuffix("_lut")
        w = originals.get(name, originals["token_embeddings.weight"])
        deq = dequantize_palettized(lut, idx, group)
        # each weight maps to its nearest centroid in its group's LUT
        rows = torch.arange(w.shape[0]) // group
        dist = (w.unsqueeze(-1) - lut.float()[rows].unsqueeze(1)).abs()
        assert torch.allclose((deq - w).abs(), dist.min(-1).values, atol=1e-6)


@pytest.mark.parametrize("nbits,bound", [(2, 0.36), (4, 0.115), (6, 0.035), (8, 0.015)])
def test_kmeans_error_near_lloyd_max(nbits, bound):
    """Per-tensor k-means on Gaussian weights lands near the Lloyd-Max optimum (2 bits: 0.34, 4 bits: 0.097
    relative error); from 4 bits the extremes are pinned to min/max, which costs ~10% on Gaussian data and keeps
    real checkpoints' outlier weights exact."""
    from elmexport.ir.quant_math import kmeans_palettize

    w = 0.02 * torch.randn(512, 256, generator=torch.Generator().manual_seed(0))
    lut, idx = kmeans_palettize(w, nbits, 512)
    rel = ((dequantize_palettized(lut, idx, 512) - w).norm() / w.norm()).item()
    assert rel <= bound, rel
    if nbits >= 4:
        assert lut.float()[0, 0] == w.min().half().float() and lut.float()[0, -1] == w.max().half().float()


def test_yaml_overrides_per_layer(tmp_path):
    cfg = tmp_path / "mixed.yaml"
    cfg.write_text("default: {mode: int4, block_size: 32}\nembedding: {mode: int8, block_size: 0}\n"
                   "overrides:\n  'layers.0.*': {mode: int8, block_size: 0}\n  'layers.3.*': {mode: none}\n"
                   "  'layers.2.ffn.*': {mode: palettize6}\n")
    ir, reports, _ = _compiled(str(cfg))
    modes = {}
    for r in reports:
        modes.update(r.extra.get("modes", {}))
    assert modes["layers.0.attn.qkv_proj"] == "int8" and modes["layers.1.ffn.proj_1"] == "int4"
    assert modes["layers.2.ffn.proj_2"] == "palettize6" and modes["token_embeddings"] == "int8"
    assert "layers.3.attn.qkv_proj" not in modes
    assert ir.op_counts()["aten.linear.default"] == 4  # layer 3's two attn + two ffn linears stay float


def test_bad_configs(tmp_path):
    with pytest.raises(ElmExportError, match="not a preset"):
        load_quant_config("int3")
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: {mode: int5}\n")
    with pytest.raises(ElmExportError, match="unknown mode 'int5'"):
        load_quant_config(str(bad))
    odd = tmp_path / "odd.yaml"
    odd.write_text("default: {mode: int4, block_size: 48}\n")
    with pytest.raises(ElmExportError, match=r"token_embeddings.weight: in_features 256 is not a multiple of 48"):
        _compiled(str(odd))
