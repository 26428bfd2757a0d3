"""Packages carry tokenizer_config.json and generation_config.json, and HF tools chat with them as we do.

Two tiny ONNX exports: an OpenELM-Instruct-shaped HF checkpoint (our OpenELM template, Llama-2-style tokenizer)
and a SmolLM2-shaped GGUF (byte-level BPE, ChatML markers, SmolLM2's own Jinja template, which must be kept
verbatim). The chat templates are checked three ways: against the formats as their authors state them, against
the template SmolLM2 ships, and through onnxruntime-genai's `Tokenizer.apply_chat_template` on the package.
"""

from __future__ import annotations

import json
import shutil

import pytest

import elmexport
from elmexport.chat import PROBE_CONVERSATIONS, chat_template_text, render_chat, render_template
from elmexport.hf_files import generation_config, tokenizer_config, write_hf_files
from elmexport.manifest import integrity_problems
from elmexport.models.config import SMOLLM2_135M_INSTRUCT, openelm_config
from elmexport.tokenizer import TextTokenizer, read_tokenizer_json

from .checkpoints import TINY_LLAMA_CONFIG, llama_hf_tensors, openelm_config_json, openelm_hf_tensors, write_hf_dir

CONTEXT = 64
SMOLLM2_SYSTEM_PROMPT = SMOLLM2_135M_INSTRUCT["system_prompt"]
# tokenizer.chat_template of SmolLM2-135M-Instruct as the model ships it (its GGUF and its tokenizer_config.json)
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# one user turn, a system turn, multi-turn chats, quotes, emoji and Jinja delimiters in the content
CONVERSATIONS = PROBE_CONVERSATIONS
# quotes, backslashes, CR/LF and Jinja delimiters must survive being written into the template as a literal
SYSTEM_PROMPTS = [None, SMOLLM2_SYSTEM_PROMPT, "Say 'yes' \\ or \"no\".\r\nThen {{ stop }} %} {% raw %} \\n ça 😀"]


def as_written(template: str, messages, system_prompt, add_generation_prompt) -> str:
    """The two formats as their model cards state them: ChatML turns and OpenELM's `<|role|>\\n{content}</s>`."""
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system_prompt}] + messages
    if template == "chatml":
        turns = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
        return "".join(turns) + ("<|im_start|>assistant\n" if add_generation_prompt else "")
    turns = [f"<|{m['role']}|>\n{m['content']}</s>" for m in messages]
    return "".join(turns) + ("<|assistant|>\n" if add_generation_prompt else "")


@pytest.mark.parametrize("template", ["chatml", "openelm"])
def test_jinja_templates_render_the_formats_as_written(template):
    for messages in [[], *CONVERSATIONS]:
        for system_prompt in SYSTEM_PROMPTS:
            for add_generation_prompt in (True, False):
                ours = render_chat(template, messages, system_prompt, add_generation_prompt)
                assert ours == as_written(template, messages, system_prompt, add_generation_prompt)
                text = chat_template_text(template, system_prompt)
                assert render_template(text, messages, add_generation_prompt) == ours


def test_chatml_renders_as_the_template_smollm2_ships():
    for messages in CONVERSATIONS:
        for add_generation_prompt in (True, False):
            assert (render_template(SMOLLM2_TEMPLATE, messages, add_generation_prompt)
                    == render_chat("chatml", messages, SMOLLM2_SYSTEM_PROMPT, add_generation_prompt))


def test_base_models_render_the_user_text_and_have_no_template():
    assert render_chat(None, [{"role": "user", "content": "Once upon"}, {"role": "user", "content": " a time"}]) \
        == "Once upon a time"
    assert chat_template_text(None, "ignored") is None


# ------------------------------------------------------------------------------------------------ packages
@pytest.fixture(scope="module")
def openelm_instruct_package(tmp_path_factory, llama2_style_tokenizer):
    """An OpenELM-Instruct-shaped checkpoint: 'instruct' in its name selects the OpenELM chat format."""
    cfg = openelm_config("openelm-tiny-instruct", 2, 128, 32, vocab_size=600, instruct=True)
    root = tmp_path_factory.mktemp("hf-openelm")
    checkpoint = write_hf_dir(root / "openelm-tiny-instruct", openelm_hf_tensors(cfg), openelm_config_json(cfg))
    return elmexport.export(target="onnx", weights=checkpoint, tokenizer=llama2_style_tokenizer, context=CONTEXT,
                            out=root / "pkg")


@pytest.fixture(scope="module")
def smollm2_shaped_package(tmp_path_factory):
    """A SmolLM2-shaped GGUF (byte-level BPE with <|im_start|>/<|im_end|> as ids 1/2) carrying SmolLM2's template."""
    import gguf

    from .test_loading import _write_llama_gguf

    class WriterWithChatTemplate(gguf.GGUFWriter):
        def write_header_to_file(self, *args, **kwargs):
            self.add_chat_template(SMOLLM2_TEMPLATE)
            super().write_header_to_file(*args, **kwargs)

    root = tmp_path_factory.mktemp("hf-smollm2")
    path = root / "smollm2-tiny.gguf"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf, "GGUFWriter", WriterWithChatTemplate)
        _write_llama_gguf(path, TINY_LLAMA_CONFIG, llama_hf_tensors(TINY_LLAMA_CONFIG))
    return elmexport.export(target="onnx", weights=path, context=CONTEXT, out=root / "pkg")


def read_json(path):
    return json.loads(path.read_text())


def package_tokenizer(pkg) -> TextTokenizer:
    """The package's tokenizer.json with its ids, as an export hands it to the package writer."""
    config = read_json(pkg.path / "tokenizer_config.json")
    return TextTokenizer(read_tokenizer_json(pkg.path), pkg.manifest["bos_token_id"], pkg.manifest["eos_token_ids"],
                         add_bos=config["add_bos_token"])


def test_openelm_instruct_package_files(openelm_instruct_package):
    pkg = openelm_instruct_package
    assert {"tokenizer_config.json", "generation_config.json"} <= set(pkg.files)
    assert {"tokenizer_config.json", "generation_config.json"} <= set(pkg.manifest["checksums"])
    assert not integrity_problems(pkg.path, pkg.manifest)
    config = read_json(pkg.path / "tokenizer_config.json")
    assert config == {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
        "chat_template": "{{- bos_token }}" + chat_template_text("openelm"), "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "model_max_length": CONTEXT, "pad_token": "</s>", "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>",
    }
    assert read_json(pkg.path / "generation_config.json") == {
        "bos_token_id": 1, "do_sample": False, "eos_token_id": 2, "max_length": CONTEXT, "pad_token_id": 2}


def test_smollm2_package_keeps_the_gguf_template(smollm2_shaped_package):
    pkg = smollm2_shaped_package
    assert pkg.manifest["chat_template"] == "chatml" and not integrity_problems(pkg.path, pkg.manifest)
    assert pkg.manifest["system_prompt"] == SMOLLM2_SYSTEM_PROMPT  # the template's default, recognised
    config = read_json(pkg.path / "tokenizer_config.json")
    assert config["chat_template"] == SMOLLM2_TEMPLATE
    assert (config["tokenizer_class"], config["add_bos_token"]) == ("GPT2Tokenizer", False)
    assert config["bos_token"] == "<|im_start|>" and config["eos_token"] == config["pad_token"] == "<|im_end|>"
    assert "unk_token" not in config and config["model_max_length"] == CONTEXT
    assert read_json(pkg.path / "generation_config.json")["eos_token_id"] == 2


@pytest.mark.parametrize("which", ["openelm_instruct_package", "smollm2_shaped_package"])
def test_token_strings_are_the_ids_the_package_generates_with(which, request):
    """Checked with the `tokenizers` library alone: each special token string maps back to the manifest's id."""
    from tokenizers import Tokenizer

    pkg = request.getfixturevalue(which)
    tok = Tokenizer.from_file(str(pkg.path / "tokenizer.json"))
    config = read_json(pkg.path / "tokenizer_config.json")
    generation = read_json(pkg.path / "generation_config.json")
    assert tok.token_to_id(config["bos_token"]) == generation["bos_token_id"] == pkg.manifest["bos_token_id"]
    assert tok.token_to_id(config["eos_token"]) == generation["eos_token_id"] == pkg.manifest["eos_token_ids"][0]
    assert tok.token_to_id(config["pad_token"]) == generation["pad_token_id"]
    if "unk_token" in config:
        assert tok.token_to_id(config["unk_token"]) is not None


def _apply_chat_template(package_dir, messages, add_generation_prompt):
    import onnxruntime_genai as og

    tokenizer = og.Tokenizer(og.Config(str(package_dir)))
    return tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("which,system_prompt,bos", [("openelm_instruct_package", None, "<s>"),
                                                     ("smollm2_shaped_package", SMOLLM2_SYSTEM_PROMPT, "")])
def test_onnxruntime_genai_renders_the_package_as_we_do(which, system_prompt, bos, request):
    """The GGUF's own template brings SmolLM2's default system prompt; ours for OpenELM has none. elmexport
    renders from the manifest's template and system prompt; for OpenELM the shipped template also writes BOS, since
    onnxruntime-genai (like transformers) encodes a chat without adding special tokens. (The ids both sides give
    the model are compared in test_gguf_openelm.py, on a real SentencePiece vocabulary: the tokenizers trained
    here are not shaped like any that onnxruntime-genai is built for.)"""
    pkg = request.getfixturevalue(which)
    assert pkg.manifest["system_prompt"] == system_prompt
    for messages in CONVERSATIONS:
        for add_generation_prompt in (True, False):
            assert (_apply_chat_template(pkg.path, messages, add_generation_prompt)
                    == bos + render_chat(pkg.manifest["chat_template"], messages, pkg.manifest["system_prompt"],
                                         add_generation_prompt))


def test_onnxruntime_genai_reads_a_default_system_prompt_written_into_the_template(smollm2_shaped_package, tmp_path):
    """Our ChatML template with a model's default system prompt (the smollm2-135m-instruct preset's package), and a
    prompt full of characters that need escaping in a Jinja literal."""
    pkg = smollm2_shaped_package
    tokenizer = package_tokenizer(pkg)
    for system_prompt in SYSTEM_PROMPTS[1:]:
        folder = tmp_path / f"prompt{SYSTEM_PROMPTS.index(system_prompt)}"
        folder.mkdir()
        for name in ("genai_config.json", "tokenizer.json"):
            shutil.copy(pkg.path / name, folder / name)
        manifest = dict(pkg.manifest, system_prompt=system_prompt)
        write_hf_files(folder, manifest, tokenizer)
        written = read_json(folder / "tokenizer_config.json")["chat_template"]
        assert written == chat_template_text("chatml", system_prompt)
        for messages in [*CONVERSATIONS, []]:
            assert (_apply_chat_template(folder, messages, True)
                    == render_chat("chatml", messages, system_prompt, add_generation_prompt=True))


def test_base_models_and_tokenizerless_packages(openelm_instruct_package, tmp_path):
    pkg = openelm_instruct_package
    tokenizer = package_tokenizer(pkg)
    base = dict(pkg.manifest, chat_template=None, system_prompt=None)
    assert "chat_template" not in tokenizer_config(base, tokenizer)
    assert write_hf_files(tmp_path, base, None) == ["generation_config.json"]
    assert not (tmp_path / "tokenizer_config.json").exists()
    assert generation_config(dict(base, eos_token_ids=[2, 5]))["eos_token_id"] == [2, 5]
