"""`elmexport device-check PACKAGE`: a Core ML package on real Core ML, compared with the MIL interpreter.

Why a command of its own: everywhere but a Mac, the project runs Core ML packages through its MIL interpreter, so
`elmexport validate` proves the exported program is right but not that Apple's runtime computes the same thing
(fp16 kernels, the Neural Engine's op support, state handling). On macOS this command runs the package twice on
the validation token stream (the start of the text `elmexport validate` scores): once with real Core ML through
coremltools `predict` on the chosen compute units, once with the MIL interpreter, both through the same package
runner, and compares them step by step (teacher-forced prefill + decode steps) and by greedy tokens. It prints the
compute plan (the device each op prefers) where coremltools and the OS provide `MLComputePlan`. Elsewhere it says
what it would do and exits 2: there is no Core ML runtime to check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ElmExportError

COMPUTE_UNITS = {"all": "ALL", "cpu-and-ne": "CPU_AND_NE", "cpu-and-gpu": "CPU_AND_GPU", "cpu-only": "CPU_ONLY"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", help="a Core ML package directory exported by elmexport")
    parser.add_argument("--compute-units", choices=list(COMPUTE_UNITS), default="all",
                        help="Core ML compute units for the real run (default: all)")
    parser.add_argument("--prefill-tokens", type=int, default=32, help="teacher-forced prompt length (default 32)")
    parser.add_argument("--decode-steps", type=int, default=8, help="teacher-forced decode steps (default 8)")
    parser.add_argument("--greedy-tokens", type=int, default=16, help="greedy tokens compared (default 16)")
    parser.add_argument("--min-top1", type=float, default=0.9,
                        help="least next-token arg-max agreement over the steps (default 0.9)")


def _read_package(path: Path) -> dict:
    """The package's manifest (the project's one reader checks it), which must be a Core ML one."""
    from .manifest import read_manifest

    manifest = read_manifest(path)
    if manifest["target"] != "coreml":
        raise ElmExportError(f"{path}: target {manifest['target']!r}, not coreml; device-check runs Core ML packages "
                             f"(export one with `elmexport coreml`)")
    return manifest


def run(args) -> int:
    package = Path(args.package)
    manifest = _read_package(package)
    for name in ("prefill_tokens", "decode_steps", "greedy_tokens"):
        if getattr(args, name) < (1 if name == "prefill_tokens" else 0):
            raise ElmExportError(f"--{name.replace('_', '-')} must be a positive integer")
    need = args.prefill_tokens + max(args.decode_steps, args.greedy_tokens) + 1
    if need > int(manifest["context_length"]):
        raise ElmExportError(f"the package's context ({manifest['context_length']}) is shorter than the {need} "
                             f"tokens the check needs; lower --prefill-tokens/--decode-steps/--greedy-tokens")

    from .targets.coreml.mil.coreml import coreml_runtime_available

    if not coreml_runtime_available():
        print(f"device-check would run {package / manifest['model_file']} with real Core ML (coremltools predict, "
              f"compute units {args.compute_units}) on {need} tokens of the validation text and compare its logits "
              f"and greedy tokens with the MIL interpreter's; it needs macOS 15+ with coremltools, and this is "
              f"{sys.platform}")
        return 2
    return _check_on_macos(package, manifest, args, need)


def _check_on_macos(package: Path, manifest: dict, args, need: int) -> int:  # pragma: no cover - needs macOS
    import coremltools as ct

    from .tokenizer import read_tokenizer_json
    from .targets.coreml.runner import CoreMLPackageRunner
    from .validation.metrics import greedy_match, step_metrics, summarize
    from .targets.coreml.mil.coreml import CoreMLRunner, open_coreml_runner
    from .validation.perplexity import DEFAULT_TEXT
    from .validation.streams import greedy, teacher_forced_steps

    model_path = package / manifest["model_file"]
    units = getattr(ct.ComputeUnit, COMPUTE_UNITS[args.compute_units])
    stream = _validation_stream(package, manifest, need, read_tokenizer_json, DEFAULT_TEXT)

    def runner_over(model, name: str):
        runner = CoreMLPackageRunner(package, manifest)
        runner.model, runner.name = model, name
        runner.reset()
        return runner

    interpreter = runner_over(open_coreml_runner(model_path, prefer_coreml=False), "MIL interpreter")
    coreml = runner_over(CoreMLRunner(model_path, compute_units=units), f"Core ML ({args.compute_units})")
    fed = stream[:args.prefill_tokens + args.decode_steps]
    reference = teacher_forced_steps(interpreter, fed, args.prefill_tokens)
    measured = teacher_forced_steps(coreml, fed, args.prefill_tokens)
    summary = summarize([dict(step_metrics(a, b), positions=len(a)) for a, b in zip(reference, measured)])
    prompt = stream[:args.prefill_tokens]
    greedy_reference = greedy(interpreter, prompt, args.greedy_tokens)
    greedy_coreml = greedy(coreml, prompt, args.greedy_tokens)
    matched = greedy_match(greedy_reference, greedy_coreml)
    _print_compute_plan(ct, model_path, units)
    print(f"{coreml.name} vs MIL interpreter over {len(stream)} tokens: {json.dumps(summary)}")
    print(f"greedy: {matched}/{len(greedy_reference)} tokens match ({greedy_coreml} vs {greedy_reference})")
    top1 = summary.get("top1_agreement")
    if top1 is None or top1 < args.min_top1:
        print(f"FAILED: top-1 agreement {top1} is below --min-top1 {args.min_top1}")
        return 1
    print("passed")
    return 0


def _validation_stream(package: Path, manifest: dict, need: int, read_tokenizer_json, default_text: Path) -> list[int]:
    """The first `need` tokens of the text `elmexport validate` scores (seeded ids without a tokenizer)."""
    import numpy as np

    if manifest.get("tokenizer") and default_text.exists():
        ids = read_tokenizer_json(package / manifest["tokenizer"]).encode(default_text.read_text(errors="replace")).ids
        if len(ids) >= need:
            return list(ids[:need])
    vocab = int(manifest["model"]["config"]["vocab_size"])
    return np.random.default_rng(0).integers(0, vocab, need).tolist()


def _print_compute_plan(ct, model_path: Path, units) -> None:  # pragma: no cover - needs macOS
    """Which device each op prefers, counted per function (MLComputePlan: macOS 14.4+, coremltools 8+)."""
    try:
        from collections import Counter

        from coremltools.models.compute_plan import MLComputePlan

        compiled = ct.models.utils.compile_model(str(model_path))
        plan = MLComputePlan.load_from_path(path=compiled, compute_units=units)
        program = plan.model_structure.program
        for name, function in program.functions.items():
            devices = Counter()
            for operation in function.block.operations:
                usage = plan.get_compute_device_usage_for_mlprogram_operation(operation)
                devices[type(usage.preferred_compute_device).__name__ if usage else "none"] += 1
            print(f"compute plan, {name}: " + ", ".join(f"{d} {n}" for d, n in devices.most_common()))
    except Exception as e:  # noqa: BLE001 - the plan is information, never a reason to fail the check
        print(f"compute plan: not available here ({type(e).__name__}: {str(e)[:120]})")
