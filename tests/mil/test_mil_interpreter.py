"""The numpy MIL interpreter runs real coremltools output and agrees with torch.

Every expected value comes from torch eager, from coremltools' own reference code, or from a plain numpy
formula written here; none comes from the interpreter. Models are converted with the project's export path
(torch.export -> run_decompositions -> ct.convert, iOS18) and saved, and the interpreter reads the saved package.

Tolerances: fp32 programs compute in float32 like torch, differing only in summation order -> 1e-4 absolute on
O(1..10) values. fp16 programs round every op result to float16 (unit roundoff 4.9e-4) through a few dozen
ops, so we allow 1% of the output's largest magnitude; a real bug (wrong mask, head order, position) shows up
as an O(1) relative error, far above that.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from elmexport.targets.coreml.mil import (
    OPS,
    MILInputError,
    MILPackageError,
    MILProgramRunner,
    UnsupportedMILOp,
    open_coreml_runner,
    supported_ops,
)

from .mil_models import AttentionBlock, TinyCachedLM, convert

ct = pytest.importorskip("coremltools")

# coremltools/torch.export emit hundreds of deprecation notices per conversion; they are not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

FP16_REL = 1e-2


def assert_close_fp16(got, want, what=""):
    got, want = np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32)
    assert got.shape == want.shape, what
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= FP16_REL * scale, f"{what}: max error {err} > {FP16_REL} * {scale}"


def op_types(runner, function_name=None):
    fn = runner.program.functions[function_name or runner.function_name]
    return {op.type for op in fn.block.operations}


# ------------------------------------------------------------------------------------ attention block


@pytest.mark.parametrize("precision,mask", [("fp32", "bool"), ("fp16", "float")])
def test_attention_block_matches_torch(tmp_path, precision, mask):
    torch.manual_seed(0)
    model = AttentionBlock(mask=mask).eval()
    x = torch.randn(1, 6, 32)
    path = tmp_path / "block.mlpackage"
    convert(model, (x,), [("x", (1, 6, 32), np.float32)], precision).save(str(path))

    runner = MILProgramRunner(path)
    assert runner.input_names == ["x"]
    assert "scaled_dot_product_attention" in op_types(runner)
    (name,) = runner.output_names
    got = runner.predict({"x": x.numpy()})[name]
    with torch.no_grad():
        want = model(x).numpy()
    if precision == "fp32":
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    else:
        assert got.dtype == np.float16
        assert_close_fp16(got, want, "fp16 attention block")


def test_flexible_sequence_length(tmp_path):
    """A RangeDim input (dynamic T in torch.export) runs at any allowed length and rejects others."""
    torch.manual_seed(0)
    model = AttentionBlock().eval()
    seq = torch.export.Dim("seq", min=1, max=16)
    with torch.no_grad():
        ep = torch.export.export(model, (torch.randn(1, 6, 32),), dynamic_shapes={"x": {1: seq}})
    mlmodel = ct.convert(
        ep.run_decompositions({}),
        minimum_deployment_target=ct.target.iOS18,
        compute_precision=ct.precision.FLOAT32,
        inputs=[ct.TensorType(name="x", shape=(1, ct.RangeDim(1, 16, default=6), 32), dtype=np.float32)],
        skip_model_load=True,
    )
    mlmodel.save(str(tmp_path / "flex.mlpackage"))
    runner = MILProgramRunner(tmp_path / "flex.mlpackage")
    spec = runner.describe()["inputs"]["x"]
    assert spec["shape"] == (1, None, 32) and spec["range"][1] == (1, 16)
    for t in (1, 6, 16):
        x = torch.randn(1, t, 32)
        with torch.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(next(iter(runner.predict({"x": x.numpy()}).values())), want, atol=1e-4, rtol=1e-4)
    with pytest.raises(MILInputError, match=r"input 'x' dim 1 is 17, outside its range \[1, 16\]"):
        runner.predict({"x": np.zeros((1, 17, 32), np.float32)})


# ------------------------------------------------------------------------------------ stateful KV cache


def _convert_cached(model, t, path):
    convert(
        model,
        (torch.zeros(1, t, dtype=torch.long), torch.tensor([0], dtype=torch.int32)),
        [("input_ids", (1, t), np.int32), ("pos", (1,), np.int32)],
        "fp16",
        [(n, tuple(getattr(model, n).shape)) for n in model.state_names()],
    ).save(str(path))
    return path


def _fresh_copy(model, **kwargs):
    ref = TinyCachedLM(**kwargs).eval()
    ref.load_state_dict(model.state_dict())
    return ref


@pytest.mark.parametrize("cache,write_op", [("slice", "slice_update"), ("index_put", "scatter_nd")])
def test_stateful_kv_cache_matches_torch(tmp_path, cache, write_op):
    torch.manual_seed(1)
    model = TinyCachedLM(cache=cache).eval()
    reference = _fresh_copy(model, cache=cache)
    t = 3
    runner = MILProgramRunner(_convert_cached(model, t, tmp_path / "cached.mlpackage"))

    ops = op_types(runner)
    assert {"read_state", "write_state", write_op} <= ops, ops
    assert sorted(runner.state_names) == sorted(model.state_names())
    state = runner.make_state()
    assert all(not v.any() and v.dtype == np.float16 for v in state.values())
    k0 = state["k_cache_0"]

    gen = torch.Generator().manual_seed(2)
    for step in range(3):
        ids = torch.randint(0, 64, (1, t), generator=gen)
        pos = torch.tensor([step * t], dtype=torch.int32)
        with torch.no_grad():
            want = reference(ids, pos).numpy()
        out = runner.predict({"input_ids": ids.numpy().astype(np.int32), "pos": pos.numpy()}, state=state)
        assert_close_fp16(out[runner.output_names[0]], want, f"logits after call {step}")
        for name in model.state_names():
            assert_close_fp16(state[name], getattr(reference, name).numpy(), f"state {name} after call {step}")
    assert state["k_cache_0"] is k0, "predict must update the caller's state arrays in place"
    written = 3 * t
    assert np.any(state["k_cache_0"] != 0)
    untouched = state["k_cache_0"][:, :, written:] if cache == "slice" else state["k_cache_0"][written:]
    assert not untouched.any(), "cache slots past the written positions must stay zero"


# ------------------------------------------------------------------------------------ multifunction


def test_multifunction_prefill_then_decode_share_state(tmp_path):
    torch.manual_seed(3)
    kwargs = dict(cache="index_put", max_len=12)
    model = TinyCachedLM(**kwargs).eval()
    prefill = _convert_cached(model, 4, tmp_path / "prefill.mlpackage")
    decode = _convert_cached(model, 1, tmp_path / "decode.mlpackage")
    desc = ct.utils.MultiFunctionDescriptor()
    desc.add_function(str(prefill), src_function_name="main", target_function_name="prefill")
    desc.add_function(str(decode), src_function_name="main", target_function_name="decode")
    desc.default_function_name = "prefill"
    combined = tmp_path / "combined.mlpackage"
    ct.utils.save_multifunction(desc, str(combined))

    runner = MILProgramRunner(combined)
    assert sorted(runner.function_names) == ["decode", "prefill"]
    assert runner.function_name == "prefill"
    assert runner.describe("decode")["inputs"]["input_ids"]["shape"] == (1, 1)
    state = runner.make_state()

    reference = _fresh_copy(model, **kwargs)
    ids = torch.randint(0, 64, (1, 7), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = [reference(ids[:, :4], torch.tensor([0], dtype=torch.int32))]
        want += [reference(ids[:, i : i + 1], torch.tensor([i], dtype=torch.int32)) for i in range(4, 7)]

    def feeds(lo, hi):
        return {"input_ids": ids[:, lo:hi].numpy().astype(np.int32), "pos": np.array([lo], dtype=np.int32)}

    got = [runner.predict(feeds(0, 4), state=state)]
    got += [runner.predict(feeds(i, i + 1), state=state, function_name="decode") for i in range(4, 7)]
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close_fp16(next(iter(g.values())), w.numpy(), f"call {i}")
    for name in model.state_names():
        assert_close_fp16(state[name], getattr(reference, name).numpy(), f"state {name}")

    decode_runner = MILProgramRunner(combined, function_name="decode")
    assert decode_runner.input_names == ["input_ids", "pos"]
    # save_multifunction de-duplicates the weights; the interpreter must not load them twice either.
    # (<=, not ==: save_multifunction also merges identical small constants such as zero biases.)
    single = MILProgramRunner(prefill).weight_cache_bytes
    assert 0.9 * single <= runner.weight_cache_bytes <= single
    with pytest.raises(MILInputError, match="no function 'nope'"):
        MILProgramRunner(combined, function_name="nope")


# ------------------------------------------------------------------------------------ compressed weights


class TwoLinear(torch.nn.Module):
    """Two linear layers (one with bias) so every compression mode has two weights to decode."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(64, 96, bias=False)
        self.b = torch.nn.Linear(96, 32)

    def forward(self, x):
        return self.b(torch.nn.functional.silu(self.a(x)))


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """A two-layer fp16 model compressed four ways with coremltools.optimize, each saved as a package.

    Returns (torch model, {kind: (compressed MLModel, package path)})."""
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OpMagnitudePrunerConfig,
        OpPalettizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
        palettize_weights,
        prune_weights,
    )

    torch.manual_seed(5)
    model = TwoLinear().eval()
    base = convert(model, (torch.randn(2, 64),), [("x", (2, 64), np.float32)], "fp16")
    tmp = tmp_path_factory.mktemp("compressed")

    def cfg(op_config):
        return OptimizationConfig(global_config=op_config)

    pruned = prune_weights(base, cfg(OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=1)))
    variants = {
        "palettized": palettize_weights(
            base,
            cfg(OpPalettizerConfig(mode="kmeans", nbits=4, granularity="per_grouped_channel", group_size=8,
                                   weight_threshold=1)),
        ),
        "int4": linear_quantize_weights(
            base,
            cfg(OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int4", granularity="per_block",
                                        block_size=32, weight_threshold=1)),
        ),
        "pruned": pruned,
        "pruned+palettized": palettize_weights(
            pruned,
            cfg(OpPalettizerConfig(mode="kmeans", nbits=2, granularity="per_tensor", weight_threshold=1)),
            joint_compression=True,
        ),
    }
    out = {}
    for kind, mlmodel in variants.items():
        path = tmp / f"{kind.replace('+', '_')}.mlpackage"
        mlmodel.save(str(path))
        out[kind] = (mlmodel, path)
    return model, out


def _constexpr_ops(mlmodel, op_type):
    ops = mlmodel._mil_program.functions["main"].find_ops(op_type=op_type)
    assert len(ops) == 2, f"expected both weights compressed with {op_type}"
    return {op.outputs[0].name: op for op in ops}


def _check_compressed(path, torch_model, decoded: dict, seed, rel_to_original):
    """Interpreter's dequantised weights == ``decoded`` exactly (both fp16), and its output == torch run with
    the decoded weights (fp16 tolerance); the compressed model also stays near the original model."""
    runner = MILProgramRunner(path, keep_constants=True)
    consts = runner.constants()
    patched = TwoLinear().eval()
    patched.load_state_dict(torch_model.state_dict())
    for name, want in decoded.items():
        got = consts[name]
        assert got.shape == want.shape and got.dtype == np.float16
        np.testing.assert_array_equal(got, want.astype(np.float16), err_msg=name)
        layer = patched.a if "_a_" in name else patched.b
        layer.weight.data = torch.from_numpy(want.astype(np.float32))
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(seed))
    out = next(iter(runner.predict({"x": x.numpy()}).values()))
    with torch.no_grad():
        assert_close_fp16(out, patched(x).numpy(), "output vs torch with the decoded weights")
        original = torch_model(x).numpy()
    rel = np.abs(out.astype(np.float32) - original).max() / np.abs(original).max()
    assert rel < rel_to_original, f"compressed output is {rel:.3f} (relative) away from the original model"
    return runner


def test_palettized_weights_decode(compressed):
    model, variants = compressed
    mlmodel, path = variants["palettized"]
    decoded = {}
    for name, op in _constexpr_ops(mlmodel, "constexpr_lut_to_dense").items():
        idx, lut = op.indices.val.astype(np.int64), op.lut.val  # lut: [rows/8, 1, 16, 1]
        assert lut.shape[1:] == (1, 16, 1) and idx.shape[0] // lut.shape[0] == 8
        rows = np.arange(idx.shape[0])[:, None] // 8
        decoded[name] = lut[rows, 0, idx, 0]
        np.testing.assert_array_equal(decoded[name], op.materialized_val_inference())  # coremltools agrees
    runner = _check_compressed(path, model, decoded, 6, 0.15)
    assert "constexpr_lut_to_dense" in op_types(runner)


def test_int4_blockwise_quantized_weights_decode(compressed):
    model, variants = compressed
    mlmodel, path = variants["int4"]
    decoded = {}
    for name, op in _constexpr_ops(mlmodel, "constexpr_blockwise_shift_scale").items():
        data, scale = op.data.val.astype(np.float32), op.scale.val.astype(np.float32)
        assert data.min() >= -8 and data.max() <= 7
        assert data.shape[1] // scale.shape[1] == 32
        offset = 0.0 if op.offset is None else np.repeat(op.offset.val.astype(np.float32), 32, axis=1)
        decoded[name] = np.repeat(scale, 32, axis=1) * (data - offset)
    runner = _check_compressed(path, model, decoded, 7, 0.3)
    assert "constexpr_blockwise_shift_scale" in op_types(runner)


@pytest.mark.parametrize("kind", ["pruned", "pruned+palettized"])
def test_sparse_weights_decode(compressed, kind):
    model, variants = compressed
    mlmodel, path = variants[kind]
    decoded = {}
    for name, op in _constexpr_ops(mlmodel, "constexpr_sparse_to_dense").items():
        if kind == "pruned+palettized":  # nonzero values: a per-tensor 2-bit LUT applied to sparse indices
            lut_op = op.nonzero_data.op
            assert lut_op.op_type == "constexpr_lut_to_sparse"
            mask = lut_op.indices_mask.val != 0
            values = lut_op.lut.val[0, 0, lut_op.indices_nonzero_data.val.astype(np.int64), 0]
        else:
            mask, values = op.mask.val != 0, op.nonzero_data.val
        dense = np.zeros(mask.shape, np.float32)
        dense[mask] = values
        assert 0.4 < 1 - mask.mean() < 0.6
        decoded[name] = dense
    runner = _check_compressed(path, model, decoded, 8, 1.0)
    assert "constexpr_sparse_to_dense" in op_types(runner)


def test_blob_reader_agrees_with_coremltools(compressed):
    """Our pure-python weight.bin reader vs coremltools' C++ BlobReader on fp16, uint4, int4 and uint1 blobs."""
    from coremltools.libmilstoragepython import _BlobStorageReader
    from coremltools.proto import Model_pb2

    from elmexport.targets.coreml.mil.blob import BlobFile

    readers = {10: "read_fp16_data", 11: "read_float_data", 35: "read_uint4_data", 25: "read_int4_data",
               36: "read_uint2_data", 37: "read_uint1_data"}
    seen = set()
    for _, path in compressed[1].values():
        spec = Model_pb2.Model.FromString((path / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes())
        weights = str(path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin")
        ours, theirs = BlobFile(weights), _BlobStorageReader(weights)
        for op in spec.mlProgram.functions["main"].block_specializations["CoreML8"].operations:
            values = list(op.attributes.values()) + [b.value for a in op.inputs.values() for b in a.arguments]
            for v in values:
                if v.WhichOneof("value") != "blobFileValue":
                    continue
                tt = v.type.tensorType
                count = int(np.prod([d.constant.size for d in tt.dimensions]))
                want = np.asarray(getattr(theirs, readers[tt.dataType])(v.blobFileValue.offset))
                want = want.view(np.float16) if tt.dataType == 10 else want
                got = ours.read(v.blobFileValue.offset, tt.dataType, (count,))
                np.testing.assert_array_equal(got, want.reshape(-1)[:count].astype(got.dtype))
                seen.add(tt.dataType)
    assert {10, 35, 25, 37} <= seen, seen


# ------------------------------------------------------------------------------------ ops built with MIL


def _save_mil_program(prog, path, precision=None):
    mlmodel = ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS18,
        compute_precision=precision or ct.precision.FLOAT32,
        pass_pipeline=ct.PassPipeline.EMPTY,
        skip_model_load=True,
    )
    mlmodel.save(str(path))
    return path


_EINSUM_Y = np.linspace(-1, 1, 8 * 3 * 5, dtype=np.float32).reshape(8, 3, 5)
_CONV_W = np.linspace(-1, 1, 4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)


def test_builder_ops_match_numpy_and_torch(tmp_path):
    """Ops LLM exports emit less often (or differently), built directly with the MIL builder."""
    from coremltools.converters.mil import Builder as mb

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(2, 3, 8)),
            mb.TensorSpec(shape=(2, 3, 4), dtype=ct.converters.mil.mil.types.int32),
        ],
        opset_version=ct.target.iOS18,
    )
    def prog(x, idx):
        return (
            mb.band_part(x=x, lower=1, upper=0, name="band"),
            mb.cumsum(x=x, axis=2, exclusive=True, reverse=True, name="cumsum"),
            mb.gather_along_axis(x=x, indices=idx, axis=2, name="gather_axis"),
            mb.scatter_along_axis(
                data=x, indices=idx, axis=2, mode="add", name="scatter_axis",
                updates=mb.mul(x=mb.slice_by_size(x=x, begin=[0, 0, 0], size=[-1, -1, 4]), y=10.0),
            ),
            mb.topk(x=x, k=3, axis=-1, ascending=False, name="topk")[0],
            mb.l2_norm(x=x, epsilon=1e-6, name="l2"),
            mb.reduce_log_sum_exp(x=x, axes=[1], keep_dims=False, name="lse"),
            mb.reduce_sum_square(x=x, axes=[-1], keep_dims=True, name="sumsq"),
            mb.clip(x=x, alpha=-0.5, beta=0.5, name="clip"),
            mb.gelu(x=x, mode="TANH_APPROXIMATION", name="gelu_tanh"),
            mb.gelu(x=x, mode="EXACT", name="gelu_exact"),
            mb.erf(x=x, name="erf"),
            mb.pad(x=x, pad=[1, 2], mode="reflect", name="pad"),
            mb.einsum(values=(x, mb.const(val=_EINSUM_Y)), equation="chw,whu->chu", name="einsum"),
            mb.matmul(x=x, y=x, transpose_y=True, name="matmul_t"),
            mb.select(cond=mb.greater(x=x, y=0.0), a=x, b=mb.mul(x=x, y=0.1), name="select"),
            mb.concat(values=mb.split(x=x, num_splits=2, axis=2), axis=0, interleave=True, name="interleave"),
            mb.tile(x=x, reps=[1, 2, 1], name="tile"),
            mb.reduce_argmax(x=x, axis=-1, keep_dims=False, name="argmax"),
            mb.softmax(x=x, axis=1, name="softmax"),
            mb.conv(x=x, weight=_CONV_W, pad_type="same", name="conv"),
            mb.range_1d(end=mb.reduce_argmax(x=mb.reshape(x=idx, shape=[-1]), axis=0), start=0, step=1, name="range"),
        )

    runner = MILProgramRunner(_save_mil_program(prog, tmp_path / "ops.mlpackage"))
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    idx = rng.integers(-8, 8, size=(2, 3, 4)).astype(np.int32)
    out = runner.predict({"x": x, "idx": idx})
    t = torch.from_numpy(x)
    ti = torch.from_numpy(np.where(idx < 0, idx + 8, idx).astype(np.int64))

    band = np.tril(np.ones((3, 8), dtype=bool)) & ~np.tril(np.ones((3, 8), dtype=bool), -2)
    want = {
        "band": np.where(band, x, 0),
        "cumsum": np.flip(np.cumsum(np.flip(x, 2), 2), 2) - x,
        "gather_axis": torch.gather(t, 2, ti).numpy(),
        "scatter_axis": t.scatter_add(2, ti, t[..., :4] * 10).numpy(),
        "topk_0": torch.topk(t, 3, dim=-1).values.numpy(),
        "l2": x / np.sqrt((x.reshape(-1) ** 2).sum() + 1e-6),
        "lse": torch.logsumexp(t, dim=1).numpy(),
        "sumsq": (x**2).sum(-1, keepdims=True),
        "clip": np.clip(x, -0.5, 0.5),
        "gelu_tanh": torch.nn.functional.gelu(t, approximate="tanh").numpy(),
        "gelu_exact": torch.nn.functional.gelu(t).numpy(),
        "erf": torch.erf(t).numpy(),
        "pad": np.pad(x, [(0, 0), (0, 0), (1, 2)], mode="reflect"),
        "einsum": np.einsum("chw,whu->chu", x, _EINSUM_Y),
        "matmul_t": x @ x.transpose(0, 2, 1),
        "select": np.where(x > 0, x, x * 0.1),
        "interleave": np.stack([x[..., :4], x[..., 4:]], axis=1).reshape(4, 3, 4),
        "tile": np.tile(x, (1, 2, 1)),
        "argmax": x.argmax(-1),
        "softmax": torch.softmax(t, dim=1).numpy(),
        "conv": torch.nn.functional.conv1d(
            t, torch.from_numpy(_CONV_W), padding="same"
        ).numpy(),
        "range": np.arange(int(idx.reshape(-1).argmax())),
    }
    assert set(out) == set(want)
    for name, w in want.items():
        np.testing.assert_allclose(out[name], w, atol=2e-5, rtol=1e-5, err_msg=name)


def test_builder_indexing_ops_match_numpy(tmp_path):
    """Gather/scatter/slicing variants with negative indices, strides, masks and batch dims."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 5, 6)), mb.TensorSpec(shape=(2, 3), dtype=types.int32)],
        opset_version=ct.target.iOS18,
    )
    def prog(x, idx):
        rows = mb.slice_by_index(x=idx, begin=[0, 0], end=[1, 3], squeeze_mask=[True, False])  # [3]
        return (
            mb.gather(x=x, indices=rows, axis=-1, name="gather_neg"),
            mb.gather(x=x, indices=idx, axis=1, batch_dims=1, name="gather_batch"),
            mb.gather_nd(x=x, indices=mb.const(val=np.array([[0, 4], [1, -1]], np.int32)), name="gather_nd"),
            mb.scatter_nd(
                data=x, indices=mb.const(val=np.array([[1, 0], [0, 2]], np.int32)),
                updates=mb.fill(shape=[2, 6], value=7.0), mode="update", name="scatter_nd",
            ),
            mb.scatter(data=x, indices=rows, updates=mb.fill(shape=[2, 5, 3], value=1.0), axis=2, mode="add",
                       name="scatter_add"),
            mb.slice_by_index(x=x, begin=[1, -1, 0], end=[2, 0, 6], stride=[1, -2, 2],
                              end_mask=[False, True, False], name="slice_neg_stride"),
            mb.slice_update(x=x, update=mb.fill(shape=[2, 2, 3], value=-3.0), begin=[0, 1, 1], end=[2, 5, 4],
                            stride=[1, 2, 1], name="slice_update_stride"),
            mb.slice_by_size(x=x, begin=[0, 2, 1], size=[-1, 2, 3], name="slice_by_size"),
            mb.expand_dims(x=x, axes=[0, -1], name="expand"),
            mb.squeeze(x=mb.reshape(x=x, shape=[2, 1, 0, 0]), axes=[1], name="reshape_squeeze"),
            mb.one_hot(indices=mb.abs(x=rows), one_hot_vector_size=6, axis=0, on_value=2.0, off_value=-1.0,
                       name="one_hot"),
            mb.argsort(x=x, axis=1, ascending=True, name="argsort"),
            mb.reverse(x=x, axes=[0, 2], name="reverse"),
            mb.layer_norm(x=x, axes=[0, 2], epsilon=1e-5, name="layer_norm_02"),
            mb.stack(values=(x, x), axis=1, name="stack"),
            mb.sliding_windows(x=x, axis=1, size=2, stride=2, name="windows"),
            mb.transpose(x=x, perm=[2, 0, 1], name="transpose"),
            mb.non_zero(x=mb.greater(x=x, y=1.0), name="non_zero"),
        )

    runner = MILProgramRunner(_save_mil_program(prog, tmp_path / "idx.mlpackage"))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5, 6)).astype(np.float32)
    idx = np.array([[0, -1, 3], [4, 2, -5]], np.int32)
    out = runner.predict({"x": x, "idx": idx})
    rows = idx[0]
    scatter_nd = x.copy()
    scatter_nd[1, 0] = 7.0
    scatter_nd[0, 2] = 7.0
    scatter_add = x.copy()
    for r in rows:
        scatter_add[:, :, r] += 1.0
    upd = x.copy()
    upd[:, 1:5:2, 1:4] = -3.0
    mean = x.mean(axis=(0, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2), keepdims=True)
    want = {
        "gather_neg": x[:, :, rows],
        "gather_batch": np.stack([x[b][idx[b] % 5] for b in range(2)]),
        "gather_nd": np.stack([x[0, 4], x[1, -1]]),
        "scatter_nd": scatter_nd,
        "scatter_add": scatter_add,
        "slice_neg_stride": x[1:2, -1::-2, 0:6:2],
        "slice_update_stride": upd,
        "slice_by_size": x[:, 2:4, 1:4],
        "expand": x[None, ..., None],
        "reshape_squeeze": x,
        "one_hot": np.where(np.arange(6)[:, None] == np.abs(rows)[None, :], 2.0, -1.0),
        "argsort": np.argsort(x, axis=1, kind="stable"),
        "reverse": x[::-1, :, ::-1],
        "layer_norm_02": (x - mean) / np.sqrt(var + 1e-5),
        "stack": np.stack([x, x], axis=1),
        "windows": np.stack([x[:, 0:2], x[:, 2:4]], axis=1),
        "transpose": x.transpose(2, 0, 1),
        "non_zero": np.argwhere(x > 1.0),
    }
    assert set(out) == set(want)
    for name, w in want.items():
        np.testing.assert_allclose(out[name], w, atol=2e-5, rtol=1e-5, err_msg=name)


def _space_to_depth_tf_order(x, b):
    """out[n, (i*b + j)*C + c, h, w] = x[n, c, h*b + i, w*b + j]: TensorFlow's order, which coremltools' TF
    frontend assumes for MIL space_to_depth (torch's pixel_unshuffle lowers to a different MIL op)."""
    n, c, h, w = x.shape
    out = np.empty((n, c * b * b, h // b, w // b), x.dtype)
    for i in range(b):
        for j in range(b):
            out[:, (i * b + j) * c : (i * b + j + 1) * c] = x[:, :, i::b, j::b]
    return out


def test_builder_activation_and_misc_ops_match_torch(tmp_path):
    """Unary math, activations, norms, reductions and layout ops vs torch's definitions."""
    from coremltools.converters.mil import Builder as mb

    gamma = np.linspace(0.5, 1.5, 4, dtype=np.float32)
    beta = np.linspace(-0.2, 0.2, 4, dtype=np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 4, 3, 6))], opset_version=ct.target.iOS18)
    def prog(x):
        pos = mb.add(x=mb.abs(x=x), y=0.5)
        return (
            mb.elu(x=x, alpha=0.7, name="elu"),
            mb.leaky_relu(x=x, alpha=0.1, name="leaky_relu"),
            mb.prelu(x=x, alpha=gamma, name="prelu"),
            mb.softplus(x=x, name="softplus"),
            mb.softsign(x=x, name="softsign"),
            mb.relu6(x=mb.mul(x=x, y=5.0), name="relu6"),
            mb.sigmoid_hard(x=x, alpha=0.2, beta=0.5, name="sigmoid_hard"),
            mb.scaled_tanh(x=x, alpha=2.0, beta=0.5, name="scaled_tanh"),
            mb.thresholded_relu(x=x, alpha=0.3, name="thresholded_relu"),
            mb.silu(x=x, name="silu"),
            mb.sigmoid(x=x, name="sigmoid"),
            mb.inverse(x=pos, name="inverse"),
            mb.log(x=pos, name="log"),
            mb.rsqrt(x=pos, name="rsqrt"),
            mb.exp2(x=x, name="exp2"),
            mb.floor_div(x=mb.mul(x=x, y=3.0), y=2.0, name="floor_div"),
            mb.mod(x=mb.mul(x=x, y=3.0), y=2.0, name="mod"),
            mb.pow(x=pos, y=1.5, name="pow"),
            mb.sign(x=x, name="sign"),
            mb.round(x=mb.mul(x=x, y=3.0), name="round"),
            mb.atan(x=x, name="atan"),
            mb.batch_norm(x=x, mean=beta, variance=gamma, gamma=gamma, beta=beta, epsilon=1e-3, name="batch_norm"),
            mb.instance_norm(x=x, gamma=gamma, beta=beta, epsilon=1e-5, name="instance_norm"),
            mb.reduce_prod(x=pos, axes=[2], keep_dims=False, name="reduce_prod"),
            mb.reduce_min(x=x, axes=[1, 3], keep_dims=True, name="reduce_min"),
            mb.reduce_l1_norm(x=x, axes=[-1], name="reduce_l1"),
            mb.reduce_l2_norm(x=x, axes=[-1], name="reduce_l2"),
            mb.reduce_log_sum(x=pos, axes=[-1], name="reduce_log_sum"),
            mb.reduce_argmin(x=x, axis=1, keep_dims=True, name="argmin"),
            mb.reduce_sum(x=x, name="reduce_all"),
            mb.flatten2d(x=x, axis=2, name="flatten2d"),
            mb.pixel_shuffle(x=mb.reshape(x=x, shape=[2, 4, 6, 3]), upscale_factor=2, name="pixel_shuffle"),
            mb.space_to_depth(x=mb.reshape(x=x, shape=[2, 3, 4, 6]), block_size=2, name="space_to_depth"),
            mb.depth_to_space(
                x=mb.space_to_depth(x=mb.reshape(x=x, shape=[2, 3, 4, 6]), block_size=2), block_size=2,
                name="depth_to_space_roundtrip",
            ),
            mb.cast(x=mb.cast(x=mb.mul(x=x, y=4.0), dtype="int32"), dtype="fp32", name="cast_trunc"),
            mb.fill_like(ref_tensor=x, value=3.5, name="fill_like"),
            mb.shape(x=x, name="shape"),
        )

    runner = MILProgramRunner(_save_mil_program(prog, tmp_path / "act.mlpackage"))
    x = np.random.default_rng(10).standard_normal((2, 4, 3, 6)).astype(np.float32)
    out = runner.predict({"x": x})
    t = torch.from_numpy(x)
    pos = t.abs() + 0.5
    F = torch.nn.functional
    g, b = torch.from_numpy(gamma), torch.from_numpy(beta)
    want = {
        "elu": F.elu(t, alpha=0.7),
        "leaky_relu": F.leaky_relu(t, 0.1),
        "prelu": F.prelu(t, g),
        "softplus": F.softplus(t),
        "softsign": F.softsign(t),
        "relu6": F.relu6(t * 5),
        "sigmoid_hard": torch.clamp(0.2 * t + 0.5, 0, 1),
        "scaled_tanh": 2.0 * torch.tanh(0.5 * t),
        "thresholded_relu": torch.where(t > 0.3, t, torch.zeros(())),
        "silu": F.silu(t),
        "sigmoid": torch.sigmoid(t),
        "inverse": 1 / (pos + 1e-4),
        "log": torch.log(pos),
        "rsqrt": torch.rsqrt(pos + 1e-12),
        "exp2": torch.exp2(t),
        "floor_div": torch.floor_divide(t * 3, 2.0),
        "mod": torch.remainder(t * 3, 2.0),
        "pow": pos**1.5,
        "sign": torch.sign(t),
        "round": torch.round(t * 3),
        "atan": torch.atan(t),
        "batch_norm": F.batch_norm(t, b, g, g, b, training=False, eps=1e-3),
        "instance_norm": F.instance_norm(t, weight=g, bias=b, eps=1e-5),
        "reduce_prod": pos.prod(2),
        "reduce_min": t.amin(dim=(1, 3), keepdim=True),
        "reduce_l1": t.abs().sum(-1),
        "reduce_l2": t.norm(dim=-1),
        "reduce_log_sum": pos.sum(-1).log(),
        "argmin": t.argmin(1, keepdim=True),
        "reduce_all": t.sum(),
        "flatten2d": t.reshape(8, 18),
        "pixel_shuffle": F.pixel_shuffle(t.reshape(2, 4, 6, 3), 2),
        "space_to_depth": torch.from_numpy(_space_to_depth_tf_order(x.reshape(2, 3, 4, 6), 2)),
        "depth_to_space_roundtrip": t.reshape(2, 3, 4, 6),
        "cast_trunc": torch.trunc(t * 4),
        "fill_like": torch.full(t.shape, 3.5),
        "shape": torch.tensor(t.shape),
    }
    assert set(out) == set(want)
    for name, w in want.items():
        np.testing.assert_allclose(out[name], w.numpy(), atol=3e-5, rtol=2e-5, err_msg=name)


# ------------------------------------------------------------------------------------ errors


def test_unsupported_op_is_named(tmp_path):
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 4, 4))], opset_version=ct.target.iOS18)
    def prog(x):
        return mb.upsample_nearest_neighbor(x=mb.relu(x=x), scale_factor_height=2, scale_factor_width=2)

    path = _save_mil_program(prog, tmp_path / "unsupported.mlpackage")
    assert "upsample_nearest_neighbor" not in supported_ops()
    with pytest.raises(UnsupportedMILOp) as info:
        MILProgramRunner(path)
    msg = str(info.value)
    assert msg == "op 'upsample_nearest_neighbor' (in function 'main') is not supported by the MIL interpreter"


def test_op_removed_from_table_is_named(tmp_path, monkeypatch):
    torch.manual_seed(0)
    path = tmp_path / "block.mlpackage"
    convert(AttentionBlock(), (torch.randn(1, 6, 32),), [("x", (1, 6, 32), np.float32)], "fp32").save(str(path))
    MILProgramRunner(path)  # loads fine with the full table
    monkeypatch.delitem(OPS, "scaled_dot_product_attention")
    monkeypatch.delitem(OPS, "softmax")
    expected = r"^ops 'scaled_dot_product_attention', 'softmax' \(in function 'main'\) are not supported"
    with pytest.raises(UnsupportedMILOp, match=expected):
        MILProgramRunner(path)


@pytest.fixture(scope="module")
def small_package(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pkg") / "small.mlpackage"
    convert(TwoLinear(), (torch.randn(2, 64),), [("x", (2, 64), np.float32)], "fp16").save(str(path))
    return path


def _damage(path, how):
    spec = path / "Data" / "com.apple.CoreML" / "model.mlmodel"
    weights = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    if how == "missing_spec":
        spec.unlink()
    elif how == "garbage_spec":
        spec.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 7)
    elif how == "empty_spec":
        spec.write_bytes(b"")
    elif how == "truncated_spec":
        spec.write_bytes(spec.read_bytes()[:-50])
    elif how == "truncated_weights":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "missing_weights":
        weights.unlink()
    elif how == "bad_sentinel":
        data = bytearray(weights.read_bytes())
        data[64:68] = b"\0\0\0\0"
        weights.write_bytes(bytes(data))
    elif how == "bad_manifest":
        (path / "Manifest.json").write_text("{ not json")


@pytest.mark.parametrize(
    "how,pattern",
    [
        ("missing_spec", r"has no model spec: .*model\.mlmodel is missing"),
        ("garbage_spec", r"model\.mlmodel (is not a valid Core ML model protobuf|holds .*not an ML Program)"),
        ("empty_spec", r"holds no model at all \(empty or corrupt protobuf\), not an ML Program"),
        ("truncated_spec", r"model\.mlmodel is not a valid Core ML model protobuf \(DecodeError"),
        ("truncated_weights", r"weight file .*weight\.bin is truncated"),
        ("missing_weights", r"weight file .*weight\.bin is missing"),
        ("bad_sentinel", r"no blob sentinel 0xDEADBEEF at offset 64"),
        ("bad_manifest", r"Manifest\.json is unreadable or malformed"),
    ],
)
def test_corrupt_package_raises_one_line_error(small_package, tmp_path, how, pattern):
    broken = tmp_path / "broken.mlpackage"
    shutil.copytree(small_package, broken)
    _damage(broken, how)
    with pytest.raises(MILPackageError, match=pattern) as info:
        MILProgramRunner(broken)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None


def test_nonexistent_package(tmp_path):
    with pytest.raises(MILPackageError, match="does not exist"):
        MILProgramRunner(tmp_path / "nope.mlpackage")


def test_bad_inputs_are_reported(small_package, tmp_path):
    runner = MILProgramRunner(small_package)
    with pytest.raises(MILInputError, match=r"missing input\(s\) \['x'\]"):
        runner.predict({})
    with pytest.raises(MILInputError, match=r"input 'x' has shape \(3, 64\), expected fp32\[2, 64\]"):
        runner.predict({"x": np.zeros((3, 64), np.float32)})
    with pytest.raises(MILInputError, match=r"unknown input\(s\) \['y'\]"):
        runner.predict({"x": np.zeros((2, 64), np.float32), "y": 1})


def test_stateful_function_requires_state(tmp_path):
    model = TinyCachedLM(cache="index_put", layers=1, max_len=4)
    runner = MILProgramRunner(_convert_cached(model, 1, tmp_path / "s.mlpackage"))
    feeds = {"input_ids": np.zeros((1, 1), np.int32), "pos": np.zeros((1,), np.int32)}
    with pytest.raises(MILInputError, match="is stateful; pass state=runner.make_state"):
        runner.predict(feeds)
    state = runner.make_state()
    del state["v_cache_0"]
    with pytest.raises(MILInputError, match="state dict has no 'v_cache_0'"):
        runner.predict(feeds, state=state)


def test_factory_uses_interpreter_off_macos(small_package):
    runner = open_coreml_runner(small_package)
    if not isinstance(runner, MILProgramRunner):
        pytest.skip("Core ML runtime available: the factory returned the real runner")
    assert runner.function_names == ["main"]
    assert runner.make_state() == {}
    out = runner.predict({"x": np.ones((2, 64), np.float32)})
    assert next(iter(out.values())).shape == (2, 32)


# ------------------------------------------------------------------------------------ speed (on demand)


@pytest.mark.slow
def test_decode_step_speed_at_135m_parameters(tmp_path):
    """SmolLM-135M-shaped model (30 layers, 576 wide, GQA 9/3, 49k vocab): a decode step well under 2 s.

    Conversion alone takes ~1.5 min, hence ``-m slow``. Measured here: ~0.3 s per step, ~1 GB RSS."""
    import time

    torch.manual_seed(0)
    kwargs = dict(vocab=49152, dim=576, heads=9, kv_heads=3, layers=30, max_len=256, cache="index_put", ffn=1536)
    model = TinyCachedLM(**kwargs).eval()
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    runner = MILProgramRunner(_convert_cached(model, 1, tmp_path / "smol.mlpackage"))
    reference = _fresh_copy(model, **kwargs)
    state = runner.make_state()
    timings = []
    for i in range(4):
        feeds = {"input_ids": np.array([[i + 7]], np.int32), "pos": np.array([i], np.int32)}
        start = time.perf_counter()
        out = next(iter(runner.predict(feeds, state=state).values()))
        timings.append(time.perf_counter() - start)
        with torch.no_grad():
            want = reference(torch.tensor([[i + 7]]), torch.tensor([i], dtype=torch.int32)).numpy()
        assert_close_fp16(out, want, f"decode step {i}")
    assert min(timings) < 2.0, timings
