"""Core ML `verify` function on openelm-tiny, run through the MIL interpreter.

`verify` is the prefill graph at length N = verify_tokens with every row kept, so its rows must equal what decode
computes for the same tokens at the same positions, within the fp16 bound of test_coreml_target.py (2e-2 over
logits of magnitude ~2). Greedy decoding that feeds each step's token plus speculative guesses through verify must
pick the same tokens as decode alone: a verify call's padded and rejected rows must not leak into later reads.
"""

import numpy as np

from elmexport.manifest import read_manifest
from elmexport.targets.coreml.runner import open_runner

from .conftest import VERIFY


def _runner(pkg, verify: bool = True):
    runner = open_runner(pkg, read_manifest(pkg))
    if not verify:  # every row through decode, one call per token
        runner.verify = None
    return runner


def _recording(runner) -> list:
    calls, call = [], runner._call
    runner._call = lambda f, ids, start, row=None: (calls.append((f, len(ids), row)), call(f, ids, start, row))[1]
    return calls


def test_manifest_and_metadata_name_verify(three_function_package):
    from elmexport.targets.coreml import read_spec

    manifest = read_manifest(three_function_package)
    assert manifest["functions"] == ["prefill", "decode", "verify"] and manifest["verify_tokens"] == VERIFY
    spec = read_spec(three_function_package / manifest["model_file"])
    assert sorted(spec.mlProgram.functions) == ["decode", "prefill", "verify"]
    assert spec.description.metadata.userDefined["elmexport.verify_tokens"] == str(VERIFY)
    verify = next(f for f in spec.description.functions if f.name == "verify")
    assert [list(i.type.multiArrayType.shape) for i in verify.input] == [[1, VERIFY], [VERIFY]]
    assert list(verify.output[0].type.multiArrayType.shape) == [1, VERIFY, 32000]
    # weights stored once: three functions cost far less than three separate packages
    assert manifest["size_multifunction_bytes"] < 0.45 * manifest["size_separate_functions_bytes"]


def test_verify_rows_match_decode(three_function_package):
    prompt = list(range(200, 211))
    tail = [7, 300, 41, 5, 999]
    with_verify, plain = _runner(three_function_package), _runner(three_function_package, verify=False)
    with_verify.forward_last(prompt, 0)
    plain.forward_last(prompt, 0)
    calls = _recording(with_verify)
    for n in range(2, VERIFY + 1):  # each width, at the same positions (later calls overwrite the slots)
        got = with_verify.forward(tail[:n], len(prompt))
        want = plain.forward(tail[:n], len(prompt))
        assert got.shape == want.shape == (n, want.shape[1])
        assert np.abs(got - want).max() <= 2e-2
        assert np.abs(want).max() > 0.1
    assert calls == [("verify", VERIFY, None)] * (VERIFY - 1)


def test_every_row_request_goes_through_verify_in_pieces(three_function_package):
    runner = _runner(three_function_package)
    calls = _recording(runner)
    rows = runner.forward(list(range(30, 42)), 0)  # 12 tokens: 5 + 5 + 2
    assert rows.shape[0] == 12 and calls == [("verify", VERIFY, None)] * 3
    calls.clear()
    runner.forward([9], 12)
    assert calls == [("decode", 1, None)]


def test_greedy_through_verify_equals_decode_only(three_function_package):
    prompt = list(range(50, 63))
    steps = 12

    def greedy(runner, use_verify):
        logits = runner.forward_last(prompt, 0)
        seq = prompt + [int(logits.argmax())]
        while len(seq) < len(prompt) + steps:
            if use_verify:  # feed the last token plus a wrong guess: only row 0 counts, the guess is overwritten
                rows = runner.forward([seq[-1], 1], len(seq) - 1)
            else:
                rows = runner.forward([seq[-1]], len(seq) - 1)
            seq.append(int(rows[0].argmax()))
        return seq[len(prompt):]

    assert greedy(_runner(three_function_package), True) == greedy(_runner(three_function_package, False), False)
