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
from ..manifest import integrity_problems, read_manifest
from ..progress import step
from .eager import EagerRunner
from .gates import THRESHOLD_KEYS, evaluate, gates_for, parse_thresholds
from .latency import measure, measure_in_subprocess
from .layers import eager_hidden_states, first_jump, ir_hidden_states, layer_errors
from .metrics import greedy_match, step_metrics, summarize
from .perplexity import DEFAULT_TEXT, perplexity
from .reference import rebuild_compiled
from .runner import last_logits
from .runners import open_package_runner
from .streams import greedy, teacher_forced_steps

__all__ = ["THRESHOLD_KEYS", "ValidateOptions", "validate_package"]


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
    threads: int | None = None  # the package runtime's threads; None leaves the choice to the runtime
    thresholds: dict = field(default_factory=dict)  # key -> limit, overriding the preset's default gate
    threshold_sources: dict = field(default_factory=dict)  # key -> where the limit came from ("--min-top1")

    def check(self) -> None:
        """Bad numbers are the user's to fix: one line each, before anything slow starts."""
        for name, low in (("prefill_tokens", 1), ("decode_steps", 0), ("greedy_tokens", 0), ("ppl_tokens", 1),
                          ("ppl_window", 1), ("latency_rounds", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ElmExportError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ElmExportError(f"--threads must be an integer >= 1 (or left out for the runtime's choice), "
                                 f"got {self.threads!r}")
        if Path(self.text) != DEFAULT_TEXT and not Path(self.text).is_file():
            raise ElmExportError(f"--text {self.text}: no such file; give a plain-text file to score")


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


def _stage_comparison(reference: list[np.ndarray], steps: list[np.ndarray]) -> dict:
    per_step = [dict(step_metrics(a, b), positions=len(a)) for a, b in zip(reference, steps)]
    return dict(summarize(per_step), steps=per_step)


class PackageRuntimeError(Exception):
    """The package's runtime failed on files that passed integrity (a package consistent with its checksums,
    but not a model its runtime can run): a failed validation, not a bug in the validator."""


class _Guarded:
    """The package's runner with its failures turned into PackageRuntimeError."""

    def __init__(self, runner):
        self.runner, self.name, self.context = runner, getattr(runner, "name", "package"), runner.context

    def reset(self):
        try:
            return self.runner.reset()
        except Exception as e:
            raise PackageRuntimeError(f"{type(e).__name__}: {str(e)[:300]}") from e

    def forward(self, ids, start):
        try:
            return self.runner.forward(ids, start)
        except Exception as e:
            raise PackageRuntimeError(f"{type(e).__name__}: {str(e)[:300]}") from e

    def forward_last(self, ids, start):
        """The last row through the runner's own last-row path when it has one (generation's: a last-position
        prefill), so greedy checks the calls `elmexport generate` makes; `forward` keeps every row."""
        try:
            return last_logits(self.runner, ids, start)
        except Exception as e:
            raise PackageRuntimeError(f"{type(e).__name__}: {str(e)[:300]}") from e


def _run_stages(runners, stream, ids, options, log) -> list[dict]:
    """Every stage over the same token stream; each compared with eager (the first) and with the stage before."""
    prompt = stream[:options.prefill_tokens]
    stages, ref_steps, prev_steps, ref_greedy, ref_ppl, prev_ppl, prev_greedy = [], None, None, None, None, None, None
    for name, runner in runners:
        with step(f"stage {name}: teacher-forced prefill {options.prefill_tokens} + {options.decode_steps} decode "
                  f"steps, greedy {options.greedy_tokens}, perplexity over {options.ppl_tokens} tokens", log):
            steps = teacher_forced_steps(runner, stream[:options.prefill_tokens + options.decode_steps],
                                         options.prefill_tokens)
            tokens = greedy(runner, prompt, options.greedy_tokens)
            ppl = perplexity(runner, ids, options.ppl_window, options.ppl_tokens + 1)["perplexity"]
        entry = {"name": name, "runtime": getattr(runner, "name", name), "perplexity": ppl, "greedy_tokens": tokens}
        if ref_steps is None:
            ref_steps, ref_greedy, ref_ppl = steps, tokens, ppl
            entry.update(max_abs_err=0.0, max_rel_err=0.0, cosine_min=1.0, top1_agreement=1.0,
                         greedy_match_tokens=len(tokens), steps=[])
        else:
            per_step = []
            for i, (a, b) in enumerate(zip(ref_steps, steps)):
                m = step_metrics(a, b)
                m.update(step="prefill" if i == 0 else f"decode {i}", positions=len(a))
                per_step.append(m)
            entry.update(summarize(per_step))
            entry["steps"] = per_step
            entry["greedy_match_tokens"] = greedy_match(ref_greedy, tokens)
            vs_prev = _stage_comparison(prev_steps, steps)
            entry["vs_previous_stage"] = {k: vs_prev[k] for k in ("max_abs_err", "max_rel_err", "top1_agreement",
                                                                  "cosine_min", "steps")}
            entry["vs_previous_stage"]["ppl_change"] = abs(ppl / prev_ppl - 1.0)
            entry["vs_previous_stage"]["greedy_match_tokens"] = greedy_match(prev_greedy, tokens)
            entry["ppl_increase"] = ppl / ref_ppl - 1.0
        stages.append(entry)
        prev_steps, prev_ppl, prev_greedy = steps, ppl, tokens
    return stages


def validate_package(package_dir: str | Path, options: ValidateOptions, log=print) -> dict:
    """The report of one package. Integrity comes first: a package whose files are not the exported ones is not
    loaded at all (a corrupt model file can crash or hang a runtime), and the report says the numbers were skipped.
    """
    package_dir = Path(package_dir)
    options.check()
    given = parse_thresholds(options.thresholds, "thresholds")
    manifest = read_manifest(package_dir)
    context = manifest["context_length"]
    need = options.prefill_tokens + max(options.decode_steps, options.greedy_tokens) + 1
    if need > context:
        raise ElmExportError(f"the package's context ({context}) is shorter than the {need} tokens validation "
                             f"needs; lower --prefill-tokens/--decode-steps/--greedy-tokens")
    quant = manifest["quantization"]["name"]
    gates = gates_for(quant, given, options.threshold_sources)
    report = {
        "package": str(package_dir), "target": manifest["target"], "model": manifest["model"]["name"],
        "quantization": quant, "random_weights": bool(manifest.get("random_weights", False)),
        "text": None, "stream_tokens": 0, "stages": [], "layers": {"eager_vs_ir": [], "first_jump_layer": None},
        "latency": {}, "gates": [{"name": g.key, "threshold": g.limit, "source": g.source} for g in gates],
        "numeric_checks": "skipped", "skipped_reason": None,
    }
    problems = integrity_problems(package_dir, manifest)
    checks = [{"name": "integrity", "passed": not problems, "numeric": False,
               "detail": "every file matches the manifest's checksums and nothing else is in the package"
               if not problems else "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")}]
    if problems:
        log(f"integrity failed ({len(problems)} problem(s)); numeric stages skipped")
        report["skipped_reason"] = "integrity failed: the model files are not the exported ones, so they were not loaded"
        return _finish(report, checks)

    target = manifest["target"]
    # The package's runtime runs in its own process first (the latency run, or a one-prefill probe): some runtimes
    # abort the whole process on a model they cannot parse, and the validator must outlive that to report it.
    if options.latency:
        with step(f"latency of {target} on this host (own process)", log):
            own = report["latency"][target] = measure_in_subprocess(package_dir, options.prefill_tokens, 16,
                                                                    options.latency_rounds, options.threads)
    else:
        with step(f"opening {target} in its own process", log):
            own = measure_in_subprocess(package_dir, options.prefill_tokens, 0, 0, options.threads)
    if "error" in own:
        return _not_run(report, checks, "package_runs", f"the package's runtime failed: {own['error']}")

    log(f"validating {package_dir} ({target}, quant {quant}); rebuilding the reference from the manifest ...")
    compiled = rebuild_compiled(manifest, package_dir, log)
    try:
        package_runner = open_package_runner(package_dir, manifest, threads=options.threads)
    except ElmExportError:
        raise
    except Exception as e:  # the files are the exported ones, yet the runtime refuses them
        return _not_run(report, checks, "package_runs",
                        f"the package's runtime could not open it: {type(e).__name__}: {str(e)[:300]}")
    runners = [("eager", EagerRunner(compiled.loaded.model)), ("ir", compiled.ir.runner()),
               (target, _Guarded(package_runner))]
    ids, text_source = _text_tokens(compiled.loaded.tokenizer, Path(options.text),
                                    max(need, options.ppl_tokens + 1), compiled.loaded.cfg.vocab_size)
    stream = ids[:need]
    prompt = stream[:options.prefill_tokens]
    report.update(text=text_source, stream_tokens=len(stream))
    try:
        report["stages"] = _run_stages(runners, stream, ids, options, log)
    except PackageRuntimeError as e:
        return _not_run(report, checks, "package_runs", f"the package's runtime failed while computing: {e}")

    log("per-layer hidden-state error (eager vs IR) ...")
    layer_rows = layer_errors(eager_hidden_states(compiled.loaded.model, prompt), ir_hidden_states(compiled.ir, prompt))
    report["layers"] = {"eager_vs_ir": layer_rows, "first_jump_layer": first_jump(layer_rows)}
    if options.latency:
        report["latency"]["eager"] = measure(runners[0][1], prompt, 16, options.latency_rounds)
        report["latency"]["eager"]["runtime"] = "PyTorch eager fp32 (in the validator's process)"
    report["numeric_checks"] = "run"
    return _finish(report, checks + evaluate(gates, report["stages"][-1]))


def _not_run(report: dict, checks: list[dict], name: str, reason: str) -> dict:
    """A failed non-numeric check that stops validation before (or while) computing: the report says why."""
    report["skipped_reason"] = reason
    checks.append({"name": name, "passed": False, "numeric": False, "detail": reason})
    return _finish(report, checks)


def _finish(report: dict, checks: list[dict]) -> dict:
    """PASSED needs every check to pass and at least one numeric check to have run: integrity alone proves the
    files are the exported ones, not that they compute the model."""
    report["checks"] = checks
    report["passed"] = all(c["passed"] for c in checks) and any(c["numeric"] for c in checks)
    return report
