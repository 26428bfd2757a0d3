"""Chat templates: ChatML (SmolLM2) and the OpenELM-Instruct format (corenet recipe) by name, or a checkpoint's own.

Each named format is one Jinja template, written the way Hugging Face tokenizers ship them (`messages`,
`add_generation_prompt`), and rendered here with jinja2 configured as transformers configures it. The same text
goes into every package's tokenizer_config.json (hf_files.py), so what this module renders is what
onnxruntime-genai, transformers or swift-transformers render from the package: the template is the one source of
truth, not a Python copy of it. A model's default system prompt is baked into its package template as a
`{% set %}` line, because HF tools pass a template nothing but the conversation.

A checkpoint that ships its own template (a GGUF's `tokenizer.chat_template`, an HF folder's tokenizer_config.json)
keeps it: when it renders every probe conversation exactly as one of the named formats does, the model is given
that name (the Swift package renders the named formats natively); otherwise the template value a model carries is
the Jinja text itself (`adopt_template`). Everything that renders a prompt calls render_chat with that value.

Rendered prompts are plain strings; the tokenizer then maps the special markers to their ids (BOS is added by the
tokenizer unless the template wrote it). The Swift package in ios_demo/ implements the two named formats and is
tested against fixtures written from this module.
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


def is_template_text(template: str | None) -> bool:
    """A template value is a format name ("chatml", "openelm") or a checkpoint's own Jinja text."""
    return isinstance(template, str) and template not in TEMPLATES and ("{{" in template or "{%" in template)


def chat_template_text(template: str | None, system_prompt: str | None = None) -> str | None:
    """The complete Jinja template of a named format with the model's default system prompt, a checkpoint's own
    template text as it is (it carries its own default), or None for base models; this exact text is rendered by
    render_chat."""
    if template is None:
        return None
    if is_template_text(template):
        return template
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


# The conversation shapes elmexport renders (a user turn, with or without a system turn) and the multi-turn chats
# the apps build, with text that needs care in templates; a checkpoint's template must render all of them exactly
# as a named format does to be given its name.
PROBE_CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of Italy?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke about 'quotes' & \"escapes\"."}],
    [{"role": "system", "content": "Réponds en français."}, {"role": "user", "content": "Ça va ? 😀"},
     {"role": "assistant", "content": "Très bien."}, {"role": "user", "content": "{{ x }} {% if %}\nline two"}],
]


def renders_like(text: str, template: str | None, system_prompt: str | None, special_tokens: dict) -> bool:
    """Whether `text` renders every probe conversation, with and without the generation prompt, exactly as the
    named format `template` with `system_prompt` does. A template that fails on a probe does not match."""
    named = chat_template_text(template, system_prompt)
    for messages in PROBE_CONVERSATIONS:
        for add_generation_prompt in (True, False):
            try:
                theirs = render_template(text, messages, add_generation_prompt, **special_tokens)
            except ElmExportError:
                return False
            if theirs != render_template(named, messages, add_generation_prompt, **special_tokens):
                return False
    return True


def with_special_tokens(text: str, special_tokens: dict) -> str:
    """`text` with the special-token strings it uses (`bos_token`, `eos_token`, ...) set inside it.

    HF tools pass these from tokenizer_config.json when they render (Llama-2's template starts each turn with
    `bos_token`); render_chat is given the template value alone, so they are baked in as `{% set %}` lines."""
    sets = "".join("{%- set " + name + " = " + jinja_string_literal(value) + " %}"
                   for name, value in sorted(special_tokens.items()) if value is not None and name in text)
    return sets + text


def adopt_template(text: str, candidates: list[tuple[str | None, str | None]],
                   special_tokens: dict) -> tuple[str, str | None]:
    """The (template value, default system prompt) a model whose checkpoint ships `text` carries: the first
    candidate (format name, system prompt) that renders like it, else the text itself with its special tokens."""
    for name, system_prompt in candidates:
        if name is not None and renders_like(text, name, system_prompt, special_tokens):
            return name, system_prompt
    return with_special_tokens(text, special_tokens), None
