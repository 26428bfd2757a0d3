"""Core ML speculative pair on openelm-tiny, run through the MIL interpreter: the target gets a `verify` function
of k + 1 tokens, and greedy speculative output equals the target alone, token for token (tests/test_pair.py builds
the ONNX and ExecuTorch pairs the same way)."""

import json

from elmexport.api import load
from elmexport.pair import export_pair, load_pair
from elmexport.speculative import speculative_generate
from elmexport.validation.streams import greedy

PROMPT = [1, 17, 305, 44, 9, 210, 77]


def test_coreml_pair_output_equals_the_target_alone(tmp_path, llama2_style_tokenizer):
    pair_dir = export_pair("openelm-tiny", "openelm-tiny", "coreml", k=3, draft_quant="int4", out=tmp_path / "pair",
                           context=48, random_weights=True, seed=0, draft_seed=3, tokenizer=llama2_style_tokenizer)
    manifest = json.loads((pair_dir / "pair.json").read_text())
    assert manifest["runtime"] == "coreml" and manifest["tokenizer_check"]["identical"]
    target_manifest = json.loads((pair_dir / manifest["target"]["package"] / "manifest.json").read_text())
    assert target_manifest["verify_tokens"] == 4 and "verify" in target_manifest["functions"]
    pair = load_pair(pair_dir)
    expected = greedy(load(pair_dir / manifest["target"]["package"]).runner, PROMPT, 20)
    calls = []
    call = pair.target.runner._call
    pair.target.runner._call = lambda f, *args, **kw: (calls.append(f), call(f, *args, **kw))[1]
    result = speculative_generate(pair.target.runner, pair.draft.runner, PROMPT, 20, k=3)
    assert result.tokens == expected, result.summary()
    assert result.proposed > 0 and "verify" in calls
