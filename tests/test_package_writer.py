"""The package writer never destroys what it did not write, and a kill at any instant leaves a whole package.

The kill tests run a small writer in a child process and SIGKILL it at one point of the write (while filling,
before the swap, right after it, while removing the old package, between the two renames of the fallback
path); the parent then checks that the destination holds exactly the old or exactly the new package, and that
the next export leaves no hidden temporary folder behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from elmexport import atomic_dir, destination
from elmexport.cli import main
from elmexport.destination import DestinationError, check_destination
from elmexport.package import write_package

WRITER = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from elmexport import atomic_dir
    from elmexport.package import write_package

    dest, version, kill_at = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(name, before=False, after=False, nth=1):
        real = getattr(atomic_dir, name)
        calls = []
        def wrapped(*a, **k):
            calls.append(1)
            if before and len(calls) == nth:
                die()
            out = real(*a, **k)
            if after and len(calls) == nth:
                die()
            return out
        setattr(atomic_dir, name, wrapped)

    if kill_at == "before_exchange":
        wrap("exchange", before=True)
    elif kill_at == "after_exchange":
        wrap("exchange", after=True)
    elif kill_at == "removing_old":
        real_rmtree = atomic_dir.shutil.rmtree
        def partial(path, ignore_errors=False):
            files = sorted(p for p in Path(path).rglob("*") if p.is_file())
            files[0].unlink()  # part of the old package is gone, then the kill
            die()
        atomic_dir.shutil.rmtree = partial
    elif kill_at.startswith("fallback"):
        atomic_dir.exchange = lambda a, b: False
        if kill_at == "fallback_between_renames":
            real_rename = os.rename
            calls = []
            def rename(a, b):
                calls.append(1)
                real_rename(a, b)
                if len(calls) == 1:
                    die()
            atomic_dir.os.rename = rename

    with write_package(dest, overwrite=True) as tmp:
        for i in range(3):
            (tmp / f"part{i}.bin").write_text(f"{version}-{i}" * 1000)
            if kill_at == "filling" and i == 1:
                die()
        (tmp / "manifest.json").write_text(json.dumps({"generator": "elmexport", "version": version}))
        time.sleep(hold)
""")


def _run_writer(dest: Path, version: str, kill_at: str = "none", hold: float = 0.0, wait: bool = True):
    cmd = [sys.executable, "-c", WRITER, str(dest), version, kill_at, str(hold)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _version_at(dest: Path) -> str:
    """The one version the destination holds entirely; fails on a mixture or a partial package."""
    manifest = json.loads((dest / "manifest.json").read_text())
    version = manifest["version"]
    files = sorted(p.name for p in dest.iterdir())
    assert files == ["manifest.json", "part0.bin", "part1.bin", "part2.bin"], files
    for i in range(3):
        assert (dest / f"part{i}.bin").read_text() == f"{version}-{i}" * 1000
    return version


def _hidden_leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}."))


@pytest.mark.parametrize("kill_at", ["filling", "before_exchange", "after_exchange", "removing_old",
                                     "fallback_between_renames"])
def test_kill_at_any_stage_leaves_a_whole_package(tmp_path, kill_at):
    dest = tmp_path / "pkg"
    assert _run_writer(dest, "old").returncode == 0
    killed = _run_writer(dest, "new", kill_at)
    assert killed.returncode == -9, killed.stderr
    expected = "old" if kill_at in ("filling", "before_exchange", "fallback_between_renames") else "new"
    if kill_at == "fallback_between_renames":
        # the old package is whole under its backup name until the next writer restores it
        assert not dest.exists()
        assert _run_writer(dest, "again", "filling").returncode == -9
    assert _version_at(dest) == expected
    assert _run_writer(dest, "next").returncode == 0
    assert _version_at(dest) == "next"
    assert _hidden_leftovers(dest) == []


def test_kill_while_creating_a_first_package_leaves_nothing_behind(tmp_path):
    dest = tmp_path / "pkg"
    assert _run_writer(dest, "new", "filling").returncode == -9
    assert not dest.exists()
    assert _run_writer(dest, "new").returncode == 0
    assert _version_at(dest) == "new" and _hidden_leftovers(dest) == []


def test_a_second_export_to_the_same_destination_is_refused_while_the_first_runs(tmp_path):
    dest = tmp_path / "pkg"
    first = _run_writer(dest, "first", hold=4.0, wait=False)
    deadline = time.time() + 30
    while not atomic_dir.lock_path(dest).exists() and time.time() < deadline:
        time.sleep(0.05)
    second = _run_writer(dest, "second")
    assert second.returncode != 0 and "another elmexport process is writing" in second.stderr
    assert first.wait(timeout=60) == 0
    assert _version_at(dest) == "first"
    assert _hidden_leftovers(dest) == []


def test_concurrent_exports_to_sibling_destinations_both_land(tmp_path):
    procs = [_run_writer(tmp_path / f"pkg{i}", f"v{i}", hold=1.0, wait=False) for i in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert [_version_at(tmp_path / f"pkg{i}") for i in range(2)] == ["v0", "v1"]


def test_an_error_inside_the_write_keeps_the_old_package(tmp_path):
    dest = tmp_path / "pkg"
    assert _run_writer(dest, "old").returncode == 0
    with pytest.raises(OSError):
        with write_package(dest, overwrite=True) as tmp:
            (tmp / "part0.bin").write_text("x")
            raise OSError(28, "No space left on device")
    assert _version_at(dest) == "old" and _hidden_leftovers(dest) == []


def _package(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"generator": "elmexport"}))
    return path


@pytest.mark.parametrize("case", ["cwd", "parent", "root", "home", "file", "symlink", "foreign_dir",
                                  "foreign_dir_overwrite", "package_without_overwrite", "weights", "weights_parent",
                                  "readonly", "no_space"])
def test_destination_refusals(tmp_path, monkeypatch, case):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    kwargs = {}
    out = {"cwd": ".", "parent": "..", "root": "/", "home": str(tmp_path / "home")}.get(case)
    if case == "file":
        out = "model.bin"
        Path(out).write_text("user data")
    elif case == "symlink":
        _package(tmp_path / "real")
        os.symlink(tmp_path / "real", "link")
        out = "link"
    elif case.startswith("foreign_dir"):
        Path("mine").mkdir()
        Path("mine/notes.txt").write_text("user data")
        out, kwargs = "mine", {"overwrite": case.endswith("overwrite")}
    elif case == "package_without_overwrite":
        out = str(_package(work / "pkg"))
    elif case.startswith("weights"):
        ckpt = work / "ckpt"
        ckpt.mkdir()
        (ckpt / "config.json").write_text("{}")
        out = "ckpt" if case == "weights" else "."
        kwargs = {"protected": (str(ckpt),)}
        if case == "weights_parent":
            out = str(work)
            monkeypatch.chdir(tmp_path)
    elif case == "readonly":
        out = "new"
        monkeypatch.setattr(destination.os, "access", lambda path, mode: False)
    elif case == "no_space":
        out = "new"
        monkeypatch.setattr(destination.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 << 20})())
        kwargs = {"estimated_bytes": 100 << 20}
    with pytest.raises(DestinationError) as e:
        check_destination(out, **kwargs)
    message = str(e.value)
    assert "\n" not in message and "--out" in message
    if case == "no_space":
        assert "10 MiB free" in message and "164 MiB" in message
    assert not (work / "new").exists()
    if case == "file":
        assert Path("model.bin").read_text() == "user data"
    if case.startswith("foreign_dir"):
        assert Path("mine/notes.txt").read_text() == "user data"


def test_allowed_destinations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_destination("fresh/deeper") == tmp_path / "fresh" / "deeper"
    Path("empty").mkdir()
    assert check_destination("empty") == tmp_path / "empty"
    _package(tmp_path / "pkg")
    assert check_destination("pkg", overwrite=True) == tmp_path / "pkg"


def test_cli_refuses_before_any_slow_step_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    """--out naming the weights folder, the current folder or its parent: exit 2 at once, nothing touched."""
    from elmexport.models.config import get_preset
    from tests.checkpoints import openelm_config_json, openelm_hf_tensors, write_hf_dir

    cfg = get_preset("openelm-tiny")
    ckpt = write_hf_dir(tmp_path / "ckpt", openelm_hf_tensors(cfg), openelm_config_json(cfg))
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    monkeypatch.chdir(ckpt)
    for out in (str(ckpt), ".", ".."):
        t0 = time.perf_counter()
        code = main(["onnx", "--weights", str(ckpt), "--out", out])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: --out") and err.count("\n") == 1, err
        assert time.perf_counter() - t0 < 5
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before


def test_cli_export_twice_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "pkg"
    args = ["onnx", "--model", "openelm-tiny", "--random-weights", "--context", "64", "--out", str(out)]
    assert main(args) == 0
    first = (out / "manifest.json").read_bytes()
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert (out / "manifest.json").read_bytes() == first
    assert _hidden_leftovers(out) == []
