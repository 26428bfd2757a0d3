"""Our ExecuTorch package vs ExecuTorch's own LLM exporter, both run by ExecuTorch's TextLLMRunner.

    python benchmarks/et_runner_driver.py [--hf-dir DIR] [--out dist/et-peer] [--rounds 5] [--new-tokens 128]
        [--peer-options max_seq_length=128,quantize_kv_cache=true,...]

Peer B is `python -m executorch.extension.llm.export.export_llm` on the same SmolLM2-135M-Instruct weights
(model class smollm2, embedding left fp32, head stored separately from the embedding, as its SmolLM2 recipe does)
in the configuration a user tunes it to (PEER_OPTIONS): XNNPACK with extended_ops, KV cache with custom SDPA
(use_sdpa_with_kv_cache), 8da4w group 32, fp32, max_seq_length 256, max_context_length 512 (our quickstart's
context). --peer-options changes single options for a sweep (group_size, quantize_kv_cache, max_seq_length, ...);
ours is then built with the same context and chunk. Its SmolLM2 weight converter imports torchtune, which does
not import beside torchao 0.18, so the HF -> Meta renaming (and the Q/K row order of Meta's interleaved RoPE) is
done here. Ours is `elmexport executorch --quant 8da4w` (and `--quant none`) on the same weights (the default
model's checkpoint, as the quickstart downloads and converts it). Both .pte files are run by
`executorch.extension.llm.runner.TextLLMRunner`, greedy, on the same 128-token prompt for 128 new tokens, 2
threads, in interleaved rounds (B, ours, B, ours, ...): this machine's memory bandwidth drifts from minute to
minute, so one timing means little; medians with min-max are printed.

Importable (benchmarks/ is not a package: put this directory on sys.path): build_peer_b, EtLlmRunnerGenerator.
The prompt: benchmarks/prompts.py.

Numbers: docs/benchmarks.md, side-by-side tables (benchmarks/side_by_side.py runs these generators, each in a fresh process
with MKL_NUM_THREADS=1: see that file's docstring for why ExecuTorch's custom_sdpa needs it in a Python process).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

from prompts import benchmark_prompt_ids
from timed_run import run_measured

DEFAULT_HF_DIR = Path.home() / ".cache" / "elmexport" / "models" / "smollm2-135m-instruct"
PEER_NAME = "smollm2_8da4w_peer_b"
# The strongest configuration a user would tune export_llm to for this comparison (our quickstart's context is 512):
# XNNPACK with extended_ops, KV cache with custom SDPA (use_sdpa_with_kv_cache), 8da4w group 32, fp32.
PEER_OPTIONS = {"max_seq_length": 256, "max_context_length": 512, "group_size": 32, "extended_ops": True,
                "use_sdpa_with_kv_cache": True, "quantize_kv_cache": False}
PEER_MAX_SEQ_LEN = PEER_OPTIONS["max_seq_length"]
PEER_CONTEXT = PEER_OPTIONS["max_context_length"]


def peer_options(spec: str = "") -> dict:
    """PEER_OPTIONS with `key=value,...` overrides (ints and true/false parsed): one point of an export_llm sweep."""
    options = dict(PEER_OPTIONS)
    for item in [i for i in spec.split(",") if i]:
        key, _, value = item.partition("=")
        if key not in options:
            raise ValueError(f"unknown peer B option {key!r}; choose from {', '.join(options)}")
        options[key] = value.lower() == "true" if isinstance(options[key], bool) else int(value)
    return options


def _meta_state_dict(hf_dir: Path) -> dict:
    """HF Llama names -> the names ExecuTorch's llama Transformer loads; Q/K rows from HF's half-split RoPE order to
    Meta's interleaved order (what executorch's own SmolLM2 converter gets through torchtune)."""
    from safetensors.torch import load_file

    cfg = json.loads((hf_dir / "config.json").read_text())
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    sd = load_file(str(hf_dir / "model.safetensors"))

    def interleave(w, heads):
        return w.view(heads, 2, hd // 2, w.shape[1]).transpose(1, 2).reshape(w.shape).contiguous()

    out = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    out["output.weight"] = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    names = {"self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo",
             "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2", "mlp.up_proj": "feed_forward.w3",
             "input_layernorm": "attention_norm", "post_attention_layernorm": "ffn_norm"}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[f"layers.{i}.attention.wq.weight"] = interleave(sd[p + "self_attn.q_proj.weight"], cfg["num_attention_heads"])
        out[f"layers.{i}.attention.wk.weight"] = interleave(sd[p + "self_attn.k_proj.weight"], cfg["num_key_value_heads"])
        for hf, meta in names.items():
            out[f"layers.{i}.{meta}.weight"] = sd[p + hf + ".weight"]
    return out


def _peer_params(hf_dir: Path) -> dict:
    cfg = json.loads((hf_dir / "config.json").read_text())
    return {"dim": cfg["hidden_size"], "hidden_dim": cfg["intermediate_size"], "ffn_dim_multiplier": 1,
            "n_heads": cfg["num_attention_heads"], "n_kv_heads": cfg["num_key_value_heads"],
            "n_layers": cfg["num_hidden_layers"], "norm_eps": cfg["rms_norm_eps"], "rope_theta": cfg["rope_theta"],
            "use_scaled_rope": False, "vocab_size": cfg["vocab_size"], "use_hf_rope": False,
            "attention_qkv_bias": False}


def _peer_config_yaml(out: Path, hf_dir: Path, options: dict | None = None) -> str:
    o = options or PEER_OPTIONS
    cfg = json.loads((hf_dir / "config.json").read_text())
    eos = cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]]
    metadata = json.dumps({"get_bos_id": cfg["bos_token_id"], "get_eos_ids": eos})
    return "\n".join([
        "base:",
        "  model_class: smollm2",
        f"  params: {out / 'params.json'}",
        f"  checkpoint: {out / 'checkpoint.pth'}",
        f"  metadata: '{metadata}'",
        "model:",
        "  use_kv_cache: true",
        f"  use_sdpa_with_kv_cache: {str(o['use_sdpa_with_kv_cache']).lower()}",
        f"  quantize_kv_cache: {str(o['quantize_kv_cache']).lower()}",
        "  enable_dynamic_shape: true",
        "  dtype_override: fp32",
        "export:",
        f"  max_seq_length: {o['max_seq_length']}",
        f"  max_context_length: {o['max_context_length']}",
        f"  output_dir: {out}",
        f"  output_name: {PEER_NAME}.pte",
        "quantization:",
        "  qmode: 8da4w",
        f"  group_size: {o['group_size']}",
        "backend:",
        "  xnnpack:",
        "    enabled: true",
        f"    extended_ops: {str(o['extended_ops']).lower()}",
        "",
    ])


def build_peer_b(hf_dir: Path, out: Path, log=print, options: dict | None = None) -> dict:
    """ExecuTorch's own exporter on hf_dir with `options` (default PEER_OPTIONS; reused when out already holds its
    .pte and a timing record of the same options)."""
    import torch

    out = Path(out).resolve()
    options = options or PEER_OPTIONS
    pte, record = out / f"{PEER_NAME}.pte", out / "build.json"
    if pte.exists() and record.exists() and json.loads(record.read_text()).get("options") == options:
        return json.loads(record.read_text())
    hf_dir = Path(hf_dir)
    if not (hf_dir / "model.safetensors").exists():
        raise FileNotFoundError(f"{hf_dir}: no model.safetensors (an HF Llama directory is needed)")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.save(_meta_state_dict(hf_dir), out / "checkpoint.pth")
    (out / "params.json").write_text(json.dumps(_peer_params(hf_dir), indent=1))
    (out / "config.yaml").write_text(_peer_config_yaml(out, hf_dir, options))
    convert_s = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "executorch.extension.llm.export.export_llm", "--config", str(out / "config.yaml")]
    log(f"peer B: {' '.join(cmd)} (log: {out / 'export.log'})")
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    wall, rss, rc = run_measured(cmd, out / "export.log", env=env, cwd=out)  # it saves the .pte (and Hydra its
    if rc or not pte.exists():                                                 # outputs/ dir) in the cwd
        tail = (out / "export.log").read_text()[-2000:]
        raise RuntimeError(f"peer B export failed (exit {rc}); see {out / 'export.log'}\n{tail}")
    result = {"path": str(pte), "export_s": round(wall + convert_s, 1), "export_peak_rss_mib": round(rss),
              "size_mb": round(pte.stat().st_size / 1e6, 1), "convert_s": round(convert_s, 1), "options": options}
    record.write_text(json.dumps(result, indent=1))
    return result


def _byte_level_inverse(tokenizer_path: Path) -> dict[str, int]:
    """Decoded token text -> id for a byte-level BPE tokenizer.json (TextLLMRunner reports text pieces, not ids)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    inverse: dict[str, int] = {}
    for token_id in range(tok.get_vocab_size()):
        inverse.setdefault(tok.decode([token_id], skip_special_tokens=False), token_id)
    return inverse


@contextlib.contextmanager
def _quiet_native_output():
    """The C++ runner prints every token and a stats report to fds 1/2; keep the benchmark table readable."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


class EtLlmRunnerGenerator:
    """Greedy generation with ExecuTorch's TextLLMRunner on any LLM .pte (ours or export_llm's); timings from its
    stats callback. TextLLMRunner takes text, so prompt_ids must round-trip through the tokenizer (checked)."""

    def __init__(self, pte_path, tokenizer_path, threads: int = 2):
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (llama:: kernels the .pte may call)
        import executorch.kernels.quantized  # noqa: F401  (quantized embeddings)
        from executorch.extension.llm.runner import TextLLMRunner
        from executorch.extension.pybindings import portable_lib
        from tokenizers import Tokenizer

        portable_lib._unsafe_reset_threadpool(threads)  # the runner's XNNPACK / custom_sdpa share this pool
        self.threads = portable_lib._threadpool_get_thread_count()
        self.pte_path, self.tokenizer_path = Path(pte_path), Path(tokenizer_path)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        with _quiet_native_output():
            self.runner = TextLLMRunner(str(pte_path), str(tokenizer_path))
        self._inverse = None

    def prompt_text(self, prompt_ids: list[int]) -> str:
        text = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        again = self.tokenizer.encode(text, add_special_tokens=False).ids
        if again != list(prompt_ids):
            raise ValueError("prompt_ids do not round-trip through the tokenizer's text; TextLLMRunner takes text "
                             "(take the ids of a tokenized text)")
        return text

    def run(self, prompt_ids: list[int], new_tokens: int) -> dict:
        from executorch.extension.llm.runner import GenerationConfig

        text = self.prompt_text(prompt_ids)
        pieces, stats = [], []
        self.runner.reset()
        config = GenerationConfig(max_new_tokens=new_tokens, temperature=0.0, echo=False, num_bos=0, num_eos=0)
        with _quiet_native_output():
            self.runner.generate(text, config, token_callback=pieces.append, stats_callback=stats.append)
        s = stats[-1]
        if s.num_prompt_tokens != len(prompt_ids):
            raise RuntimeError(f"runner saw {s.num_prompt_tokens} prompt tokens, expected {len(prompt_ids)}")
        prefill_ms = s.prompt_eval_end_ms - s.inference_start_ms
        decode_ms = s.inference_end_ms - s.prompt_eval_end_ms
        if self._inverse is None:
            self._inverse = _byte_level_inverse(self.tokenizer_path)
        return {"prefill_tok_s": 1000.0 * len(prompt_ids) / max(prefill_ms, 1e-9),
                # num_generated_tokens counts decode steps (the first token comes out of prefill)
                "decode_tok_s": 1000.0 * s.num_generated_tokens / max(decode_ms, 1e-9),
                "ttft_ms": float(s.first_token_ms - s.inference_start_ms),
                "decode_steps": int(s.num_generated_tokens),
                "tokens": [self._inverse.get(p, -1) for p in pieces], "text": "".join(pieces)}


def build_ours(quant: str, out: Path, hf_dir: Path, log=print, context: int = PEER_CONTEXT,
               max_seq_len: int = PEER_MAX_SEQ_LEN) -> dict:
    """`elmexport executorch --quant QUANT --context C --max-seq-len N` on hf_dir, with peer B's context and chunk
    by default (reused when out already holds the same build); wall time and peak RSS."""
    out = Path(out).resolve()
    record = out.parent / f"{out.name}.build.json"
    shape = {"context": context, "max_seq_len": max_seq_len}
    if (out / "model.pte").exists() and record.exists() and \
            {k: json.loads(record.read_text()).get(k) for k in shape} == shape:
        return json.loads(record.read_text())
    cmd = [sys.executable, "-m", "elmexport.cli", "executorch", "--quant", quant, "--weights", str(hf_dir),
           "--context", str(context), "--max-seq-len", str(max_seq_len), "--no-cache", "--overwrite",
           "--out", str(out)]
    log(f"ours: {' '.join(cmd)}")
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    wall, rss, rc = run_measured(cmd, out.parent / f"{out.name}.export.log", env=env)
    if rc:
        raise RuntimeError(f"elmexport failed (exit {rc}); see {out.parent / f'{out.name}.export.log'}")
    result = {"path": str(out / "model.pte"), "export_s": round(wall, 1), "export_peak_rss_mib": round(rss),
              "size_mb": round((out / "model.pte").stat().st_size / 1e6, 1), **shape}
    record.write_text(json.dumps(result, indent=1))
    return result


def _summary(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main(argv=None) -> int:
    from elmexport.targets.executorch.runner import EXECUTORCH_PROCESS_ENV

    for key, value in EXECUTORCH_PROCESS_ENV.items():  # before MKL starts (torch is imported lazily below); the
        os.environ.setdefault(key, value)             # exports below set their own thread counts
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hf-dir", type=Path, default=DEFAULT_HF_DIR)
    p.add_argument("--out", type=Path, default=Path("dist/et-peer"), help="peer B and our packages go here")
    p.add_argument("--quants", default="8da4w,none", help="our packages to compare (elmexport --quant values)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-tokens", type=int, default=128,
                   help="prompt length (at most max_seq_length - 1: export_llm exports T <= max_seq_length - 1 "
                        "while telling the runner max_seq_length, so a longer prompt fails in its single prefill "
                        "chunk)")
    p.add_argument("--peer-options", default="", metavar="KEY=VALUE,...",
                   help=f"export_llm options over the default {PEER_OPTIONS} (one point of a sweep)")
    p.add_argument("--also", action="append", default=[], metavar="NAME=PTE",
                   help="another .pte to run in the same rounds (e.g. an earlier build of ours)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    try:
        options = peer_options(args.peer_options)
    except ValueError as e:
        p.error(str(e))
    if args.prompt_tokens >= options["max_seq_length"]:
        p.error(f"--prompt-tokens {args.prompt_tokens}: export_llm's program takes at most max_seq_length - 1 = "
                f"{options['max_seq_length'] - 1} prompt tokens; pass fewer")
    builds = {"peer B (export_llm 8da4w)": build_peer_b(args.hf_dir, args.out / "peer_b", options=options)}
    for q in [q for q in args.quants.split(",") if q]:
        builds[f"ours {q}"] = build_ours(q, args.out / f"ours-{q}", args.hf_dir, context=options["max_context_length"],
                                         max_seq_len=options["max_seq_length"])
    for item in args.also:
        name, _, path = item.partition("=")
        if not Path(path).is_file():
            p.error(f"--also {item}: no such .pte file")
        records = [Path(path).parent.parent / f"{Path(path).parent.name}.build.json",  # ours (build_ours)
                   Path(path).parent / "build.json"]  # a peer B build (build_peer_b)
        record = next((r for r in records if r.exists()), records[0])
        builds[name] = json.loads(record.read_text()) if record.exists() else \
            {"path": path, "export_s": float("nan"), "export_peak_rss_mib": -1,
             "size_mb": round(Path(path).stat().st_size / 1e6, 1)}
    tokenizer = args.hf_dir / "tokenizer.json"
    prompt = benchmark_prompt_ids(tokenizer, args.prompt_tokens)
    gens = {name: EtLlmRunnerGenerator(b["path"], tokenizer, threads=args.threads) for name, b in builds.items()}
    for g in gens.values():  # warm-up: XNNPACK weight packing happens at load / first call
        g.run(prompt, 8)
    runs: dict[str, list[dict]] = {name: [] for name in gens}
    for r in range(args.rounds):
        for name, g in gens.items():
            runs[name].append(g.run(prompt, args.new_tokens))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {runs[n][-1]['decode_tok_s']:.0f}" for n in gens), flush=True)
    print(f"\nSmolLM2-135M-Instruct, TextLLMRunner, {args.threads} threads, {len(prompt)}-token prompt, "
          f"{args.new_tokens} greedy new tokens, {args.rounds} interleaved rounds: median (min-max)\n")
    print("| program | decode tok/s | prefill tok/s | TTFT ms | export s | export peak RSS MiB | .pte MB |")
    print("|---|---|---|---|---|---|---|")
    table = {}
    for name, rs in runs.items():
        b = builds[name]
        table[name] = {"decode_tok_s": [x["decode_tok_s"] for x in rs], "prefill_tok_s": [x["prefill_tok_s"] for x in rs],
                       "ttft_ms": [x["ttft_ms"] for x in rs], "build": b, "text": rs[-1]["text"][:200]}
        print(f"| {name} | {_summary(table[name]['decode_tok_s'])} | {_summary(table[name]['prefill_tok_s'])} | "
              f"{_summary(table[name]['ttft_ms'])} | {b['export_s']:.0f} | {b['export_peak_rss_mib']} | "
              f"{b['size_mb']} |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    first = {name: rs[-1]["tokens"] for name, rs in runs.items()}
    names = list(first)
    for n in names[1:]:  # quantized differently (export_llm: HQQ scales), so they part after a while
        same = next((i for i, (a, b) in enumerate(zip(first[names[0]], first[n])) if a != b), len(first[n]))
        print(f"greedy tokens identical to {names[0]}: first {same} of {len(first[n])} ({n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
