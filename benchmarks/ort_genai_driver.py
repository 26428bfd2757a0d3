"""Our ONNX package vs onnxruntime-genai's own model builder, both run by the same onnxruntime-genai generator.

    python benchmarks/ort_genai_driver.py                       # SmolLM2-135M-Instruct: int4, int4+last, fp32
    python benchmarks/ort_genai_driver.py --rounds 7 --prompt-tokens 128 --new-tokens 128 --threads 2 \
        --workdir /tmp/elmexport-genai --builder-pythonpath DIR  # DIR holds `transformers` if it is not installed

Why this file: the bar for our ONNX lowering is the graph onnxruntime-genai's builder writes for the same
checkpoint (peer A: `python -m onnxruntime_genai.models.builder -i HF_DIR -o OUT -p int4 -e cpu`). Running both
through one generator (`onnxruntime_genai.Generator`, greedy, same prompt, same thread count, same KV length)
leaves only the graphs to differ. The box's bandwidth drifts, so the packages run in interleaved rounds
(A, ours, A, ours, ...) and the table gives medians with min-max.

Importable (the lead puts benchmarks/ on sys.path): `build_peer_a`, `build_ours`, `OrtGenaiGenerator`; the prompt: benchmarks/prompts.py.
The builder imports `transformers`, which elmexport does not depend on; pass `builder_pythonpath` if it lives
outside the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from prompts import benchmark_prompt_ids
from timed_run import log_tail, run_measured

DEFAULT_HF_DIR = Path(os.environ.get("ELMEXPORT_CACHE", Path.home() / ".cache" / "elmexport")) / "models" / \
    "smollm2-135m-instruct"

def _timed_build(cmd: list[str], out: Path, env: dict | None, log) -> dict:
    """Run an export command with wall time and peak RSS; returns the build facts of the folder it wrote."""
    log(f"building {out.name}: {' '.join(cmd)}")
    log_path = out.parent / f"{out.name}.build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    seconds, peak_mib, rc = run_measured(cmd, log_path, env=env)
    if rc != 0:
        raise RuntimeError(f"{cmd[2] if len(cmd) > 2 else cmd[0]} failed (exit {rc}): {log_tail(log_path)}")
    info = {"path": str(out.resolve()), "export_s": round(seconds, 1),
            "export_peak_rss_mib": round(peak_mib, 1), "size_mb": _size_mb(out)}
    (out / "build_facts.json").write_text(json.dumps(info, indent=2))
    return info


def _size_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.glob("model.onnx*")) / 1e6, 1)


def _reuse(out: Path) -> dict | None:
    facts = out / "build_facts.json"
    if (out / "genai_config.json").exists() and facts.exists():
        return json.loads(facts.read_text())
    return None


def build_peer_a(hf_dir: Path, out: Path, log=print, precision: str = "int4",
                 builder_pythonpath: str | None = None) -> dict:
    """onnxruntime-genai's builder on an HF directory (reused when `out` already holds a finished build).

    -> {"path", "export_s", "export_peak_rss_mib", "size_mb"} (export facts are those of the original build).
    """
    out = Path(out)
    if (found := _reuse(out)) is not None:
        return found
    if not (Path(hf_dir) / "config.json").exists():
        raise FileNotFoundError(f"{hf_dir}: no config.json (pass the HF directory of the checkpoint)")
    env = dict(os.environ)
    if builder_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [builder_pythonpath, env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out),
           "-p", precision, "-e", "cpu", "-c", str(out.parent / f".{out.name}-cache")]
    return _timed_build(cmd, out, env, log)


def build_ours(out: Path, quant: str = "int4", log=print, extra: list[str] | None = None) -> dict:
    """`elmexport onnx --quant QUANT` on the default model (SmolLM2-135M-Instruct), reused when already built."""
    out = Path(out)
    if (found := _reuse(out)) is not None:
        return found
    cmd = [sys.executable, "-m", "elmexport.cli", "onnx", "--quant", quant, "--out", str(out), *(extra or [])]
    return _timed_build(cmd, out, None, log)


class OrtGenaiGenerator:
    """One ONNX folder with a genai_config.json, run greedily by onnxruntime-genai with a fixed thread count."""

    def __init__(self, path: Path, threads: int = 2, profile_prefix: str | None = None):
        import onnxruntime_genai as og

        self.og = og
        self.path = Path(path)
        config = og.Config(str(self.path))
        options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        if profile_prefix:
            options["enable_profiling"] = profile_prefix
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.model = og.Model(config)

    def run(self, prompt_ids: list[int], new_tokens: int) -> dict:
        """Prefill the prompt, then `new_tokens` greedy tokens (EOS suppressed so every run does the same work).

        ttft = prompt forward + first token; decode tok/s counts the new_tokens - 1 forwards after it.
        """
        if new_tokens < 2:
            raise ValueError("new_tokens must be at least 2 (decode speed needs one forward after the first token)")
        og = self.og
        total = len(prompt_ids) + new_tokens
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=total, min_length=total, do_sample=False)
        gen = og.Generator(self.model, params)
        t0 = time.perf_counter()
        gen.append_tokens(list(prompt_ids))
        t1 = time.perf_counter()
        gen.generate_next_token()
        tokens = [int(gen.get_next_tokens()[0])]
        t2 = time.perf_counter()
        while len(tokens) < new_tokens:
            gen.generate_next_token()
            tokens.append(int(gen.get_next_tokens()[0]))
        t3 = time.perf_counter()
        del gen
        return {"prefill_tok_s": len(prompt_ids) / (t1 - t0), "decode_tok_s": (new_tokens - 1) / (t3 - t2),
                "ttft_ms": 1000 * (t2 - t0), "tokens": tokens}


def compare(packages: dict[str, Path], prompt: list[int], new_tokens: int, rounds: int, threads: int,
            log=print) -> dict:
    """Interleaved rounds over every package, order reversed every other round;
    -> {name: {"prefill_tok_s": [...], "decode_tok_s": [...], "ttft_ms": [...], "tokens": [...]}}."""
    gens = {name: OrtGenaiGenerator(p, threads) for name, p in packages.items()}
    for g in gens.values():  # warm-up: allocations and weight prepacking out of the timings
        g.run(prompt[:16], 4)
    results = {name: {"prefill_tok_s": [], "decode_tok_s": [], "ttft_ms": [], "tokens": None} for name in gens}
    for rnd in range(rounds):
        order = list(gens) if rnd % 2 == 0 else list(gens)[::-1]  # A B C, C B A, ...: no package always first
        for name in order:
            r = gens[name].run(prompt, new_tokens)
            res = results[name]
            for key in ("prefill_tok_s", "decode_tok_s", "ttft_ms"):
                res[key].append(r[key])
            res["tokens"] = r["tokens"]
            log(f"round {rnd + 1}: {name:24s} prefill {r['prefill_tok_s']:7.1f} tok/s  "
                f"decode {r['decode_tok_s']:6.1f} tok/s  ttft {r['ttft_ms']:6.1f} ms")
    return results


def fmt(xs: list[float], digits: int = 1) -> str:
    return f"{statistics.median(xs):.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def per_round_ratio(xs: list[float], base: list[float]) -> list[float]:
    """x / base within each round: both ran in the same minute, so box load shifts between rounds cancel."""
    return [x / b for x, b in zip(xs, base)]


def print_table(results: dict, builds: dict, peer_name: str, args) -> None:
    peer = results[peer_name]
    print(f"\nSmolLM2-135M-Instruct, onnxruntime-genai generator, {args.threads} threads, prompt {args.prompt_tokens}"
          f" tokens, {args.new_tokens} greedy new tokens, {args.rounds} interleaved rounds, median (min-max); "
          f"x A = median of the per-round ratios to peer A")
    print(f"{'package':26s} {'decode tok/s':>20s} {'x A':>5s} {'prefill tok/s':>22s} {'x A':>5s} {'ttft ms':>20s} "
          f"{'MB':>6s} {'export s':>8s} {'peak MiB':>8s} {'greedy = A':>10s}")
    for name, res in results.items():
        b = builds[name]
        same = next((i for i, (a, o) in enumerate(zip(peer["tokens"], res["tokens"])) if a != o), len(res["tokens"]))
        dec_x = statistics.median(per_round_ratio(res["decode_tok_s"], peer["decode_tok_s"]))
        pre_x = statistics.median(per_round_ratio(res["prefill_tok_s"], peer["prefill_tok_s"]))
        print(f"{name:26s} {fmt(res['decode_tok_s']):>20s} {dec_x:5.2f} {fmt(res['prefill_tok_s']):>22s} "
              f"{pre_x:5.2f} {fmt(res['ttft_ms']):>20s} {b['size_mb']:6.1f} {b['export_s']:8.1f} "
              f"{b['export_peak_rss_mib']:8.0f} {same:>6d}/{len(res['tokens'])}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hf-dir", type=Path, default=DEFAULT_HF_DIR)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/elmexport-genai"))
    p.add_argument("--quants", default="int4,int4+last,none",
                   help="our packages (elmexport onnx --quant Q; Q+last adds --logits last)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--builder-pythonpath", default=None, help="extra PYTHONPATH for the builder (transformers)")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    args = p.parse_args(argv)

    def log(*a):
        print(*a, file=sys.stderr, flush=True)

    args.workdir.mkdir(parents=True, exist_ok=True)
    log(f"load average at start: {os.getloadavg()}")
    builds = {"peer A int4 (og builder)": build_peer_a(args.hf_dir, args.workdir / "peer-a-int4", log,
                                                       builder_pythonpath=args.builder_pythonpath)}
    for q in [q for q in args.quants.split(",") if q]:
        quant, _, last = q.partition("+")
        extra = ["--logits", "last"] if last == "last" else []
        name = f"ours {quant}" + (" --logits last" if extra else "")
        builds[name] = build_ours(args.workdir / f"ours-{q}", quant, log, extra)
    prompt = benchmark_prompt_ids(Path(args.hf_dir) / "tokenizer.json", args.prompt_tokens)
    results = compare({k: Path(v["path"]) for k, v in builds.items()}, prompt, args.new_tokens, args.rounds,
                      args.threads, log)
    print_table(results, builds, "peer A int4 (og builder)", args)
    log(f"load average at the end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "builds": builds,
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
