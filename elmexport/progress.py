"""One rich console for progress and log lines, on stderr so stdout stays clean for --json and generated text."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False, log_path=False)
