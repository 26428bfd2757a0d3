"""Core ML prefill returns one logits row, the one its `logits_row` input names, on openelm-tiny through the MIL
interpreter.

A padded chunk's last real token sits at row n - 1 of C; the runner asks for it, so the row prefill returns must be
the row decode computes for that token after the same prefix (fp16 bound 2e-2, as in test_coreml_target.py), for
every fill of a chunk, and the cache prefill writes must serve the calls after it. `forward` (every row) never uses
prefill: it goes through verify or decode, so validation compares rows the package computed at their positions.
"""

import numpy as np
import pytest

from elmexport.manifest import read_manifest
from elmexport.targets.coreml import read_spec
from elmexport.targets.coreml.runner import open_runner

from .conftest import CHUNK, CONTEXT


def _runner(pkg):
    runner = open_runner(pkg, read_manifest(pkg))
    runner.verify = None  # every-row requests through decode: the reference rows
    return runner


def test_prefill_takes_a_row_and_returns_one(three_function_package):
    manifest = read_manifest(three_function_package)
    assert manifest["prefill_logits"] == "row"
    spec = read_spec(three_function_package / manifest["model_file"])
    prefill = next(f for f in spec.description.functions if f.name == "prefill")
    assert [(i.name, list(i.type.multiArrayType.shape)) for i in prefill.input] == [
        ("input_ids", [1, CHUNK]), ("input_pos", [CHUNK]), ("logits_row", [1])]
    assert list(prefill.output[0].type.multiArrayType.shape) == [1, 1, 32000]
    assert spec.description.metadata.userDefined["elmexport.prefill_logits"] == "row"
    assert [p["name"] for p in manifest["target_passes"]] == ["coreml::lower_attention", "coreml::row_logits"]


@pytest.mark.parametrize("length", [1, 2, 5, CHUNK - 1, CHUNK, CHUNK + 3, 2 * CHUNK + 7])
def test_prefill_row_is_the_last_real_tokens_row(three_function_package, length):
    prompt = [(37 * i + 11) % 600 for i in range(length)]
    runner, reference = _runner(three_function_package), _runner(three_function_package)
    calls, call = [], runner._call
    runner._call = lambda f, ids, start, row=None: (calls.append((f, row)), call(f, ids, start, row))[1]
    got = runner.forward_last(prompt, 0)
    want = reference.forward(prompt, 0)[-1]
    assert got.shape == want.shape and np.abs(got - want).max() <= 2e-2 and np.abs(want).max() > 0.1
    full, rest = divmod(length, CHUNK)
    expected = [("prefill", CHUNK - 1)] * full + ([("prefill", rest - 1)] if rest > 1 else [("decode", None)] * rest)
    assert calls == expected
    # the cache it wrote serves the next token as the reference's does
    token = int(want.argmax())
    assert np.abs(runner.forward([token], length) - reference.forward([token], length)).max() <= 2e-2


def test_tail_near_the_context_end_goes_through_decode(three_function_package):
    runner, reference = _runner(three_function_package), _runner(three_function_package)
    start = CONTEXT - CHUNK + 2  # a padded chunk here would run past the context
    prefix = [(13 * i + 5) % 600 for i in range(start)]
    runner.forward_last(prefix, 0)
    reference.forward_last(prefix, 0)
    calls, call = [], runner._call
    runner._call = lambda f, ids, start, row=None: (calls.append(f), call(f, ids, start, row))[1]
    tail = [3, 4, 5]
    got = runner.forward_last(tail, start)
    assert calls == ["decode"] * 3
    assert np.abs(got - reference.forward(tail, start)[-1]).max() <= 2e-2


def test_every_row_request_never_uses_prefill(three_function_package):
    runner = _runner(three_function_package)
    calls, call = [], runner._call
    runner._call = lambda f, ids, start, row=None: (calls.append(f), call(f, ids, start, row))[1]
    rows = runner.forward(list(range(20)), 0)
    assert rows.shape[0] == 20 and set(calls) == {"decode"}
