"""The same export twice gives the same bytes, for every target.

A package's checksums only identify a model if they do not change between identical exports, and a device-side
cache keyed by content (the iOS demo's compiled-model cache) only hits if re-exporting changes nothing. Each
target exports the tiny model with a quantized path twice into folders of the same name under different parents
(the folder name is the package's name, so it legitimately appears in manifest.json); every file must match.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from elmexport.cli import main

CONTEXT, CHUNK = 32, 8
EXPORTS = {
    "coreml": ["--quant", "int4", "--prefill-chunk", str(CHUNK)],
    "onnx": ["--quant", "int4"],
    "executorch": ["--quant", "8da4w", "--max-seq-len", str(CHUNK)],
}


def _export(target: str, out: Path, tokenizer: Path) -> Path:
    code = main([target, "--model", "openelm-tiny", "--random-weights", "--context", str(CONTEXT),
                 "--tokenizer", str(tokenizer), *EXPORTS[target], "--out", str(out)])
    assert code == 0, f"elmexport {target} exited {code}"
    return out


def _digests(package: Path) -> dict[str, str]:
    return {p.relative_to(package).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(package.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=sorted(EXPORTS))
def twice(request, tmp_path_factory, llama2_style_tokenizer):
    target = request.param
    first, second = (_export(target, tmp_path_factory.mktemp(f"{target}-{run}") / "pkg", llama2_style_tokenizer)
                     for run in ("first", "second"))
    return target, first, second


def test_every_file_is_byte_identical(twice):
    target, first, second = twice
    a, b = _digests(first), _digests(second)
    assert a, f"{target}: the export wrote no files"
    assert sorted(a) == sorted(b), f"{target}: different file lists"
    differing = [path for path in a if a[path] != b[path]]
    assert not differing, f"{target}: files differ between identical exports: {differing}"


def test_no_file_names_the_folder_it_was_written_in(twice):
    """Writers build packages in temporary folders; neither that nor the output's absolute path may leak in."""
    target, first, second = twice
    for package in (first, second):
        needles = [str(package).encode(), str(package.parent).encode(), b"elm-coreml-", b".elmexport-tmp-", b"/tmp/"]
        for path in package.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                leaked = [n.decode() for n in needles if n in data]
                assert not leaked, f"{target}: {path.relative_to(package)} contains {leaked}"


@pytest.mark.parametrize("twice", ["coreml"], indirect=True)
def test_rewritten_coreml_package_still_loads_and_generates(twice, capsys):
    """Core ML packages are rewritten after coremltools saves them; coremltools and generate must still read them."""
    _, first, _ = twice
    import coremltools as ct

    model = ct.models.MLModel(str(first / "openelm-tiny.mlpackage"), skip_model_load=True)
    assert sorted(model.get_spec().mlProgram.functions) == ["decode", "prefill"]
    capsys.readouterr()
    assert main(["generate", str(first), "--prompt", "hello", "--max-new-tokens", "4"]) == 0
