"""Chat templates the toolchain supports: ChatML (SmolLM2) and the OpenELM-Instruct format (corenet recipe).

Rendered as plain strings; the tokenizer then maps the special markers to their ids. The Swift package in
ios_demo/ implements the same two formats and is tested against fixtures written from this module.
"""

from __future__ import annotations

from .errors import ElmExportError

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}


def render_chatml(messages: list[Message], system_prompt: str | None, add_generation_prompt: bool) -> str:
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system_prompt}] + messages
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def render_openelm(messages: list[Message], system_prompt: str | None, add_generation_prompt: bool) -> str:
    """`<|role|>\\n{msg}</s>` per turn; BOS is added by the tokenizer, not here."""
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system_prompt}] + messages
    out = "".join(f"<|{m['role']}|>\n{m['content']}</s>" for m in messages)
    return out + ("<|assistant|>\n" if add_generation_prompt else "")


TEMPLATES = {"chatml": render_chatml, "openelm": render_openelm}


def render_chat(template: str | None, messages: list[Message], system_prompt: str | None = None,
                add_generation_prompt: bool = True) -> str:
    if template is None:  # base models: the prompt is the user text as is
        return "".join(m["content"] for m in messages)
    if template not in TEMPLATES:
        raise ElmExportError(f"unknown chat template {template!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[template](messages, system_prompt, add_generation_prompt)
