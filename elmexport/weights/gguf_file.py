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
            raise WeightsError(f"{self.path}: not a readable GGUF file ({str(e).splitlines()[0][:160]})") from None
        arch = self.field("general.architecture")
        if arch != "llama":
            raise WeightsError(f"{self.path}: GGUF architecture {arch!r} is not supported (only 'llama')")
        self._tensors = {}
        for t in self.reader.tensors:
            self._tensors[self._hf_name(t.name)] = t
        self.config = self._config()

    def field(self, key: str, default=None):
        f = self.reader.fields.get(key)
        return default if f is None else f.contents()

    def _hf_name(self, name: str) -> str:
        if name in _GLOBAL_NAMES:
            return _GLOBAL_NAMES[name]
        parts = name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
            return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
        return name  # unknown: assemble() reports it as unexpected

    def _config(self) -> ModelConfig:
        a = "llama."
        raw = {
            "hidden_size": self.field(a + "embedding_length"),
            "num_attention_heads": self.field(a + "attention.head_count"),
            "num_key_value_heads": self.field(a + "attention.head_count_kv"),
            "num_hidden_layers": self.field(a + "block_count"),
            "intermediate_size": self.field(a + "feed_forward_length"),
            "vocab_size": self.field(a + "vocab_size") or len(self.field("tokenizer.ggml.tokens", [])),
            "rope_theta": self.field(a + "rope.freq_base", 10000.0),
            "rms_norm_eps": self.field(a + "attention.layer_norm_rms_epsilon", 1e-5),
            "max_position_embeddings": self.field(a + "context_length", 2048),
            "tie_word_embeddings": "lm_head.weight" not in self._tensors,
            "bos_token_id": self.field("tokenizer.ggml.bos_token_id", 1),
            "eos_token_id": self.field("tokenizer.ggml.eos_token_id", 2),
        }
        missing = [k for k, v in raw.items() if v is None]
        if missing:
            raise WeightsError(f"{self.path}: GGUF metadata lacks {missing[0]!r}; the file is not a complete llama GGUF")
        name = self.field("general.name") or self.path.stem
        cfg = llama_from_hf_dict(raw, self.path.stem)
        cfg.hf_repo = None
        if self.field("tokenizer.chat_template") and "<|im_start|>" in self.field("tokenizer.chat_template"):
            cfg.chat_template = "chatml"
        self.display_name = name
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
        if name.endswith("self_attn.q_proj.weight"):
            data = unpermute_qk(data, self.config.num_query_heads[0])
        elif name.endswith("self_attn.k_proj.weight"):
            data = unpermute_qk(data, self.config.num_kv_heads[0])
        return torch.from_numpy(np.ascontiguousarray(data))
