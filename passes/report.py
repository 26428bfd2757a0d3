"""The one pass table printed by `compile` and the target commands: the IR passes, then the target's own.

While the passes run, each logs one progress line; what it changed and its numeric check are shown once, here.
Rows are PassReports or their manifest records (dicts, which keep no time: two identical exports must not differ).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_pass_table(reports) -> None:
    t = Table(title="passes")
    # the namespaced names and the numbers stay whole; "changed", last, takes the width that is left and wraps
    for col in ("pass", "nodes", "max abs err", "top-1", "time"):
        t.add_column(col, no_wrap=True)
    t.add_column("changed", overflow="fold")
    for report in reports:
        r = report if isinstance(report, dict) else report.to_dict()
        changed = ", ".join(f"{k}={v}" for k, v in r["changed"].items() if not k.startswith("bytes"))
        if r["changed"].get("bytes_before"):
            changed += (f", weights {r['changed']['bytes_before'] / 2**20:.1f} -> "
                        f"{r['changed']['bytes_after'] / 2**20:.1f} MiB")
        seconds = f"{r['seconds']:.1f} s" if r.get("seconds") is not None else "-"
        t.add_row(r["name"], f"{r['nodes_before']} -> {r['nodes_after']}", f"{r['max_abs_err']:.3g}",
                  f"{r['top1_agreement']:.3f}", seconds, changed)
    console = Console()
    if not console.is_terminal:  # a log file or a pipe has no width of its own: do not squeeze the table into 80
        console = Console(width=140)
    console.print(t)
