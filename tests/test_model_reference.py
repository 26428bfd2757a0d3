"""`--model` takes what the ecosystem passes around: a preset, a local checkpoint (HF folder or .gguf), a hub id.
Hub ids are resolved through the real huggingface_hub client against an HF cache the test builds (the hub itself
is unreachable here)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from elmexport.errors import ElmExportError, WeightsError
from elmexport.weights.sources import load_model
from elmexport.weights.spec import ModelSpec

from .checkpoints import TINY_LLAMA_CONFIG, llama_hf_tensors, write_hf_dir
from .conftest import train_sentencepiece_style_tokenizer

REPO = "tiny-org/tiny-llama"
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"
SNAPSHOT_TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"


def _quiet(*_):
    pass


def _use_hf_cache(monkeypatch, root) -> None:
    """Point the real client at `root`, offline. huggingface_hub reads HF_HUB_CACHE once, when it is first
    imported, so an earlier test's import would otherwise pin the default cache."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))


def _hf_cache(root):
    """The layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<commit>/files}."""
    repo_dir = root / f"models--{REPO.replace('/', '--')}"
    snapshot = write_hf_dir(repo_dir / "snapshots" / SNAPSHOT, llama_hf_tensors(TINY_LLAMA_CONFIG, seed=3),
                            TINY_LLAMA_CONFIG)
    (snapshot / "tokenizer_config.json").write_text(json.dumps({"chat_template": SNAPSHOT_TEMPLATE}))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(SNAPSHOT)
    return root


@pytest.mark.parametrize("ref, preset", [("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct"),
                                         ("apple/OpenELM-270M-Instruct", "openelm-270m-instruct"),
                                         ("amd/AMD-Llama-135m", "amd-llama-135m"),
                                         ("openelm-450m", "openelm-450m"),
                                         ("OpenELM-1.1B-Instruct", "openelm-1_1b-instruct")])
def test_a_presets_hub_id_is_that_preset(ref, preset):
    spec = ModelSpec(model=ref)
    assert (spec.model, spec.weights, spec.hub_id) == (preset, None, None)


def test_a_local_folder_is_a_checkpoint_with_its_own_config(tmp_path):
    path = write_hf_dir(tmp_path / "ckpt", llama_hf_tensors(TINY_LLAMA_CONFIG, seed=1), TINY_LLAMA_CONFIG)
    spec = ModelSpec(model=str(path), tokenizer_mode="skip", context=32)
    assert spec.weights == str(path) and spec.model is None
    loaded = load_model(spec, log=_quiet)
    assert loaded.source["kind"] == "hf-dir" and loaded.cfg.num_layers == TINY_LLAMA_CONFIG["num_hidden_layers"]
    with pytest.raises(ElmExportError, match="already a checkpoint"):
        ModelSpec(model=str(path), weights=str(path))
    with pytest.raises(ElmExportError, match="no such file"):
        ModelSpec(model=str(tmp_path / "missing.gguf"))


def test_a_hub_id_loads_from_the_hf_cache(tmp_path, monkeypatch):
    """The snapshot's tokenizer_config.json comes with it: its chat template (not one of ours) is the model's."""
    _use_hf_cache(monkeypatch, _hf_cache(tmp_path / "hub"))
    spec = ModelSpec(model=REPO, tokenizer_mode="skip", context=32)
    assert spec.hub_id == REPO
    loaded = load_model(spec, log=_quiet)
    assert loaded.source["kind"] == "hf-dir" and SNAPSHOT in loaded.source["path"]
    assert loaded.cfg.chat_template == SNAPSHOT_TEMPLATE
    expected = llama_hf_tensors(TINY_LLAMA_CONFIG, seed=3)["model.embed_tokens.weight"]
    assert torch.equal(loaded.model.token_embeddings.weight.detach(), expected)
    from elmexport.weights.config_only import config_without_weights

    assert config_without_weights(spec).vocab_size == TINY_LLAMA_CONFIG["vocab_size"]


def test_a_hub_id_offline_and_not_cached_is_one_line(tmp_path, monkeypatch):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty"))
    res = subprocess.run([sys.executable, "-m", "elmexport", "onnx", "--model", "nobody/nothing", "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "nobody/nothing" in res.stderr and res.stderr.strip().count("\n") == 0
    _use_hf_cache(monkeypatch, tmp_path / "empty")
    with pytest.raises(WeightsError, match="HF cache"):
        load_model(ModelSpec(model="nobody/nothing", tokenizer_mode="skip"), log=_quiet)



def test_coreml_exports_a_local_checkpoint_folder(tmp_path):
    """`elmexport coreml --model ./my-checkpoint`, as a user types it from the checkpoint's parent folder: the
    folder's own config decides the shapes, its tokenizer.json and chat template go into the package."""
    ckpt = write_hf_dir(tmp_path / "my-checkpoint", llama_hf_tensors(TINY_LLAMA_CONFIG, seed=5), TINY_LLAMA_CONFIG)
    train_sentencepiece_style_tokenizer(ckpt / "tokenizer.json", vocab_size=TINY_LLAMA_CONFIG["vocab_size"])
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"chat_template": SNAPSHOT_TEMPLATE}))
    res = subprocess.run([sys.executable, "-m", "elmexport", "coreml", "--model", "./my-checkpoint", "--context", "32",
                          "--out", "pkg"], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["weights"]["kind"] == "hf-dir" and manifest["weights"]["path"] == "my-checkpoint"  # as typed
    assert len(manifest["model"]["config"]["ffn_dims"]) == TINY_LLAMA_CONFIG["num_hidden_layers"]
    assert manifest["model"]["config"]["model_dim"] == TINY_LLAMA_CONFIG["hidden_size"]
    assert list((tmp_path / "pkg").glob("*.mlpackage"))
    shipped = json.loads((tmp_path / "pkg" / "tokenizer_config.json").read_text())
    assert shipped["chat_template"] == SNAPSHOT_TEMPLATE
