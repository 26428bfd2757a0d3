"""The Python API: `export`, `validate`, `load`. The command line is a thin layer over these three.

    import elmexport

    pkg = elmexport.export("smollm2-135m-instruct", "onnx", quant="int4", out="dist/smol-onnx")
    report = elmexport.validate(pkg)                  # default gates for the package's quantization
    assert report.passed, report.failed_checks
    model = elmexport.load(pkg)
    print(model.generate("What is the capital of France?").text)

Every function raises `elmexport.ElmExportError` (one line naming the problem and the fix) for bad input; a
failed validation is a `Report` with `passed == False`, not an exception.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import ElmExportError


def _quiet(*_args, **_kwargs) -> None:
    pass


# ------------------------------------------------------------------------------------------------------ export
@dataclass(frozen=True)
class Package:
    """An exported package on disk: its folder and its manifest."""

    path: Path
    manifest: dict

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def files(self) -> list[str]:
        return list(self.manifest.get("files", []))

    @property
    def size_bytes(self) -> int:
        return int(self.manifest.get("size_bytes", 0))

    def __fspath__(self) -> str:
        return str(self.path)


def export(model: str | None = None, target: str = "onnx", *, quant: str = "none", out: str | Path | None = None,
           overwrite: bool = False, size: str | None = None, weights: str | Path | None = None,
           random_weights: bool = False, seed: int = 0, tokenizer: str | Path | None = None,
           context: int | None = None, passes: list[str] | None = None, dump_ir: str | Path | None = None,
           cache: bool | None = None, log: Callable[..., None] | None = None, **target_options) -> Package:
    """Export `model` (a preset name; default the offline SmolLM2-135M-Instruct) to `target` and return the package.

    `target_options` are the target's own options (the fields of its OPTIONS dataclass, the same names as its CLI
    flags: `elmexport onnx --help`), e.g.
    `accuracy_level=0` for ONNX or `prefill_chunk=32` for Core ML. The destination is checked and locked before
    anything slow runs; an existing package there is replaced only with `overwrite=True`. A finished package from an
    identical earlier export is reused from the cache (artifact_cache.py) unless `cache=False` or `dump_ir` is
    asked for (the dump comes from a build).
    """
    from . import artifact_cache
    from .destination import estimate_package_bytes
    from .manifest import read_manifest
    from .package import claim_output
    from .passes.report import print_pass_table
    from .pipeline import build_ir
    from .targets.registry import target_entry
    from .weights.config_only import config_without_weights
    from .weights.spec import ModelSpec

    log = log or _quiet
    entry = target_entry(target)
    options = entry.options.from_kwargs(target, target_options)
    spec = ModelSpec(model=model, size=size, weights=None if weights is None else str(weights),
                     random_weights=random_weights, seed=seed, tokenizer=None if tokenizer is None else str(tokenizer),
                     context=context, tokenizer_mode="optional")
    options.check(context)
    qconfig = entry.quant_config(quant)
    cfg = config_without_weights(spec)
    cfg.check_context(context)  # an over-long context is refused before the destination is even touched
    out = out if out is not None else f"dist/{cfg.name}-{target}-{qconfig.name}"
    t0 = time.perf_counter()
    with claim_output(out, overwrite=overwrite, protected=(spec.weights, spec.tokenizer),
                      estimated_bytes=estimate_package_bytes(cfg.num_parameters, qconfig.default.bits)) as out:
        use_cache = artifact_cache.enabled(cache) and dump_ir is None
        def key() -> str | None:
            return artifact_cache.export_key(spec, target, options.to_dict(), qconfig.to_dict(), passes)

        cached = artifact_cache.lookup(key(), log) if use_cache else None
        if cached is not None:
            artifact_cache.restore(cached, out)
            log(f"reused the cached build of this exact export ({cached}); --no-cache rebuilds")
        else:
            compiled = build_ir(spec, qconfig, passes, None if dump_ir is None else str(dump_ir), log=log)
            ir_reports = compiled.reports
            compiled.loaded.model = None  # the IR holds what it needs; free the eager weights before the target's
            gc.collect()
            entry.module.export(compiled, options, out, log)
            if log is not _quiet:
                print_pass_table(ir_reports + read_manifest(out).get("target_passes", []))
            if use_cache:  # the key again: a download during the build may have made the model's files local
                artifact_cache.store(key(), out, log)
    package = Package(out, read_manifest(out))
    log(f"wrote {out}/ ({package.size_bytes / 2**20:.1f} MiB, {time.perf_counter() - t0:.0f} s): "
        f"{', '.join(package.files)}")
    if package.manifest.get("random_weights"):
        log("note: random weights (seeded); the manifest says so")
    return package


# ---------------------------------------------------------------------------------------------------- validate
@dataclass
class Report:
    """What `validate` measured: `passed`, the checks (each with its value, threshold and where the threshold
    came from), the stages, latency; `data` is the whole report as written to report.json."""

    data: dict

    @property
    def passed(self) -> bool:
        return bool(self.data["passed"])

    @property
    def checks(self) -> list[dict]:
        return self.data["checks"]

    @property
    def failed_checks(self) -> list[dict]:
        return [c for c in self.checks if not c["passed"]]

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """report.json, report.md and report.html in out_dir; returns their paths."""
        from .validation.report import write_reports

        return write_reports(self.data, Path(out_dir))


def validate(package: str | Path | Package, *, text: str | Path | None = None, prefill_tokens: int = 32,
             decode_steps: int = 8, greedy_tokens: int = 16, ppl_tokens: int = 256, latency: bool = True,
             thresholds: dict | None = None, threshold_sources: dict | None = None, threads: int | None = None,
             log: Callable[..., None] | None = None, **gates) -> Report:
    """Integrity, then eager -> IR -> package on one token stream, gated.

    Gates are keywords (`min_lowering_cosine=0.99`, `max_ppl_increase=0.2`, ...) or a `thresholds` mapping; each
    overrides the default gate of the package's quantization preset (validation/gates.py), and the report says
    which gates applied and where each limit came from (`threshold_sources`, default "elmexport.validate").
    `threads` sets the package runtime's threads (default: the runtime's own choice, usually one per core).
    """
    from .validation.gates import parse_thresholds
    from .validation.validate import ValidateOptions, validate_package

    limits = {**parse_thresholds(thresholds or {}, "thresholds"), **parse_thresholds(gates, "elmexport.validate")}
    sources = {key: "elmexport.validate" for key in limits}
    sources.update(threshold_sources or {})
    options = ValidateOptions(prefill_tokens=prefill_tokens, decode_steps=decode_steps, greedy_tokens=greedy_tokens,
                              ppl_tokens=ppl_tokens, latency=latency, thresholds=limits, threshold_sources=sources,
                              threads=threads)
    if text is not None:
        options.text = Path(text)
    options.check()
    _refuse_pair_folder(Path(package))
    return Report(validate_package(Path(package), options, log=log or _quiet))


def _refuse_pair_folder(path: Path) -> None:
    """A speculative pair folder holds two packages; validation takes one package at a time (the pair's own checks
    are its greedy equality, which `elmexport generate PAIR` and the tests exercise)."""
    from .pair import is_pair

    if is_pair(path):
        inner = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise ElmExportError(f"{path} is a speculative pair, not a package: validate its packages one by one "
                             f"({', '.join(str(path / n) for n in inner)})")


# -------------------------------------------------------------------------------------------------------- load
@dataclass
class LoadedPackage:
    """A package opened on its own runtime on this host (Core ML through the MIL interpreter on Linux)."""

    package: Package | None  # None for the eager model
    runner: object
    tokenizer: object
    chat_template: str | None = None
    system_prompt: str | None = None
    runtime: str = field(default="")

    def generate(self, prompt: str, *, max_new_tokens: int = 64, chat: bool = True, system: str | None = None,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 seed: int = 0, on_text: Callable[[str], None] | None = None):
        """Greedy by default; returns a GenerationResult (`.text`, `.tokens`, speeds)."""
        from .generation import SamplingOptions, generate

        options = SamplingOptions(temperature, top_k, top_p, repetition_penalty, seed)
        return generate(self.runner, self.tokenizer, self.prompt_ids(prompt, chat=chat, system=system),
                        max_new_tokens, options, on_text=on_text)

    def prompt_ids(self, prompt: str, *, chat: bool = True, system: str | None = None) -> list[int]:
        """The prompt as this package's model reads it: rendered with its chat template (unless chat=False, or the
        model has none), then tokenized."""
        from .chat import render_chat

        messages = [{"role": "user", "content": prompt}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        text = render_chat(self.chat_template if chat else None, messages, self.system_prompt)
        return self.tokenizer.encode(text)


def load(package: str | Path | Package, *, threads: int | None = None, spinning: bool = True) -> LoadedPackage:
    """Open a package's runtime and tokenizer, ready to generate; `threads` as for `validate`; `spinning=False`
    stops onnxruntime's idle threads busy-waiting (for two sessions taking turns, as in a pair)."""
    from .manifest import read_manifest

    path = Path(package)
    manifest = read_manifest(path)
    _prepare_process_for(manifest)  # before the imports below bring in torch
    from .models.config import ModelConfig
    from .tokenizer import make_text_tokenizer, read_tokenizer_json
    from .validation.runners import open_package_runner

    if not manifest.get("tokenizer"):
        raise ElmExportError(f"{path}: the package has no tokenizer.json (exported without one); "
                             f"re-export with --tokenizer PATH")
    cfg = ModelConfig.from_dict(manifest["model"]["config"])
    tokenizer = make_text_tokenizer(read_tokenizer_json(path / manifest["tokenizer"]), cfg)
    runner = open_package_runner(path, manifest, threads=threads,
                                 **({} if spinning or manifest["target"] != "onnx" else {"spinning": False}))
    return LoadedPackage(Package(path, manifest), runner, tokenizer, manifest.get("chat_template"),
                         manifest.get("system_prompt"), f"{manifest['target']}: {runner.name}")


def _prepare_process_for(manifest: dict) -> None:
    """Thread settings a package's runtime needs, applied before torch (and with it MKL) is first imported."""
    from .targets.executorch.runner import apply_executorch_process_env

    if manifest.get("target") == "executorch" and not apply_executorch_process_env():
        import warnings

        warnings.warn("torch was imported before the ExecuTorch program was opened, so MKL_NUM_THREADS=1 could "
                      "not be applied; decode past ~120 positions runs slower (set MKL_NUM_THREADS=1 yourself)",
                      stacklevel=3)
