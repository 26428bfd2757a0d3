"""GGUF import (Llama architecture) through the `gguf` package: config, dequantized tensors, tokenizer.

llama.cpp's converter permutes the rows of Q and K so its own RoPE kernel can rotate adjacent pairs; our model
uses HF's rotate-half layout, so those rows are un-permuted here (`unpermute_qk`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError
from ..models.config import ModelConfig, llama_from_hf_dict
from ..raw_fields import first_line, shown

_LAYER_NAMES = {  # GGUF per-layer name -> HF Llama name
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                 "output.weight": "lm_head.weight"}


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
        if arch != "llama":
            raise WeightsError(f"{self.path}: GGUF architecture {shown(arch)} is not supported (only 'llama')")
        self._tensors = {}
        for t in self.reader.tensors:
            self._tensors[self._hf_name(t.name)] = t
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
        if name in _GLOBAL_NAMES:
            return _GLOBAL_NAMES[name]
        parts = name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
            return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
        return name  # unknown: assemble() reports it as unexpected

    def _config(self) -> ModelConfig:
        a = "llama."
        keys = {  # HF config key -> GGUF metadata key
            "hidden_size": a + "embedding_length", "num_attention_heads": a + "attention.head_count",
            "num_key_value_heads": a + "attention.head_count_kv", "num_hidden_layers": a + "block_count",
            "intermediate_size": a + "feed_forward_length", "vocab_size": a + "vocab_size",
            "rope_theta": a + "rope.freq_base", "rms_norm_eps": a + "attention.layer_norm_rms_epsilon",
            "max_position_embeddings": a + "context_length", "bos_token_id": "tokenizer.ggml.bos_token_id",
            "eos_token_id": "tokenizer.ggml.eos_token_id",
        }
        raw = {hf: self.field(gguf_key) for hf, gguf_key in keys.items()}
        if raw["vocab_size"] is None:  # older converters leave it out: the token list has one entry per id
            tokens = self.field("tokenizer.ggml.tokens")
            raw["vocab_size"] = len(tokens) if isinstance(tokens, list) else None
            keys["vocab_size"] = f"{a}vocab_size (or tokenizer.ggml.tokens)"
        raw["tie_word_embeddings"] = "lm_head.weight" not in self._tensors
        name = self.field("general.name")
        cfg = llama_from_hf_dict(raw, self.path.stem, where=str(self.path), labels=keys)
        cfg.hf_repo = None
        self.display_name = name if isinstance(name, str) else self.path.stem
        return cfg

    def names(self) -> set[str]:
        return set(self._tensors)

    def read(self, name: str) -> torch.Tensor:
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
