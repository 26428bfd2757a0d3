"""One rich console for progress and log lines, on stderr so stdout stays clean for --json and generated text.

On a terminal, log lines are rich's (time column, wrapped to the window) and a long step shows a live spinner with
its elapsed time (`step`), so a four-minute XNNPACK lowering does not look like a hang. Off a terminal (CI logs,
`2> file`) every message is one plain line with its time, never wrapped or padded, so logs stay greppable, and a
long step prints one line when it starts (its end is the next line, which says how long it took).
"""

from __future__ import annotations

import contextlib
import time

from rich.console import Console
from rich.text import Text


class ProgressConsole(Console):
    def log(self, *objects, **kwargs) -> None:
        if self.is_terminal or not all(isinstance(o, str) for o in objects):
            super().log(*objects, **kwargs)
            return
        text = Text.from_markup(" ".join(objects)).plain
        self.file.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self.file.flush()


console = ProgressConsole(stderr=True, highlight=False, log_path=False)


@contextlib.contextmanager
def step(what: str, log=None):
    """Wrap a long step. `log` is the caller's log function: the console's own gets the live spinner on a terminal;
    any other (the API's quiet default, a test's list.append) gets one line when the step starts."""
    on_console = getattr(log, "__self__", None) is console
    if on_console and console.is_terminal:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        t0 = time.perf_counter()
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                      transient=True) as bar:
            bar.add_task(what, total=None)
            yield
        console.log(f"{what}: {time.perf_counter() - t0:.1f} s")  # the spinner goes; the scrollback keeps the step
        return
    if log is not None:
        log(f"{what} ...")
    yield
