"""ExecuTorch target: the .pte against the eager model / the IR, ExecuTorch's own LLM runner, delegation, errors.

Packages are exported once per module (a tiny XNNPACK lowering takes about a minute on two shared cores).
Bounds asserted, and why:
- fp32 .pte vs eager fp32: <= 1e-4 max abs logit (same math; only fp32 summation order differs).
- 8da4w .pte vs the 8da4w reference in PyTorch (the lowered graph run eagerly: int8 per-token dynamic activations,
  the IR's int4 codes, scales rounded to bf16 as XNNPACK stores them): <= 1e-4. This pins the lowering as exact.
- 8da4w .pte vs the IR (int4 weights, float activations): <= 5% of the IR's largest |logit|. The difference is the
  int8 per-token activation quantization that 8da4w adds by design (each activation off by up to half a step of
  its row's range / 255) plus the bf16 scales; measured ~2% on this model.
"""
# ruff: noqa: I001  (first-party imports grouped as in the rest of tests/)

from __future__ import annotations

import json
import os
from collections import Counter
import subprocess
import sys

import numpy as np
import pytest
import torch

from elmexport.errors import ElmExportError
from elmexport.manifest import integrity_problems, read_manifest
from elmexport.validation.eager import EagerRunner
from elmexport.targets.executorch.runner import EXECUTORCH_PROCESS_ENV, apply_executorch_process_env
from elmexport.validation.runners import open_package_runner

from .executorch_helpers import (
    GraphRunner,
    count_calls,
    export_args,
    run_cli,
    simulated_8da4w,
    teacher_forced,
    tiny_compiled,
)

CONTEXT, MAX_SEQ_LEN = 64, 16
TOKENS = [int(t) for t in np.random.default_rng(7).integers(3, 600, size=28)]  # 20-token prompt + 8 decode steps
PREFILL = 20  # longer than MAX_SEQ_LEN: the runner prefills in two chunks


@pytest.fixture(scope="module")
def fp32_package(tmp_path_factory, llama2_style_tokenizer):
    """Tiny OpenELM shapes with the tokenizer's 600-token vocabulary, so ExecuTorch's runner can decode it."""
    from elmexport.targets.executorch import export

    compiled = tiny_compiled("none", vocab_size=600, tokenizer=llama2_style_tokenizer, context=CONTEXT)
    out = tmp_path_factory.mktemp("et") / "tiny-fp32"
    with count_calls(torch.export.ExportedProgram, "run_decompositions",
                     caller="_gen_edge_manager_for_partitioners") as decompositions:
        manifest = export(compiled, export_args(max_seq_len=MAX_SEQ_LEN), out, log=lambda *a: None)
    return out, manifest, compiled, decompositions


@pytest.fixture(scope="module")
def int4_package(tmp_path_factory, llama2_style_tokenizer):
    """The CLI path: `elmexport executorch --model openelm-tiny --random-weights --quant 8da4w --all-logits`
    (every row of a prefill chunk from one call; the fp32 package covers the default last-row program)."""
    out = tmp_path_factory.mktemp("et") / "tiny-8da4w"
    res = run_cli("executorch", "--model", "openelm-tiny", "--random-weights", "--context", CONTEXT,
                  "--max-seq-len", MAX_SEQ_LEN, "--quant", "8da4w", "--tokenizer", llama2_style_tokenizer,
                  "--all-logits", "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, read_manifest(out)


def test_fp32_matches_eager(fp32_package):
    out, _, compiled, _ = fp32_package
    pte = teacher_forced(open_package_runner(out), TOKENS, PREFILL)
    eager = teacher_forced(EagerRunner(compiled.loaded.model), TOKENS, PREFILL)
    assert pte.shape == (len(TOKENS), 600)
    assert np.abs(pte - eager).max() <= 1e-4


def test_fp32_package_contents(fp32_package):
    out, manifest, compiled, _ = fp32_package
    cfg = compiled.loaded.cfg
    assert sorted(manifest["files"]) == ["generation_config.json", "model.pte", "tokenizer.json", "tokenizer_config.json"]
    assert not integrity_problems(out, manifest)
    assert manifest["target"] == "executorch" and manifest["delegate"] == "xnnpack"
    methods = manifest["constant_methods"]
    assert methods["get_max_seq_len"] == MAX_SEQ_LEN and methods["get_max_context_len"] == CONTEXT
    assert methods["get_vocab_size"] == 600 and methods["get_eos_ids"] == [2] and methods["enable_dynamic_shape"]
    # per-layer KV caches inside the program, OpenELM's varying KV head counts kept
    kv = [s["shape"][2] for s in manifest["states"] if s["name"].endswith("k_cache")]
    assert kv == cfg.num_kv_heads and len(set(kv)) > 1
    ops = manifest["ops"]
    # every linear is in XNNPACK: 4 layers x (q, k, v, out, gate, up, down) + head, 2 RoPE rotations per layer
    # and the mean of each of the 17 RMSNorms
    assert ops["delegated"]["linear"] == 4 * 7 + 1 + 4 * 2 + 17
    assert set(ops["portable"]) <= {"llama::custom_sdpa", "llama::update_cache", "embedding", "index", "select_copy",
                                    "slice_copy", "le", "lt", "ge", "add",  # the last four: checks on input_pos[0]
                                    "unsqueeze_copy"}  # RoPE rows [T, hd] -> [T, 1, hd], once per call
    assert ops["portable"]["llama::custom_sdpa"] == 4 and ops["delegate_calls"] <= 9
    assert ops["portable"]["slice_copy"] == 1  # the last position, taken before the final norm and the head
    # q, k, v reach custom_sdpa token-major: no transpose left in the program (8 per layer before)
    assert manifest["lowering"]["rewrites"]["attention_lowered"] == cfg.num_layers
    assert "permute_copy" not in ops["delegated"] and "permute_copy" not in ops["portable"]


def test_attention_kernels_get_the_layout_they_are_cheapest_with(fp32_package):
    """The serialised program hands llama::custom_sdpa what it is cheapest with, and nothing runs around it: per
    layer exactly delegate -> update_cache(k), update_cache(v) -> custom_sdpa -> next delegate; q token-major
    [1, T, Hq, hd] and contiguous straight from the delegate; the caches it reads are the ones just written,
    [1, context, n_kv, hd] contiguous and static (not copies, not transposed); one start position for all layers
    (computed once from input_pos); no mask, causal, scale 1/sqrt(hd). A copy, transpose or per-layer position
    computation added around the kernel (each a portable call per layer per token) fails here; the per-call cost
    itself is guarded by `benchmarks/executorch_etdump.py --max-sdpa-ratio` against export_llm's program."""
    from elmexport.targets.executorch.pte_calls import read_calls

    out, _, compiled, _ = fp32_package
    cfg = compiled.loaded.cfg
    hd = cfg.head_dim
    calls = read_calls(out / "model.pte")
    sdpa = [i for i, c in enumerate(calls) if c.op == "llama::custom_sdpa"]
    assert len(sdpa) == cfg.num_layers
    positions = [c for c in calls if c.op == "aten::_local_scalar_dense"]
    assert len(positions) == 1  # the start position, once per call
    start = positions[0].args[-1].index
    for layer, i in enumerate(sdpa):
        delegate, write_a, write_b, call, after = calls[i - 3:i + 2]
        assert [c.op for c in (delegate, write_a, write_b, after)] == \
            ["delegate", "llama::update_cache", "llama::update_cache", "delegate"], [c.op for c in calls[i - 3:i + 2]]
        q, k, v, pos, mask, dropout, causal, scale, result = call.args[:9]
        assert q.kind == "tensor" and q.dynamic and q.dim_order == (0, 1, 2, 3)
        assert q.sizes == (1, MAX_SEQ_LEN, cfg.num_query_heads[layer], hd)
        assert q.index in {a.index for a in delegate.args}  # the delegate's own output, no copy in between
        for cache in (k, v):
            assert cache.sizes == (1, CONTEXT, cfg.num_kv_heads[layer], hd)
            assert cache.dim_order == (0, 1, 2, 3) and not cache.dynamic and not cache.constant
        assert {k.index, v.index} == {write_a.args[1].index, write_b.args[1].index} and k.index != v.index
        assert pos.index == start and write_a.args[2].index == start and write_b.args[2].index == start
        assert mask.kind == "null" and dropout.scalar == 0.0 and causal.scalar is True
        assert scale.scalar == pytest.approx(hd ** -0.5)
        assert result.sizes == q.sizes and result.index == after.args[0].index  # straight into the next delegate


def test_lowering_decomposes_the_program_once_beyond_functionalization(fp32_package):
    """The minutes of an export are re-traces of the whole graph: ExecuTorch decomposes it once to functionalize
    and once with its decomposition table; a partitioner with a per-node filter would add a third."""
    *_, decompositions = fp32_package
    assert decompositions.calls == 2


@pytest.mark.parametrize("all_logits", [False, True])
def test_exported_graph_is_in_the_cheap_to_retrace_form(all_logits):
    """What keeps the lowering short (docs/benchmarks.md, export time): every linear with a dynamic token count
    takes 2-D token rows (a 3-D one is a symbolic reshape, matmul, reshape on every re-trace), one activation
    quantization per distinct input (4 per layer, not 7), and the program's interface unchanged."""
    from torch.fx.experimental.symbolic_shapes import has_free_symbols

    from elmexport.targets.executorch.attention import load_custom_ops
    from elmexport.targets.executorch.lower import export_program, prepare_graph

    load_custom_ops()
    gm, rewrites, _ = prepare_graph(tiny_compiled("int4", vocab_size=512, context=CONTEXT), "xnnpack",
                                    all_logits=all_logits)
    assert rewrites["token_rows"] == 1
    ep = export_program(gm, MAX_SEQ_LEN)
    calls = [n for n in ep.graph.nodes if n.op == "call_function"]
    linears = [n for n in calls if n.target == torch.ops.aten.linear.default]
    dynamic = [n for n in linears if has_free_symbols(n.args[0].meta["val"].shape)]
    assert len(linears) == 4 * 7 + 1 + 4 * 2 + 17 and len(dynamic) == len(linears) - (0 if all_logits else 1)
    ranks = Counter(n.args[0].meta["val"].dim() for n in dynamic)
    # 2-D: the 7 projections and the 2 norm means of each layer, the final norm's mean (and the head on every row);
    # 4-D: inside attention, the RoPE rotations and OpenELM's q/k norm means act on [1, T, H, hd]
    assert ranks == {2: 4 * 7 + 4 * 2 + 1 + all_logits, 4: 4 * 4}
    choose = [n for n in calls if n.target == torch.ops.quantized_decomposed.choose_qparams_per_token_asymmetric.default]
    quantized = [n for n in calls if n.target == torch.ops.quantized_decomposed.dequantize_per_channel_group.default]
    assert len(quantized) == 4 * 7 + 1 and len(choose) == 4 * 4 + 1
    out = ep.graph.output_node().args[0][0].meta["val"]
    assert out.dim() == 3 and out.shape[0] == 1 and out.shape[-1] == 512
    assert has_free_symbols(out.shape) == all_logits  # [1, T, vocab] or the last row's [1, 1, vocab]


def test_default_program_returns_the_last_position_only(fp32_package):
    """A prefill call yields one row of logits (the head runs once), equal to the all-rows runner's last row."""
    import torch

    out, manifest, _, _ = fp32_package
    assert manifest["logits"] == "last" and manifest["outputs"][0]["shape"] == [1, 1, 600]
    runner = open_package_runner(out)
    logits = runner.method.execute([torch.tensor([TOKENS[:MAX_SEQ_LEN]]), torch.arange(MAX_SEQ_LEN)])[0]
    assert tuple(logits.shape) == (1, 1, 600)
    rows = runner.forward(TOKENS[:MAX_SEQ_LEN], 0)  # one token per call: every row
    assert rows.shape == (MAX_SEQ_LEN, 600) and np.abs(rows[-1] - logits[0, 0].numpy()).max() <= 1e-4
    # generation's path: a prompt longer than one chunk in full chunks, then a decode step, same numbers
    prompt = TOKENS[:MAX_SEQ_LEN + 3]
    all_rows = runner.forward(prompt + [7], 0)
    assert np.abs(runner.forward_last(prompt, 0) - all_rows[-2]).max() <= 1e-4
    assert np.abs(runner.forward_last([7], len(prompt)) - all_rows[-1]).max() <= 1e-4


def test_text_llm_runner_generates_from_package(fp32_package):
    """ExecuTorch's own C++ LLM runner loads model.pte + tokenizer.json and greedily generates our tokens."""
    out, _, compiled, _ = fp32_package
    from elmexport.targets.executorch.runner import load_kernel_libraries

    load_kernel_libraries()
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    tok = compiled.loaded.tokenizer.tokenizer
    prompt = "the program is free software"
    ids = tok.encode(prompt, add_special_tokens=False).ids
    pieces, stats = [], []
    runner = TextLLMRunner(str(out / "model.pte"), str(out / "tokenizer.json"))
    runner.generate(prompt, GenerationConfig(max_new_tokens=6, temperature=0.0, echo=False, num_bos=0),
                    token_callback=pieces.append, stats_callback=stats.append)
    assert stats[0].num_prompt_tokens == len(ids)
    ours = open_package_runner(out)
    logits = ours.forward(ids, 0)[-1]
    tokens = []
    for step in range(6):
        tokens.append(int(np.argmax(logits)))
        if tokens[-1] in compiled.loaded.cfg.eos_token_ids:
            break
        logits = ours.forward([tokens[-1]], len(ids) + step)[-1]
    assert "".join(pieces) == tok.decode([t for t in tokens if t not in (0, 1, 2)], skip_special_tokens=True)
    assert len(pieces) >= 1


def test_8da4w_matches_its_reference_and_the_ir(int4_package):
    out, manifest = int4_package
    assert manifest["logits"] == "all" and open_package_runner(out).all_logits
    weights = manifest["lowering"]["weights"]
    assert weights["linear_int4"]["count"] == 4 * 6 + 1 + 4  # q,k,v and gate,up split from the IR's 3+2 per layer
    assert weights["embedding_int4"]["count"] == 1  # the tied table: embedding_4bit + 8da4w head, same codes
    ops = manifest["ops"]
    # every quantized linear is in XNNPACK; the linears reading the same input share its activation quantization
    # (q, k, v; gate, up), so 4 per layer + the head
    assert ops["delegated"]["quantized_decomposed::dequantize_per_channel_group"] == 29
    assert ops["delegated"]["quantized_decomposed::choose_qparams_per_token_asymmetric"] == 4 * 4 + 1
    assert "linear" not in ops["portable"] and not any(op.startswith("quantized_decomposed::") and "embedding" not in op
                                                       for op in ops["portable"])
    # the same IR, rebuilt (seeded): same codes and scales as the package's
    from elmexport.pipeline import build_ir
    from elmexport.weights.spec import ModelSpec

    from elmexport.targets.registry import target_entry

    compiled = build_ir(ModelSpec(model="openelm-tiny", random_weights=True, context=CONTEXT, tokenizer_mode="skip"),
                        target_entry("executorch").quant_config("8da4w"), log=lambda *a: None)
    tokens = [t % 32000 for t in TOKENS]
    pte = teacher_forced(open_package_runner(out), tokens, PREFILL)
    ref = teacher_forced(GraphRunner(simulated_8da4w(compiled.ir), CONTEXT), tokens, PREFILL)
    ir = teacher_forced(compiled.ir.runner(), tokens, PREFILL)
    assert np.abs(pte - ref).max() <= 1e-4
    assert np.abs(pte - ir).max() <= 0.05 * np.abs(ir).max()


def test_generate_cli_runs_the_package(int4_package):
    out, _ = int4_package
    res = run_cli("generate", out, "--prompt", "the program", "--max-new-tokens", "4")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "executorch: executorch-xnnpack" in res.stderr and "decode" in res.stderr


def test_generate_sets_single_threaded_mkl_before_torch_starts(int4_package):
    """`generate` on a .pte runs beside PyTorch's MKL; MKL_NUM_THREADS=1 must be in place before torch is imported."""
    out, _ = int4_package
    code = ("import os, sys; from elmexport.cli import main; "
            f"rc = main(['generate', {str(out)!r}, '--prompt', 'the program', '--max-new-tokens', '2']); "
            "print('MKL', os.environ.get('MKL_NUM_THREADS'), rc)")
    env = {k: v for k, v in os.environ.items() if k != "MKL_NUM_THREADS"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert "MKL 1 0" in res.stdout, res.stderr[-2000:]


def test_executorch_process_env_only_before_torch_and_never_over_the_user():
    env = {}
    assert apply_executorch_process_env(env, modules={}) and env == EXECUTORCH_PROCESS_ENV
    env = {"MKL_NUM_THREADS": "4"}
    assert apply_executorch_process_env(env, modules={}) and env == {"MKL_NUM_THREADS": "4"}
    env = {}
    assert not apply_executorch_process_env(env, modules={"torch": object()}) and env == {}


def test_coreml_delegate_exports(tmp_path):
    out = tmp_path / "tiny-coreml"
    res = run_cli("executorch", "--model", "openelm-tiny", "--random-weights", "--context", 32,
                  "--delegate", "coreml", "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = read_manifest(out)
    assert manifest["delegate"] == "coreml" and manifest["ops"]["portable_total"] == 0
    assert manifest["ops"]["delegated"]["index_put"] == 8  # the KV-cache writes are Core ML state updates
    assert b"CoreMLBackend" in (out / "model.pte").read_bytes()
    assert manifest["constant_methods"]["get_max_seq_len"] == 1  # static T = 1: runners prefill token by token
    with pytest.raises(ElmExportError, match="Apple platforms"):
        open_package_runner(out)


@pytest.mark.parametrize("args, message", [
    (["--delegate", "vulkan"], "argument --delegate: invalid choice: 'vulkan'"),
    (["--quant", "palettize4"], "mode 'palettize4' (default) cannot run on executorch"),
    (["--max-seq-len", "0"], "at least 1"),
    (["--context", "32", "--max-seq-len", "64"], "exceeds --context"),
])
def test_bad_options_fail_in_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "pkg"
    res = run_cli("executorch", "--model", "openelm-tiny", "--random-weights", "--out", out, *args)
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr and res.stderr.strip().count("\n") == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("quant", ["int4", "palettize4"])
def test_decompose_traces_reference_kernels_exactly(quant):
    """elmexport/ir/decompose.py: no elm op left, and the same logits as the IR, on a GraphModule and on an EP."""
    from elmexport.ir.decompose import (
        decompose_exported_program,
        decompose_graph_module,
        remaining_elm_ops,
        shallow_copy,
    )

    ir = tiny_compiled(quant, vocab_size=512, context=32).ir
    ids = TOKENS[:9]
    ref = teacher_forced(ir.runner(), [t % 512 for t in ids], 5)
    ep = decompose_exported_program(ir.export("prefill"))
    assert not remaining_elm_ops(ep.graph)
    ir.reset_cache()
    from_ep = teacher_forced(GraphRunner(ep.module(), 32), [t % 512 for t in ids], 5)
    gm = shallow_copy(ir.gm)
    replaced = decompose_graph_module(gm)
    # 9 norms outside attention (2 per layer + final); the q/k norms are inside the 4 attention ops
    assert not remaining_elm_ops(gm.graph) and replaced["elm.rms_norm.default"] == 9
    assert replaced["elm.attention.default"] == 4
    ir.reset_cache()
    from_gm = teacher_forced(GraphRunner(gm, 32), [t % 512 for t in ids], 5)
    assert np.array_equal(from_ep, ref) and np.array_equal(from_gm, ref)


def test_manifest_is_json_serialisable(fp32_package):
    out, manifest, _, _ = fp32_package
    assert json.loads((out / "manifest.json").read_text())["ops"] == manifest["ops"]


@pytest.mark.slow
def test_smollm2_8da4w_answers_paris(tmp_path):
    """The real SmolLM2-135M-Instruct, 8da4w, through `elmexport executorch` + `elmexport generate`, and through
    ExecuTorch's own TextLLMRunner with the chat-templated prompt. (~8 min here, mostly XNNPACK lowering.)"""
    out = tmp_path / "smollm2-8da4w"
    res = run_cli("executorch", "--quant", "8da4w", "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_cli("generate", out, "--prompt", "What is the capital of France?", "--max-new-tokens", "16")
    assert res.returncode == 0 and "Paris" in res.stdout, res.stdout + res.stderr[-2000:]

    from elmexport.targets.executorch.runner import load_kernel_libraries

    from elmexport.chat import render_chat

    load_kernel_libraries()
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    manifest = read_manifest(out)
    prompt = render_chat(manifest["chat_template"], [{"role": "user", "content": "What is the capital of France?"}],
                         manifest["system_prompt"])
    pieces = []
    TextLLMRunner(str(out / "model.pte"), str(out / "tokenizer.json")).generate(
        prompt, GenerationConfig(max_new_tokens=16, temperature=0.0, echo=False), token_callback=pieces.append)
    assert "Paris" in "".join(pieces), pieces
