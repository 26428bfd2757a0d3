"""A checkpoint's own chat template is carried into its package and is the template every prompt is rendered from.

The checkpoint is a local HF folder named like a SmolLM2 model (so its config alone would pick ChatML) whose
tokenizer_config.json holds a template nothing like ChatML, one that writes `bos_token` itself, as Llama-2's does.
The expected prompts are written out by hand below; each path that renders a prompt must produce them: the eager
model behind `elmexport generate --model FOLDER`, a loaded package (`elmexport generate PACKAGE`, quickstart's
question and validation's device check all go through it), and onnxruntime-genai's `apply_chat_template` on the
package's own files.
"""

from __future__ import annotations

import json

import pytest

import elmexport
from elmexport.api import LoadedPackage
from elmexport.chat import render_chat
from elmexport.errors import ElmExportError
from elmexport.tokenizer import read_tokenizer_json
from elmexport.validation.eager import EagerRunner
from elmexport.weights.sources import load_model
from elmexport.weights.spec import ModelSpec

from .checkpoints import TINY_LLAMA_CONFIG, llama_hf_tensors, write_hf_dir
from .test_hf_files import SMOLLM2_SYSTEM_PROMPT, SMOLLM2_TEMPLATE

# role headers after '###', BOS written by the template, a header for the generation prompt
HOUSE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}### System:\n{% elif message['role'] == 'user' %}### User:\n"
    "{% else %}### Assistant:\n{% endif %}{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)
QUESTION = "What is the capital of France?"
EXPECTED = {  # (system message or None) -> the prompt the template must produce, written out by hand
    None: "<s>### User:\nWhat is the capital of France?\n### Assistant:\n",
    "Be brief.": "<s>### System:\nBe brief.\n### User:\nWhat is the capital of France?\n### Assistant:\n",
}
CONFIG = dict(TINY_LLAMA_CONFIG, vocab_size=600)  # the size of the Llama-2-style tokenizer the tests train


def checkpoint(folder, template, llama2_style_tokenizer, name="tiny-smollm2-chat"):
    path = write_hf_dir(folder / name, llama_hf_tensors(CONFIG, seed=11), CONFIG)
    (path / "tokenizer.json").write_bytes(llama2_style_tokenizer.read_bytes())
    config = {"bos_token": "<s>", "eos_token": "</s>", "tokenizer_class": "LlamaTokenizer"}
    if template is not None:
        config["chat_template"] = template
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def house_checkpoint(tmp_path_factory, llama2_style_tokenizer):
    return checkpoint(tmp_path_factory.mktemp("house"), HOUSE_TEMPLATE, llama2_style_tokenizer)


@pytest.fixture(scope="module")
def house_package(house_checkpoint, tmp_path_factory):
    from elmexport.cli import main

    out = tmp_path_factory.mktemp("house-pkg") / "pkg"
    assert main(["onnx", "--model", str(house_checkpoint), "--context", "64", "--out", str(out)]) == 0
    return out


def expected_ids(package, text):
    """The hand-written prompt through the package's tokenizer.json (the `tokenizers` library alone): '<s>' is
    the BOS special token, so the ids start with exactly one BOS."""
    ids = read_tokenizer_json(package).encode(text, add_special_tokens=False).ids
    assert ids[0] == 1 and ids[1] != 1
    return ids


def test_the_package_ships_the_checkpoints_template(house_package):
    config = json.loads((house_package / "tokenizer_config.json").read_text())
    assert config["chat_template"] == HOUSE_TEMPLATE
    manifest = json.loads((house_package / "manifest.json").read_text())
    assert manifest["chat_template"] not in ("chatml", None) and manifest["system_prompt"] is None


@pytest.mark.parametrize("system", [None, "Be brief."])
def test_every_runtime_path_renders_the_shipped_template(house_package, house_checkpoint, system):
    import onnxruntime_genai as og

    want = expected_ids(house_package, EXPECTED[system])
    package = elmexport.load(house_package)
    assert package.prompt_ids(QUESTION, system=system) == want

    loaded = load_model(ModelSpec(model=str(house_checkpoint)), log=lambda *_: None)
    eager = LoadedPackage(None, EagerRunner(loaded.model), loaded.tokenizer, loaded.cfg.chat_template,
                          loaded.cfg.system_prompt)  # as `elmexport generate --model FOLDER` builds it
    assert eager.prompt_ids(QUESTION, system=system) == want

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": QUESTION}]
    genai = og.Tokenizer(og.Config(str(house_package)))
    assert genai.apply_chat_template(json.dumps(messages), add_generation_prompt=True) == EXPECTED[system]


def test_generate_on_the_package_starts_from_that_prompt(house_package):
    result = elmexport.load(house_package).generate(QUESTION, max_new_tokens=3)
    assert result.prompt_tokens == expected_ids(house_package, EXPECTED[None])


def test_a_template_that_renders_like_chatml_keeps_the_format_name(tmp_path, llama2_style_tokenizer):
    """SmolLM2's own template is ChatML with its default system prompt: the model gets that name and prompt (the
    Swift package renders named formats natively), and the package still ships the checkpoint's text."""
    path = checkpoint(tmp_path, SMOLLM2_TEMPLATE, llama2_style_tokenizer, name="some-chat-model")
    loaded = load_model(ModelSpec(model=str(path)), log=lambda *_: None)
    assert (loaded.cfg.chat_template, loaded.cfg.system_prompt) == ("chatml", SMOLLM2_SYSTEM_PROMPT)
    assert loaded.tokenizer.chat_template == SMOLLM2_TEMPLATE
    messages = [{"role": "user", "content": QUESTION}]
    assert render_chat("chatml", messages, SMOLLM2_SYSTEM_PROMPT) == (
        f"<|im_start|>system\n{SMOLLM2_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_a_folder_without_a_template_keeps_the_configs_choice(tmp_path, llama2_style_tokenizer):
    path = checkpoint(tmp_path, None, llama2_style_tokenizer)
    loaded = load_model(ModelSpec(model=str(path)), log=lambda *_: None)
    assert (loaded.cfg.chat_template, loaded.tokenizer.chat_template) == ("chatml", None)


def test_named_templates_in_a_list(tmp_path, llama2_style_tokenizer):
    """HF's list form: the template named "default" is the chat template."""
    path = checkpoint(tmp_path, [{"name": "tool_use", "template": "{{ 'tools' }}"},
                                 {"name": "default", "template": HOUSE_TEMPLATE}], llama2_style_tokenizer)
    loaded = load_model(ModelSpec(model=str(path)), log=lambda *_: None)
    assert loaded.tokenizer.chat_template == HOUSE_TEMPLATE


@pytest.mark.parametrize("content, message", [("{not json", "not valid JSON"),
                                              ('{"chat_template": 5}', "must be a Jinja string")])
def test_a_broken_tokenizer_config_is_one_line(tmp_path, llama2_style_tokenizer, content, message):
    path = checkpoint(tmp_path, None, llama2_style_tokenizer)
    (path / "tokenizer_config.json").write_text(content)
    with pytest.raises(ElmExportError, match=message) as e:
        load_model(ModelSpec(model=str(path)), log=lambda *_: None)
    assert "tokenizer_config.json" in str(e.value) and "\n" not in str(e.value)
