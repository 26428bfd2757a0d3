"""Reading a package manifest and checking a package's files: wrong types are one-line errors, and the integrity
check never opens anything outside the package, never blocks on a FIFO, and fails whatever was not exported."""

import copy
import hashlib
import json
import os
import signal
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elmexport.errors import ElmExportError
from elmexport.manifest import ManifestError, check_manifest, integrity_problems, read_manifest
from elmexport.models.config import get_preset
from elmexport.passes.quant_config import load_quant_config


def valid_manifest() -> dict:
    return {"target": "onnx", "context_length": 64, "tokenizer": None, "random_weights": True,
            "weights": {"kind": "random", "random_weights": True, "seed": 0},
            "model": {"name": "openelm-tiny", "config": get_preset("openelm-tiny").to_dict()},
            "quantization": load_quant_config("int4").to_dict(), "passes": [{"name": "cleanup"}],
            "files": ["model.onnx"], "checksums": {}}


def write_package(root, files: dict[str, bytes], manifest: dict | None = None) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    manifest = manifest or valid_manifest()
    manifest["checksums"] = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: the integrity check must never block on what a checksum key names."""
    def timeout(*_):
        raise AssertionError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_valid_manifest_reads_back(tmp_path):
    write_package(tmp_path / "pkg", {"model.onnx": b"x"})
    assert read_manifest(tmp_path / "pkg")["target"] == "onnx"


@pytest.mark.parametrize("path, value, words", [
    (("target",), "tflite", "unknown target"),
    (("context_length",), "64", "context_length must be a positive integer"),
    (("context_length",), 0, "context_length must be a positive integer"),
    (("context_length",), True, "context_length must be a positive integer"),
    (("model", "config"), [1, 2], "model.config must be a mapping"),
    (("model", "config", "vocab_size"), "32000", "vocab_size"),
    (("model", "config", "num_query_heads"), [4, "8", 8, 8], "num_query_heads"),
    (("quantization",), "int4", "quantization must be a mapping"),
    (("quantization", "default", "block_size"), "64", "quantization.default.block_size"),
    (("checksums",), ["model.onnx"], "checksums must map"),
    (("checksums",), {"model.onnx": "abc"}, "checksums must map"),
    (("tokenizer",), 3, "tokenizer must be a string"),
])
def test_wrong_types_are_one_line_errors(tmp_path, path, value, words):
    manifest = valid_manifest()
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError) as e:
        read_manifest(tmp_path)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_not_json_and_nan_are_errors(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="corrupt manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(valid_manifest()).replace('"context_length": 64',
                                                                                 '"context_length": NaN'))
    with pytest.raises(ManifestError, match="corrupt manifest"):
        read_manifest(tmp_path)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
FIELDS = [("target",), ("context_length",), ("model",), ("model", "name"), ("model", "config"),
          ("model", "config", "vocab_size"), ("model", "config", "num_query_heads"), ("model", "config", "head_dim"),
          ("model", "config", "rope_theta"), ("model", "config", "eos_token_ids"), ("quantization",),
          ("quantization", "name"), ("quantization", "default"), ("quantization", "default", "mode"),
          ("quantization", "overrides"), ("checksums",), ("tokenizer",), ("weights",), ("weights", "seed"),
          ("passes",), ("files",), ("random_weights",)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=JSON, delete=st.booleans())
def test_fuzzed_fields_are_valid_or_one_line_errors(field, value, delete):
    manifest = copy.deepcopy(valid_manifest())
    node = manifest
    for key in field[:-1]:
        node = node[key]
    if delete:
        node.pop(field[-1], None)
    else:
        node[field[-1]] = value
    try:
        check_manifest(json.loads(json.dumps(manifest)), "manifest.json")
    except ElmExportError as e:
        assert "\n" not in str(e)


def test_good_package_has_no_integrity_problems_and_validation_output_is_ignored(tmp_path):
    manifest = write_package(tmp_path, {"model.onnx": b"abc", "sub/weight.bin": b"w"})
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "report.json").write_text("{}")
    assert integrity_problems(tmp_path, manifest) == []


def test_changed_missing_and_unlisted_files_fail(tmp_path):
    manifest = write_package(tmp_path, {"model.onnx": b"abc", "tokenizer.json": b"{}"})
    (tmp_path / "model.onnx").write_bytes(b"abd")
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "extra.bin").write_bytes(b"?")
    problems = integrity_problems(tmp_path, manifest)
    assert any(p.startswith("model.onnx: changed") for p in problems)
    assert any(p.startswith("tokenizer.json: missing") for p in problems)
    assert any(p.startswith("extra.bin: not listed") for p in problems)


def test_no_checksums_fails(tmp_path):
    manifest = write_package(tmp_path, {"model.onnx": b"abc"})
    del manifest["checksums"]
    assert "no checksums" in integrity_problems(tmp_path, manifest)[0]
    manifest["checksums"] = {}
    assert "no checksums" in integrity_problems(tmp_path, manifest)[0]


def test_keys_outside_the_package_are_never_opened(tmp_path):
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    pkg = tmp_path / "pkg"
    manifest = write_package(pkg, {"model.onnx": b"abc"})
    digest = hashlib.sha256(b"secret").hexdigest()
    manifest["checksums"].update({"../secret": digest, str(outside): digest, "/dev/zero": digest,
                                  "./model.onnx": digest})
    with deadline(10):
        problems = integrity_problems(pkg, manifest)
    for key in ("../secret", str(outside), "/dev/zero", "./model.onnx"):
        assert any(p.startswith(f"checksum key {key!r}") for p in problems), (key, problems)


def test_fifo_and_symlinks_inside_the_package_fail_without_blocking(tmp_path):
    pkg = tmp_path / "pkg"
    manifest = write_package(pkg, {"model.onnx": b"abc"})
    os.mkfifo(pkg / "pipe")
    (pkg / "zero").symlink_to("/dev/zero")
    (pkg / "dir").symlink_to(tmp_path)
    (pkg / "validation").symlink_to(tmp_path)  # the report folder is exempt only as a real folder
    digest = hashlib.sha256(b"").hexdigest()
    manifest["checksums"].update({"pipe": digest, "zero": digest, "dir/secret": digest})
    with deadline(10):
        problems = integrity_problems(pkg, manifest)
    assert any(p.startswith("pipe: not a regular file") for p in problems)
    assert any(p.startswith("zero: a symlink") for p in problems)
    assert any(p.startswith("dir/secret: a symlink") for p in problems)
    assert any(p.startswith("validation: a symlink") for p in problems)
