"""The figures of the HTML validation report, drawn with matplotlib and embedded as inline SVG.

Why matplotlib and SVG: a report must open anywhere, offline and years later, without JavaScript or a server: one
HTML file with vector plots inside. matplotlib's object API (a `Figure`, never pyplot) leaves the caller's backend
and global plotting state alone, which matters when `elmexport.validate` runs inside a notebook. The SVG carries
no date and its ids are salted per figure, so the same report data always gives the same bytes and two figures in
one page never share an id.

Each function takes the report dict (validation/validate.py) and returns an `<svg>` string, or None when the
report holds nothing to draw (numeric stages skipped, latency not measured). Gate limits are drawn on the metric
they limit, in red, labelled with the gate's name.
"""

from __future__ import annotations

import io
import math

# colours: eager reference, IR, package; gate limits in red
EAGER, IR, PACKAGE, LOWERING, GATE = "#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"
FLOOR = 1e-9  # errors of exactly 0 (an fp32 package equal to the IR) are drawn here on log axes
_STYLE = {"svg.fonttype": "none", "font.family": "sans-serif", "font.size": 10, "axes.titlesize": 11,
          "axes.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False,
          "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 9, "legend.frameon": False}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _figure(name: str, ncols: int, height: float = 3.4):
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.1 * ncols if ncols > 1 else 9.0, height), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    fig._elmexport_name = name
    return fig, list(axes)


def _svg(fig) -> str:
    """The figure as an `<svg>` element (no XML prolog, no metadata date), ids salted with the figure's name."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(dict(_STYLE, **{"svg.hashsalt": fig._elmexport_name})):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):].strip()


def _gate_line(ax, gates: dict, key: str, against: str) -> None:
    """The limit of gate `key` across the plot, named at its right end; dashed for limits against eager fp32,
    dash-dotted for limits against the IR (lowering), so two limits on one plot are told apart."""
    if key in gates and _finite(gates[key]):
        ax.axhline(gates[key], color=GATE, linestyle="--" if against == "eager" else "-.", linewidth=1.3,
                   label=f"gate {key} = {gates[key]:g} (vs {against})")
        ax.annotate(key, (1, gates[key]), xycoords=("axes fraction", "data"), xytext=(-2, 2),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7.5, color=GATE)


def _gates(report: dict) -> dict:
    return {g["name"]: g["threshold"] for g in report.get("gates", [])}


def _log_axis(ax, axis: str = "y") -> None:
    """A log axis with plain numbers at 1, 2 and 5 times each power of ten (0.1, 0.2, 0.5), so a range shorter
    than a decade still has labels and none of them is in 3x10^-1 notation."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    target.set_major_locator(LogLocator(base=10))
    target.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    target.set_major_formatter(plain)
    target.set_minor_formatter(plain)


def _on_log(values):
    return [max(v, FLOOR) if _finite(v) else math.nan for v in values]


def layer_error(report: dict) -> str | None:
    """Relative error of each layer's hidden state (max |a - b| / max |a| over the prompt), eager vs IR, then the
    same measure on the logits for the IR and the package: runtimes expose only their logits, so the package
    appears at the output, beside the IR it was lowered from."""
    rows = report.get("layers", {}).get("eager_vs_ir") or []
    stages = report.get("stages") or []
    if not rows or len(stages) < 3:
        return None
    ir, package = stages[1], stages[-1]
    n = len(rows)
    fig, (ax,) = _figure("layers", 1, height=3.6)
    xs = list(range(n)) + [n]
    ax.plot(xs, _on_log([r["rel_err"] for r in rows] + [ir.get("max_rel_err")]), color=IR, marker="o",
            label="IR vs eager fp32")
    ax.plot([n], _on_log([package.get("max_rel_err")]), color=PACKAGE, marker="D", markersize=9, linestyle="none",
            label=f"package ({package['name']}) vs eager fp32")
    lowering = (package.get("vs_previous_stage") or {}).get("max_rel_err")
    ax.plot([n], _on_log([lowering]), color=LOWERING, marker="s", markersize=7, linestyle="none",
            label="package vs IR (lowering)")
    jump = report["layers"].get("first_jump_layer")
    if jump is not None:
        ax.axvline(jump, color=EAGER, linestyle=":", linewidth=1.2, label=f"error enters at layer {jump}")
    _log_axis(ax)
    ax.set_xticks(xs, [str(i) for i in range(n)] + ["logits"])
    ax.set_xlabel("layer (hidden state after the block)")
    ax.set_ylabel("relative error (max |Δ| / max |ref|)")
    _floor_note(ax)
    ax.legend(loc="best")
    return _svg(fig)


def _floor_note(ax) -> None:
    low, high = ax.get_ylim()
    if low <= FLOOR * 1.01:
        ax.axhline(FLOOR, color=EAGER, linewidth=0.8, alpha=0.6)
        ax.annotate("exact (0)", (0, FLOOR), xycoords=("axes fraction", "data"), xytext=(2, 3),
                    textcoords="offset points", fontsize=8, color=EAGER)


def step_drift(report: dict) -> str | None:
    """Teacher-forced steps (the prefill chunk, then one token per decode step) of every stage against eager fp32,
    and of the package against the IR: how far each step's logits drift, with the gates on those metrics."""
    stages = report.get("stages") or []
    if len(stages) < 3 or not stages[-1].get("steps"):
        return None
    ir, package = stages[1], stages[-1]
    labels = [_step_label(s) for s in package["steps"]]
    xs = list(range(len(labels)))
    lowering = (package.get("vs_previous_stage") or {}).get("steps") or []
    gates = _gates(report)
    fig, axes = _figure("steps", 3, height=3.6)
    series = [("IR vs eager", IR, "-", ir.get("steps") or [], 4.0, 0.45),
              ("package vs eager", PACKAGE, "-", package["steps"], 1.5, 1.0),
              ("package vs IR (lowering)", LOWERING, "--", lowering, 1.5, 1.0)]
    panels = [("max |logit error|", "max_abs_err", True), ("worst-position cosine", "cosine_min", False),
              ("top-1 agreement", "top1_agreement", False)]
    for ax, (title, field, log) in zip(axes, panels):
        for label, color, style, steps, width, alpha in series:  # IR wide and pale: a package on it stays visible
            if steps:
                values = [s.get(field) for s in steps]
                ax.plot(xs[:len(values)], _on_log(values) if log else values, color=color, linestyle=style,
                        linewidth=width, alpha=alpha, marker="o", markersize=4, label=label)
        ax.set_title(title)
        ax.set_xticks(xs, labels, rotation=0)
        ax.set_xlabel("step")
    _log_axis(axes[0])
    _floor_note(axes[0])
    _gate_line(axes[0], gates, "max_abs_err", "eager")
    _gate_line(axes[1], gates, "min_cosine", "eager")
    _gate_line(axes[1], gates, "min_lowering_cosine", "IR")
    _gate_line(axes[2], gates, "min_top1", "eager")
    _gate_line(axes[2], gates, "min_lowering_top1", "IR")
    axes[2].set_ylim(-0.05, 1.08)
    _pad_to_one(axes[1])
    fig.legend(*_legend_entries(axes), loc="outside lower center", ncols=3)
    return _svg(fig)


def _step_label(step: dict) -> str:
    name = str(step.get("step", ""))
    if name == "prefill":
        return f"prefill\n({step.get('positions')})"
    return name.removeprefix("decode ")


def _pad_to_one(ax) -> None:
    """Cosines sit near 1: keep 1 in view and leave a little room above it."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, max(high, 1.0) + 0.05 * (max(high, 1.0) - low + 1e-6))


def _legend_entries(axes):
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen.keys())


def perplexity(report: dict) -> str | None:
    """Perplexity of the same text in every stage, with the largest the package may reach under the
    max_ppl_increase gate (eager x (1 + limit))."""
    stages = [s for s in report.get("stages") or [] if _finite(s.get("perplexity"))]
    if len(stages) < 2:
        return None
    fig, (ax,) = _figure("perplexity", 1, height=2.6)
    names = [s["name"] for s in stages]
    values = [s["perplexity"] for s in stages]
    colors = [EAGER, IR] + [PACKAGE] * (len(stages) - 2)
    bars = ax.barh(names, values, color=colors[:len(stages)])
    ax.bar_label(bars, [f"{v:,.2f}" for v in values], padding=3, fontsize=9)
    ax.invert_yaxis()
    gates, limit = _gates(report), 0.0
    eager = report["stages"][0].get("perplexity")
    if "max_ppl_increase" in gates and _finite(eager):
        limit = eager * (1 + gates["max_ppl_increase"])
        ax.axvline(limit, color=GATE, linestyle="--", linewidth=1.3,
                   label=f"gate max_ppl_increase = {gates['max_ppl_increase']:g}: package ≤ {limit:,.2f}")
        fig.legend(loc="outside upper right")
    ax.set_xlim(0, max(values + [limit]) * 1.18)
    ax.set_xlabel(f"perplexity over {report.get('text') or 'the stream'}"[:110])
    ax.grid(axis="y", visible=False)
    return _svg(fig)


def latency(report: dict) -> str | None:
    """Decode-step and prefill latency of every runtime as distributions (every sample, a box over them), and
    the memory of each runtime's process. Runtimes measured elsewhere (a phone's device report) give one median."""
    measured = {k: v for k, v in (report.get("latency") or {}).items() if isinstance(v, dict) and "error" not in v}
    if not measured:
        return None
    names = list(measured)
    fig, axes = _figure("latency", 3, height=max(2.6, 0.75 * len(names) + 1.6))
    for ax, (title, samples_key, median_of) in zip(axes[:2], [
            ("decode step latency", "decode_ms", lambda v: 1000 / v["decode_tokens_per_s"]),
            ("prefill latency (whole prompt)", "prefill_ms", lambda v: v["time_to_first_token_ms"])]):
        for row, name in enumerate(names):
            entry = measured[name]
            samples = [s for s in entry.get(samples_key) or [] if _finite(s) and s > 0]
            if samples:
                ax.boxplot([samples], positions=[row], orientation="horizontal", widths=0.5, showfliers=False,
                           medianprops={"color": "black"}, boxprops={"color": _runtime_color(name)},
                           whiskerprops={"color": _runtime_color(name)}, capprops={"color": _runtime_color(name)})
                jitter = [row + 0.18 * math.sin(7.3 * i) for i in range(len(samples))]
                ax.scatter(samples, jitter, s=9, alpha=0.55, color=_runtime_color(name), linewidths=0)
            else:
                try:
                    median = median_of(entry)
                except (KeyError, TypeError, ZeroDivisionError):
                    continue
                if _finite(median) and median > 0:
                    ax.scatter([median], [row], marker="D", s=40, color=_runtime_color(name), label="median only")
        _log_axis(ax, "x")
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xlabel("milliseconds (log)")
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
    _memory(axes[2], measured, names)
    return _svg(fig)


def _memory(ax, measured: dict, names: list[str]) -> None:
    load = [measured[n].get("load_rss_mib") for n in names]
    peak = [measured[n].get("peak_rss_mib") for n in names]
    rows = range(len(names))
    ax.barh([r - 0.2 for r in rows], [v if _finite(v) else 0 for v in load], height=0.38, color="#9ecae1",
            label="after load")
    bars = ax.barh([r + 0.2 for r in rows], [v if _finite(v) else 0 for v in peak], height=0.38, color="#3182bd",
                   label="peak")
    ax.bar_label(bars, [f"{v:.0f}" if _finite(v) else "n/a" for v in peak], padding=3, fontsize=8)
    ax.set_yticks(list(rows), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    finite = [v for v in load + peak if _finite(v)]
    ax.set_xlim(0, (max(finite) if finite else 1) * 1.25)
    ax.set_xlabel("resident memory, MiB")
    ax.set_title("memory of each runtime")
    ax.legend(loc="lower right")
    ax.grid(axis="y", visible=False)


def _runtime_color(name: str) -> str:
    return EAGER if name == "eager" else "#9467bd" if name == "device" else PACKAGE


def all_figures(report: dict) -> dict[str, str]:
    """Every figure the report has data for: {name: svg}."""
    figures = {"layers": layer_error(report), "steps": step_drift(report), "perplexity": perplexity(report),
               "latency": latency(report)}
    return {name: svg for name, svg in figures.items() if svg is not None}

