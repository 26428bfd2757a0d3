"""One small Core ML package with all three functions (prefill with its logits_row input, decode, verify), shared by
the tests of the functions' contracts: an export costs ~25 s, the tests read it through the MIL interpreter."""

import pytest

import elmexport

CONTEXT, CHUNK, VERIFY = 64, 8, 5


@pytest.fixture(scope="session")
def three_function_package(tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml-functions") / "tiny"
    elmexport.export("openelm-tiny", "coreml", random_weights=True, context=CONTEXT, cache=False,
                     verify_tokens=VERIFY, prefill_chunk=CHUNK, out=out, log=lambda *a, **k: None)
    return out
