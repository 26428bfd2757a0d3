"""Speculative pairs on their runtimes: export, the tokenizer check, the folder's safety, generate PAIR_DIR.

Tiny random-weight OpenELM shapes with a test-trained Llama-2-style tokenizer; the draft is the same config with
another seed (low acceptance) or the target's own package opened twice (acceptance 100%).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from elmexport.api import load
from elmexport.destination import DestinationError
from elmexport.errors import ElmExportError
from elmexport.pair import PairError, export_pair, load_pair, tokenizer_check
from elmexport.speculative import speculative_generate
from elmexport.validation.streams import greedy

CONTEXT = 48
PROMPT = [1, 17, 305, 44, 9, 210, 77]


def run(*args):
    return subprocess.run([sys.executable, "-m", "elmexport.cli", *args], capture_output=True, text=True)


def tiny_pair(tmp_path_factory, tokenizer, to: str, draft_quant: str):
    out = tmp_path_factory.mktemp(f"pair-{to}") / "pair"
    return export_pair("openelm-tiny", "openelm-tiny", to, k=3, draft_quant=draft_quant, out=out, context=CONTEXT,
                       random_weights=True, seed=0, draft_seed=3, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory, llama2_style_tokenizer):
    return tiny_pair(tmp_path_factory, llama2_style_tokenizer, "onnx", "int4")


@pytest.fixture(scope="module")
def executorch_pair(tmp_path_factory, llama2_style_tokenizer):
    return tiny_pair(tmp_path_factory, llama2_style_tokenizer, "executorch", "8da4w")


@pytest.mark.parametrize("runtime", ["onnx_pair", "executorch_pair"])
def test_pair_output_equals_the_target_alone(runtime, request):
    pair_dir = request.getfixturevalue(runtime)
    pair = load_pair(pair_dir)
    manifest = json.loads((pair_dir / "pair.json").read_text())
    assert manifest["k"] == 3 and manifest["tokenizer_check"]["identical"]
    assert sorted(p.name for p in pair_dir.iterdir()) == sorted(
        ["manifest.json", "pair.json", manifest["target"]["package"], manifest["draft"]["package"]])
    expected = greedy(pair.target.runner, PROMPT, 30)
    for k in (1, 3, 5):
        result = speculative_generate(pair.target.runner, pair.draft.runner, PROMPT, 30, k=k)
        assert result.tokens == expected, f"k={k}: {result.summary()}"
        assert result.proposed > 0
    # the target as its own draft (a second runtime instance): every proposal is kept
    self_draft = load(pair_dir / manifest["target"]["package"]).runner
    result = speculative_generate(pair.target.runner, self_draft, PROMPT, 30, k=4)
    assert result.tokens == expected and result.acceptance_rate == 1.0
    assert result.target_calls == 1 + 6  # prefill, then 29 tokens in rounds of 5


def test_generate_pair_dir_prints_the_pair_numbers(onnx_pair):
    out = run("generate", str(onnx_pair), "--prompt", "the program", "--no-chat", "--max-new-tokens", "12",
              "--k", "2")
    assert out.returncode == 0, out.stderr
    assert "acceptance" in out.stderr and "tokens per target call" in out.stderr and "tok/s" in out.stderr
    sampled = [run("generate", str(onnx_pair), "--prompt", "x", "--no-chat", "--max-new-tokens", "8",
                   "--temperature", "0.7", "--top-k", "50", "--seed", seed) for seed in ("3", "3")]
    assert all(o.returncode == 0 for o in sampled), sampled[0].stderr
    assert sampled[0].stdout == sampled[1].stdout and "acceptance" in sampled[0].stderr  # seeded


def test_package_validation_api_on_a_pair_folder_names_its_packages(onnx_pair):
    from elmexport.api import validate

    with pytest.raises(ElmExportError, match="speculative pair") as e:
        validate(onnx_pair)
    assert "target-" in str(e.value) and "\n" not in str(e.value)


def test_existing_pair_is_replaced_only_with_overwrite(onnx_pair, llama2_style_tokenizer):
    with pytest.raises(DestinationError, match="--overwrite"):
        export_pair("openelm-tiny", "openelm-tiny", "onnx", out=onnx_pair, context=CONTEXT, random_weights=True,
                    tokenizer=llama2_style_tokenizer)


def test_cli_refusals_are_one_line(tmp_path):
    cases = [
        ("openelm-tiny", ["--to", "tflite"], "not a pair runtime"),
        ("smollm2-135m-instruct", ["--to", "onnx"], "different vocabularies"),
        ("openelm-tiny", ["--to", "onnx", "--context", "3", "--k", "4"], "k + 1"),
        ("openelm-tiny", ["--to", "executorch", "--draft-quant", "palettize4"], "cannot run on executorch"),
    ]
    for draft, extra, message in cases:
        out = run("pair", "--target", "openelm-tiny", "--draft", draft, "--random-weights",
                  "--out", str(tmp_path / "p"), *extra)
        assert out.returncode == 2, (extra, out.stderr)
        assert message in out.stderr and out.stderr.strip().count("\n") == 0, out.stderr
    assert not (tmp_path / "p").exists()


def test_not_a_pair_folder_is_refused(tmp_path):
    (tmp_path / "pair.json").write_text('{"kind": "speculative-pair", "k": 2, "target": {"package": ".."}}')
    with pytest.raises(PairError, match="not a pair manifest"):
        load_pair(tmp_path)


def _fake(tmp_path, name, tokenizer_file, **fields):
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(tokenizer_file, folder / "tokenizer.json")
    manifest = {"model": {"name": name, "config": {"vocab_size": 32000}}, "tokenizer": "tokenizer.json",
                "bos_token_id": 1, "eos_token_ids": [2], **fields}
    return folder, manifest


def test_tokenizer_check_compares_token_strings_and_specials(tmp_path, llama2_style_tokenizer):
    target = _fake(tmp_path, "t", llama2_style_tokenizer)
    assert tokenizer_check(*target, *_fake(tmp_path, "same", llama2_style_tokenizer))["identical"]
    data = json.loads(llama2_style_tokenizer.read_text())
    vocab = data["model"]["vocab"]
    a, b = list(vocab)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two ids swapped: same size, different meaning
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(data))
    with pytest.raises(PairError, match="different tokenizers"):
        tokenizer_check(*target, *_fake(tmp_path, "swapped", swapped))
    with pytest.raises(PairError, match="special tokens"):
        tokenizer_check(*target, *_fake(tmp_path, "eos", llama2_style_tokenizer, eos_token_ids=[0]))
    folder, manifest = _fake(tmp_path, "none", llama2_style_tokenizer, tokenizer=None)
    with pytest.raises(ElmExportError, match="--tokenizer"):
        tokenizer_check(*target, folder, manifest)


def test_amd_llama_presets_follow_the_model_card():
    """AMD-Llama-135M: 12 layers, d 768, 12 heads (12 kv), FFN 2048, Llama-2 vocab, untied head: 134.1M params."""
    from elmexport.models.config import get_preset, preset_names

    for name, repo in (("amd-llama-135m", "amd/AMD-Llama-135m"), ("amd-llama-135m-code", "amd/AMD-Llama-135m-code")):
        assert name in preset_names()
        cfg = get_preset(name)
        assert (cfg.family, cfg.num_layers, cfg.model_dim, cfg.vocab_size, cfg.max_context_length) == \
            ("llama", 12, 768, 32000, 2048)
        assert set(cfg.num_query_heads) == {12} and set(cfg.num_kv_heads) == {12} and set(cfg.ffn_dims) == {2048}
        assert not cfg.tie_word_embeddings and not cfg.qk_norm and cfg.hf_repo == repo
        assert cfg.num_parameters == 134_105_856
