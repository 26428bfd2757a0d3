"""Validation report outputs: report.json, report.md, a self-contained report.html (HTML tables and matplotlib
plots as inline SVG, validation/plots.py), JUnit XML; the device report is read by device_report.py.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Callable
from xml.sax.saxutils import quoteattr

from .. import strict_json
from ..errors import ElmExportError

def _fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def verdict(r: dict) -> str:
    return "PASSED" if r["passed"] else "FAILED"


def to_markdown(r: dict) -> str:
    lines = [f"# Validation of `{r['package']}`", "",
             f"target **{r['target']}**, model {r['model']}, quantization {r['quantization']}"
             + (" (random weights)" if r["random_weights"] else "") + f", text: {r['text'] or '-'}", "",
             f"**{verdict(r)}**", ""]
    if r.get("skipped_reason"):
        lines += [f"Numeric stages skipped: {r['skipped_reason']}.", ""]
    lines += ["## Checks", ""]
    lines += [f"- {'PASS' if c['passed'] else 'FAIL'} `{c['name']}`: {c['detail']}" for c in r["checks"]]
    lines += ["", "## Gates applied", "", "| gate | limit | source |", "|---|---|---|"]
    lines += [f"| {g['name']} | {_fmt(g['threshold'])} | {g['source']} |" for g in r.get("gates", [])]
    if r["stages"]:
        lines += _stage_tables(r)
    lines += ["", "## Latency", "",
              "| where | runtime | prefill tok/s | decode tok/s (min-max) | TTFT ms | load RSS MiB | peak RSS MiB |",
              "|---|---|---|---|---|---|---|"]
    for where, l in r["latency"].items():
        if "error" in l:
            lines.append(f"| {where} | {l['error']} | | | | | |")
            continue
        rng = f" ({_fmt(l.get('decode_tokens_per_s_min'), 3)}-{_fmt(l.get('decode_tokens_per_s_max'), 3)})" \
            if l.get("decode_tokens_per_s_min") else ""
        lines.append(f"| {where} | {l.get('runtime', '')} | {_fmt(l.get('prefill_tokens_per_s'))} | "
                     f"{_fmt(l.get('decode_tokens_per_s'))}{rng} | {_fmt(l.get('time_to_first_token_ms'))} | "
                     f"{_fmt(l.get('load_rss_mib'))} | {_fmt(l.get('peak_rss_mib'))} |")
    if any("memory_source" in l for l in r["latency"].values()):
        lines += ["", "Memory of a package runtime: " + next(l["memory_source"] for l in r["latency"].values()
                                                           if "memory_source" in l) + "."]
    return "\n".join(lines) + "\n"


def _stage_tables(r: dict) -> list[str]:
    lines = ["", "## Stages (each compared with the eager fp32 reference)", "",
             "| stage | runtime | max abs err | max rel err | min cosine | top-1 | greedy match | perplexity | "
             "vs previous stage (max abs / min cosine / top-1 / ppl change) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in r["stages"]:
        prev = s.get("vs_previous_stage")
        prev_s = (f"{_fmt(prev['max_abs_err'])} / {_fmt(prev['cosine_min'], 6)} / {_fmt(prev['top1_agreement'])} / "
                  f"{_fmt(prev.get('ppl_change'))}") if prev else "-"
        lines.append(f"| {s['name']} | {s['runtime']} | {_fmt(s['max_abs_err'])} | {_fmt(s['max_rel_err'])} | "
                     f"{_fmt(s['cosine_min'], 6)} | {_fmt(s['top1_agreement'])} | {s['greedy_match_tokens']} | "
                     f"{_fmt(s['perplexity'])} | {prev_s} |")
    lines += ["", "## Per step (package stage vs eager)", "", "| step | positions | max abs err | top-1 |", "|---|---|---|---|"]
    for st in r["stages"][-1].get("steps", []):
        lines.append(f"| {st['step']} | {st['positions']} | {_fmt(st['max_abs_err'])} | {_fmt(st['top1_agreement'])} |")
    jump = r["layers"]["first_jump_layer"]
    lines += ["", "## Per layer (eager vs IR hidden states)", "",
              f"first layer where the error jumps: {jump if jump is not None else 'none'}", "",
              "| layer | max abs err | rel err |", "|---|---|---|"]
    lines += [f"| {x['layer']} | {_fmt(x['max_abs_err'])} | {_fmt(x['rel_err'])} |" for x in r["layers"]["eager_vs_ir"]]
    return lines


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","DejaVu Sans",sans-serif;margin:24px auto;max-width:1180px;
     padding:0 16px;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.verdict{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;font-weight:bold;margin-right:.4em}
.pass{background:#2e7d32} .fail{background:#c62828}
td.pass,td.fail{color:#fff;text-align:center;font-weight:bold}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d0d0d0;padding:.3em .6em;vertical-align:top}
th{background:#f3f3f3;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td:not(.pass):not(.fail){background:#fafafa}
figure{margin:1em 0} figure svg{max-width:100%;height:auto} figcaption{color:#555;font-size:.9em}
.note{background:#fff8e1;border-left:4px solid #f9a825;padding:.5em .8em} details{margin:.6em 0}
"""

_FIGURE_CAPTIONS = {
    "layers": "Relative error of each layer's hidden state, eager fp32 vs the optimised IR, and of the logits. "
              "Runtimes expose only their logits, so the package is drawn at the output, beside the IR it was "
              "lowered from; the gap between the two is what the target's conversion and runtime add.",
    "steps": "Every teacher-forced step (the prefill chunk, then one token per decode step): logit error, worst "
             "per-position cosine and next-token agreement, of the IR and the package against eager fp32 and of "
             "the package against the IR. Red lines are the gates on those metrics (dashed: against eager, "
             "dash-dotted: against the IR).",
    "perplexity": "Perplexity of the same text in every stage; the dashed line is the most the package may reach "
                  "under the perplexity gate.",
    "latency": "Every measured decode step and prefill (dots) with their spread (boxes: quartiles, whiskers: "
               "1.5 IQR), and each runtime's resident memory after loading and at its peak.",
}


def _cell(v, digits=4, cls="num") -> str:
    return f"<td class='{cls}'>{html.escape(_fmt(v, digits))}</td>"


def _text_cell(v) -> str:
    return f"<td>{html.escape(str(v)) if v not in (None, '') else '-'}</td>"


def _table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(f'<tr>{r}</tr>' for r in rows)}</tbody></table>"


def _status(passed: bool) -> str:
    return "<td class='pass'>PASS</td>" if passed else "<td class='fail'>FAIL</td>"


def _summary_html(r: dict) -> str:
    rows = [f"<th>{html.escape(k)}</th>{_text_cell(v)}" for k, v in [
        ("package", r["package"]), ("target", r["target"]), ("model", r["model"]),
        ("quantization", r["quantization"] + (" (random weights)" if r["random_weights"] else "")),
        ("text", r.get("text")), ("tokens in the stream", r.get("stream_tokens")),
        ("numeric checks", r.get("numeric_checks"))]]
    return "<table><tbody>" + "".join(f"<tr>{row}</tr>" for row in rows) + "</tbody></table>"


def _checks_html(r: dict) -> str:
    rows = [_status(c["passed"]) + f"<td><code>{html.escape(c['name'])}</code></td>" + _cell(c.get("value"), 6)
            + _cell(c.get("threshold")) + _text_cell(c["detail"]) for c in r["checks"]]
    return _table(["result", "check", "value", "limit", "detail"], rows)


def _stages_html(r: dict) -> str:
    rows = []
    for s in r["stages"]:
        prev = s.get("vs_previous_stage") or {}
        rows.append(_text_cell(s["name"]) + _text_cell(s["runtime"]) + _cell(s["max_abs_err"]) + _cell(s["max_rel_err"])
                    + _cell(s["cosine_min"], 6) + _cell(s["top1_agreement"]) + _cell(s["greedy_match_tokens"])
                    + _cell(s["perplexity"]) + _cell(prev.get("max_abs_err")) + _cell(prev.get("cosine_min"), 6)
                    + _cell(prev.get("top1_agreement")) + _cell(prev.get("ppl_change")))
    return _table(["stage", "runtime", "max abs err", "max rel err", "min cosine", "top-1", "greedy match",
                   "perplexity", "vs previous: max abs", "min cosine", "top-1", "ppl change"], rows)


def _steps_html(r: dict) -> str:
    package = r["stages"][-1]
    lowering = (package.get("vs_previous_stage") or {}).get("steps") or []
    rows = []
    for i, st in enumerate(package.get("steps", [])):
        low = lowering[i] if i < len(lowering) else {}
        rows.append(_text_cell(st["step"]) + _cell(st["positions"]) + _cell(st["max_abs_err"])
                    + _cell(st["cosine_min"], 6) + _cell(st["top1_agreement"]) + _cell(low.get("max_abs_err"))
                    + _cell(low.get("cosine_min"), 6) + _cell(low.get("top1_agreement")))
    return _table(["step", "positions", "vs eager: max abs err", "min cosine", "top-1", "vs IR: max abs err",
                   "min cosine", "top-1"], rows)


def _layers_html(r: dict) -> str:
    rows = [_cell(x["layer"]) + _cell(x["max_abs_err"]) + _cell(x["rel_err"]) for x in r["layers"]["eager_vs_ir"]]
    jump = r["layers"]["first_jump_layer"]
    return (f"<p>First layer where the error jumps: {jump if jump is not None else 'none'}.</p>"
            + _table(["layer", "max abs err", "relative err"], rows))


def _latency_html(r: dict) -> str:
    rows = []
    for where, lat in r["latency"].items():
        if "error" in lat:
            rows.append(_text_cell(where) + f"<td colspan='8'>{html.escape(lat['error'])}</td>")
            continue
        rows.append(_text_cell(where) + _text_cell(lat.get("runtime")) + _text_cell(lat.get("threads"))
                    + _cell(lat.get("prefill_tokens_per_s")) + _cell(lat.get("decode_tokens_per_s"))
                    + _cell(lat.get("decode_tokens_per_s_min"), 3) + _cell(lat.get("decode_tokens_per_s_max"), 3)
                    + _cell(lat.get("time_to_first_token_ms")) + _cell(lat.get("peak_rss_mib")))
    sources = sorted({lat["memory_source"] for lat in r["latency"].values() if "memory_source" in lat})
    note = "".join(f"<p>Memory of a package runtime: {html.escape(s)}.</p>" for s in sources)
    return _table(["where", "runtime", "threads", "prefill tok/s", "decode tok/s (median)", "min", "max",
                   "TTFT ms", "peak RSS MiB"], rows) + note


def _gates_html(r: dict) -> str:
    rows = [f"<td><code>{html.escape(g['name'])}</code></td>" + _cell(g["threshold"]) + _text_cell(g["source"])
            for g in r.get("gates", [])]
    return _table(["gate", "limit", "source"], rows)


def to_html(r: dict) -> str:
    """One self-contained page: summary and checks as tables, the plots as inline SVG (validation/plots.py), then
    the numbers behind them. No script, no external file: it opens offline in any browser."""
    from .plots import all_figures

    figures = all_figures(r)
    ok = verdict(r) == "PASSED"
    parts = [f"<h1><span class='verdict {'pass' if ok else 'fail'}'>{verdict(r)}</span>"
             f"{html.escape(r['package'])}</h1>", _summary_html(r)]
    if r.get("skipped_reason"):
        parts.append(f"<p class='note'>Numeric stages skipped: {html.escape(r['skipped_reason'])}.</p>")
    parts += ["<h2>Checks</h2>", _checks_html(r)]
    titles = {"layers": "Per-layer error", "steps": "Drift per step", "perplexity": "Perplexity",
              "latency": "Latency and memory"}
    for name, svg in figures.items():
        parts.append(f"<h2>{titles[name]}</h2><figure id='plot-{name}'>{svg}"
                     f"<figcaption>{html.escape(_FIGURE_CAPTIONS[name])}</figcaption></figure>")
    if r["stages"]:
        parts += ["<h2>Stages</h2><p>Each stage compared with the eager fp32 reference, and with the stage before "
                  "it.</p>", _stages_html(r),
                  "<details open><summary>Per step: the package against eager and against the IR</summary>",
                  _steps_html(r), "</details>",
                  "<details><summary>Per layer: eager vs IR hidden states</summary>", _layers_html(r), "</details>"]
    if r["latency"]:
        parts += ["<h2>Latency</h2>", _latency_html(r)]
    parts += ["<h2>Gates applied</h2>", _gates_html(r)]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{verdict(r)}: elmexport validation of {html.escape(r['package'])}</title>"
            f"<style>{_CSS}</style></head><body>" + "".join(parts) + "</body></html>\n")


def to_junit(r: dict) -> str:
    cases = []
    for c in r["checks"]:
        inner = "" if c["passed"] else f"<failure message={quoteattr(c['detail'])}/>"
        cases.append(f'<testcase classname="elmexport.validate.{r["target"]}" name={quoteattr(c["name"])}>{inner}</testcase>')
    failures = sum(not c["passed"] for c in r["checks"])
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={quoteattr("elmexport validate " + r["package"])} '
            f'tests="{len(cases)}" failures="{failures}">' + "".join(cases) + "</testsuite>\n")


def to_json(r: dict) -> str:
    """Strict JSON: a non-finite measurement (a broken package's infinite perplexity) is written as null."""
    return strict_json.dumps(r, nonfinite="null")


REPORT_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}


def check_report_destination(out_dir: str | Path | None, junit: str | Path | None = None) -> None:
    """Reports only ever replace reports: refuse a folder or file that holds something else, before validating.

    A report folder may be new, or hold an earlier validate run's report.json (a JSON object with "checks");
    a JUnit path may be new or an earlier run's XML (its testsuite is named "elmexport validate ...").
    """
    if out_dir is not None:
        refuse_foreign_reports(Path(out_dir), list(REPORT_FILES.values()),
                               lambda folder: _is_validation_report(folder / "report.json"))
    if junit is not None:
        junit = Path(junit)
        if junit.is_symlink() or junit.is_dir() or (junit.exists() and
                                                    "<testsuite name=\"elmexport validate" not in _head(junit)):
            raise ElmExportError(f"--junit {junit}: exists and is not an earlier elmexport JUnit report; "
                                 f"choose another path")


def refuse_foreign_reports(out_dir: Path, names: list[str], ours: Callable[[Path], bool]) -> None:
    """A report folder must be a folder (or new); if it holds any of `names`, `ours(out_dir)` must say an earlier
    run of the same validator wrote them. The package and the pair reports both go through here."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ElmExportError(f"--out {out_dir}: not a folder; name a new folder for the reports")
    present = [out_dir / name for name in names if (out_dir / name).exists()]
    if present and not ours(out_dir):
        raise ElmExportError(f"--out {out_dir}: {present[0].name} there was not written by elmexport validate; "
                             f"choose another --out (reports never replace other files)")


def _is_validation_report(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "checks" in data and "stages" in data


def _head(path: Path) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read(4096)
    except OSError:
        return ""


def _write_atomically(path: Path, text: str) -> None:
    """Write beside the file, then rename over it: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.elmexport-tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_junit(r: dict, path: str | Path) -> Path:
    """JUnit XML at `path`, creating missing parent folders as `--out` does."""
    path = Path(path)
    check_report_destination(None, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, to_junit(r))
    return path


def write_reports(r: dict, out_dir: Path) -> dict[str, Path]:
    check_report_destination(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / name for kind, name in REPORT_FILES.items()}
    _write_atomically(paths["json"], to_json(r))
    _write_atomically(paths["md"], to_markdown(r))
    _write_atomically(paths["html"], to_html(r))
    return paths
