"""`elmexport info`: the per-layer architecture table, computed from the config alone (nothing allocated)."""

from __future__ import annotations

from .models.config import ModelConfig


def architecture_summary(cfg: ModelConfig, context: int | None = None) -> dict:
    context = cfg.check_context(context)
    layers = [
        {"layer": i, "query_heads": cfg.num_query_heads[i], "kv_heads": cfg.num_kv_heads[i],
         "qkv_dim": cfg.qkv_dim(i), "ffn_dim": cfg.ffn_dims[i], "parameters": cfg.layer_parameters(i)}
        for i in range(cfg.num_layers)
    ]
    return {
        "name": cfg.name, "family": cfg.family, "num_layers": cfg.num_layers, "model_dim": cfg.model_dim,
        "head_dim": cfg.head_dim, "vocab_size": cfg.vocab_size, "num_query_heads": cfg.num_query_heads,
        "num_kv_heads": cfg.num_kv_heads, "ffn_dims": cfg.ffn_dims, "num_parameters": cfg.num_parameters,
        "tie_word_embeddings": cfg.tie_word_embeddings, "num_rmsnorms": cfg.num_norms, "context": context,
        "kv_cache_bytes_fp16": cfg.kv_cache_bytes(context), "layers": layers,
    }


def print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{s['name']} ({s['family']}): {s['num_layers']} layers, d={s['model_dim']}, head_dim={s['head_dim']}")
    for col in ("layer", "q heads", "kv heads", "qkv width", "ffn width", "params"):
        t.add_column(col, justify="right")
    for row in s["layers"]:
        t.add_row(str(row["layer"]), str(row["query_heads"]), str(row["kv_heads"]), str(row["qkv_dim"]),
                  str(row["ffn_dim"]), f"{row['parameters']:,}")
    console = Console()
    console.print(t)
    tied = "tied" if s["tie_word_embeddings"] else "untied"
    console.print(f"total parameters: {s['num_parameters']:,} ({tied} embedding/head, vocab {s['vocab_size']})")
    console.print(f"RMSNorms: {s['num_rmsnorms']};  KV cache (fp16) at {s['context']} tokens: "
                  f"{s['kv_cache_bytes_fp16'] / 2**20:.1f} MiB")
