"""GGUF import (Llama and OpenELM architectures) through the `gguf` package: config, dequantized tensors, tokenizer.

Tensors are presented under the HF checkpoint names of their family, so the same load plan (naming.py) reads a
GGUF and an HF folder. Two things llama.cpp's converter changes are undone here. For Llama it permutes the rows of
Q and K so its RoPE kernel can rotate adjacent pairs; our model uses HF's rotate-half layout, so those rows are
un-permuted (`unpermute_qk`). For OpenELM (rotate-half in llama.cpp as well, so no permutation) it splits each
layer's `proj_1` into `ffn_gate` and `ffn_up`, which are concatenated back on read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError
from ..models.config import ModelConfig, llama_from_hf_dict, openelm_from_gguf_dict
from ..raw_fields import first_line, shown

_LAYER_NAMES = {  # GGUF per-layer name -> HF Llama name
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                 "output.weight": "lm_head.weight"}
_OPENELM_LAYER_NAMES = {  # GGUF per-layer name -> HF OpenELM name; ffn_gate + ffn_up are proj_1's two halves
    "attn_norm": "attn_norm", "attn_qkv": "attn.qkv_proj", "attn_q_norm": "attn.q_norm",
    "attn_k_norm": "attn.k_norm", "attn_output": "attn.out_proj", "ffn_norm": "ffn_norm", "ffn_down": "ffn.proj_2",
    "ffn_gate": "ffn.proj_1.gate", "ffn_up": "ffn.proj_1.up",
}
_OPENELM_GLOBAL_NAMES = {"token_embd.weight": "transformer.token_embeddings.weight",
                         "output_norm.weight": "transformer.norm.weight", "output.weight": "transformer.lm_head.weight"}
_ARCHITECTURES = ("llama", "openelm")


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's `permute`: [h, hd/2, 2, d] pair-interleaved rows back to [h, 2, hd/2, d] halves."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's permutation (used by tests to write GGUF files the way the converter does)."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class GGUFFile:
    """Tensors of a GGUF file under HF Llama names, dequantized to fp32 on read."""

    def __init__(self, path: Path):
        import gguf

        self.path = Path(path)
        try:
            self.reader = gguf.GGUFReader(str(self.path))
        except Exception as e:  # the reader raises ValueError/struct errors/IndexError on damaged files
            raise WeightsError(f"{self.path}: not a readable GGUF file ({first_line(e)})") from None
        arch = self.field("general.architecture")
        if arch not in _ARCHITECTURES:
            raise WeightsError(f"{self.path}: GGUF architecture {shown(arch)} is not supported "
                               f"(only {' and '.join(map(repr, _ARCHITECTURES))})")
        self.arch = arch
        self._tensors = {}
        for t in self.reader.tensors:
            self._tensors[self._hf_name(t.name)] = t
        self._halves = self._split_projections()
        template = self.field("tokenizer.chat_template")
        # the file's own Jinja text, written into packages verbatim (hf_files.py) and rendered for prompts under a
        # format name when it renders like one (weights/sources.py)
        self.chat_template = template if isinstance(template, str) and template.strip() else None
        self.config = self._config()

    def field(self, key: str, default=None):
        f = self.reader.fields.get(key)
        if f is None:
            return default
        try:
            return f.contents()
        except Exception as e:  # a field whose type tag and bytes disagree
            raise WeightsError(f"{self.path}: GGUF metadata {key!r} is damaged ({first_line(e)}); "
                               f"re-download or re-convert the file") from None

    def _hf_name(self, name: str) -> str:
        globals_, layers, prefix = ((_OPENELM_GLOBAL_NAMES, _OPENELM_LAYER_NAMES, "transformer.layers")
                                    if self.arch == "openelm" else (_GLOBAL_NAMES, _LAYER_NAMES, "model.layers"))
        if name in globals_:
            return globals_[name]
        parts = name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in layers:
            return f"{prefix}.{parts[1]}.{layers[parts[2]]}.{parts[3]}"
        return name  # unknown: assemble() reports it as unexpected

    def _split_projections(self) -> dict[str, tuple[str, str]]:
        """OpenELM's `proj_1` (gate rows, then up rows) -> the names of its two GGUF halves, where both exist."""
        halves = {}
        for name in list(self._tensors):
            if name.endswith(".ffn.proj_1.gate.weight"):
                whole = name.replace(".proj_1.gate.", ".proj_1.")
                up = whole.replace(".proj_1.", ".proj_1.up.")
                if up in self._tensors:
                    halves[whole] = (name, up)
        return halves

    def _config(self) -> ModelConfig:
        if self.arch == "openelm":
            return self._openelm_config()
        a = "llama."
        keys = {  # HF config key -> GGUF metadata key
            "hidden_size": a + "embedding_length", "num_attention_heads": a + "attention.head_count",
            "num_key_value_heads": a + "attention.head_count_kv", "num_hidden_layers": a + "block_count",
            "intermediate_size": a + "feed_forward_length", "vocab_size": a + "vocab_size",
            "rope_theta": a + "rope.freq_base", "rms_norm_eps": a + "attention.layer_norm_rms_epsilon",
            "max_position_embeddings": a + "context_length", "bos_token_id": "tokenizer.ggml.bos_token_id",
            "eos_token_id": "tokenizer.ggml.eos_token_id",
        }
        raw = self._metadata(keys, a)
        raw["tie_word_embeddings"] = "lm_head.weight" not in self._tensors
        cfg = llama_from_hf_dict(raw, self.path.stem, where=str(self.path), labels=keys)
        cfg.hf_repo = None
        return cfg

    def _metadata(self, keys: dict[str, str], arch: str) -> dict:
        """config.json-keyed values of the GGUF keys in `keys` (absent ones None, which the config reader treats
        as not given), and the display name. `keys` gains the label for a vocabulary size found by counting."""
        raw = {hf: self.field(gguf_key) for hf, gguf_key in keys.items()}
        if raw["vocab_size"] is None:  # llama.cpp's converter often leaves it out: one token per id
            tokens = self.field("tokenizer.ggml.tokens")
            raw["vocab_size"] = len(tokens) if isinstance(tokens, list) else None
            keys["vocab_size"] = f"{arch}vocab_size (or tokenizer.ggml.tokens)"
        name = self.field("general.name")
        self.display_name = name if isinstance(name, str) else self.path.stem
        return raw

    def _openelm_config(self) -> ModelConfig:
        a = "openelm."
        keys = {  # HF OpenELM config key -> GGUF metadata key
            "model_dim": a + "embedding_length", "num_query_heads": a + "attention.head_count",
            "num_kv_heads": a + "attention.head_count_kv", "num_transformer_layers": a + "block_count",
            "ffn_dims": a + "feed_forward_length", "head_dim": a + "attention.key_length",
            "vocab_size": a + "vocab_size", "rope_freq_constant": a + "rope.freq_base",
            "max_context_length": a + "context_length", "bos_token_id": "tokenizer.ggml.bos_token_id",
            "eos_token_id": "tokenizer.ggml.eos_token_id",
        }
        raw = self._metadata(keys, a)
        raw["normalize_qk_projections"] = "transformer.layers.0.attn.q_norm.weight" in self._tensors
        raw["share_input_output_layers"] = "transformer.lm_head.weight" not in self._tensors
        # the name decides the chat format (an Instruct model's), the file stem names the package
        cfg = openelm_from_gguf_dict(raw, self.display_name, where=str(self.path), labels=keys)
        cfg.name, cfg.hf_repo = self.path.stem, None
        return cfg

    def names(self) -> set[str]:
        split = {n for pair in self._halves.values() for n in pair}
        return (set(self._tensors) - split) | set(self._halves)

    def read(self, name: str) -> torch.Tensor:
        if name in self._halves:
            return torch.cat([self.read(half) for half in self._halves[name]])
        return self._read_one(name)

    def _read_one(self, name: str) -> torch.Tensor:
        import gguf

        t = self._tensors[name]
        shape = tuple(int(s) for s in reversed(t.shape))  # GGUF lists dims fastest-first
        try:
            data = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        except (ValueError, NotImplementedError) as e:
            raise WeightsError(f"{self.path}: cannot dequantize {t.name} ({t.tensor_type.name}): {e}") from None
        heads = (self.config.num_query_heads[0] if name.endswith("self_attn.q_proj.weight") else
                 self.config.num_kv_heads[0] if name.endswith("self_attn.k_proj.weight") else None)
        if heads and data.ndim == 2 and data.shape[0] % (2 * heads) == 0:
            data = unpermute_qk(data, heads)  # any other shape is reported by assemble() as a shape mismatch
        return torch.from_numpy(np.ascontiguousarray(data))
