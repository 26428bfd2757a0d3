"""`elmexport validate`: reports, thresholds and exit codes, and catching deliberately broken packages."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from elmexport.package import checksums

FAST = ["--prefill-tokens", "12", "--decode-steps", "3", "--greedy-tokens", "6", "--ppl-tokens", "24", "--no-latency"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "elmexport.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("val") / "tiny-coreml"
    proc = run("coreml", "--model", "openelm-tiny", "--random-weights", "--context", "32", "--prefill-chunk", "8",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _copy(package, tmp_path):
    dst = tmp_path / "pkg"
    shutil.copytree(package, dst, ignore=shutil.ignore_patterns("validation"))
    return dst


def test_good_package_passes_and_writes_reports(package, tmp_path):
    junit = tmp_path / "junit.xml"
    proc = run("validate", str(package), *FAST, "--max-abs-err", "0.05", "--min-top1", "0.9", "--json",
               "--junit", str(junit), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert {"package", "target", "stages", "latency", "passed"} <= set(report) and report["passed"]
    assert [s["name"] for s in report["stages"]] == ["eager", "ir", "coreml"]
    for s in report["stages"]:
        assert {"name", "max_abs_err", "top1_agreement", "greedy_match_tokens", "perplexity"} <= set(s)
    assert report["stages"][1]["max_abs_err"] < 1e-4  # no quantization: the IR equals eager
    assert len(report["layers"]["eager_vs_ir"]) == 4
    assert (tmp_path / "rep" / "report.md").exists() and "<svg" in (tmp_path / "rep" / "report.html").read_text()
    assert 'failures="0"' in junit.read_text()


def test_threshold_failure_exit_1_names_check(package, tmp_path):
    proc = run("validate", str(package), *FAST, "--max-abs-err", "1e-9", "--out", str(tmp_path / "rep"))
    assert proc.returncode == 1
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["max_abs_err"] and "coreml" in failed[0]["detail"]


def test_perturbed_weight_is_caught_at_the_package_stage(package, tmp_path):
    broken = _copy(package, tmp_path)
    manifest = json.loads((broken / "manifest.json").read_text())
    blob = broken / manifest["model_file"] / "Data/com.apple.CoreML/weights/weight.bin"
    data = bytearray(blob.read_bytes())
    mid = len(data) // 2  # inside the tied embedding/head table, the largest blob
    data[mid:mid + 4096] = bytes(4096)
    blob.write_bytes(bytes(data))
    manifest["checksums"] = checksums(broken)  # a consistent-looking package: only the numbers can tell
    (broken / "manifest.json").write_text(json.dumps(manifest))
    proc = run("validate", str(broken), *FAST, "--max-abs-err", "0.05", "--out", str(tmp_path / "rep"))
    assert proc.returncode == 1
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    ir, pkg = report["stages"][1], report["stages"][2]
    assert ir["max_abs_err"] < 1e-4 and pkg["vs_previous_stage"]["max_abs_err"] > 0.05  # the package stage, not the IR


def test_tampered_file_fails_integrity(package, tmp_path):
    broken = _copy(package, tmp_path)
    tok = broken / "manifest.json"
    manifest = json.loads(tok.read_text())
    blob = broken / manifest["model_file"] / "Data/com.apple.CoreML/weights/weight.bin"
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0xFF
    blob.write_bytes(bytes(data))
    proc = run("validate", str(broken), *FAST, "--out", str(tmp_path / "rep"))
    assert proc.returncode == 1
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["checks"][0]["name"] == "integrity" and not report["checks"][0]["passed"]


def test_wrong_rope_theta_is_caught(package, tmp_path):
    broken = _copy(package, tmp_path)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["model"]["config"]["rope_theta"] = 5000.0  # the reference now disagrees with what was exported
    (broken / "manifest.json").write_text(json.dumps(manifest))
    proc = run("validate", str(broken), *FAST, "--max-abs-err", "0.05", "--out", str(tmp_path / "rep"))
    assert proc.returncode == 1
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["stages"][1]["max_abs_err"] < 1e-4 and report["stages"][2]["max_abs_err"] > 0.05


def _device_report(package, tmp_path, **changes) -> Path:
    """The schema's example re-pointed at `package` (the app writes one per package it benchmarks)."""
    example = json.loads((Path(__file__).resolve().parents[1] / "ios_demo/Schemas/device_report.example.json")
                         .read_text())
    manifest = json.loads((Path(package) / "manifest.json").read_text())
    example["package"].update(name=manifest["name"], target=manifest["target"],
                              context_length=manifest["context_length"])
    example.update(changes)
    path = tmp_path / "device.json"
    path.write_text(json.dumps(example))
    return path


def test_device_report_and_yaml_thresholds(package, tmp_path):
    th = tmp_path / "th.yaml"
    th.write_text("max_abs_err: 0.05\nmin_greedy_match: 4\n")
    device = _device_report(package, tmp_path, greedy_check=None)
    proc = run("validate", str(package), *FAST, "--thresholds", str(th), "--device-report", str(device),
               "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["latency"]["device"]["decode_tokens_per_s"] > 0
    checks = {c["name"]: c for c in report["checks"]}
    assert {"integrity", "max_abs_err", "min_greedy_match", "min_lowering_cosine"} <= set(checks)
    assert checks["max_abs_err"]["source"] == f"--thresholds {th}" and checks["max_abs_err"]["threshold"] == 0.05
    assert checks["min_lowering_cosine"]["source"].startswith("default for none: measured")
    assert "device" in (tmp_path / "rep" / "report.md").read_text()


def test_a_device_report_of_another_package_is_refused(package, tmp_path):
    example = Path(__file__).resolve().parents[1] / "ios_demo/Schemas/device_report.example.json"
    proc = run("validate", str(package), *FAST, "--device-report", str(example), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 2 and "measured package 'smollm2-135m-instruct-coreml-int4'" in proc.stderr


def test_device_greedy_tokens_are_checked_against_the_host(tmp_path, llama2_style_tokenizer):
    """The app's greedy ids for a prompt must be the host's (the package's runtime, here the MIL interpreter)."""
    import elmexport
    from elmexport.chat import render_chat

    pkg = elmexport.export("openelm-tiny", "coreml", random_weights=True, context=48, prefill_chunk=8,
                           tokenizer=llama2_style_tokenizer, out=tmp_path / "pkg")
    model = elmexport.load(pkg)
    prompt = "What is the capital of France?"
    ids = model.tokenizer.encode(render_chat(model.chat_template, [{"role": "user", "content": prompt}],
                                             model.system_prompt))
    from elmexport.validation.streams import greedy

    tokens = greedy(model.runner, ids, 6)
    good = {"prompt": prompt, "prompt_ids": ids, "max_new_tokens": 6, "token_ids": tokens}
    for greedy, code in ((good, 0), ({**good, "token_ids": tokens[:3] + [(tokens[3] + 1) % 600] + tokens[4:]}, 1),
                         ({**good, "prompt_ids": ids[:-1]}, 1)):
        device = _device_report(pkg, tmp_path, greedy_check=greedy)
        out = tmp_path / f"rep{code}-{len(greedy['prompt_ids'])}"
        proc = run("validate", str(pkg.path), *FAST, "--device-report", str(device), "--out", str(out))
        assert proc.returncode == code, proc.stderr[-2000:]
        check = next(c for c in json.loads((out / "report.json").read_text())["checks"]
                     if c["name"] == "device_greedy_match")
        assert check["passed"] == (code == 0), check


def test_bad_inputs_exit_2(tmp_path):
    proc = run("validate", str(tmp_path / "nope"))
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run("validate", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "manifest.json" in proc.stderr
    bad = tmp_path / "th.yaml"
    bad.write_text("max_speed: 3\n")
    proc = run("validate", str(tmp_path / "empty"), "--thresholds", str(bad))
    assert proc.returncode == 2 and "unknown threshold 'max_speed'" in proc.stderr
