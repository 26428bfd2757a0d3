"""The iOS demo's golden files must match what their generator produces now.

ios_demo/Fixtures/make_fixtures.py derives the Swift tests' expected values from the `tokenizers` library
and elmexport/sampling.py; running its --check here makes a drift (a changed sampler, a changed library
or a hand-edited fixture) fail pytest as well as CI's direct call.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "ios_demo" / "Fixtures" / "make_fixtures.py"
SCHEMA = REPO / "ios_demo" / "Schemas" / "device_report.schema.json"
EXAMPLE = REPO / "ios_demo" / "Schemas" / "device_report.example.json"




def _run_check(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300)


def test_committed_fixtures_are_up_to_date():
    result = _run_check(SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_reports_a_changed_fixture(tmp_path):
    # A copy of the relevant tree with one expected id altered must be rejected.
    fixtures = tmp_path / "ios_demo" / "Fixtures"
    shutil.copytree(SCRIPT.parent, fixtures)
    shutil.copytree(REPO / "elmexport", tmp_path / "elmexport", ignore=shutil.ignore_patterns("__pycache__"))
    expected = fixtures / "sampling" / "expected.json"
    data = json.loads(expected.read_text(encoding="utf-8"))
    data["cases"][3]["draws"][0] += 1
    expected.write_text(json.dumps(data), encoding="utf-8")

    result = _run_check(fixtures / "make_fixtures.py")
    assert result.returncode == 1
    assert "sampling/expected.json" in result.stderr


def test_tokenizer_fixtures_exercise_byte_fallback_and_specials():
    # Guards the fixture design: the SentencePiece vocabulary must be small enough that byte fallback
    # (<0x..> ids 3..258) actually occurs, and special tokens must be split out in some cases.
    sp = json.loads((SCRIPT.parent / "sentencepiece_bpe" / "expected.json").read_text(encoding="utf-8"))
    ids = [i for case in sp["cases"] for i in case["ids"]]
    assert sum(3 <= i <= 258 for i in ids) > 50
    assert 2 in ids and 1 in ids
    bl = json.loads((SCRIPT.parent / "bytelevel_bpe" / "expected.json").read_text(encoding="utf-8"))
    assert any(1 in case["ids"] for case in bl["cases"])
    assert len(sp["cases"]) >= 200 and len(bl["cases"]) >= 200


def test_example_device_report_matches_the_schema():
    import jsonschema
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(EXAMPLE.read_text(encoding="utf-8")), schema)


def test_schema_rejects_a_report_without_decode_rounds():
    import jsonschema
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    report = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    del report["rounds"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema)
