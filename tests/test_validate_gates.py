"""`elmexport validate` with no threshold flags: the preset's default gates fail a broken package and pass a
healthy one; a corrupt model file fails integrity and is never loaded; bad options are one-line errors."""

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from elmexport.errors import ElmExportError
from elmexport.validation.gates import DEFAULTS, METRICS, evaluate, gates_for, parse_thresholds

from .test_validate import FAST, run


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("gates") / "tiny-onnx"
    proc = run("onnx", "--model", "openelm-tiny", "--random-weights", "--context", "32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def copy_package(package, dst):
    shutil.copytree(package, dst, ignore=shutil.ignore_patterns("validation"))
    return dst


def reseal(pkg):
    """Recompute the manifest's checksums, so the package looks consistent and only its numbers can tell."""
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["checksums"] = {p.relative_to(pkg).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                             for p in sorted(pkg.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    (pkg / "manifest.json").write_text(json.dumps(manifest))


def swap_two_layers(pkg):
    """Exchange the attention output projections of layers 1 and 2 (same shape, so the model still runs)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(pkg / "model.onnx"))
    square = [t for t in model.graph.initializer if list(t.dims) == [256, 256]]
    assert len(square) >= 2, [list(t.dims) for t in model.graph.initializer]
    a, b = square[0], square[1]
    arr_a, arr_b = numpy_helper.to_array(a), numpy_helper.to_array(b)
    assert not np.array_equal(arr_a, arr_b)
    a.CopyFrom(numpy_helper.from_array(arr_b, a.name))
    b.CopyFrom(numpy_helper.from_array(arr_a, b.name))
    (pkg / "model.onnx.data").unlink()
    onnx.save(model, str(pkg / "model.onnx"), save_as_external_data=True, location="model.onnx.data",
              size_threshold=1024)


def report_of(path):
    return json.loads(path.read_text())


def test_healthy_package_passes_with_no_flags(package, tmp_path):
    proc = run("validate", str(package), *FAST, "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = report_of(tmp_path / "rep" / "report.json")
    assert report["passed"] and report["numeric_checks"] == "run"
    names = {c["name"] for c in report["checks"]}
    assert {"integrity", "min_lowering_cosine", "min_lowering_top1", "max_ppl_increase"} <= names
    assert all(g["source"].startswith("default for none") for g in report["gates"])
    assert "Gates applied" in (tmp_path / "rep" / "report.md").read_text()


def test_swapped_layers_fail_with_no_flags_naming_the_gate(package, tmp_path):
    broken = copy_package(package, tmp_path / "pkg")
    swap_two_layers(broken)
    reseal(broken)
    proc = run("validate", str(broken), *FAST, "--out", str(tmp_path / "rep"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = report_of(tmp_path / "rep" / "report.json")
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert "integrity" not in failed and "min_lowering_cosine" in failed
    assert "FAIL min_lowering_cosine" in proc.stderr and "FAILED" in proc.stderr


def test_flipped_byte_fails_integrity_and_is_never_loaded(package, tmp_path):
    broken = copy_package(package, tmp_path / "pkg")
    data = bytearray((broken / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / "model.onnx").write_bytes(bytes(data))
    junit = tmp_path / "new" / "folder" / "junit.xml"
    proc = run("validate", str(broken), *FAST, "--out", str(tmp_path / "rep"), "--junit", str(junit))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    report = report_of(tmp_path / "rep" / "report.json")
    assert report["checks"][0]["name"] == "integrity" and not report["checks"][0]["passed"]
    assert "model.onnx: changed" in report["checks"][0]["detail"]
    assert report["stages"] == [] and report["numeric_checks"] == "skipped" and "integrity" in report["skipped_reason"]
    assert 'failures="1"' in junit.read_text()
    assert "skipped" in (tmp_path / "rep" / "report.md").read_text()


def test_unparseable_model_with_matching_checksums_fails_without_a_traceback(package, tmp_path):
    broken = copy_package(package, tmp_path / "pkg")
    data = bytearray((broken / "model.onnx").read_bytes())
    data[10:40] = b"\xff" * 30  # the protobuf header: the runtime cannot parse the model
    (broken / "model.onnx").write_bytes(bytes(data))
    reseal(broken)
    proc = run("validate", str(broken), *FAST, "--out", str(tmp_path / "rep"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    report = report_of(tmp_path / "rep" / "report.json")
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["package_runs"] and "runtime" in failed[0]["detail"]
    assert report["stages"] == [] and not report["passed"]


def test_manifest_without_checksums_fails(package, tmp_path):
    broken = copy_package(package, tmp_path / "pkg")
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["checksums"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    proc = run("validate", str(broken), *FAST, "--out", str(tmp_path / "rep"))
    assert proc.returncode == 1
    assert "no checksums" in report_of(tmp_path / "rep" / "report.json")["checks"][0]["detail"]


def test_checksum_key_outside_the_package_fails_fast(package, tmp_path):
    broken = copy_package(package, tmp_path / "pkg")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["checksums"]["/dev/zero"] = manifest["checksums"]["model.onnx"]
    manifest["checksums"]["../x"] = manifest["checksums"]["model.onnx"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.run([sys.executable, "-m", "elmexport.cli", "validate", str(broken), *FAST,
                           "--out", str(tmp_path / "rep")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    detail = report_of(tmp_path / "rep" / "report.json")["checks"][0]["detail"]
    assert "'/dev/zero'" in detail and "'../x'" in detail


def test_wrong_manifest_type_is_one_line_exit_2(package, tmp_path):
    broken = copy_package(package, tmp_path / "pkg")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["context_length"] = "32"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    proc = run("validate", str(broken), *FAST)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "context_length" in proc.stderr


@pytest.mark.parametrize("args, words", [
    (["--prefill-tokens", "0"], "--prefill-tokens"),
    (["--decode-steps", "-1"], "--decode-steps"),
    (["--greedy-tokens", "-2"], "--greedy-tokens"),
    (["--ppl-tokens", "-5"], "--ppl-tokens"),
    (["--min-top1", "high"], "--min-top1"),
    (["--min-top1", "nan"], "--min-top1"),
    (["--text", "/nonexistent/text.txt"], "--text"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, args, words):
    proc = run("validate", str(tmp_path), *args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


@pytest.mark.parametrize("content, words", [
    ("min_top1: high\n", "must be a finite number"),
    ("min_top1: true\n", "must be a finite number"),
    ("max_speed: 3\n", "unknown threshold 'max_speed'"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_threshold_files_are_one_line_exit_2(tmp_path, content, words):
    th = tmp_path / "th.yaml"
    th.write_text(content)
    proc = run("validate", str(tmp_path), "--thresholds", str(th))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


def test_flags_override_defaults_and_say_so():
    gates = {g.key: g for g in gates_for("int4", {"min_lowering_cosine": 0.5, "min_top1": 0.2},
                                         {"min_lowering_cosine": "--min-lowering-cosine", "min_top1": "--min-top1"})}
    assert gates["min_lowering_cosine"].limit == 0.5 and gates["min_lowering_cosine"].source == "--min-lowering-cosine"
    assert gates["min_top1"].source == "--min-top1"
    assert gates["max_ppl_increase"].limit == DEFAULTS["int4"]["max_ppl_increase"]
    assert gates["max_ppl_increase"].source.startswith("default for int4: measured")


def test_unmeasured_preset_gets_the_loosest_defaults_and_says_so():
    gates = gates_for("my-custom-quant", {}, {})
    assert gates and all("no measured default for quantization 'my-custom-quant'" in g.source for g in gates)


def test_every_preset_default_is_a_known_gate_and_lowering_is_gated():
    for preset, limits in DEFAULTS.items():
        assert set(limits) <= set(METRICS), preset
        assert {"min_lowering_cosine", "min_lowering_top1"} <= set(limits), preset


def test_nonfinite_or_missing_measurement_fails_its_gate():
    gates = gates_for("none", {}, {})
    final = {"name": "onnx", "ppl_increase": float("nan"), "vs_previous_stage": {"cosine_min": 1.0}}
    checks = {c["name"]: c for c in evaluate(gates, final)}
    assert not checks["max_ppl_increase"]["passed"] and not checks["min_lowering_top1"]["passed"]
    assert checks["min_lowering_cosine"]["passed"]


def test_parse_thresholds_rejects_bad_values():
    assert parse_thresholds({"min_top1": 1}, "x") == {"min_top1": 1.0}
    for bad in ({"min_top1": "0.9"}, {"min_top1": None}, {"min_top1": float("inf")}, {"nope": 1}, [1]):
        with pytest.raises(ElmExportError):
            parse_thresholds(bad, "x")
