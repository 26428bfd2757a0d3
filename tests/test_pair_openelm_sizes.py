"""Speculative pairs at real OpenELM shapes (random weights): a 1.1B target verified against a 270M draft, and a
270M target with its own int4 export as the draft, on ONNX and ExecuTorch.

Why at full size: the tiny configs of test_pair.py prove the control flow, but a 1.1B target is the shape a draft
exists for (28 layers, 16-20 heads of 64, a vocabulary of 32000 shared with the 270M draft). Random weights say
nothing about acceptance: the two random models almost never agree, so every round rejects at its first token and
rewinds, while the 270M fp32/int4 pair accepts some tokens, so partial acceptances are rewound too. What must hold
in both is the claim of a pair: its greedy tokens are the target's own, at every k. Minutes and ~10 GiB each, so
marked slow: `python -m pytest -m slow tests/test_pair_openelm_sizes.py`.
"""

from __future__ import annotations

import pytest

from elmexport.pair import export_pair
from elmexport.pair_validation import validate_pair

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("to", ["onnx", "executorch"])
@pytest.mark.parametrize("target, draft", [("openelm-1.1b", "openelm-270m"), ("openelm-270m", "openelm-270m")])
def test_openelm_pair_output_is_the_targets(target, draft, to, tmp_path, llama2_style_tokenizer):
    pair = export_pair(target, draft, to, k=4, out=tmp_path / "pair", context=96, random_weights=True, seed=0,
                       draft_seed=0, tokenizer=llama2_style_tokenizer)
    report = validate_pair(pair, k_values=[1, 2, 4], max_new_tokens=24)
    print(target, draft, to, [(r["k"], r["prompts_matching"], round(r["acceptance_rate"], 3),
                               round(r["tokens_per_target_call"], 2), round(r["speedup"], 2)) for r in report["runs"]])
    assert report["passed"], report["runs"]
    assert all(r["prompts_matching"] == report["prompts"] == 4 for r in report["runs"])
    if target == draft:  # the same random model, int4 against fp32: some proposals must be kept
        assert any(r["acceptance_rate"] > 0 for r in report["runs"])
