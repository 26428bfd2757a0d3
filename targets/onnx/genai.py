"""genai_config.json (+ tokenizer_config.json): what onnxruntime-genai needs to run the package with its generator.

The decoder takes `attention_mask` (its length gives the past length; positions are computed inside
GroupQueryAttention) and writes the new KV rows into the buffer it reads (`past_present_share_buffer: true`:
onnxruntime-genai allocates one [1, n_kv_i, max_length, head_dim] buffer per layer and binds it as both past and
present). OpenELM's per-layer KV head counts are not in this file: onnxruntime-genai reads them from the static head
axis of each `past_key_values.%d.key` input; `num_key_value_heads` here is layer 0's.
"""

from __future__ import annotations

from pathlib import Path

from ... import strict_json
from .form import ExplicitCacheModule


def genai_config(cfg, form: ExplicitCacheModule, filename: str, threads: int = 2) -> dict:
    eos = list(cfg.eos_token_ids)
    return {
        "model": {
            "type": "decoder",
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": eos[0],
            "context_length": form.context,
            "vocab_size": cfg.vocab_size,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "intra_op_num_threads": threads,
                                    "provider_options": []},
                "filename": filename,
                "head_size": cfg.head_dim,
                "hidden_size": cfg.model_dim,
                "num_attention_heads": cfg.num_query_heads[0],
                "num_key_value_heads": form.kv_heads[0],
                "num_hidden_layers": cfg.num_layers,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
            },
        },
        "search": {
            "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
            "max_length": form.context, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
            "num_return_sequences": 1, "past_present_share_buffer": True, "repetition_penalty": 1.0,
            "temperature": 1.0, "top_k": 1, "top_p": 1.0,
        },
    }


def tokenizer_config(cfg, tokenizer) -> dict:
    """The HF-style tokenizer_config.json onnxruntime-genai's tokenizer reads beside tokenizer.json."""
    tok = tokenizer.tokenizer

    def token(i):
        return tok.id_to_token(i) if i is not None and i < tok.get_vocab_size() else None

    return {
        "tokenizer_class": "LlamaTokenizer" if cfg.family == "openelm" else "GPT2Tokenizer",
        "bos_token": token(cfg.bos_token_id),
        "eos_token": token(cfg.eos_token_ids[0]),
        "add_bos_token": bool(tokenizer.add_bos),
        "add_eos_token": False,
        "model_max_length": cfg.max_context_length,
    }


def write_genai_files(out_dir: Path, cfg, form: ExplicitCacheModule, filename: str, tokenizer) -> list[str]:
    (out_dir / "genai_config.json").write_text(strict_json.dumps(genai_config(cfg, form, filename)))
    written = ["genai_config.json"]
    if tokenizer is not None:
        (out_dir / "tokenizer_config.json").write_text(strict_json.dumps(tokenizer_config(cfg, tokenizer)))
        written.append("tokenizer_config.json")
    return written
