"""Chat templates the toolchain supports: ChatML (SmolLM2) and the OpenELM-Instruct format (corenet recipe).

Each format is one Jinja template, written the way Hugging Face tokenizers ship them (`messages`,
`add_generation_prompt`), and rendered here with jinja2 configured as transformers configures it. The same text
goes into every package's tokenizer_config.json (hf_files.py), so what this module renders is what
onnxruntime-genai, transformers or swift-transformers render from the package: the template is the one source of
truth, not a Python copy of it. A model's default system prompt is baked into its package template as a
`{% set %}` line, because HF tools pass a template nothing but the conversation.

Rendered prompts are plain strings; the tokenizer then maps the special markers to their ids (BOS is added by the
tokenizer, not by the template). The Swift package in ios_demo/ implements the same two formats and is tested
against fixtures written from this module.
"""

from __future__ import annotations

import json
from functools import lru_cache

from .errors import ElmExportError

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}

# `default_system_prompt` is set by chat_template_text when the model has one; the system turn is only added when
# the conversation does not start with its own.
CHATML = (
    "{%- if default_system_prompt is defined and (not messages or messages[0]['role'] != 'system') %}"
    "{{- '<|im_start|>system\n' + default_system_prompt + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\n' }}"
    "{%- endif %}"
)

OPENELM = (
    "{%- if default_system_prompt is defined and (not messages or messages[0]['role'] != 'system') %}"
    "{{- '<|system|>\n' + default_system_prompt + '</s>' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\n' + message['content'] + '</s>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|assistant|>\n' }}"
    "{%- endif %}"
)

TEMPLATES = {"chatml": CHATML, "openelm": OPENELM}


def jinja_string_literal(text: str) -> str:
    """`text` as a single-quoted Jinja string literal.

    Only the backslash, the quote and carriage returns are escaped: jinja2 turns a raw CR into a newline, and
    other engines read raw newlines and non-ASCII text inside literals as they are (SmolLM2's template has them).
    """
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\r", "\\r") + "'"


def chat_template_text(template: str | None, system_prompt: str | None = None) -> str | None:
    """The complete Jinja template of a named format with the model's default system prompt, or None for base
    models; this exact text is rendered by render_chat and written to packages."""
    if template is None:
        return None
    if template not in TEMPLATES:
        raise ElmExportError(f"unknown chat template {template!r}; known: {', '.join(TEMPLATES)}")
    if not system_prompt:
        return TEMPLATES[template]
    return "{%- set default_system_prompt = " + jinja_string_literal(system_prompt) + " %}" + TEMPLATES[template]


def _hf_tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    """transformers' `tojson` filter: plain json.dumps (jinja2's own escapes <, >, & and ' for HTML)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


@lru_cache(maxsize=16)
def _compiled(template_text: str):
    """The template compiled in the environment transformers uses for chat templates (sandboxed, trim_blocks,
    lstrip_blocks, loop controls, raise_exception, its tojson), so third-party templates render as there."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _hf_tojson
    env.globals["raise_exception"] = _raise_exception
    try:
        return env.from_string(template_text)
    except TemplateError as e:
        raise ElmExportError(f"chat template does not compile: {str(e).splitlines()[0][:160]}") from None


def render_template(template_text: str, messages: list[Message], add_generation_prompt: bool = True,
                    **special_tokens) -> str:
    """Render any HF-style chat template; `special_tokens` (bos_token=..., eos_token=...) are what HF passes."""
    from jinja2.exceptions import TemplateError

    try:
        return _compiled(template_text).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                               **special_tokens)
    except TemplateError as e:
        raise ElmExportError(f"chat template failed to render: {str(e).splitlines()[0][:160]}") from None


def render_chat(template: str | None, messages: list[Message], system_prompt: str | None = None,
                add_generation_prompt: bool = True) -> str:
    if template is None:  # base models: the prompt is the user text as is
        return "".join(m["content"] for m in messages)
    return render_template(chat_template_text(template, system_prompt), messages, add_generation_prompt)
