"""Validation report outputs: report.json, report.md, a self-contained report.html (inline SVG plots), JUnit XML;
the device report is read by device_report.py.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
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


def _bars_svg(title: str, items: list[tuple[str, float]], log_scale: bool = False, unit: str = "") -> str:
    w, row, left = 640, 26, 170
    h = 40 + row * len(items)
    vals = [v for _, v in items if v is not None and v > 0]
    if not vals:
        return f"<p>{html.escape(title)}: no data</p>"
    lo = min(vals) / 10 if log_scale else 0.0
    hi = max(vals)

    def scale(v):
        if v is None or v <= 0:
            return 0
        if log_scale:
            return (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo) + 1e-12) * (w - left - 90)
        return v / hi * (w - left - 90)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<text x="4" y="16" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, v) in enumerate(items):
        y = 28 + i * row
        parts.append(f'<text x="4" y="{y + 14}">{html.escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{scale(v):.1f}" height="{row - 8}" fill="#3b7dd8"/>')
        parts.append(f'<text x="{left + scale(v) + 4:.1f}" y="{y + 14}">{_fmt(v)}{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(r: dict) -> str:
    err = [(s["name"], s["max_abs_err"]) for s in r["stages"][1:]]
    layers = [(f"layer {x['layer']}", x["rel_err"]) for x in r["layers"]["eager_vs_ir"]]
    ok = {k: v for k, v in r["latency"].items() if "error" not in v}
    decode = [(k, v.get("decode_tokens_per_s")) for k, v in ok.items()]
    prefill = [(k, v.get("prefill_tokens_per_s")) for k, v in ok.items()]
    memory = [(f"{k} {what}", v.get(f"{what}_rss_mib")) for k, v in ok.items() for what in ("load", "peak")
              if v.get(f"{what}_rss_mib") is not None]
    body = [
        _bars_svg("max abs logit error vs eager, per stage (log)", err, log_scale=True),
        _bars_svg("relative hidden-state error per layer, eager vs IR (log)", layers, log_scale=True),
        _bars_svg("decode tokens/s per runtime", decode, unit=" tok/s"),
        _bars_svg("prefill tokens/s per runtime", prefill, unit=" tok/s"),
        _bars_svg("resident memory per runtime (MiB)", memory, unit=" MiB"),
    ]
    md = html.escape(to_markdown(r))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>elmexport validation</title></head><body>"
            f"<h1>{verdict(r)}: {html.escape(r['package'])}</h1>"
            + "".join(f"<div>{b}</div>" for b in body) + f"<pre>{md}</pre></body></html>")


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
        out_dir = Path(out_dir)
        if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
            raise ElmExportError(f"--out {out_dir}: not a folder; name a new folder for the reports")
        present = [out_dir / name for name in REPORT_FILES.values() if (out_dir / name).exists()]
        if present and not _is_validation_report(out_dir / "report.json"):
            raise ElmExportError(f"--out {out_dir}: {present[0].name} there was not written by elmexport validate; "
                                 f"choose another --out (reports never replace other files)")
    if junit is not None:
        junit = Path(junit)
        if junit.is_symlink() or junit.is_dir() or (junit.exists() and
                                                    "<testsuite name=\"elmexport validate" not in _head(junit)):
            raise ElmExportError(f"--junit {junit}: exists and is not an earlier elmexport JUnit report; "
                                 f"choose another path")


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
