"""The ONNX target: numbers against eager and IR, graph structure, onnxruntime-genai, CLI and errors.

Bounds asserted and why:
- fp32 package vs the eager model, prefill 8 + 8 decode steps: <= 1e-4 (measured ~2e-6; only kernel summation
  order differs: RMSNormalization vs the max-scaled elm kernel, GroupQueryAttention (RoPE inside) vs SDPA).
- int4 / int8 packages with --accuracy-level 0 vs the quantized IR: <= 1e-4 (measured ~2e-6): MatMulNBits gets
  the IR's codes and scales bit for bit, so only fp32 rounding differs.
- int4 package with the default --accuracy-level 4 vs the int4 IR: <= 5% of the IR's logit range and the same
  greedy token at >= 90% of positions and at every position whose IR top-2 gap exceeds twice the error. Level 4 quantizes the *activations* to int8 per 32-block inside
  MatMulNBits (onnxruntime's fast CPU path); measured ~1% of the range on openelm-tiny (0.08 abs on OpenELM-270M).
"""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from elmexport.validation.eager import EagerRunner
from elmexport.validation.runners import open_package_runner

from elmexport.errors import ElmExportError
from elmexport.manifest import integrity_problems, read_manifest

from ...checkpoints import TINY_LLAMA_CONFIG
from .onnx_helpers import compile_module, export_tiny, prefill_then_decode, token_stream

PREFILL, DECODE = 8, 8


@pytest.fixture(scope="module")
def fp32_package(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny-fp32"
    compiled, manifest = export_tiny(out, "none")
    return out, compiled, manifest


@pytest.fixture(scope="module")
def int4_package(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny-int4"
    compiled, manifest = export_tiny(out, "int4")
    return out, compiled, manifest


def _stream(compiled):
    return token_stream(compiled.loaded.cfg.vocab_size, PREFILL + DECODE)


# ---------------------------------------------------------------------------------------------- lowering in PyTorch
@pytest.mark.parametrize("quant", ["none", "int8", "int4"])
@pytest.mark.parametrize("family", ["openelm", "llama"])
def test_explicit_cache_graph_matches_the_ir(family, quant):
    """onnx_form + skip norms + onnx_quant rewrite the IR without changing its numbers: prefill, a chunk with
    past, decode, and a rewind (stale buffer rows past the mask must not be read)."""
    import torch
    from elmexport.targets.onnx.form import explicit_cache_form
    from elmexport.targets.onnx.quant import lower_quantized_weights
    from elmexport.targets.onnx.skip_norm import fuse_skip_norms

    from elmexport.models.config import get_preset, llama_from_hf_dict
    from elmexport.models.transformer import Transformer, init_random_weights

    cfg = get_preset("openelm-tiny") if family == "openelm" else llama_from_hf_dict(TINY_LLAMA_CONFIG, "tiny-llama")
    ir = compile_module(init_random_weights(Transformer(cfg, context=32), seed=2).eval(), quant)
    form = explicit_cache_form(ir)
    assert fuse_skip_norms(form.gm) == 2 * cfg.num_layers  # every norm after a residual add
    counts = lower_quantized_weights(form.gm, accuracy_level=0)
    assert counts["matmul_nbits"] == (0 if quant == "none" else 4 * cfg.num_layers + 1)
    ops = [n.target for n in form.gm.graph.nodes if n.op == "call_function"]
    assert ops.count(torch.ops.elm_onnx.group_query_attention.default) == cfg.num_layers
    assert torch.ops.aten.scaled_dot_product_attention.default not in ops and torch.ops.aten.cat.default not in ops
    ids = token_stream(cfg.vocab_size, 12)
    ir.reset_cache()
    reference = ir.logits(ids)
    buffers, outs = form.kv_buffers(), []
    for start, end in [(0, 5), (5, 9), (5, 8), (8, 9), (9, 10), (10, 11), (11, 12)]:  # (5, 9) is rewound
        logits, buffers = form(torch.tensor([ids[start:end]]), start, buffers)
        if (start, end) != (5, 9):
            outs.append(logits[0])
    assert [p.shape[1] for p in buffers[::2]] == cfg.num_kv_heads and buffers[0].shape[2] == form.context
    assert (torch.cat(outs) - reference).abs().max().item() <= 1e-5


def test_packing_round_trip_and_tied_table():
    import torch
    from elmexport.targets.onnx.ops import gather_nbits, pack_codes, unpack_codes

    from elmexport.ir.quant_math import quantize_blockwise

    w = torch.randn(48, 64)
    for bits in (4, 8):
        codes, scales = quantize_blockwise(w, bits, 32)
        packed = pack_codes(codes, bits, 32)
        assert packed.dtype == torch.uint8 and packed.shape == (48, 2, 32 * bits // 8)
        assert torch.equal(unpack_codes(packed, bits), codes)
        ids = torch.tensor([[0, 47, 5]])
        rows = gather_nbits(packed, scales.float().reshape(-1), ids, bits, 32)
        assert torch.equal(rows, torch.ops.elm.quantized_embedding(codes, scales, ids, 32, bits))


# ---------------------------------------------------------------------------------------------- numbers
def test_fp32_matches_eager_prefill_and_decode(fp32_package):
    out, compiled, manifest = fp32_package
    ids = _stream(compiled)
    eager = prefill_then_decode(EagerRunner(compiled.loaded.model), ids, PREFILL)
    onnx_logits = prefill_then_decode(open_package_runner(out, manifest), ids, PREFILL)
    assert onnx_logits.shape == (PREFILL + DECODE, compiled.loaded.cfg.vocab_size)
    assert np.abs(onnx_logits - eager).max() <= 1e-4


@pytest.mark.parametrize("quant", ["int4", "int8"])
def test_accuracy_level_0_matches_the_quantized_ir(tmp_path, quant):
    compiled, manifest = export_tiny(tmp_path / "acc0", quant, accuracy_level=0)
    ids = _stream(compiled)
    ir = prefill_then_decode(compiled.ir.runner(), ids, PREFILL)
    got = prefill_then_decode(open_package_runner(tmp_path / "acc0", manifest), ids, PREFILL)
    assert np.abs(got - ir).max() <= 1e-4


def test_int4_default_matches_int4_ir_closely(int4_package):
    out, compiled, manifest = int4_package
    ids = _stream(compiled)
    ir = prefill_then_decode(compiled.ir.runner(), ids, PREFILL)
    got = prefill_then_decode(open_package_runner(out, manifest), ids, PREFILL)
    err = np.abs(got - ir).max()
    assert err <= 0.05 * (ir.max() - ir.min())
    agree = got.argmax(-1) == ir.argmax(-1)
    assert agree.mean() >= 0.9
    top2 = np.sort(ir, axis=-1)[:, -2:]
    assert agree[top2[:, 1] - top2[:, 0] > 2 * err].all()  # a flip is only allowed where the IR's top-2 are closer
    # the export's own check (12 tokens; random tiny weights leave top-2 gaps of ~1e-3, below the level-4 error)
    check = manifest["onnx"]["checks"]["onnxruntime_vs_ir"]
    assert check["max_abs_err"] <= 0.05 * (ir.max() - ir.min()) and check["top1_agreement"] >= 0.75


def test_last_logits_package_prefills_one_row_and_scores_every_token(tmp_path):
    """--logits last: the prefill returns [1, 1, vocab] (the head skips T-1 rows), the runner still scores every
    token exactly, and onnxruntime-genai (which sees a static 1, i.e. a 'pruned' model) decodes the same tokens."""
    import onnxruntime as ort
    import onnxruntime_genai as og

    out = tmp_path / "last"
    compiled, manifest = export_tiny(out, "int4", accuracy_level=0, logits="last")
    cfg = compiled.loaded.cfg
    assert {o["name"]: o["shape"] for o in manifest["outputs"]}["logits"] == [1, 1, cfg.vocab_size]
    ids = _stream(compiled)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.asarray([ids[:PREFILL]]), "attention_mask": np.ones((1, PREFILL), dtype=np.int64)}
    feeds.update({i.name: np.zeros((1, i.shape[1], 64, i.shape[3]), dtype=np.float32)
                  for i in session.get_inputs() if i.name.startswith("past_key_values.")})
    assert session.run(["logits"], feeds)[0].shape == (1, 1, cfg.vocab_size)
    ir = prefill_then_decode(compiled.ir.runner(), ids, PREFILL)
    got = prefill_then_decode(open_package_runner(out, manifest), ids, PREFILL)
    assert got.shape == ir.shape and np.abs(got - ir).max() <= 1e-4
    model = og.Model(str(out))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=PREFILL + 6, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids[:PREFILL])
    tokens = []
    while not gen.is_done():
        gen.generate_next_token()
        tokens.append(int(gen.get_next_tokens()[0]))
    runner = open_package_runner(out, manifest)
    logits, ours = runner.forward(ids[:PREFILL], 0), []
    for t in range(len(tokens)):
        ours.append(int(np.argmax(logits[-1])))
        logits = runner.forward([ours[-1]], PREFILL + t)
    assert tokens == ours


def test_last_row_buffer_is_reused_but_results_are_not(tmp_path, fp32_package):
    """A --logits last runner binds one logits row once and onnxruntime writes every call into it: a row the
    runner returned must not change when the next call runs, and the rows equal those of an all-logits package."""
    out = tmp_path / "last"
    compiled, manifest = export_tiny(out, "none", logits="last")
    ids = _stream(compiled)
    runner = open_package_runner(out, manifest)
    assert runner.logits_row is not None
    first = runner.forward_last(ids[:PREFILL], 0)
    kept = first.copy()
    second = runner.forward_last(ids[PREFILL:PREFILL + 1], PREFILL)
    assert np.array_equal(first, kept) and not np.shares_memory(first, second)
    every = open_package_runner(fp32_package[0], fp32_package[2]).forward(ids[:PREFILL + 1], 0)
    assert np.abs(np.stack([first, second]) - every[PREFILL - 1:]).max() <= 1e-4


def test_chunk_after_past_is_bottom_right_aligned(fp32_package):
    """T > 1 new tokens on top of a past is the one case where causal alignment matters (top-left would differ)."""
    out, compiled, manifest = fp32_package
    ids = _stream(compiled)
    eager = EagerRunner(compiled.loaded.model)
    eager.reset()
    full = eager.forward(ids, 0)
    runner = open_package_runner(out, manifest)
    chunks = [runner.forward(ids[:5], 0), runner.forward(ids[5:11], 5), runner.forward(ids[11:], 11)]
    assert np.abs(np.concatenate(chunks) - full).max() <= 1e-4


def test_runner_rewinds_the_cache(fp32_package):
    out, compiled, manifest = fp32_package
    ids = _stream(compiled)
    runner = open_package_runner(out, manifest)
    straight = prefill_then_decode(runner, ids, PREFILL)
    runner.forward([5, 6, 7], PREFILL + DECODE)  # speculate three tokens, then reject them
    again = runner.forward(ids[PREFILL:PREFILL + 2], PREFILL)
    assert np.abs(again - straight[PREFILL:PREFILL + 2]).max() <= 1e-5
    with pytest.raises(ElmExportError, match="cached"):
        runner.forward([1], PREFILL + 5)


# ---------------------------------------------------------------------------------------------- structure
def test_int4_graph_is_fused_and_fully_quantized(int4_package):
    out, compiled, manifest = int4_package
    cfg = compiled.loaded.cfg
    counts = manifest["onnx"]["node_counts"]["onnx"]
    # every norm after a residual add is fused with it; the first norm and OpenELM's q/k norms stay plain
    assert counts["com.microsoft.SkipSimplifiedLayerNormalization"] == 2 * cfg.num_layers
    assert counts["RMSNormalization"] == cfg.num_norms - 2 * cfg.num_layers
    # RoPE, the KV write and attention are one node per layer: no explicit cache concat, no RoPE arithmetic
    assert counts["com.microsoft.GroupQueryAttention"] == cfg.num_layers
    assert not {"Attention", "Concat", "Neg", "Slice", "Transpose", "Add"} & set(counts), counts
    # qkv, out, [gate; up], down per layer + the tied head: the fused projections stay fused
    assert counts["com.microsoft.MatMulNBits"] == 4 * cfg.num_layers + 1
    assert counts["Split"] == 2 * cfg.num_layers  # OpenELM's q/k/v head split before its q/k norms; the FFN's halves
    import onnx

    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    norms = [n for n in graph.node if n.op_type == "SkipSimplifiedLayerNormalization"]
    assert norms and all(list(n.output[1:3]) == ["", ""] for n in norms)  # no mean / inv_std_var computed
    assert counts["com.microsoft.GatherBlockQuantized"] == 1
    assert "MatMul" not in counts and "Gemm" not in counts
    ir_counts = manifest["onnx"]["node_counts"]["ir"]
    # the IR holds one elm.attention per layer (q/k norms, RoPE and the cache writes inside it)
    assert ir_counts["elm.attention.default"] == cfg.num_layers
    assert ir_counts["elm.rms_norm.default"] == 2 * cfg.num_layers + 1
    assert "aten.index_put_.default" not in ir_counts and "aten.scaled_dot_product_attention.default" not in ir_counts
    # the head and the embedding share one packed table: the data file holds it once
    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    assert not [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in weights]  # only Shape(mask)[1]
    tables = [t for t in model.graph.initializer if list(t.dims[:1]) == [cfg.vocab_size] and t.data_type == onnx.TensorProto.UINT8]
    assert len(tables) == 1
    assert manifest["size_bytes"] / cfg.num_parameters <= 0.65


def test_package_layout_and_genai_config(fp32_package):
    out, compiled, manifest = fp32_package
    cfg = compiled.loaded.cfg
    assert {"model.onnx", "model.onnx.data", "genai_config.json", "manifest.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.parent.glob(".*partial"))
    assert integrity_problems(out, read_manifest(out)) == []
    past = {i["name"]: i["shape"] for i in manifest["inputs"] if i["name"].startswith("past_key_values.")}
    assert len(past) == 2 * cfg.num_layers
    for layer, heads in enumerate(cfg.num_kv_heads):  # openelm-tiny: 1, 1, 2, 2 -- per layer, in the shapes
        assert past[f"past_key_values.{layer}.key"] == [1, heads, "max_sequence_length", cfg.head_dim]
    inputs = {i["name"]: i for i in manifest["inputs"]}
    assert inputs["attention_mask"]["shape"] == [1, "total_sequence_length"]
    assert inputs["attention_mask"]["dtype"] == "int64"
    outputs = {o["name"]: o["shape"] for o in manifest["outputs"]}
    assert outputs["present.0.value"][2] == "max_sequence_length"  # the buffer past and present share
    assert outputs["logits"] == [1, "sequence_length", cfg.vocab_size]
    genai = json.loads((out / "genai_config.json").read_text())
    dec = genai["model"]["decoder"]
    assert dec["filename"] == "model.onnx" and dec["num_hidden_layers"] == cfg.num_layers
    assert dec["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert dec["inputs"]["attention_mask"] == "attention_mask"
    assert genai["model"]["context_length"] == 64 and genai["search"]["past_present_share_buffer"] is True
    assert "intra_op_num_threads" not in dec["session_options"]  # onnxruntime picks, unless --threads says
    assert manifest["random_weights"] is True and manifest["target"] == "onnx"


def test_threads_option_is_written_for_onnxruntime_genai():
    from elmexport.targets.onnx import OnnxOptions
    from elmexport.targets.onnx.genai import genai_config

    from types import SimpleNamespace

    form = SimpleNamespace(context=64, kv_heads=[1, 2])
    cfg = SimpleNamespace(eos_token_ids=[2], bos_token_id=1, vocab_size=10, head_dim=8, model_dim=16,
                          num_query_heads=[2, 2], num_layers=2)
    assert OnnxOptions(threads=3).threads == 3
    session = genai_config(cfg, form, "model.onnx", threads=3)["model"]["decoder"]["session_options"]
    assert session["intra_op_num_threads"] == 3
    with pytest.raises(Exception, match="threads"):
        OnnxOptions(threads=0)


def test_onnxruntime_genai_runs_the_package(int4_package):
    import onnxruntime_genai as og
    out, compiled, manifest = int4_package
    prompt, steps = _stream(compiled)[:PREFILL], 10
    model = og.Model(str(out))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=PREFILL + steps, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(prompt)
    genai_tokens = []
    while not gen.is_done():
        gen.generate_next_token()
        genai_tokens.append(int(gen.get_next_tokens()[0]))
    runner = open_package_runner(out, manifest)
    logits, ours = runner.forward(prompt, 0), []
    for t in range(len(genai_tokens)):
        ours.append(int(np.argmax(logits[-1])))
        logits = runner.forward([ours[-1]], PREFILL + t)
    assert genai_tokens == ours


# ---------------------------------------------------------------------------------------------- errors
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "elmexport.cli", *args], capture_output=True, text=True, check=False)


def test_palettize_is_a_one_line_error_and_writes_nothing(tmp_path):
    out = tmp_path / "pkg"
    r = _cli("onnx", "--model", "openelm-tiny", "--random-weights", "--quant", "palettize4", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0 and "palettize4" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_block_size_matmulnbits_cannot_take_is_a_one_line_error(tmp_path):
    config = tmp_path / "q.json"
    config.write_text(json.dumps({"default": {"mode": "int4", "block_size": 24}}))
    r = _cli("onnx", "--model", "openelm-tiny", "--random-weights", "--quant", str(config), "--out", str(tmp_path / "p"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "block_size 24" in r.stderr
    assert not (tmp_path / "p").exists()


def test_failure_during_export_leaves_no_package(tmp_path, monkeypatch):
    from elmexport.targets import onnx as onnx_target

    def broken(*_a, **_k):
        raise ElmExportError("onnxruntime check failed")

    monkeypatch.setattr(onnx_target, "_check_onnxruntime", broken)
    with pytest.raises(ElmExportError):
        export_tiny(tmp_path / "pkg", "none", context=16)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- real model
def test_smollm2_int4_answers_paris_through_the_cli(tmp_path):
    pkg = tmp_path / "smollm2-int4"
    r = _cli("onnx", "--quant", "int4", "--context", "256", "--out", str(pkg))
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = read_manifest(pkg)
    assert manifest["tokenizer"] == "tokenizer.json" and (pkg / "tokenizer.json").exists()
    assert manifest["onnx"]["logits"] == "last"  # the CLI default: the head runs on the last fed position only
    assert {o["name"]: o["shape"] for o in manifest["outputs"]}["logits"] == [1, 1, manifest["model"]["config"]["vocab_size"]]
    r = _cli("generate", str(pkg), "--prompt", "What is the capital of France?", "--max-new-tokens", "16")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Paris" in r.stdout, r.stdout
    assert "onnx" in r.stderr


@pytest.mark.slow
def test_openelm_270m_int4_size_on_disk(tmp_path):
    compiled, manifest = export_tiny(tmp_path / "270m", "int4", model="openelm-270m", context=2048)
    assert manifest["size_bytes"] / compiled.loaded.cfg.num_parameters <= 0.65
