#!/usr/bin/env python3
"""Records the golden trace that ElmKit's engine tests replay: every Core ML call a real exported package gets.

Why: Core ML does not exist on Linux, yet the engine's control flow (chunking, padding, positions, the choice of
the prefill or decode function, the shared state, rewinding, reusing the KV cache across chat turns) is what goes
wrong on a device. This script runs a real package exported by `elmexport coreml` through the project's own
host runtime for it (targets/coreml/runner.py over the MIL interpreter, the same path `elmexport generate
PACKAGE` takes) and writes down each call: function name, `input_ids`, `input_pos`, prefill's `logits_row`,
whether the state was fresh, and the logits row the caller uses (top-k ids and values, plus the arg-max);
trace_recording.py does the recording. The Swift replay backend answers the engine's calls from this file and
fails on any call that differs, so `swift test` shows the engine drives the real package to the same greedy
tokens as the host.

Scenarios:
  generate  exactly what `elmexport generate PACKAGE --prompt "What is the capital of France?"` does (greedy)
  chat      four chat turns on one state (the last one long enough to reach the end of the context): each turn
            prefills only the tokens after the longest prefix already in the KV cache; its greedy tokens are
            checked here against a from-scratch run of the whole conversation (so the expected tokens are the
            host's answer, not a property of the reuse policy)

Slow (it needs an exported package; the MIL interpreter takes about a minute): run by hand after the exporter or
the package contract changes, not in CI. `make_fixtures.py --check` validates the committed trace cheaply.

Usage:
  elmexport coreml --quant int4 --context 512 --out /tmp/smol     # or the quickstart's package
  python ios_demo/Fixtures/make_engine_trace.py /tmp/smol/<package>
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from trace_recording import HERE, TOP_K, CallRecorder, chat_prompt, contract_problems, manifest_facts, size_problem

from elmexport.chat import render_chat  # noqa: E402  (importable once trace_recording put this checkout first)

OUT_DIR = HERE / "coreml_engine"
QUESTION = "What is the capital of France?"
CHAT_TURNS = [QUESTION, "And of Germany?", "Name one famous building in that city."]
MAX_NEW_TOKENS = 32
# The last chat turn ends this close to the context's end: its prompt runs past the last full prefill chunk (the
# engine must switch to decode calls there, since a padded chunk would run past the context) and generation stops
# at the context length, not at MAX_NEW_TOKENS.
LONG_TURN_ROOM = 10
LONG_TURN_SENTENCES = ["Paris is on the Seine.", "Berlin is on the Spree.", "Rome is on the Tiber.",
                       "Vienna is on the Danube.", "London is on the Thames.", "Prague is on the Vltava."]


def greedy(runner, eos: set[int], prompt: list[int], start: int, cached: list[int],
           max_new: int) -> tuple[list[int], list[int]]:
    """Greedy continuation of `prompt` whose first `start` tokens are already cached; returns (tokens, cache)."""
    if start == 0:
        runner.reset()
    logits = runner.forward_last(prompt[start:], start)
    cache = cached[:start] + prompt[start:]
    tokens: list[int] = []
    budget = min(max_new, runner.context - len(prompt))
    for step in range(budget):
        token = int(np.argmax(logits))
        if token in eos:
            break
        tokens.append(token)
        if step + 1 < budget:
            logits = runner.forward_last([token], len(cache))
            cache.append(token)
    return tokens, cache


def reusable_prefix(cache: list[int], prompt: list[int]) -> int:
    """Tokens of `prompt` whose KV entries are already in the cache (at least one token is always re-run)."""
    n = 0
    while n < min(len(cache), len(prompt)) and cache[n] == prompt[n]:
        n += 1
    return min(n, len(prompt) - 1)


def long_question(model, tokenizer, messages: list[dict], prompt_tokens: int) -> tuple[str, str, list[int]]:
    """A user message that brings the conversation's prompt to at least `prompt_tokens` tokens."""
    sentences = []
    while True:
        sentences.append(LONG_TURN_SENTENCES[len(sentences) % len(LONG_TURN_SENTENCES)])
        question = " ".join(sentences) + " Which city was named first?"
        text = render_chat(model.chat_template, messages + [{"role": "user", "content": question}], model.system_prompt)
        ids = tokenizer.encode(text)
        if len(ids) >= prompt_tokens:
            return question, text, ids


def check_trace(directory: Path = OUT_DIR) -> list[str]:
    """Cheap consistency checks of a committed trace (no package, no interpreter): what `make_fixtures --check`
    can afford in CI. The prompts must be what elmexport.chat renders now from the copied manifest, the calls must
    follow the package contract, and the expected tokens must be the greedy chain the recorded rows give."""
    problems: list[str] = []
    trace_path, manifest_path = directory / "trace.json", directory / "manifest.json"
    if not trace_path.exists() or not manifest_path.exists():
        return [f"missing: {trace_path.name} or {manifest_path.name} in {directory}"]
    problems += size_problem(trace_path)
    trace = json.loads(trace_path.read_text(encoding="utf-8"))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    package = trace["package"]
    if hashlib.sha256(manifest_path.read_bytes()).hexdigest() != package["manifest_sha256"]:
        problems.append("manifest.json is not the manifest of the traced package")
    chunk, context = package["prefill_chunk"], package["context_length"]
    if (manifest["prefill_chunk"], manifest["context_length"]) != (chunk, context):
        problems.append("manifest.json and trace.json disagree on prefill_chunk / context_length")

    def check_turn(name: str, turn: dict, messages: list[dict]) -> None:
        if chat_prompt(manifest, messages) != turn["prompt_text"]:
            problems.append(f"{name}: elmexport.chat renders a different prompt now")
        calls, tokens = turn["calls"], turn["expected_tokens"]
        problems.extend(contract_problems(name, calls, package))
        if any(c["function"] == "verify" or len(c["rows"]) != 1 for c in calls):
            problems.append(f"{name}: generation reads one row per call, through prefill or decode")
        # Greedy chain: after the prompt calls, each decode feeds the previous call's arg-max.
        decodes = [c for c in calls if c["function"] == "decode" and c["input_pos"][0] >= len(turn["prompt_ids"])]
        produced = [c["rows"][-1]["argmax"] for c in calls[len(calls) - len(decodes) - 1:]]
        if produced[:len(tokens)] != tokens or [c["input_ids"][0] for c in decodes] != tokens[:len(decodes)]:
            problems.append(f"{name}: expected_tokens are not the greedy chain of the recorded rows")

    check_turn("generate", trace["generate"], trace["generate"]["messages"])
    messages: list[dict] = []
    for number, turn in enumerate(trace["chat"]["turns"], 1):
        messages.append({"role": "user", "content": turn["user"]})
        check_turn(f"chat turn {number}", turn, messages)
        messages.append({"role": "assistant", "content": turn["expected_text"]})
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="a Core ML package exported by elmexport")
    args = parser.parse_args()
    from elmexport.api import load
    from elmexport.strict_json import dumps

    package = args.package
    model = load(package)
    manifest = model.package.manifest
    if manifest.get("target") != "coreml":
        print(f"error: {package} is a {manifest.get('target')} package; give a Core ML one", file=sys.stderr)
        return 2
    runner, tokenizer = model.runner, model.tokenizer
    recorder = CallRecorder(runner)
    eos = set(manifest["eos_token_ids"])

    # The CLI's own path, unchanged: `elmexport generate PACKAGE --prompt QUESTION --max-new-tokens 32`.
    prompt_text = render_chat(model.chat_template, [{"role": "user", "content": QUESTION}], model.system_prompt)
    result = model.generate(QUESTION, max_new_tokens=MAX_NEW_TOKENS)
    if tokenizer.encode(prompt_text) != list(result.prompt_tokens):
        print("error: the rendered prompt does not tokenize to the ids generate used", file=sys.stderr)
        return 1
    generate = {
        "command": f'elmexport generate PACKAGE --prompt "{QUESTION}" --max-new-tokens {MAX_NEW_TOKENS}',
        "messages": [{"role": "user", "content": QUESTION}], "prompt_text": prompt_text,
        "prompt_ids": list(result.prompt_tokens), "max_new_tokens": MAX_NEW_TOKENS,
        "expected_tokens": list(result.tokens), "expected_text": result.text,
        "calls": recorder.take(),
    }

    # Chat turns on one state (each prefills only what the cache lacks), then each prompt from scratch.
    messages: list[dict] = []
    turns, cache = [], []
    for question in CHAT_TURNS + [None]:
        if question is None:  # a last turn long enough to reach the end of the context
            question, text, ids = long_question(model, tokenizer, messages, runner.context - LONG_TURN_ROOM)
        messages.append({"role": "user", "content": question})
        text = render_chat(model.chat_template, messages, model.system_prompt)
        ids = tokenizer.encode(text)
        start = reusable_prefix(cache, ids) if cache else 0
        tokens, cache = greedy(runner, eos, ids, start, cache, MAX_NEW_TOKENS)
        reply = tokenizer.decode(tokens)
        turns.append({"user": question, "prompt_text": text, "prompt_ids": ids, "reused_prefix": start,
                      "expected_tokens": tokens, "expected_text": reply, "calls": recorder.take()})
        messages.append({"role": "assistant", "content": reply})
    for number, turn in enumerate(turns, 1):
        scratch, _ = greedy(runner, eos, turn["prompt_ids"], 0, [], MAX_NEW_TOKENS)
        recorder.calls = []
        if scratch != turn["expected_tokens"]:
            print(f"error: turn {number}: reusing the cache gave {turn['expected_tokens']}, a fresh prefill "
                  f"{scratch}", file=sys.stderr)
            return 1

    trace = {
        "about": "written by ios_demo/Fixtures/make_engine_trace.py; do not edit",
        "package": {**manifest_facts(package, manifest), "runtime": model.runtime},
        "top_k": TOP_K,
        "generate": generate,
        "chat": {"system_prompt": model.system_prompt, "max_new_tokens": MAX_NEW_TOKENS, "turns": turns},
    }
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "trace.json").write_text(dumps(trace, indent=1) + "\n")
    shutil.copyfile(package / "manifest.json", OUT_DIR / "manifest.json")
    print(f"wrote {OUT_DIR / 'trace.json'}: generate {len(generate['calls'])} calls -> {result.tokens}; "
          + "; ".join(f"turn {i + 1} {len(t['calls'])} calls from {t['reused_prefix']} -> {len(t['expected_tokens'])} "
                      f"tokens" for i, t in enumerate(turns)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
