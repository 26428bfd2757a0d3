"""Core ML target: one stateful, multifunction ML Program (iOS 18 / macOS 15, fp16) per package.

    IR -> copy, elm.attention lowered (attention.py) --export("prefill", chunk=C)--> ct.convert --> prefill ─┐
                                                     --export("decode")-----------> ct.convert --> decode ──┴─
                                                        save_multifunction --> <name>.mlpackage
With `verify_tokens=N` (CLI `--verify-tokens N`, off by default) a third function `verify` takes N tokens
(input_ids int32 [1, N], input_pos int32 [N]) and returns logits for all N rows: the target of a speculative
pair scores its last token plus k proposals in one call (N = k + 1). It is the prefill graph at length N.
The manifest records it (`functions` lists "verify", `verify_tokens`: N) and so does the user-defined metadata
(`elmexport.verify_tokens`). The runner (runner.py) sends a call of 2..N tokens through `verify` in one
prediction, padded to N like a prefill chunk, and returns the real tokens' rows.
All functions read and write the same per-layer KV-cache states (`layers_{i}_attn_{k,v}_cache`, fp16,
[1, n_kv_i, context, head_dim]: per-layer shapes, so no memory is spent padding OpenELM's narrow early layers),
updated in place with slice_update; attention is the fused scaled_dot_product_attention op. Weights are shared
between the functions and stored once. elm:: ops are lowered by targets/coreml/lowering.py.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ...passes.quant_config import LINEAR_MODES, PALETTE_MODES
from ...errors import ElmExportError
from ...progress import step
from ..options import TargetOptions, option
from ...package import base_manifest, finish_manifest, pass_records, write_package

DESCRIPTION = "export a stateful multifunction Core ML package (.mlpackage, iOS 18, fp16)"
DEFAULT_CHUNK = 64
ROW_INPUT = "logits_row"  # prefill's input naming the row it returns (row_logits.py)


@dataclass(frozen=True)
class CoreMLOptions(TargetOptions):
    prefill_chunk: int = option(DEFAULT_CHUNK, "tokens per prefill call (the last chunk is padded; decode handles "
                                               "single tokens)", minimum=2)
    verify_tokens: int | None = option(None, "add a `verify` function scoring N tokens in one call with a logits row "
                                             "for each (a speculative pair's target needs k + 1)", minimum=2,
                                       metavar="N")

    def check(self, context: int | None) -> None:
        if self.verify_tokens is not None and context is not None and self.verify_tokens > context:
            raise ElmExportError(f"--verify-tokens {self.verify_tokens} exceeds the context of {context}; "
                                 f"give at most {context}")


OPTIONS = CoreMLOptions
FOUR_BIT_PRESET = "int4"  # what the quickstart exports it with
SUPPORTED_MODES = ("none", *LINEAR_MODES, *PALETTE_MODES)


@contextlib.contextmanager
def quiet_coremltools():
    """coremltools prints import warnings and per-pass progress bars; our own progress lines replace them."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def import_coremltools():
    with quiet_coremltools():
        import coremltools as ct
    return ct


PIPELINE = ["coreml::lower_attention", "coreml::row_logits"]  # the target passes (passes/registry.py names them)


def lowered_graph(compiled, log=None):
    """The target pipeline on a copy of the IR (a CompiledModel or an IRProgram) -> (TargetGraph, reports)."""
    from ...pipeline import run_target_passes

    return run_target_passes(compiled, "coreml", PIPELINE, None, log or (lambda *_: None))


def convert_entry(function: str, tokens: int, log, lowered, row_input: bool = False):
    """torch.export the lowered IR graph (`lowered_graph`'s result) at a fixed `tokens` per call, with the
    `logits_row` input (row_logits.py) when `row_input`, and convert it to an fp16 ML Program."""
    import torch

    from .lowering import register_lowerings, reset_shared_weights

    ct = import_coremltools()
    register_lowerings()
    reset_shared_weights()
    t0 = time.perf_counter()
    program, reports = lowered
    attention = reports[0].changed["attention_lowered"]
    args = (torch.zeros(1, tokens, dtype=torch.long), torch.arange(tokens, dtype=torch.long))
    args += (torch.tensor([tokens - 1], dtype=torch.long),) if row_input else ()
    with step(f"converting {function} (T={tokens}) to Core ML", log):
        ep = torch.export.export(program.gm, args).run_decompositions({})
        with quiet_coremltools():
            mlmodel = ct.convert(
                ep, minimum_deployment_target=ct.target.iOS18, compute_precision=ct.precision.FLOAT16,
                convert_to="mlprogram", skip_model_load=True,
            )
    spec = mlmodel.get_spec()
    out_name = spec.description.output[0].name
    if out_name != "logits":
        ct.utils.rename_feature(spec, out_name, "logits")
        mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    log(f"converted {function} (T={tokens}) to Core ML in {time.perf_counter() - t0:.1f} s; "
        f"{attention} attention ops with GQA folded")
    return mlmodel


def read_spec(pkg: Path):
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((pkg / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes())
    return spec


def op_counts(pkg: Path) -> dict[str, dict[str, int]]:
    """MIL op types per function, read back from the saved package (what a device will actually run)."""
    from collections import Counter

    out = {}
    for name, fn in sorted(read_spec(pkg).mlProgram.functions.items()):  # map order varies between parses
        counts = Counter()
        for block in fn.block_specializations.values():
            counts.update(op.type for op in block.operations)
        out[name] = dict(sorted(counts.items()))
    return out


def export(compiled, options: CoreMLOptions, out_dir: Path, log) -> dict:
    ir, cfg = compiled.ir, compiled.loaded.cfg
    chunk = min(options.prefill_chunk, ir.context)
    ct = import_coremltools()
    name = out_dir.name
    with tempfile.TemporaryDirectory(prefix="elm-coreml-") as work:
        work = Path(work)
        lowered = lowered_graph(compiled, log)
        # function -> (tokens per call, whether it takes `logits_row` and returns that one row)
        functions = {"prefill": (chunk, True), "decode": (1, False)}
        if options.verify_tokens is not None:  # every row, as the prefill graph computes them
            functions["verify"] = (min(options.verify_tokens, ir.context), False)
        for function, (T, row_input) in functions.items():
            convert_entry(function, T, log, lowered, row_input).save(str(work / f"{function}.mlpackage"))
        separate = sum(_dir_size(work / f"{f}.mlpackage") for f in functions)
        with write_package(out_dir) as tmp:
            pkg = tmp / f"{cfg.name}.mlpackage"
            desc = ct.utils.MultiFunctionDescriptor()
            for function in functions:
                desc.add_function(str(work / f"{function}.mlpackage"), src_function_name="main",
                                  target_function_name=function)
            desc.default_function_name = "decode"
            with quiet_coremltools():
                ct.utils.save_multifunction(desc, str(pkg))
            combined = _dir_size(pkg)
            log(f"multifunction package {combined / 2**20:.1f} MiB ({' + '.join(functions)} saved separately: "
                f"{separate / 2**20:.1f} MiB): weights stored once")
            verify = functions["verify"][0] if "verify" in functions else None
            metadata = _user_metadata(compiled, chunk, verify)
            _set_metadata(ct, pkg, metadata)
            _stabilise_item_identifiers(pkg)
            states = [{"name": n.replace(".", "_"), "shape": list(ir.gm.get_buffer(n).shape), "dtype": "float16"}
                      for n in ir.cache_names()]
            manifest = base_manifest(
                compiled, "coreml", name,
                model_file=pkg.name, prefill_chunk=chunk, functions=list(functions),
                **({"verify_tokens": verify} if verify is not None else {}),
                deployment_target="iOS18", compute_precision="float16",
                inputs=[{"name": "input_ids", "shape": [1, "T"], "dtype": "int32"},
                        {"name": "input_pos", "shape": ["T"], "dtype": "int32",
                         "note": "contiguous positions start..start+T-1; T = prefill_chunk (prefill), "
                                 "verify_tokens (verify) or 1 (decode)"},
                        {"name": ROW_INPUT, "shape": [1], "dtype": "int32", "functions": ["prefill"],
                         "note": "the row of the chunk whose logits prefill returns: its last real token's index"}],
                outputs=[{"name": "logits", "shape": [1, "R", cfg.vocab_size], "dtype": "float16",
                          "note": "R = 1 for prefill (the logits_row row) and decode, verify_tokens for verify"}],
                prefill_logits="row",  # prefill returns the `logits_row` row only (row_logits.py)
                states=states,
                mil_op_counts=op_counts(pkg),
                size_separate_functions_bytes=separate, size_multifunction_bytes=combined,
                user_defined_metadata=metadata,
                target_passes=pass_records(lowered[1]),
            )
            return finish_manifest(tmp, manifest, compiled.loaded.tokenizer)


def _user_metadata(compiled, chunk: int, verify: int | None) -> dict[str, str]:
    cfg, tok = compiled.loaded.cfg, compiled.loaded.tokenizer
    extra = {"elmexport.verify_tokens": str(verify)} if verify is not None else {}
    return {
        "elmexport.model": cfg.name,
        "elmexport.family": cfg.family,
        "elmexport.context_length": str(compiled.ir.context),
        "elmexport.prefill_chunk": str(chunk),
        "elmexport.num_query_heads": ",".join(map(str, cfg.num_query_heads)),
        "elmexport.num_kv_heads": ",".join(map(str, cfg.num_kv_heads)),
        "elmexport.bos_token_id": str(cfg.bos_token_id),
        "elmexport.eos_token_ids": ",".join(map(str, cfg.eos_token_ids)),
        "elmexport.chat_template": cfg.chat_template or "",
        "elmexport.quantization": compiled.quant.name,
        "elmexport.random_weights": str(bool(compiled.loaded.source.get("random_weights"))).lower(),
        "elmexport.tokenizer": "tokenizer.json" if tok is not None else "",
        "elmexport.prefill_logits": "row",  # prefill returns the row its `logits_row` input names
        **extra,
    }


def _set_metadata(ct, pkg: Path, metadata: dict[str, str]) -> None:
    """Write user-defined metadata into the package's model spec in place (weights untouched)."""
    spec_path = pkg / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = read_spec(pkg)
    for k, v in metadata.items():
        spec.description.metadata.userDefined[k] = v
    # Protobuf writes map fields (function table, block specialisations, user metadata) in hash order, which
    # changes from run to run; deterministic serialisation sorts map keys, so identical exports give identical bytes.
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def _stabilise_item_identifiers(pkg: Path) -> None:
    """Give the package's Manifest.json item identifiers derived from each item's path instead of random UUIDs.

    coremltools names every item of an .mlpackage (the model spec, the weights folder) with a fresh uuid4, so two
    identical exports differ in Manifest.json. The identifiers only have to be unique within the package; a UUID
    made from the sha256 of the item's path is, and is the same every time. Upper-case, as Xcode writes them.
    """
    import hashlib
    import json
    import uuid

    from ...strict_json import dumps

    manifest_path = pkg / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    renamed = {old: str(uuid.UUID(bytes=hashlib.sha256(item["path"].encode()).digest()[:16], version=4)).upper()
               for old, item in manifest["itemInfoEntries"].items()}
    # Entries come out in the order of the random identifiers they had; sorted by the new ones they are stable.
    manifest["itemInfoEntries"] = dict(sorted((renamed[old], item) for old, item in manifest["itemInfoEntries"].items()))
    manifest["rootModelIdentifier"] = renamed[manifest["rootModelIdentifier"]]
    manifest_path.write_text(dumps(manifest, indent=4) + "\n")


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
