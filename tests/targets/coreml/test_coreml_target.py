"""Core ML target on openelm-tiny: packages run through the MIL interpreter and match the optimised IR.

Bound: the package computes in fp16 (11-bit mantissa, ~5e-4 relative per op). Over 4 layers of ~40 ops the
logits (|logit| <~ 2 here) drift by a few 1e-3; we assert max abs error <= 2e-2, i.e. ~7x headroom over the
measured ~3e-3, and that the KV-cache states equal the IR's cache buffers within 1e-2.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from elmexport.manifest import read_manifest
from elmexport.pipeline import build_ir
from elmexport.targets.coreml.runner import open_runner
from elmexport.weights.spec import ModelSpec

CONTEXT, CHUNK = 64, 16


def _export(tmp, quant, tokenizer):
    out = tmp / f"tiny-{quant}"
    cmd = [sys.executable, "-m", "elmexport.cli", "coreml", "--model", "openelm-tiny", "--random-weights",
           "--context", str(CONTEXT), "--prefill-chunk", str(CHUNK), "--quant", quant, "--tokenizer", str(tokenizer),
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def packages(tmp_path_factory, llama2_style_tokenizer):
    tmp = tmp_path_factory.mktemp("coreml")
    return {q: _export(tmp, q, llama2_style_tokenizer) for q in ("none", "int4", "palettize4")}


def _ir(quant):
    spec = ModelSpec(model="openelm-tiny", random_weights=True, context=CONTEXT, tokenizer_mode="skip")
    return build_ir(spec, quant, log=lambda *a: None).ir


@pytest.mark.parametrize("quant", ["none", "int4", "palettize4"])
def test_interpreter_matches_ir_prefill_and_decode(packages, quant):
    pkg = packages[quant]
    manifest = read_manifest(pkg)
    runner = open_runner(pkg, manifest)
    ir = _ir(quant)
    ref = ir.runner()
    ref.reset()
    prompt = list(range(100, 120))  # 20 tokens: one full chunk + a padded one
    # generation's path: two prefill calls, the second returning the row of its 4th (last real) token
    last = runner.forward_last(prompt, 0)
    assert np.abs(last - ref.forward(prompt, 0)[-1]).max() <= 2e-2
    runner.reset()
    ref.reset()
    # every row (validation's path): one decode call per token in a package without verify
    got, want = [runner.forward(prompt, 0)], [ref.forward(prompt, 0)]
    token = int(got[0][-1].argmax())
    for step in range(8):
        pos = len(prompt) + step
        got.append(runner.forward([token], pos))
        want.append(ref.forward([token], pos))
        token = int(want[-1][-1].argmax())
    got, want = np.concatenate(got), np.concatenate(want)
    err = np.abs(got - want).max()
    assert err <= 2e-2, err
    assert np.abs(want).max() > 0.1
    # the states hold what the IR's caches hold
    for name in ir.cache_names():
        state = runner.model.read_state(runner.state, name.replace(".", "_"))
        buf = ir.gm.get_buffer(name).numpy()
        assert np.abs(np.asarray(state, dtype=np.float32)[:, :, :28] - buf[:, :, :28]).max() <= 1e-2, name


def test_package_layout_metadata_and_shared_weights(packages):
    pkg = packages["int4"]
    manifest = read_manifest(pkg)
    assert (pkg / "tokenizer.json").exists() and (pkg / manifest["model_file"]).is_dir()
    assert manifest["functions"] == ["prefill", "decode"] and manifest["random_weights"] is True
    assert manifest["prefill_logits"] == "row" and "verify_tokens" not in manifest
    assert manifest["size_multifunction_bytes"] < 0.6 * manifest["size_separate_functions_bytes"]
    ops = manifest["mil_op_counts"]["decode"]
    assert ops.get("constexpr_blockwise_shift_scale", 0) == 4 * 4 + 1  # tied table stored once
    assert ops.get("scaled_dot_product_attention") == 4 and ops.get("slice_update") == 8
    # on disk, coreml_update_state is stored as write_state + read_state
    assert ops.get("write_state") == 8 and ops.get("read_state") == 16
    assert read_manifest(packages["palettize4"])["mil_op_counts"]["decode"].get("constexpr_lut_to_dense") == 17
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((pkg / manifest["model_file"] / "Data/com.apple.CoreML/model.mlmodel").read_bytes())
    meta = dict(spec.description.metadata.userDefined)
    assert meta["elmexport.quantization"] == "int4" and meta["elmexport.random_weights"] == "true"
    assert meta["elmexport.num_kv_heads"] == "1,2,2,2" and meta["elmexport.context_length"] == str(CONTEXT)


def test_corrupted_package_gives_one_line_error(packages, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(packages["none"], broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    weights = broken / manifest["model_file"] / "Data/com.apple.CoreML/weights/weight.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    proc = subprocess.run([sys.executable, "-m", "elmexport.cli", "generate", str(broken), "--prompt", "hi"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "weight" in proc.stderr.lower() and proc.stderr.strip().startswith("error:")


def test_bad_option_leaves_no_package(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "elmexport.cli", "coreml", "--model", "openelm-tiny",
                           "--random-weights", "--prefill-chunk", "1", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "--prefill-chunk" in proc.stderr and not out.exists()
