"""Records every Core ML call a package runner makes, for the Swift replay backend (Tests/ElmKitTests/ReplayBackend).

Why at the model's `predict`: that is the line between the host runner's control flow (targets/coreml/runner.py:
chunking, padding, positions, which function, which row) and the package, the same line as ElmKit's
`PredictionBackend`. Each call is written down with its function, `input_ids`, `input_pos`, `logits_row` (prefill),
whether the state was fresh, and the rows its caller reads: top-k ids and values plus the arg-max of each, every
other logit being irrelevant to greedy decoding. Shared by make_engine_trace.py (one package) and
make_pair_trace.py (a speculative pair's two packages).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # the recording scripts import elmexport from this checkout, not an installed copy

TOP_K = 8
MAX_TRACE_BYTES = 1_000_000


class CallRecorder:
    """Wraps a CoreMLPackageRunner: its model's `predict` is recorded, and `forward` / `forward_last` tell the
    recorded calls how many of their tokens were real, so each call keeps the rows its caller reads."""

    def __init__(self, runner):
        self.runner, self.model = runner, runner.model
        self.calls: list[dict] = []
        self.fresh = True
        original_predict, original_make_state = self.model.predict, self.model.make_state

        def make_state():
            self.fresh = True
            return original_make_state()

        def predict(feeds, state=None, function_name=None):
            out = original_predict(feeds, state=state, function_name=function_name)
            call = {"fresh_state": self.fresh, "function": function_name,
                    "input_ids": [int(x) for x in np.asarray(feeds["input_ids"]).reshape(-1)],
                    "input_pos": [int(x) for x in np.asarray(feeds["input_pos"]).reshape(-1)]}
            if "logits_row" in feeds:
                call["logits_row"] = int(np.asarray(feeds["logits_row"]).reshape(-1)[0])
            call["logits"] = np.asarray(out["logits"], dtype=np.float32)[0]
            self.calls.append(call)
            self.fresh = False
            return out

        self.model.make_state, self.model.predict = make_state, predict
        for name in ("forward", "forward_last"):
            setattr(runner, name, self._marking(getattr(runner, name)))

    def _marking(self, method):
        def run(ids, start_pos):
            before = len(self.calls)
            result = method(ids, start_pos)
            remaining = len(ids)
            for call in self.calls[before:]:
                if call["function"] == "decode":
                    call["real_tokens"] = 1
                elif "logits_row" in call:
                    call["real_tokens"] = call["logits_row"] + 1
                else:
                    call["real_tokens"] = min(len(call["input_ids"]), remaining)
                remaining -= call["real_tokens"]
            return result
        return run

    def take(self) -> list[dict]:
        """The calls so far, each reduced to the rows its caller reads."""
        taken, self.calls = self.calls, []
        return [reduce_call(c) for c in taken]


def reduce_call(call: dict) -> dict:
    """prefill (one row out) and decode: row 0; verify: the rows of its real tokens."""
    logits = call.pop("logits")
    real = call.pop("real_tokens")
    read = range(real) if call["function"] == "verify" else range(1)
    call["rows"] = [top_row(logits, r) for r in read]
    return call


def top_row(logits: np.ndarray, row: int) -> dict:
    values = logits[row]
    top = np.argsort(-values, kind="stable")[:TOP_K]
    return {"row": row, "top_ids": [int(i) for i in top], "top_values": [float(values[i]) for i in top],
            "argmax": int(np.argmax(values))}


def manifest_facts(package: Path, manifest: dict) -> dict:
    """What a trace says about the package it was recorded from (its manifest is copied beside the trace)."""
    facts = {"name": manifest["name"],
             "manifest_sha256": hashlib.sha256((package / "manifest.json").read_bytes()).hexdigest(),
             "context_length": manifest["context_length"], "prefill_chunk": manifest["prefill_chunk"],
             "vocab_size": manifest["model"]["config"]["vocab_size"]}
    if "verify" in manifest.get("functions", []):
        facts["verify_tokens"] = manifest["verify_tokens"]
    return facts


def chat_prompt(manifest: dict, messages: list[dict]) -> str:
    """The prompt elmexport.chat renders for `messages` with a package's template and system prompt, read from its
    manifest, as ElmKit renders it."""
    from elmexport.chat import render_chat

    return render_chat(manifest["chat_template"], messages, manifest.get("system_prompt"))


def contract_problems(name: str, calls: list[dict], package: dict) -> list[str]:
    """Calls that do not follow the package contract (widths, contiguous positions, logits_row, rows read)."""
    problems = []
    widths = {"prefill": package["prefill_chunk"], "decode": 1, "verify": package.get("verify_tokens")}
    for i, call in enumerate(calls):
        width, start = widths.get(call["function"]), call["input_pos"][0]
        if len(call["input_ids"]) != width or call["input_pos"] != list(range(start, start + width)):
            problems.append(f"{name}: call {i} does not follow the {call['function']} contract")
        if (call["function"] == "prefill") != ("logits_row" in call) or \
                not 0 <= call.get("logits_row", 0) < width:
            problems.append(f"{name}: call {i}: logits_row belongs to prefill, inside the chunk")
        if not call["rows"] or any(r["top_ids"][0] != r["argmax"] for r in call["rows"]):
            problems.append(f"{name}: call {i}: a row's first top id is not its arg-max")
    return problems


def size_problem(path: Path) -> list[str]:
    size = path.stat().st_size
    return [f"{path.name} is {size} bytes, over {MAX_TRACE_BYTES}"] if size > MAX_TRACE_BYTES else []
