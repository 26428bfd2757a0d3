"""The `elmexport` command line: one sub-command per job, all sharing the model options below.

Every user-facing failure is an ElmExportError, printed as one line (`error: ...`) with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, strict_json
from .arg_types import (OneLineParser, non_negative_float, non_negative_int, positive_float, positive_int,
                        probability)
from .errors import ElmExportError


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--size", help="OpenELM size shorthand: 270M, 450M, 1.1B (or 1_1B), 3B -> the base preset")
    g.add_argument("--model", help="a preset (see `elmexport info --list`), a local checkpoint (HF folder or .gguf) "
                                    "or a hub id org/name; default smollm2-135m-instruct")
    g.add_argument("--weights", metavar="PATH", help="HF directory (config.json + safetensors, sharded ok) or .gguf")
    g.add_argument("--random-weights", action="store_true", help="seeded random weights (marked in every artifact)")
    g.add_argument("--seed", type=non_negative_int, default=0, help="seed for --random-weights and sampling (default 0)")
    g.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json (OpenELM needs the Llama-2 tokenizer)")
    g.add_argument("--context", type=positive_int,
                   help="KV-cache length (default: the model's context, 2048 for OpenELM)")


def spec_from_args(args, tokenizer_mode: str = "required"):
    from .weights.spec import ModelSpec

    return ModelSpec(model=args.model, size=args.size, weights=args.weights, random_weights=args.random_weights,
                     seed=args.seed, tokenizer=args.tokenizer, context=args.context, tokenizer_mode=tokenizer_mode)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="elmexport",
        description="Export OpenELM and Llama-family small language models to Core ML, ONNX and ExecuTorch, "
                    "and prove numeric parity of every artifact.",
    )
    parser.add_argument("--version", action="version", version=f"elmexport {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="per-layer architecture table and totals (no weights allocated)")
    p.add_argument("--size")
    p.add_argument("--model")
    p.add_argument("--weights", metavar="PATH", help="read the config of an HF directory or .gguf instead")
    p.add_argument("--context", type=positive_int, help="context length for the KV-cache size (default: model's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--list", action="store_true", help="list the model presets")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("generate", help="generate text with the eager model (or an exported package)")
    p.add_argument("package", nargs="?", help="an exported package directory (default: run the eager model)")
    add_model_options(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--system", help="system message for chat models")
    p.add_argument("--no-chat", action="store_true", help="feed the prompt raw, without the chat template")
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=non_negative_int, default=0, help="0 = no top-k filter (default)")
    p.add_argument("--top-p", type=probability, default=1.0, help="nucleus sampling mass in (0, 1] (default 1)")
    p.add_argument("--repetition-penalty", type=positive_float, default=1.0, help="1 = none (default)")
    p.add_argument("--k", type=positive_int, help="for a pair folder: draft tokens per round (default: the pair's k)")
    add_threads_option(p)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("pair", help="export a draft + target pair for speculative decoding into one folder")
    p.add_argument("--target", required=True, metavar="MODEL", help="the model whose greedy output is produced")
    p.add_argument("--draft", required=True, metavar="MODEL", help="a smaller model with the same tokenizer")
    p.add_argument("--to", required=True, metavar="RUNTIME", help="coreml, onnx or executorch")
    p.add_argument("--k", type=positive_int, default=4, help="draft tokens per target call (default 4)")
    p.add_argument("--target-quant", default="none", metavar="PRESET", help="the target's --quant (default none)")
    p.add_argument("--draft-quant", default="int4", metavar="PRESET", help="the draft's --quant (default int4)")
    p.add_argument("--target-weights", metavar="PATH", help="the target's weights (HF directory or .gguf)")
    p.add_argument("--draft-weights", metavar="PATH", help="the draft's weights (HF directory or .gguf)")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights for both (marked everywhere)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed for the target's --random-weights")
    p.add_argument("--draft-seed", type=non_negative_int, help="seed for the draft's --random-weights (default --seed)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json for both (OpenELM needs the Llama-2 one)")
    p.add_argument("--context", type=positive_int, help="KV-cache length of both packages")
    p.add_argument("--out", metavar="DIR", help="pair folder (default: dist/pair-<target>-<draft>-<runtime>); "
                                                "must be new, empty, or a pair (with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the pair already at --out")
    p.set_defaults(func=_cmd_pair)

    p = sub.add_parser("compile", help="front end + passes only: capture the model, run the passes, print the pass table")
    add_model_options(p)
    add_compile_options(p)
    p.add_argument("--sensitivity", action="store_true",
                   help="also measure the logit error each quantized layer adds on its own")
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("quickstart", help="export the default model to every target with 4-bit weights, validate, "
                                          "ask each package a question, print a summary")
    from .quickstart import add_arguments as quickstart_arguments

    quickstart_arguments(p)
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("validate", help="prove parity of a package: eager -> IR -> package runtime, with a CI gate")
    p.add_argument("package", help="an exported package directory")
    p.add_argument("--text", help="text for teacher forcing and perplexity (default /usr/share/common-licenses/GPL-3)")
    p.add_argument("--prefill-tokens", type=positive_int, default=32)
    p.add_argument("--decode-steps", type=non_negative_int, default=8)
    p.add_argument("--greedy-tokens", type=non_negative_int, default=16)
    p.add_argument("--ppl-tokens", type=positive_int, default=256, help="tokens of --text scored for perplexity")
    p.add_argument("--k-values", type=positive_int, nargs="+", help="for a pair folder: k values to check "
                   "(default: the pair's k)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--thresholds", metavar="YAML", help="thresholds file (keys as the flags below, with _); "
                                                        "overrides the quantization preset's default gates")
    g = p.add_argument_group("gates (default: measured limits per quantization preset, see the report)")
    g.add_argument("--max-abs-err", type=float, help="largest logit difference, package vs eager")
    g.add_argument("--min-top1", type=float, help="next-token argmax agreement, package vs eager")
    g.add_argument("--max-ppl-increase", type=float, help="relative, e.g. 0.05 = perplexity at most 5%% above eager")
    g.add_argument("--min-greedy-match", type=float, help="greedy tokens identical to eager's")
    g.add_argument("--min-cosine", type=float, help="worst per-position logit cosine, package vs eager")
    g.add_argument("--min-lowering-cosine", type=float, help="worst per-position logit cosine, package vs IR")
    g.add_argument("--min-lowering-top1", type=float, help="next-token argmax agreement, package vs IR")
    g.add_argument("--max-lowering-ppl-change", type=float, help="relative perplexity change, package vs IR")
    p.add_argument("--device-report", metavar="FILE", help="JSON from the iOS demo's benchmark, shown beside host numbers")
    p.add_argument("--out", metavar="DIR", help="where report.{json,md,html} go (default PACKAGE/validation)")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML")
    add_threads_option(p)
    p.add_argument("--json", action="store_true", help="print report.json to stdout")
    p.set_defaults(func=_cmd_validate)

    from . import device_check

    p = sub.add_parser("device-check", help="run a Core ML package on real Core ML (macOS) and compare with the "
                                            "MIL interpreter")
    device_check.add_arguments(p)
    p.set_defaults(func=device_check.run)

    from .targets.registry import TARGETS, target_entry

    for name in TARGETS:
        target = target_entry(name)
        p = sub.add_parser(name, help=target.description)
        add_model_options(p)
        add_compile_options(p)
        p.add_argument("--out", metavar="DIR", help="package directory (default: dist/<model>-<target>-<quant>); "
                                                    "must be new, empty, or a package (with --overwrite)")
        p.add_argument("--overwrite", action="store_true", help="replace the package already at --out")
        add_cache_option(p)
        target.options.add_flags(p, name)
        p.set_defaults(func=_cmd_export, target=name)
    return parser


def add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="threads of the package's runtime (onnxruntime's intra-op pool, ExecuTorch's pool; the Core "
                        "ML interpreter is single-threaded); default: the runtime's own choice, one per core")


def add_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true",
                   help="build afresh instead of reusing the cached package of an identical earlier export "
                        "(cache: ~/.cache/elmexport/packages or $ELMEXPORT_CACHE/packages)")


def add_compile_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("compiler")
    g.add_argument("--quant", default="none", metavar="PRESET|FILE",
                   help="none, int8, int4, 8da4w (ExecuTorch), palettize4, palettize6, palettize8, "
                        "or a YAML/JSON quant config")
    g.add_argument("--passes", type=lambda s: [x for x in s.split(",") if x],
                   help="comma-separated IR pass list (default: cleanup,fuse_rmsnorm,fuse_attention + the quant "
                        "passes); the target passes that follow are the target's own")
    g.add_argument("--dump-ir", metavar="DIR", help="write the graph as text after each pass")


def _cmd_info(args) -> int:
    from .models.config import preset_names

    if args.list:
        for name in preset_names():
            print(name)
        return 0
    from .weights.config_only import config_without_weights

    from .weights.spec import ModelSpec

    cfg = config_without_weights(ModelSpec(model=args.model, size=args.size, weights=args.weights))
    from .info import architecture_summary, print_summary

    summary = architecture_summary(cfg, args.context)
    if args.json:
        print(strict_json.dumps(summary))
    else:
        print_summary(summary)
    return 0


def _cmd_generate(args) -> int:
    from .api import LoadedPackage, load
    from .progress import console

    if args.package:
        from .pair import is_pair

        if is_pair(args.package):
            return _generate_pair(args)
        model = load(args.package, threads=args.threads)
    else:
        from .validation.eager import EagerRunner
        from .weights.sources import load_model

        loaded = load_model(spec_from_args(args), log=console.log)
        model = LoadedPackage(None, EagerRunner(loaded.model), loaded.tokenizer, loaded.cfg.chat_template,
                              loaded.cfg.system_prompt, f"eager, {loaded.source.get('kind')}")
    result = model.generate(args.prompt, max_new_tokens=args.max_new_tokens, chat=not args.no_chat,
                            system=args.system, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            repetition_penalty=args.repetition_penalty, seed=args.seed,
                            on_text=lambda s: print(s, end="", flush=True))
    print()
    console.log(f"{len(result.prompt_tokens)} prompt tokens, {len(result.tokens)} new; prefill "
                f"{result.prefill_tokens_per_s:.1f} tok/s, decode {result.decode_tokens_per_s:.1f} tok/s "
                f"({model.runtime})")
    return 0


def _generate_pair(args) -> int:
    """Speculative decoding with a pair folder: greedy, or the target's own sampling with the sampling flags."""
    from .pair import load_pair
    from .progress import console

    pair = load_pair(args.package, threads=args.threads)
    result = pair.generate(args.prompt, max_new_tokens=args.max_new_tokens, k=args.k, chat=not args.no_chat,
                           system=args.system, on_text=lambda s: print(s, end="", flush=True),
                           temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           repetition_penalty=args.repetition_penalty, seed=args.seed)
    print()
    console.log(f"{len(result.prompt_tokens)} prompt tokens; {result.summary()} "
                f"({pair.target.runtime} + draft {pair.draft.runtime})")
    return 0


def _cmd_pair(args) -> int:
    from .pair import export_pair
    from .progress import console

    export_pair(args.target, args.draft, args.to, k=args.k, target_quant=args.target_quant,
                draft_quant=args.draft_quant, out=args.out, overwrite=args.overwrite, context=args.context,
                random_weights=args.random_weights, seed=args.seed, draft_seed=args.draft_seed,
                tokenizer=args.tokenizer, target_weights=args.target_weights, draft_weights=args.draft_weights,
                log=console.log)
    return 0


def _cmd_export(args) -> int:
    from .api import export
    from .progress import console
    from .targets.registry import target_entry

    options = target_entry(args.target).options.from_namespace(args)
    export(args.model, args.target, quant=args.quant, out=args.out, overwrite=args.overwrite, size=args.size,
           weights=args.weights, random_weights=args.random_weights, seed=args.seed, tokenizer=args.tokenizer,
           context=args.context, passes=args.passes, dump_ir=args.dump_ir, cache=False if args.no_cache else None,
           log=console.log, **options.to_dict())
    return 0


def _cmd_quickstart(args) -> int:
    from .progress import console
    from .quickstart import run

    return run(args, console.log)


def _thresholds(args) -> tuple[dict, dict]:
    """Limits the user gave ({key: number}) and where each came from; flags win over the --thresholds file."""
    from .validation.gates import THRESHOLD_KEYS, parse_thresholds

    values, sources = {}, {}
    if args.thresholds:
        import yaml
        from pathlib import Path

        try:
            loaded = yaml.safe_load(Path(args.thresholds).read_text()) or {}
        except (FileNotFoundError, IsADirectoryError):
            raise ElmExportError(f"--thresholds {args.thresholds}: no such file") from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ElmExportError(f"--thresholds {args.thresholds}: not valid YAML ({str(e).splitlines()[0]})") from None
        values.update(parse_thresholds(loaded, f"--thresholds {args.thresholds}"))
        sources.update({key: f"--thresholds {args.thresholds}" for key in values})
    for key in THRESHOLD_KEYS:
        flag = "--" + key.replace("_", "-")
        if getattr(args, key, None) is not None:
            values.update(parse_thresholds({key: getattr(args, key)}, flag))
            sources[key] = flag
    return values, sources


def _validate_pair(args) -> int:
    """A pair folder: greedy equivalence, acceptance and speed-up by k (pair_validation.py); exit 1 on a mismatch."""
    from pathlib import Path

    from .pair_validation import validate_pair
    from .progress import console
    from .validation.pair_report import check_destination, write_pair_reports

    out = Path(args.out or Path(args.package) / "validation")
    check_destination(out)  # before the slow part
    report = validate_pair(args.package, k_values=args.k_values, threads=args.threads, log=console.log)
    paths = write_pair_reports(report, out)
    console.log(f"pair validation {'passed' if report['passed'] else 'FAILED'}: {', '.join(map(str, paths))}")
    return 0 if report["passed"] else 1


def _cmd_validate(args) -> int:
    from pathlib import Path

    from .pair import is_pair

    if is_pair(args.package):
        return _validate_pair(args)
    from .api import validate
    from .progress import console
    from .validation.device_report import check_same_package, device_greedy_check, load_device_report
    from .validation.report import check_report_destination, to_json, write_junit, write_reports

    thresholds, sources = _thresholds(args)
    report_dir = Path(args.out or Path(args.package) / "validation")
    check_report_destination(report_dir, args.junit)  # before the slow part
    device = load_device_report(args.device_report) if args.device_report else None
    if device:
        from .manifest import read_manifest

        check_same_package(device, read_manifest(args.package), args.device_report)
    report = validate(args.package, text=args.text, prefill_tokens=args.prefill_tokens,
                      decode_steps=args.decode_steps, greedy_tokens=args.greedy_tokens, ppl_tokens=args.ppl_tokens,
                      latency=not args.no_latency, thresholds=thresholds, threshold_sources=sources,
                      threads=args.threads, log=console.log).data
    if device:
        report["latency"]["device"] = device
        if device["greedy_check"] and report["stages"]:
            console.log("device report: replaying its greedy check on the host ...")
            report["checks"].append(device_greedy_check(args.package, device["greedy_check"]))
            report["passed"] = report["passed"] and report["checks"][-1]["passed"]
    paths = write_reports(report, report_dir)
    if args.junit:
        write_junit(report, args.junit)
    if args.json:
        print(to_json(report))
    for c in report["checks"]:
        console.log(f"{'PASS' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}")
    if report["stages"]:
        final = report["stages"][-1]
        console.log(f"{final['name']}: max abs err {final['max_abs_err']:.4g}, top-1 {final['top1_agreement']:.3f}, "
                    f"greedy match {final['greedy_match_tokens']}/{len(final['greedy_tokens'])}, "
                    f"ppl {final['perplexity']:.3f} (eager {report['stages'][0]['perplexity']:.3f})")
    else:
        console.log(f"numeric stages skipped: {report['skipped_reason']}")
    console.log(f"{'PASSED' if report['passed'] else 'FAILED'}; reports: {paths['md']}, {paths['html']}")
    return 0 if report["passed"] else 1


def _cmd_compile(args) -> int:
    from .passes.report import print_pass_table
    from .pipeline import build_ir
    from .progress import console

    compiled = build_ir(spec_from_args(args, tokenizer_mode="optional"), args.quant, args.passes, args.dump_ir,
                        log=console.log)
    print_pass_table(compiled.reports)
    if args.sensitivity:
        from .passes.sensitivity import print_sensitivity, sensitivity_table

        print_sensitivity(sensitivity_table(compiled.loaded.model, compiled.quant, log=console.log))
    if args.dump_ir:
        console.log(f"graphs after each pass written to {args.dump_ir}/")
    return 0


def quiet_library_chatter() -> None:
    """Deprecation and optional-kernel notices from torch/torchao/executorch are not actionable by our users."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("torchao", "torch.utils._pytree", "executorch", "coremltools"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 success, 1 a validation check failed, 2 bad input or environment (one line on stderr),
    3 an internal error (a bug: the traceback is printed so it can be reported), 130 interrupted."""
    quiet_library_chatter()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except ElmExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `elmexport info --json | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as e:  # the filesystem or the OS refused: full disk, permissions, a vanished file
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e} (a filesystem or system error; fix it and rerun)", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; close other programs, or pick a smaller model or --context", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # anything else is a bug in elmexport, not the user's doing
        import traceback

        traceback.print_exc()
        print("error: internal error in elmexport (a bug, not your input); please report the traceback above",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
