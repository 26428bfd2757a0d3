"""Reports of `elmexport validate PAIR_DIR`: pair_validation.json, .md and a self-contained .html.

Why its own file: a pair's report answers other questions than a package's (is the output still the target's,
how often is the draft right, is it faster), so it has its own tables and one figure, but it is drawn with the
package report's table styles and figure helpers (report.py, plots.py) so both look alike and open offline.

Files are only ever replaced by files of the same kind: a pair_validation.json at the destination that this
validator did not write is refused, and every file is written beside its name and renamed over it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .. import strict_json
from .plots import _figure, _svg
from .report import _CSS, _cell, _table, _text_cell, _write_atomically, refuse_foreign_reports

KIND = "speculative-pair-validation"
FILES = {"json": "pair_validation.json", "md": "pair_validation.md", "html": "pair_validation.html"}
_SPEED, _ACCEPT, _PER_CALL, _BASE = "#ff7f0e", "#1f77b4", "#2ca02c", "#7f7f7f"


def verdict(report: dict) -> str:
    return "PASSED" if report["passed"] else "FAILED"


def _equal_cell(run: dict, prompts: int) -> str:
    tied = run.get("prompts_tied", 0)
    return f"{run['prompts_matching']}/{prompts}" + (f" + {tied} at a tie" if tied else "")


def _partings(report: dict) -> list[tuple[int, str, dict]]:
    """(k, "tie" or "difference", entry) for every run that did not give the target alone's tokens."""
    return [(r["k"], kind, d) for r in report["runs"] for kind, key in (("tie", "ties"), ("difference", "differences"))
            for d in r.get(key, [])]


def _parting_text(kind: str, d: dict, precision: str) -> str:
    if d.get("target_token") is None:
        return f"{kind}: the outputs differ in length at token {d['index']}"
    return (f"{kind} at token {d['index']}: target alone {d['target_token']}, pair {d['pair_token']}, logit gap "
            f"{d['logit_gap']:.6g} in the target alone's call"
            + (f" (within one {precision} step)" if kind == "tie" else ""))


_TIE_NOTE = ("A tie: the target's top two logits were equal at its precision, so its one-token and (k+1)-token calls "
             "may pick either; both are the target's greedy choice, and the texts part from there.")


def _threads(report: dict) -> str:
    n = report.get("threads")
    return f"{n} thread{'s' if n != 1 else ''}" if n else "the runtime's default threads"


def _intro(report: dict) -> str:
    return (f"Runtime {report['runtime']}, {_threads(report)}; {report['prompts']} prompts x "
            f"{report['new_tokens_per_prompt']} greedy tokens; the target alone took "
            f"{report['target_alone_seconds']:.2f} s in the same run.")


def to_markdown(report: dict) -> str:
    lines = [f"# Speculative pair validation: {report['pair']}", "",
             f"{_intro(report)} **{verdict(report)}** (greedy equivalence).", "",
             "| k | greedy equal to target | acceptance | tokens per target call | speed-up | speed-up per prompt |",
             "|---|---|---|---|---|---|"]
    for r in report["runs"]:
        per_prompt = ", ".join(f"{s:.2f}x" for s in r.get("speedup_per_prompt", []))
        lines.append(f"| {r['k']} | {_equal_cell(r, report['prompts'])} | {r['acceptance_rate']:.1%} | "
                     f"{r['tokens_per_target_call']:.2f} | {r['speedup']:.2f}x | {per_prompt or '-'} |")
    partings = _partings(report)
    if partings:
        lines += ["", "Where a pair's tokens part from the target alone's:", ""]
        lines += [f"- k={k}, prompt {d['prompt'] + 1}: {_parting_text(kind, d, report.get('logit_precision'))}"
                  for k, kind, d in partings]
        if any(kind == "tie" for _, kind, _ in partings):
            lines += ["", _TIE_NOTE]
    if report.get("random_weights"):
        lines += ["", "Random weights: the acceptance rate says nothing about real checkpoints."]
    lines += ["", f"Not checked here: {report['not_checked']}.", ""]
    return "\n".join(lines)


def speedup_figure(report: dict) -> str | None:
    """Speed-up over the target alone by k (every prompt a dot, the whole run a diamond, 1x drawn), and beside it
    the acceptance rate and tokens per target call by k: the two numbers that explain the speed-up."""
    runs = report.get("runs") or []
    if not runs:
        return None
    ks = [r["k"] for r in runs]
    fig, (speed, accept) = _figure("pair", 2, height=3.2)
    for r in runs:
        dots = r.get("speedup_per_prompt") or []
        speed.scatter([r["k"]] * len(dots), dots, s=16, alpha=0.6, color=_SPEED, linewidths=0)
    speed.plot(ks, [r["speedup"] for r in runs], color=_SPEED, marker="D", label="whole run")
    speed.axhline(1.0, color=_BASE, linestyle="--", linewidth=1.2, label="target alone")
    speed.set_xticks(ks)
    speed.set_xlabel("k (draft tokens per round)")
    speed.set_ylabel("speed-up over the target alone")
    speed.set_ylim(bottom=0)
    speed.set_title("speed-up (per prompt: dots)")
    speed.legend(loc="best")
    accept.plot(ks, [100 * r["acceptance_rate"] for r in runs], color=_ACCEPT, marker="o", label="acceptance %")
    accept.set_ylim(0, 105)
    accept.set_xticks(ks)
    accept.set_xlabel("k (draft tokens per round)")
    accept.set_ylabel("draft tokens accepted, %")
    per_call = accept.twinx()
    per_call.plot(ks, [r["tokens_per_target_call"] for r in runs], color=_PER_CALL, marker="s",
                  label="tokens per target call")
    per_call.set_ylim(0, max(ks) + 1.5)
    per_call.set_ylabel("tokens per target call")
    per_call.grid(False)
    accept.set_title("acceptance and tokens per target call")
    handles = accept.get_legend_handles_labels()[0] + per_call.get_legend_handles_labels()[0]
    accept.legend(handles, [h.get_label() for h in handles], loc="lower left")
    return _svg(fig)


def to_html(report: dict) -> str:
    ok = report["passed"]
    rows = [_cell(r["k"]) + ("<td class='pass'>PASS</td>" if r["greedy_equivalent"] else "<td class='fail'>FAIL</td>")
            + _text_cell(_equal_cell(r, report["prompts"])) + _text_cell(f"{r['acceptance_rate']:.1%}")
            + _cell(r["tokens_per_target_call"], 3) + _text_cell(f"{r['speedup']:.2f}x")
            + _cell(r["pair_seconds"], 3) for r in report["runs"]]
    parts = [f"<h1><span class='verdict {'pass' if ok else 'fail'}'>{verdict(report)}</span>"
             f"{html.escape(report['pair'])}</h1>", f"<p>{html.escape(_intro(report))}</p>"]
    if report.get("random_weights"):
        parts.append("<p class='note'>Random weights: the acceptance rate says nothing about real checkpoints.</p>")
    parts += ["<h2>Greedy equivalence, acceptance and speed-up by k</h2>",
              _table(["k", "greedy equal to target", "prompts", "acceptance", "tokens per target call",
                      "speed-up", "pair seconds"], rows)]
    partings = _partings(report)
    if partings:
        items = "".join(f"<li>k={k}, prompt {d['prompt'] + 1}: "
                        f"{html.escape(_parting_text(kind, d, report.get('logit_precision')))}</li>"
                        for k, kind, d in partings)
        tie = f"<p>{html.escape(_TIE_NOTE)}</p>" if any(kind == "tie" for _, kind, _ in partings) else ""
        parts.append(f"<h2>Where the pair parts from the target alone</h2><ul>{items}</ul>{tie}")
    figure = speedup_figure(report)
    if figure:
        parts.append(f"<figure id='plot-pair'>{figure}<figcaption>Speed-up is the target alone's time over the "
                     f"pair's, both measured in this run on the same prompts; the dashed line is no gain."
                     f"</figcaption></figure>")
    parts.append(f"<p>Not checked here: {html.escape(report['not_checked'])}.</p>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{verdict(report)}: elmexport pair validation of {html.escape(report['pair'])}</title>"
            f"<style>{_CSS}</style></head><body>" + "".join(parts) + "</body></html>\n")


def check_destination(out_dir: Path) -> None:
    """Refuse, before the slow part, a folder whose pair reports another tool wrote (or that is a file)."""
    refuse_foreign_reports(Path(out_dir), list(FILES.values()), _written_by_pair_validation)


def _written_by_pair_validation(out_dir: Path) -> bool:
    try:
        return json.loads((out_dir / FILES["json"]).read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def write_pair_reports(report: dict, out_dir: str | Path) -> list[Path]:
    """pair_validation.{json,md,html} in out_dir (created if missing); anything else there is left alone."""
    out_dir = Path(out_dir)
    check_destination(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {"json": strict_json.dumps(report, nonfinite="null"), "md": to_markdown(report), "html": to_html(report)}
    paths = []
    for kind, name in FILES.items():
        _write_atomically(out_dir / name, texts[kind])
        paths.append(out_dir / name)
    return paths
