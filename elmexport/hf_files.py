"""The Hugging Face files beside a package's tokenizer.json: tokenizer_config.json and generation_config.json.

Tools that follow HF conventions (transformers' AutoTokenizer, onnxruntime-genai's Tokenizer.apply_chat_template,
swift-transformers) look there for the special tokens, the context length and the Jinja chat template; with them a
package can be chatted with by those tools without elmexport. The chat template is the checkpoint's own Jinja text
when it shipped one (a GGUF's `tokenizer.chat_template`, an HF folder's tokenizer_config.json, read here),
otherwise the template render_chat renders (chat.py), with the model's default system prompt in it. Base models
get no `chat_template` key, as HF writes them.

Both files are pure functions of the manifest and the tokenizer, so identical exports write identical bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import strict_json
from .chat import chat_template_text
from .errors import TokenizerError

TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"


def tokenizer_class(tokenizer) -> str:
    """The HF class whose conventions the tokenizer follows: byte-level BPE is GPT-2's, SentencePiece-style BPE
    with byte fallback is Llama's. onnxruntime-genai's tokenizer picks its pre- and post-processing by this name."""
    from tokenizers import decoders

    return "GPT2Tokenizer" if isinstance(tokenizer.tokenizer.decoder, decoders.ByteLevel) else "LlamaTokenizer"


def special_tokens(tokenizer) -> dict:
    """The special token strings HF names (bos_token, eos_token, pad_token, unk_token), from the tokenizer's ids;
    generation pads with EOS, as genai_config.json says. Chat templates are rendered with these (chat.py)."""
    tok = tokenizer.tokenizer

    def token(token_id):
        return tok.id_to_token(token_id) if token_id is not None and 0 <= token_id < tok.get_vocab_size() else None

    eos_token = token(tokenizer.eos_token_ids[0]) if tokenizer.eos_token_ids else None
    tokens = {"bos_token": token(tokenizer.bos_token_id), "eos_token": eos_token, "pad_token": eos_token}
    unk = getattr(tok.model, "unk_token", None)
    if unk is not None:
        tokens["unk_token"] = unk
    return tokens


def tokenizer_config(manifest: dict, tokenizer) -> dict:
    """tokenizer_config.json: special token strings from the tokenizer, context length and chat template."""
    config = {
        "add_bos_token": bool(tokenizer.add_bos),
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,  # decoding must not rewrite " ." and " 's" (transformers' old default)
        "model_max_length": manifest["context_length"],
        "tokenizer_class": tokenizer_class(tokenizer),
        **special_tokens(tokenizer),
    }
    template = tokenizer.chat_template or _with_bos(
        chat_template_text(manifest["chat_template"], manifest["system_prompt"]), tokenizer)
    if template is not None:
        config["chat_template"] = template
    return dict(sorted(config.items()))  # the key order transformers writes


def _with_bos(template: str | None, tokenizer) -> str | None:
    """Our template as HF tools need it: writing BOS itself when the model starts with one (OpenELM), as Llama-2's
    own template does.

    Why: HF tools encode a rendered chat without adding special tokens (transformers' apply_chat_template with
    tokenize=True, onnxruntime-genai's Tokenizer.encode), so a BOS must be in the text. elmexport renders the same
    template without it and its tokenizer puts BOS first (tokenizer.py), which reads "<s>" as the BOS id and never
    doubles it, so both paths give the model the same ids. A checkpoint's own template is kept as it is."""
    if template is None or not tokenizer.add_bos or tokenizer.bos_token_id is None:
        return template
    return "{{- bos_token }}" + template


def read_chat_template(folder: Path) -> str | None:
    """The `chat_template` of a checkpoint folder's tokenizer_config.json (None without one).

    HF writes either one template or a list of named ones; the one named "default" is the chat template then.
    A file that is there but unreadable is refused: silently chatting with another template would be worse."""
    path = Path(folder) / TOKENIZER_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TokenizerError(f"{path}: not valid JSON ({str(e).splitlines()[0][:120]}); fix or remove it") from None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise TokenizerError(f"{path}: 'chat_template' must be a Jinja string or a list of named templates; "
                             f"fix or remove it")
    return template if template and template.strip() else None


def generation_config(manifest: dict) -> dict:
    """generation_config.json: the ids that start and stop generation, the context, greedy decoding (what
    elmexport's generate and the package's genai_config use by default)."""
    eos_ids = list(manifest["eos_token_ids"])
    return {
        "bos_token_id": manifest["bos_token_id"],
        "do_sample": False,
        "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids,  # HF writes one id as an int, several as a list
        "max_length": manifest["context_length"],
        "pad_token_id": eos_ids[0] if eos_ids else None,
    }


def write_hf_files(folder: Path, manifest: dict, tokenizer) -> list[str]:
    """Write the files into a package folder; a package without a tokenizer gets no tokenizer_config.json (its
    token strings would be unknown). Returns the names written."""
    folder = Path(folder)
    (folder / GENERATION_CONFIG).write_text(strict_json.dumps(generation_config(manifest)) + "\n")
    written = [GENERATION_CONFIG]
    if tokenizer is not None:
        (folder / TOKENIZER_CONFIG).write_text(strict_json.dumps(tokenizer_config(manifest, tokenizer)) + "\n")
        written.append(TOKENIZER_CONFIG)
    return written
