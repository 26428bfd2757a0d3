"""Progress output: plain, unwrapped lines off a terminal (CI logs stay greppable); long steps announce themselves
to whatever log the caller passed, and stay silent for the API's quiet default."""

import io
import re

from elmexport.progress import ProgressConsole, step


def test_log_off_terminal_is_one_plain_line_per_message():
    out = io.StringIO()
    console = ProgressConsole(file=out, highlight=False, log_path=False, force_terminal=False)
    message = "pass executorch::quantized_weights: " + "x" * 300 + " [bold]end[/bold]"
    console.log(message)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] pass executorch::quantized_weights: x{300} end", lines[0])


def test_step_announces_itself_to_the_callers_log_only():
    seen = []
    with step("lowering to xnnpack", seen.append):
        seen.append("inside")
    assert seen == ["lowering to xnnpack ...", "inside"]
    with step("quiet", None):  # the API without a log prints nothing
        pass


def test_step_on_a_terminal_shows_a_live_spinner_and_keeps_a_line_with_its_time(monkeypatch):
    import elmexport.progress as progress

    out = io.StringIO()
    terminal = ProgressConsole(file=out, highlight=False, log_path=False, force_terminal=True, width=200)
    monkeypatch.setattr(progress, "console", terminal)
    with step("converting decode (T=1) to Core ML", terminal.log):
        pass
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert re.search(r"converting decode \(T=1\) to Core ML: \d+\.\d s", text)
