"""`elmexport validate`: one token stream through every stage, error attributed per stage, a CI gate.

Stages: eager fp32 reference -> optimised IR (same passes, same quantized values, in PyTorch) -> the package in
its own runtime. Each stage is compared with the eager reference and with the stage before it, so a report
says whether error came from quantization (eager -> IR) or from lowering/runtime (IR -> package).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ElmExportError
from ..package import read_manifest, verify_checksums
from .eager import EagerRunner
from .layers import eager_hidden_states, first_jump, ir_hidden_states, layer_errors
from .metrics import greedy_match, step_metrics, summarize
from .perplexity import DEFAULT_TEXT, perplexity
from .reference import rebuild_compiled
from .runners import open_package_runner

THRESHOLD_KEYS = ("max_abs_err", "min_top1", "max_ppl_increase", "min_greedy_match", "min_cosine")


@dataclass
class ValidateOptions:
    text: Path = DEFAULT_TEXT
    prefill_tokens: int = 32
    decode_steps: int = 8
    greedy_tokens: int = 16
    ppl_tokens: int = 256
    ppl_window: int = 128
    latency: bool = True
    latency_rounds: int = 3
    thresholds: dict = field(default_factory=dict)


def _text_tokens(tokenizer, text_path: Path, n: int, vocab: int) -> tuple[list[int], str]:
    if tokenizer is None:
        g = np.random.default_rng(0)
        return g.integers(0, vocab, n).tolist(), "seeded random ids (package has no tokenizer)"
    if not text_path.exists():
        raise ElmExportError(f"--text {text_path}: no such file")
    ids = tokenizer.encode(text_path.read_text(errors="replace"))
    if len(ids) < n:
        raise ElmExportError(f"--text {text_path}: only {len(ids)} tokens, need {n}; give a longer text")
    return ids, str(text_path)


def _teacher_forced(runner, ids: list[int], prefill: int, decode_steps: int) -> list[np.ndarray]:
    """Logits of the prefill step, then of each teacher-forced decode step (the text's next token)."""
    runner.reset()
    steps = [runner.forward(ids[:prefill], 0)]
    for s in range(decode_steps):
        steps.append(runner.forward([ids[prefill + s]], prefill + s))
    return steps


def _greedy(runner, prompt: list[int], n: int) -> list[int]:
    runner.reset()
    logits = runner.forward(prompt, 0)
    out = []
    for s in range(n):
        token = int(logits[-1].argmax())
        out.append(token)
        if s + 1 < n:
            logits = runner.forward([token], len(prompt) + s)
    return out


def validate_package(package_dir: str | Path, options: ValidateOptions, log=print) -> dict:
    package_dir = Path(package_dir)
    unknown = set(options.thresholds) - set(THRESHOLD_KEYS)
    if unknown:
        raise ElmExportError(f"unknown threshold {sorted(unknown)[0]!r}; known: {', '.join(THRESHOLD_KEYS)}")
    manifest = read_manifest(package_dir)
    context = int(manifest["context_length"])
    need = options.prefill_tokens + max(options.decode_steps, options.greedy_tokens) + 1
    if need > context:
        raise ElmExportError(f"the package's context ({context}) is shorter than the {need} tokens validation "
                             f"needs; lower --prefill-tokens/--decode-steps/--greedy-tokens")
    tampered = verify_checksums(package_dir, manifest)
    log(f"validating {package_dir} ({manifest['target']}, quant {manifest['quantization']['name']}); "
        f"rebuilding the reference from the manifest ...")
    compiled = rebuild_compiled(manifest, package_dir, log)
    package_runner = open_package_runner(package_dir, manifest)
    runners = [("eager", EagerRunner(compiled.loaded.model)), ("ir", compiled.ir.runner()),
               (f"{manifest['target']}", package_runner)]
    ids, text_source = _text_tokens(compiled.loaded.tokenizer, Path(options.text),
                                    max(need, options.ppl_tokens + 1), compiled.loaded.cfg.vocab_size)
    stream = ids[:need]
    prompt = stream[:options.prefill_tokens]

    stages, ref_steps, prev_steps, ref_greedy, ref_ppl = [], None, None, None, None
    for name, runner in runners:
        log(f"stage {name}: teacher-forced prefill {options.prefill_tokens} + {options.decode_steps} decode steps, "
            f"greedy {options.greedy_tokens}, perplexity over {options.ppl_tokens} tokens ...")
        steps = _teacher_forced(runner, stream, options.prefill_tokens, options.decode_steps)
        greedy = _greedy(runner, prompt, options.greedy_tokens)
        ppl = perplexity(runner, ids, options.ppl_window, options.ppl_tokens + 1)["perplexity"]
        entry = {"name": name, "runtime": getattr(runner, "name", name), "perplexity": ppl, "greedy_tokens": greedy}
        if ref_steps is None:
            ref_steps, ref_greedy, ref_ppl = steps, greedy, ppl
            entry.update(max_abs_err=0.0, max_rel_err=0.0, cosine_min=1.0, top1_agreement=1.0,
                         greedy_match_tokens=len(greedy), steps=[])
        else:
            per_step = []
            for i, (a, b) in enumerate(zip(ref_steps, steps)):
                m = step_metrics(a, b)
                m.update(step="prefill" if i == 0 else f"decode {i}", positions=len(a))
                per_step.append(m)
            entry.update(summarize(per_step))
            entry["steps"] = per_step
            entry["greedy_match_tokens"] = greedy_match(ref_greedy, greedy)
            vs_prev = summarize([dict(step_metrics(a, b), positions=len(a)) for a, b in zip(prev_steps, steps)])
            entry["vs_previous_stage"] = {k: vs_prev[k] for k in ("max_abs_err", "top1_agreement", "cosine_min")}
            entry["ppl_increase"] = ppl / ref_ppl - 1.0
        stages.append(entry)
        prev_steps = steps

    log("per-layer hidden-state error (eager vs IR) ...")
    layer_rows = layer_errors(eager_hidden_states(compiled.loaded.model, prompt), ir_hidden_states(compiled.ir, prompt))
    latency = {}
    if options.latency:
        from .latency import measure_in_subprocess

        log(f"latency of {manifest['target']} on this host (own process) ...")
        latency[manifest["target"]] = measure_in_subprocess(package_dir, options.prefill_tokens, 16,
                                                            options.latency_rounds)
        from .latency import measure

        latency["eager"] = measure(runners[0][1], prompt, 16, options.latency_rounds)
        latency["eager"]["runtime"] = "PyTorch eager fp32 (in the validator's process)"

    checks = gate(stages[-1], options.thresholds, tampered)
    return {
        "package": str(package_dir), "target": manifest["target"], "model": manifest["model"]["name"],
        "quantization": manifest["quantization"]["name"], "random_weights": manifest.get("random_weights", False),
        "text": text_source, "stream_tokens": len(stream),
        "stages": stages, "layers": {"eager_vs_ir": layer_rows, "first_jump_layer": first_jump(layer_rows)},
        "latency": latency, "thresholds": options.thresholds, "checks": checks,
        "passed": all(c["passed"] for c in checks),
    }


def gate(final: dict, thresholds: dict, tampered: list[str]) -> list[dict]:
    """Threshold checks on the package stage; an integrity check on the files first."""
    checks = [{"name": "integrity", "passed": not tampered,
               "detail": "files match manifest checksums" if not tampered else f"changed since export: {', '.join(tampered)}"}]
    rules = {
        "max_abs_err": (final["max_abs_err"], lambda v, t: v <= t, "<="),
        "min_top1": (final["top1_agreement"], lambda v, t: v >= t, ">="),
        "max_ppl_increase": (final.get("ppl_increase", 0.0), lambda v, t: v <= t, "<="),
        "min_greedy_match": (final["greedy_match_tokens"], lambda v, t: v >= t, ">="),
        "min_cosine": (final["cosine_min"], lambda v, t: v >= t, ">="),
    }
    for key, limit in thresholds.items():
        value, ok, op = rules[key]
        checks.append({"name": key, "passed": bool(ok(value, limit)), "value": value, "threshold": limit,
                       "detail": f"{final['name']}: {key.removeprefix('max_').removeprefix('min_')} = {value:.6g} "
                                 f"(must be {op} {limit})"})
    return checks
