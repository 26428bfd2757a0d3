"""Core ML `verify` function on openelm-tiny, run through the MIL interpreter.

`verify` is the prefill graph at length N = verify_tokens, so its rows must equal what prefill + decode compute for
the same tokens at the same positions, within the fp16 bound of test_coreml_target.py (2e-2 over logits of
magnitude ~2). Greedy decoding that feeds each step's token plus speculative guesses through verify must pick the
same tokens as decode alone: a verify call's padded rows must not leak into later reads.
"""

import numpy as np
import pytest

import elmexport
from elmexport.manifest import read_manifest
from elmexport.targets.coreml.runner import open_runner

CONTEXT, CHUNK, VERIFY = 64, 8, 5


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml-verify") / "tiny"
    elmexport.export("openelm-tiny", "coreml", random_weights=True, context=CONTEXT, cache=False,
                     verify_tokens=VERIFY, prefill_chunk=CHUNK, out=out, log=lambda *a, **k: None)
    return out


def _runner(pkg):
    return open_runner(pkg, read_manifest(pkg))


def test_manifest_and_metadata_name_verify(package):
    from elmexport.targets.coreml import read_spec

    manifest = read_manifest(package)
    assert manifest["functions"] == ["prefill", "decode", "verify"] and manifest["verify_tokens"] == VERIFY
    spec = read_spec(package / manifest["model_file"])
    assert sorted(spec.mlProgram.functions) == ["decode", "prefill", "verify"]
    assert spec.description.metadata.userDefined["elmexport.verify_tokens"] == str(VERIFY)
    # weights stored once: three functions cost far less than three separate packages
    assert manifest["size_multifunction_bytes"] < 0.45 * manifest["size_separate_functions_bytes"]


def test_verify_rows_match_prefill_and_decode(package):
    prompt = list(range(200, 211))  # 11 tokens: a full chunk and a padded one
    tail = [7, 300, 41, 5, 999]
    with_verify, plain = _runner(package), _runner(package)
    with_verify.verify = None  # prompt through prefill on both
    with_verify.forward(prompt, 0)
    plain.forward(prompt, 0)
    with_verify.verify = VERIFY
    calls = []
    call = with_verify._call
    with_verify._call = lambda f, ids, start: (calls.append((f, len(ids))), call(f, ids, start))[1]
    for n in range(2, VERIFY + 1):  # each width, at the same positions (later calls overwrite the slots)
        got = with_verify.forward(tail[:n], len(prompt))
        plain.verify = None
        want = np.concatenate([plain.forward([t], len(prompt) + i) for i, t in enumerate(tail[:n])])
        assert got.shape == want.shape == (n, want.shape[1])
        assert np.abs(got - want).max() <= 2e-2
        assert np.abs(want).max() > 0.1
    assert calls == [("verify", VERIFY)] * (VERIFY - 1)


def test_greedy_through_verify_equals_decode_only(package):
    prompt = list(range(50, 63))
    steps = 12

    def greedy(runner, use_verify):
        runner.verify = VERIFY if use_verify else None
        logits = runner.forward(prompt, 0)
        seq = prompt + [int(logits[-1].argmax())]
        while len(seq) < len(prompt) + steps:
            if use_verify:  # feed the last token plus a wrong guess: only row 0 counts, the guess is overwritten
                rows = runner.forward([seq[-1], 1], len(seq) - 1)
            else:
                rows = runner.forward([seq[-1]], len(seq) - 1)
            seq.append(int(rows[0].argmax()))
        return seq[len(prompt):]

    assert greedy(_runner(package), True) == greedy(_runner(package), False)
