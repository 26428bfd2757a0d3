"""Property tests: every model-input reader, fed anything, returns a valid object or raises ElmExportError.

A reader that lets a TypeError, KeyError or struct.error through gives the user a traceback; one that returns
a config with a negative width gives them a crash further on. The inputs are arbitrary JSON-like values and,
more usefully, valid files with a few keys replaced by arbitrary values or deleted, and byte-mutated files.
"""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elmexport.errors import ElmExportError
from elmexport.models.config import ModelConfig, config_from_hf_dict, get_preset
from elmexport.passes.quant_config import PRESETS, QuantConfig, quant_config_from_raw
from elmexport.weights.gguf_file import GGUFFile
from elmexport.weights.safetensors_dir import SafetensorsDir, shards_from_index

from .checkpoints import TINY_LLAMA_CONFIG, openelm_config_json, write_hf_dir

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Values that sit on the edges of what readers check: zero, negatives, odd, huge, non-finite, wrong types.
EDGE_INTS = st.sampled_from([0, -1, 1, 2, 3, 7, 33, 255, 2**31, 2**63, 10**12])
SCALARS = (st.none() | st.booleans() | EDGE_INTS | st.integers() | st.floats()
           | st.text(max_size=12) | st.sampled_from(["int4", "llama", "../x", "/etc/passwd", "", "NaN"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=16)


def mutations_of(base: dict, values=JSON_VALUES) -> st.SearchStrategy:
    """`base` with some keys replaced by arbitrary values, some deleted and maybe a stray key added."""
    keys = sorted(base)
    replaced = st.dictionaries(st.sampled_from(keys), values, max_size=3)
    deleted = st.sets(st.sampled_from(keys), max_size=2)
    stray = st.dictionaries(st.text(max_size=8), values, max_size=1)
    return st.builds(lambda r, d, s: {k: v for k, v in {**base, **s, **r}.items() if k not in d},
                     replaced, deleted, stray)


def accepted_or_refused(read, *args):
    """Call a reader: it returns a value or raises ElmExportError with a one-line message, nothing else."""
    try:
        return read(*args)
    except ElmExportError as e:
        assert "\n" not in str(e) and str(e), repr(str(e))
        return None


OPENELM_JSON = openelm_config_json(get_preset("openelm-tiny"))


@FUZZ
@given(st.one_of(JSON_VALUES, mutations_of(TINY_LLAMA_CONFIG), mutations_of(OPENELM_JSON)))
def test_config_json_reader(raw):
    cfg = accepted_or_refused(config_from_hf_dict, raw, "config.json", "fuzz")
    if cfg is not None:
        assert isinstance(cfg, ModelConfig) and cfg.validate() is cfg
        assert all(n > 0 for n in cfg.num_query_heads + cfg.num_kv_heads + cfg.ffn_dims)
        assert cfg.num_parameters > 0 and cfg.default_context > 0


@FUZZ
@given(mutations_of(get_preset("openelm-tiny").to_dict()))
def test_manifest_model_config(raw):
    accepted_or_refused(ModelConfig.from_dict, raw)


@pytest.fixture(scope="module")
def sharded_folder():
    """A folder with two real shard files; the fuzzed index may name them, or anything else."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-index-"))
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (folder / name).write_bytes(b"")
    return folder


INDEX = {"metadata": {"total_size": 1024},
         "weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors",
                        "model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}
SHARD_NAMES = st.sampled_from(["model-00001-of-00002.safetensors", "../model-00001-of-00002.safetensors",
                               "/etc/passwd", "sub/../../x", ".", "", "a\x00b"]) | JSON_VALUES


@FUZZ
@given(st.one_of(JSON_VALUES, mutations_of(INDEX),
                 st.dictionaries(st.text(max_size=12), SHARD_NAMES, max_size=4).map(lambda m: {"weight_map": m})))
def test_index_reader(sharded_folder, raw):
    files = accepted_or_refused(shards_from_index, raw, sharded_folder / "model.safetensors.index.json",
                                sharded_folder)
    if files is not None:
        assert files and all(f.parent == sharded_folder and f.is_file() for f in files)


WEIGHT_SPEC = st.fixed_dictionaries({}, optional={
    "mode": st.sampled_from(["none", "int8", "int4", "palettize4", "int5"]) | SCALARS,
    "block_size": EDGE_INTS | SCALARS, "group_size": EDGE_INTS | SCALARS, "fallback_block_size": EDGE_INTS,
})
QUANT_FILES = st.fixed_dictionaries({"default": WEIGHT_SPEC | JSON_VALUES}, optional={
    "embedding": WEIGHT_SPEC | JSON_VALUES,
    "overrides": st.dictionaries(st.text(max_size=10), WEIGHT_SPEC | JSON_VALUES, max_size=3) | JSON_VALUES,
})


@FUZZ
@given(st.one_of(JSON_VALUES, QUANT_FILES, mutations_of(dict(PRESETS["int4"], overrides={"layers.0.*": {}}))))
def test_quant_config_reader(raw):
    q = accepted_or_refused(quant_config_from_raw, raw, "fuzz", "--quant fuzz.yaml")
    if q is not None:
        assert isinstance(q, QuantConfig)
        for spec in [q.default, q.embedding] + [s for _, s in q.overrides]:
            assert spec.mode == "none" or spec.kind != "none"
            assert min(spec.block_size, spec.group_size, spec.fallback_block_size) >= 0


# ---- byte-level: damaged GGUF and safetensors files ----

def _mutate(data: bytes, cut: int | None, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data if cut is None else data[:cut % (len(data) + 1)])
    for pos, value in flips:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


MUTATIONS = dict(cut=st.none() | st.integers(0, 10**6),
                 flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))


@pytest.fixture(scope="module")
def gguf_bytes():
    from .test_input_validation import write_gguf_metadata

    import numpy as np

    path = Path(tempfile.mkdtemp(prefix="fuzz-gguf-")) / "tiny.gguf"
    rng = np.random.default_rng(0)
    tensors = {"output_norm.weight": rng.standard_normal(128).astype(np.float32),
               "blk.0.attn_q.weight": rng.standard_normal((128, 128)).astype(np.float16)}
    return write_gguf_metadata(path, tensors=tensors).read_bytes()


@FUZZ
@given(**MUTATIONS)
def test_damaged_gguf(gguf_bytes, cut, flips):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.gguf"
        path.write_bytes(_mutate(gguf_bytes, cut, flips))
        gguf = accepted_or_refused(GGUFFile, path)
        if gguf is not None:
            for name in sorted(gguf.names()):
                accepted_or_refused(gguf.read, name)


@pytest.fixture(scope="module")
def safetensors_bytes():
    import torch

    folder = Path(tempfile.mkdtemp(prefix="fuzz-st-"))
    write_hf_dir(folder, {"a.weight": torch.randn(4, 8), "b.weight": torch.randn(3)}, {})
    return (folder / "model.safetensors").read_bytes()


@FUZZ
@given(**MUTATIONS)
def test_damaged_safetensors(safetensors_bytes, cut, flips):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.safetensors").write_bytes(_mutate(safetensors_bytes, cut, flips))
        folder = accepted_or_refused(SafetensorsDir, Path(tmp))
        if folder is not None:
            for name in sorted(folder.names()):
                accepted_or_refused(folder.read, name)


def test_the_fuzzed_files_start_out_valid(gguf_bytes, safetensors_bytes, tmp_path):
    """Unmutated, both files read: the byte-level properties above test damage, not a broken seed file."""
    (tmp_path / "ok.gguf").write_bytes(gguf_bytes)
    gguf = GGUFFile(tmp_path / "ok.gguf")
    assert gguf.config.num_layers == 3 and gguf.read("model.layers.0.self_attn.q_proj.weight").shape == (128, 128)
    (tmp_path / "model.safetensors").write_bytes(safetensors_bytes)
    assert SafetensorsDir(tmp_path).names() == {"a.weight", "b.weight"}
