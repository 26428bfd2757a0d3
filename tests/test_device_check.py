"""`elmexport device-check PACKAGE`: off macOS it says what it would do in one line and exits 2; bad packages are
one-line errors. (The macOS path needs Core ML; ios_demo/README.md and .github/workflows/ios.yml run it there.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from elmexport.cli import main

REPO = Path(__file__).resolve().parents[1]
REAL_MANIFEST = REPO / "ios_demo" / "Fixtures" / "coreml_engine" / "manifest.json"

pytestmark = pytest.mark.skipif(sys.platform == "darwin", reason="the macOS path runs real Core ML")


def _package(tmp_path: Path, **changes) -> Path:
    manifest = json.loads(REAL_MANIFEST.read_text(encoding="utf-8"))
    manifest.update(changes)
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return package


def test_off_macos_it_says_what_it_would_do_and_exits_2(tmp_path, capsys):
    package = _package(tmp_path)
    assert main(["device-check", str(package), "--compute-units", "cpu-and-ne"]) == 2
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1 and err == ""
    assert str(package / "smollm2-135m-instruct.mlpackage") in lines[0]
    assert "real Core ML" in lines[0] and "cpu-and-ne" in lines[0] and "MIL interpreter" in lines[0]
    assert "needs macOS" in lines[0] and sys.platform in lines[0]


@pytest.mark.parametrize("case, message", [
    ("no_manifest", "no manifest.json"),
    ("onnx", "target 'onnx', not coreml"),
    ("short_context", "shorter than the 49 tokens"),
])
def test_bad_packages_are_one_line_errors(tmp_path, capsys, case, message):
    if case == "no_manifest":
        package = tmp_path / "empty"
        package.mkdir()
    elif case == "onnx":
        package = _package(tmp_path, target="onnx")
    else:
        package = _package(tmp_path, context_length=40)
    assert main(["device-check", str(package)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err

