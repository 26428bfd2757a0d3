"""genai_config.json: what onnxruntime-genai needs to run the package with its generator (its tokenizer reads the
tokenizer_config.json every package carries, elmexport/hf_files.py).

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


def genai_config(cfg, form: ExplicitCacheModule, filename: str, threads: int | None = None) -> dict:
    """`threads` None leaves intra-op threads to onnxruntime (one per physical core of the device that runs the
    package), which is what an app shipped to many devices wants; a number pins it (benchmarks, shared servers)."""
    eos = list(cfg.eos_token_ids)
    session = {"log_id": "onnxruntime-genai", "provider_options": []}
    if threads is not None:
        session["intra_op_num_threads"] = threads
    return {
        "model": {
            "type": "decoder",
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": eos[0],
            "context_length": form.context,
            "vocab_size": cfg.vocab_size,
            "decoder": {
                "session_options": session,
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


def write_genai_files(out_dir: Path, cfg, form: ExplicitCacheModule, filename: str,
                      threads: int | None = None) -> list[str]:
    (out_dir / "genai_config.json").write_text(strict_json.dumps(genai_config(cfg, form, filename, threads)))
    return ["genai_config.json"]
