"""The HTML validation report as a reader sees it: a real validation of a tiny int4 ONNX package, its report.html
opened in headless Chromium (Debian's `chromium`) and screenshotted, and the page's structure checked: HTML tables,
the four plots as inline SVG with the gate limits drawn, nothing loaded from outside the file.
"""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser

import pytest

import elmexport
from elmexport.validation.report import to_html

from .screenshot import has_colour, screenshot

DECODE_STEPS = 6
# every gate the validator knows, so each one's line must appear on its plot (the int4 defaults add the others)
EXTRA_GATES = ["--max-abs-err", "5", "--min-top1", "0", "--min-cosine", "0.5"]


@pytest.fixture(scope="module")
def validated(tmp_path_factory, llama2_style_tokenizer):
    from elmexport.cli import main

    root = tmp_path_factory.mktemp("html-report")
    pkg = elmexport.export("openelm-tiny", "onnx", quant="int4", random_weights=True, context=64,
                           tokenizer=llama2_style_tokenizer, out=root / "pkg")
    code = main(["validate", str(pkg.path), "--prefill-tokens", "16", "--decode-steps", str(DECODE_STEPS),
                 "--greedy-tokens", "6", "--ppl-tokens", "48", *EXTRA_GATES])
    assert code == 0
    folder = pkg.path / "validation"
    return json.loads((folder / "report.json").read_text()), (folder / "report.html").read_text(), folder


class Page(HTMLParser):
    """Tags, attributes and the text of the page, and which figure each SVG text belongs to."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.figure_text, self._figure = [], [], {}, None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        if tag == "figure":
            self._figure = dict(attrs).get("id")
            self.figure_text[self._figure] = []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None

    def handle_data(self, data):
        if self._figure:
            self.figure_text[self._figure].append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def test_report_data_keeps_samples_and_per_step_lowering(validated):
    report, _, _ = validated
    onnx = report["latency"]["onnx"]
    assert len(onnx["decode_ms"]) == 16 * onnx["rounds"] and len(onnx["prefill_ms"]) == onnx["rounds"]
    assert all(v > 0 for v in onnx["decode_ms"] + onnx["prefill_ms"])
    lowering = report["stages"][-1]["vs_previous_stage"]["steps"]
    assert len(lowering) == DECODE_STEPS + 1 == len(report["stages"][-1]["steps"])
    assert min(s["cosine_min"] for s in lowering) == report["stages"][-1]["vs_previous_stage"]["cosine_min"]


def test_tables_and_plots_in_one_self_contained_file(validated):
    report, text, _ = validated
    page = parse(text)
    assert page.tags.count("table") >= 6 and "|---|" not in text  # HTML tables, not Markdown pasted in a <pre>
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert not [v for k, v in page.attrs if k in ("src", "href") and v]  # nothing fetched from elsewhere
    assert set(page.figure_text) == {"plot-layers", "plot-steps", "plot-perplexity", "plot-latency"}
    assert text.count("<svg") == 4
    words = {name: " ".join(chunks) for name, chunks in page.figure_text.items()}
    gates = {g["name"]: g["threshold"] for g in report["gates"]}
    for key in ("max_abs_err", "min_cosine", "min_lowering_cosine", "min_top1", "min_lowering_top1"):
        assert f"gate {key} = {gates[key]:g}" in words["plot-steps"], key
    assert f"gate max_ppl_increase = {gates['max_ppl_increase']:g}" in words["plot-perplexity"]
    assert "logits" in words["plot-layers"] and "decode step latency" in words["plot-latency"]
    for check in report["checks"]:
        assert f"<code>{check['name']}</code>" in text


def test_the_same_report_renders_the_same_bytes(validated):
    report, text, _ = validated
    assert to_html(copy.deepcopy(report)) == to_html(copy.deepcopy(report)) == text


def test_chromium_renders_the_report(validated, tmp_path):
    """Headless Chromium screenshots the page: the PNG must exist, not be blank, and show the plots' colours."""
    from PIL import ImageStat

    _, _, folder = validated
    image = screenshot(folder / "report.html", tmp_path / "report.png", 1200, 2400)
    assert image.size == (1200, 2400)
    assert ImageStat.Stat(image.convert("L")).stddev[0] > 20  # a blank or one-colour page has ~0
    assert has_colour(image, (0xFF, 0x7F, 0x0E)) and has_colour(image, (0x1F, 0x77, 0xB4))  # the plots' orange, blue
    assert has_colour(image, (0x2E, 0x7D, 0x32))  # the green PASSED badge


def test_reports_without_numbers_or_with_exact_stages_still_render(validated):
    report, _, _ = validated
    skipped = dict(copy.deepcopy(report), stages=[], latency={}, numeric_checks="skipped",
                   layers={"eager_vs_ir": [], "first_jump_layer": None},
                   skipped_reason="integrity failed: the model files are not the exported ones")
    page = parse(to_html(skipped))
    assert not page.figure_text and "integrity failed" in to_html(skipped) and "table" in page.tags

    exact = copy.deepcopy(report)  # an fp32 package equal to its IR: errors of 0 on the log axes
    for row in exact["layers"]["eager_vs_ir"]:
        row.update(max_abs_err=0.0, rel_err=0.0)
    for step in exact["stages"][-1]["vs_previous_stage"]["steps"]:
        step.update(max_abs_err=0.0, max_rel_err=0.0)
    exact["latency"]["onnx"] = {"error": "the runtime's own process exited 1: boom"}
    text = to_html(exact)
    words = {k: " ".join(v) for k, v in parse(text).figure_text.items()}
    assert "exact (0)" in words["plot-layers"] and "boom" in text
    assert re.search(r"decode step latency", words["plot-latency"])  # eager's samples still drawn
