"""The package cache: an identical export is reused without building, anything that changes the package misses,
a damaged entry is rebuilt, --no-cache builds, and the cache never grows past its limit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import elmexport
from elmexport import artifact_cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("ELMEXPORT_NO_CACHE", raising=False)
    monkeypatch.setenv("ELMEXPORT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / artifact_cache.ENTRY_DIR


@pytest.fixture
def builds(monkeypatch):
    """Counts the IR builds, the expensive part a cache hit must skip."""
    import elmexport.pipeline

    calls = []
    real = elmexport.pipeline.build_ir

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(elmexport.pipeline, "build_ir", counting)
    return calls


def _export(tmp_path, name, tokenizer, **kw):
    opts = dict(random_weights=True, context=32, tokenizer=tokenizer)
    opts.update(kw)
    return elmexport.export("openelm-tiny", "onnx", out=tmp_path / name, **opts)


def _files(package) -> dict[str, bytes]:
    return {str(p.relative_to(package.path)): p.read_bytes() for p in sorted(package.path.rglob("*")) if p.is_file()}


def test_an_identical_export_is_reused_byte_for_byte(tmp_path, cache_dir, builds, llama2_style_tokenizer):
    first = _export(tmp_path, "a", llama2_style_tokenizer)
    assert len(builds) == 1 and len(list(cache_dir.iterdir())) == 1
    lines = []
    second = _export(tmp_path, "b", llama2_style_tokenizer, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert len(builds) == 1, "the second export built the IR again"
    assert any("reused the cached build" in line for line in lines)
    assert _files(first) == _files(second)
    # the reused package is a working one, not only the same bytes
    assert len(elmexport.load(second).generate("hello", max_new_tokens=3, chat=False).tokens) == 3


@pytest.mark.parametrize("change", [{"seed": 1}, {"context": 48}, {"quant": "int8"}, {"accuracy_level": 0}])
def test_anything_that_changes_the_package_misses(tmp_path, cache_dir, builds, llama2_style_tokenizer, change):
    _export(tmp_path, "a", llama2_style_tokenizer)
    _export(tmp_path, "b", llama2_style_tokenizer, **change)
    assert len(builds) == 2
    assert len(list(cache_dir.iterdir())) == 2


def test_a_changed_tokenizer_file_misses(tmp_path, cache_dir, builds, llama2_style_tokenizer):
    tok = tmp_path / "tokenizer.json"
    tok.write_bytes(llama2_style_tokenizer.read_bytes())
    _export(tmp_path, "a", tok)
    os.utime(tok, ns=(tok.stat().st_atime_ns, tok.stat().st_mtime_ns + 10**9))
    _export(tmp_path, "b", tok)
    assert len(builds) == 2


def test_a_damaged_entry_is_rebuilt_not_shipped(tmp_path, cache_dir, builds, llama2_style_tokenizer):
    first = _export(tmp_path, "a", llama2_style_tokenizer)
    (entry,) = cache_dir.iterdir()
    with open(entry / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff\xff\xff")
    second = _export(tmp_path, "b", llama2_style_tokenizer)
    assert len(builds) == 2
    assert _files(first) == _files(second)


def test_no_cache_builds_and_leaves_the_cache_alone(tmp_path, cache_dir, builds, llama2_style_tokenizer):
    _export(tmp_path, "a", llama2_style_tokenizer, cache=False)
    assert len(builds) == 1 and not cache_dir.exists()
    _export(tmp_path, "b", llama2_style_tokenizer)
    _export(tmp_path, "c", llama2_style_tokenizer, cache=False)
    assert len(builds) == 3


def test_the_environment_switch_turns_it_off(tmp_path, cache_dir, builds, llama2_style_tokenizer, monkeypatch):
    monkeypatch.setenv("ELMEXPORT_NO_CACHE", "1")
    _export(tmp_path, "a", llama2_style_tokenizer)
    _export(tmp_path, "b", llama2_style_tokenizer)
    assert len(builds) == 2 and not cache_dir.exists()


def test_the_least_recently_used_entry_goes_past_the_limit(tmp_path, cache_dir, llama2_style_tokenizer, monkeypatch):
    _export(tmp_path, "a", llama2_style_tokenizer, seed=1)
    (oldest,) = cache_dir.iterdir()
    os.utime(oldest, (1, 1))
    entry_bytes = sum(f.stat().st_size for f in oldest.rglob("*") if f.is_file())
    monkeypatch.setenv("ELMEXPORT_CACHE_MAX_GIB", str(1.5 * entry_bytes / 2**30))
    _export(tmp_path, "b", llama2_style_tokenizer, seed=2)
    assert [p.name for p in cache_dir.iterdir()] != [oldest.name]
    assert len(list(cache_dir.iterdir())) == 1 and not oldest.exists()


def test_only_its_own_entries_are_ever_dropped(tmp_path, cache_dir, llama2_style_tokenizer, monkeypatch):
    cache_dir.mkdir(parents=True)
    mine = cache_dir / "notes"
    mine.mkdir()
    (mine / "manifest.json").write_text("{}")
    monkeypatch.setenv("ELMEXPORT_CACHE_MAX_GIB", "0")
    _export(tmp_path, "a", llama2_style_tokenizer)
    assert (mine / "manifest.json").exists()


def test_the_cli_flag(tmp_path, cache_dir, llama2_style_tokenizer):
    cmd = [sys.executable, "-m", "elmexport", "onnx", "--model", "openelm-tiny", "--random-weights", "--context", "32",
           "--tokenizer", str(llama2_style_tokenizer)]
    env = {**os.environ, "ELMEXPORT_CACHE": str(cache_dir.parent)}
    env.pop("ELMEXPORT_NO_CACHE", None)
    first = subprocess.run(cmd + ["--out", str(tmp_path / "a")], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(cmd + ["--out", str(tmp_path / "b")], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "reused the cached build" in again.stdout + again.stderr
    fresh = subprocess.run(cmd + ["--out", str(tmp_path / "c"), "--no-cache"], env=env, capture_output=True, text=True)
    assert fresh.returncode == 0 and "reused" not in fresh.stdout + fresh.stderr
