#!/usr/bin/env python3
"""Records the golden trace that ElmKit's speculative decoding tests replay: a Core ML pair's every call.

Why: `SpeculativeDecoder` is a port of elmexport/speculative.py, and the only trustworthy oracle for a port is
the implementation it copies, run on a real pair folder. This script opens a pair exported by `elmexport pair
--to coreml` (pair.json, target-*/ with its `verify` function, draft-*/), runs `LoadedPair.generate` (what
`elmexport generate PAIR --prompt ...` runs) through the host runtime (targets/coreml/runner.py over the MIL
interpreter), and writes down every call each package gets (trace_recording.py: function, ids, positions,
logits_row, fresh state, the rows read) with the result: tokens, proposals, acceptances, target and draft calls.
The Swift tests open the copied pair folder (pair.json and both manifests) as ElmKit does, drive
`SpeculativeDecoder` over two engines whose backends replay these calls, and must make exactly these calls and
reach exactly this result. The tokens are also checked here against the target package alone.

The pair is SmolLM2-135M-Instruct fp32 verifying its own int4 export (real weights: random-weight models repeat one
token forever, so their drafts agree always or never; a real int4 draft agrees often but not always), with a
context of 64 so generation runs into the end of the context, where the target's last rounds go through decode
because a padded verify call would run past it. Only the rows read are kept (top 8), so the trace is small.
Slow only in the export (about 5 minutes); run by hand after the exporter, the pair format or speculative.py
change. `make_fixtures.py --check` validates the committed trace cheaply.

Usage:
  elmexport pair --target smollm2-135m-instruct --draft smollm2-135m-instruct --to coreml --k 3 \\
      --target-quant none --draft-quant int4 --context 64 --out /tmp/pair-smol
  python ios_demo/Fixtures/make_pair_trace.py /tmp/pair-smol
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from trace_recording import HERE, TOP_K, CallRecorder, chat_prompt, contract_problems, manifest_facts, size_problem

OUT_DIR = HERE / "coreml_pair"
QUESTION = "List the planets of the solar system."  # a long answer: generation runs into the end of the context
MAX_NEW_TOKENS = 64  # more than the context leaves


def greedy_chain_problems(calls: list[dict], sequence: list[int], prompt_tokens: int) -> list[str]:
    """The target's recorded rows must make `sequence` (prompt + kept tokens) its greedy output: every row fed
    only kept tokens predicts the next kept token, and every kept token is predicted by such a row."""
    problems, justified = [], set()
    for i, call in enumerate(calls):
        start = call["input_pos"][0]
        for row in call["rows"]:
            r = call.get("logits_row", row["row"])  # prefill's one output row is its logits_row input row
            position = start + r
            if call["input_ids"][:r + 1] != sequence[start:position + 1] or position + 1 >= len(sequence):
                continue  # a rejected proposal's row, or the row after the last kept token
            if row["argmax"] != sequence[position + 1]:
                problems.append(f"pair: target call {i} predicts {row['argmax']} at {position + 1}, "
                                f"the trace keeps {sequence[position + 1]}")
            justified.add(position + 1)
    if set(range(prompt_tokens, len(sequence))) - justified:
        problems.append("pair: expected_tokens are not the target's greedy chain of the recorded rows")
    return problems


def check_pair_trace(directory: Path = OUT_DIR) -> list[str]:
    """Cheap consistency checks of the committed pair trace (no packages, no interpreter)."""
    trace_path, pair_path = directory / "trace.json", directory / "pair.json"
    if not trace_path.exists() or not pair_path.exists():
        return [f"missing: trace.json or pair.json in {directory}"]
    problems = size_problem(trace_path)
    trace = json.loads(trace_path.read_text(encoding="utf-8"))
    pair = json.loads(pair_path.read_text(encoding="utf-8"))
    target_manifest = json.loads((directory / pair["target"]["package"] / "manifest.json").read_text(encoding="utf-8"))
    if chat_prompt(target_manifest, [{"role": "user", "content": trace["question"]}]) != trace["prompt_text"]:
        problems.append("pair: elmexport.chat renders a different prompt now")
    for role in ("target", "draft"):
        manifest_path = directory / pair[role]["package"] / "manifest.json"
        facts = trace["pair"][role]
        if not manifest_path.exists() or \
                hashlib.sha256(manifest_path.read_bytes()).hexdigest() != facts["manifest_sha256"]:
            problems.append(f"pair: {role} manifest.json is not the manifest of the traced package")
        problems += contract_problems(f"pair {role}", trace[f"{role}_calls"], facts)
    if trace["pair"]["k"] != pair["k"] or trace["pair"]["target"].get("verify_tokens") != pair["k"] + 1:
        problems.append("pair: k and the target's verify_tokens disagree with pair.json")
    result = trace["result"]
    problems += greedy_chain_problems(trace["target_calls"], trace["prompt_ids"] + result["tokens"],
                                      len(trace["prompt_ids"]))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pair", type=Path, help="a Core ML pair folder written by `elmexport pair --to coreml`")
    args = parser.parse_args()
    from elmexport.api import load
    from elmexport.pair import is_pair, load_pair
    from elmexport.strict_json import dumps

    if not is_pair(args.pair):
        print(f"error: {args.pair} has no pair.json; give a folder written by `elmexport pair --to coreml`",
              file=sys.stderr)
        return 2
    pair = load_pair(args.pair)
    if pair.pair["runtime"] != "coreml":
        print(f"error: {args.pair} is a {pair.pair['runtime']} pair; give a Core ML one", file=sys.stderr)
        return 2
    recorders = {"target": CallRecorder(pair.target.runner), "draft": CallRecorder(pair.draft.runner)}
    prompt_ids = pair.target.prompt_ids(QUESTION)
    prompt_text = chat_prompt(pair.target.package.manifest, [{"role": "user", "content": QUESTION}])
    if pair.target.tokenizer.encode(prompt_text) != prompt_ids:
        print("error: the prompt rendered from the target's manifest does not tokenize to the ids generate uses",
              file=sys.stderr)
        return 1
    result = pair.generate(QUESTION, max_new_tokens=MAX_NEW_TOKENS)  # `elmexport generate PAIR --prompt ...`
    calls = {role: recorder.take() for role, recorder in recorders.items()}
    alone = load(args.pair / pair.pair["target"]["package"]).generate(QUESTION, max_new_tokens=MAX_NEW_TOKENS)
    if alone.tokens != result.tokens or list(result.prompt_tokens) != prompt_ids:
        print(f"error: the pair gave {result.tokens}, the target alone {alone.tokens}", file=sys.stderr)
        return 1
    functions = [c["function"] for c in calls["target"]]
    if "verify" not in functions or "decode" not in functions or result.stopped_by != "max_tokens" \
            or result.accepted in (0, result.proposed):
        print(f"error: the trace must show verify calls, decode calls at the end of the context and both accepted "
              f"and rejected proposals ({result.summary()}, stopped by {result.stopped_by}); export the pair as "
              f"the usage says", file=sys.stderr)
        return 1

    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir()
    shutil.copyfile(args.pair / "pair.json", OUT_DIR / "pair.json")
    facts = {}
    for role, package in (("target", pair.target), ("draft", pair.draft)):
        folder = pair.pair[role]["package"]
        (OUT_DIR / folder).mkdir()
        shutil.copyfile(args.pair / folder / "manifest.json", OUT_DIR / folder / "manifest.json")
        facts[role] = manifest_facts(args.pair / folder, package.package.manifest)
    trace = {
        "about": "written by ios_demo/Fixtures/make_pair_trace.py; do not edit",
        "command": f'elmexport generate PAIR --prompt "{QUESTION}" --max-new-tokens {MAX_NEW_TOKENS}',
        "pair": {"k": pair.pair["k"], **facts},
        "top_k": TOP_K,
        "question": QUESTION, "prompt_text": prompt_text, "prompt_ids": prompt_ids, "max_new_tokens": MAX_NEW_TOKENS,
        "eos_token_ids": list(pair.target.tokenizer.eos_token_ids),
        "result": {"tokens": list(result.tokens), "proposed": result.proposed, "accepted": result.accepted,
                   "target_calls": result.target_calls, "draft_calls": result.draft_calls,
                   "stopped_by": result.stopped_by},
        "target_calls": calls["target"], "draft_calls": calls["draft"],
    }
    (OUT_DIR / "trace.json").write_text(dumps(trace, indent=1) + "\n")
    problems = check_pair_trace()
    if problems:
        print("error: the trace just written fails its own check:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    print(f"wrote {OUT_DIR}: {len(prompt_ids)} prompt tokens, {result.summary()}; target "
          f"{len(calls['target'])} package calls, draft {len(calls['draft'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
