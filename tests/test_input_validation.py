"""Hostile model inputs through the real CLI: each one ends in exit 2 and one `error:` line naming the file/key.

Every case builds its bad checkpoint, config or quant file in tmp_path and runs `elmexport.cli.main` in-process.
"""

import json

import pytest
import torch

from elmexport.cli import main
from elmexport.errors import ElmExportError
from elmexport.frontend import capture
from elmexport.models.config import ConfigError, ModelConfig, config_from_hf_dict, get_preset, llama_from_hf_dict
from elmexport.models.transformer import Transformer, init_random_weights
from elmexport.passes.manager import PassManager
from elmexport.weights.spec import ModelSpec

from .checkpoints import TINY_LLAMA_CONFIG, llama_hf_tensors, openelm_config_json, openelm_hf_tensors, write_hf_dir

TINY = ["--model", "openelm-tiny", "--random-weights"]


def cli_error(capsys, *argv) -> str:
    """Run the CLI; it must exit 2 with exactly one `error:` line and no traceback. Returns that line."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse refuses a flag's value by exiting
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def assert_mentions(line: str, *texts: str) -> None:
    for text in texts:
        assert text in line, line


def write_config(folder, config) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return str(folder)


def llama(**changes) -> dict:
    raw = dict(TINY_LLAMA_CONFIG, **changes)
    return {k: v for k, v in raw.items() if v is not ...}  # `...` deletes a key


def openelm(**changes) -> dict:
    raw = dict(openelm_config_json(get_preset("openelm-tiny")), **changes)
    return {k: v for k, v in raw.items() if v is not ...}


# ---- config.json (OpenELM and Llama readers), through `info --weights DIR`, which reads only the config ----

CONFIG_CASES = {
    "json list": ([TINY_LLAMA_CONFIG], ["expected a JSON object", "got a list"]),
    "not json": ("{'hidden_size': 128", ["not valid JSON"]),
    "llama missing key": (llama(hidden_size=...), ["'hidden_size'", "missing"]),
    "llama string size": (llama(hidden_size="128"), ["'hidden_size'", "whole number", "'128'"]),
    "llama negative layers": (llama(num_hidden_layers=-3), ["'num_hidden_layers'", "-3"]),
    "llama zero ffn": (llama(intermediate_size=0), ["'intermediate_size'", "outside [1, "]),
    "llama huge width": (llama(hidden_size=10**12), ["'hidden_size'", "65,536", "refused"]),
    "llama huge vocab": (llama(vocab_size=2**40), ["'vocab_size'", "4,194,304"]),
    "llama kv not dividing": (llama(num_key_value_heads=3), ["'num_attention_heads' 4", "'num_key_value_heads' 3"]),
    "llama odd head_dim": (llama(head_dim=33), ["head_dim 33", "even"]),
    "llama heads not dividing width": (llama(num_attention_heads=3, num_key_value_heads=1), ["not a multiple"]),
    "llama bool as string": (llama(tie_word_embeddings="false"), ["'tie_word_embeddings'", "true or false"]),
    "llama nan theta": ('{"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "intermediate_size": 320, '
                        '"num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 512, "rope_theta": NaN}',
                        ["'rope_theta'", "nan"]),
    "llama rope scaling": (llama(rope_scaling={"rope_type": "llama3", "factor": 32.0}), ["'rope_scaling'", "not supported"]),
    "llama eos out of vocab": (llama(eos_token_id=[2, 99999]), ["'eos_token_id[1]'", "99,999"]),
    "unknown architecture": ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, ["unsupported architecture"]),
    "openelm missing heads": (openelm(num_query_heads=...), ["'num_query_heads'", "missing"]),
    "openelm heads as string": (openelm(num_query_heads="4,8,8,8"), ["'num_query_heads'", "list"]),
    "openelm head entry string": (openelm(num_query_heads=[4, "8", 8, 8]), ["'num_query_heads[1]'", "'8'"]),
    "openelm layer lists disagree": (openelm(num_kv_heads=[1, 2, 2]), ["'num_kv_heads' has 3"]),
    "openelm layer count disagrees": (openelm(num_transformer_layers=7), ["'num_transformer_layers' is 7"]),
    "openelm huge width": (openelm(model_dim=10**12), ["'model_dim'", "65,536"]),
    "openelm negative width": (openelm(model_dim=-256), ["'model_dim'", "-256"]),
    "openelm odd head_dim": (openelm(head_dim=33), ["head_dim 33", "even"]),
    "openelm kv not dividing": (openelm(num_kv_heads=[3, 2, 2, 2]), ["layer 0 has 4 query heads", "3 kv heads"]),
    "openelm bad multipliers": (openelm(ffn_multipliers=[0.5, 1.0, 2.0]), ["'ffn_multipliers' has 3 entries"]),
    "openelm zero multiplier": (openelm(ffn_multipliers=[0.0, 4.0]), ["'ffn_multipliers[0]'"]),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config_json(tmp_path, capsys, case):
    config, expected = CONFIG_CASES[case]
    folder = write_config(tmp_path / "model", config)
    assert_mentions(cli_error(capsys, "info", "--weights", folder), "config.json", *expected)


def test_config_json_not_utf8(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_bytes(b'{"hidden_size": "\xff\xfe"}')
    assert "not valid JSON" in cli_error(capsys, "info", "--weights", folder)


def test_sizes_refused_before_any_allocation():
    """A 10**12-wide config must fail in the reader: the message comes back at once, nothing is built."""
    with pytest.raises(ConfigError, match=r"'hidden_size' is 1,000,000,000,000"):
        llama_from_hf_dict(llama(hidden_size=10**12), "huge")
    with pytest.raises(ConfigError, match=r"parameters, more than"):
        llama_from_hf_dict(llama(hidden_size=65536, intermediate_size=1_000_000, num_hidden_layers=1000,
                                 num_attention_heads=512, num_key_value_heads=512), "huge")


def test_manifest_config_with_unknown_key():
    d = get_preset("openelm-tiny").to_dict()
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        ModelConfig.from_dict(dict(d, colour="red"))
    with pytest.raises(ConfigError, match="'vocab_size' is missing"):
        ModelConfig.from_dict({k: v for k, v in d.items() if k != "vocab_size"})


# ---- GGUF metadata ----

def write_gguf_metadata(path, changes=(), tensors=None):
    """A llama GGUF with metadata and `tensors` (GGUF name -> array; none by default: `info` reads no weights)."""
    import gguf

    meta = {"block_count": 3, "context_length": 256, "embedding_length": 128, "feed_forward_length": 320,
            "attention.head_count": 4, "attention.head_count_kv": 2, "vocab_size": 512}
    meta.update(dict(changes))
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in meta.items():
        if isinstance(value, str):
            writer.add_string(f"llama.{key}", value)
        elif value is not None:
            writer.add_uint32(f"llama.{key}", value)
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    for name, array in (tensors or {}).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("changes,expected", [
    ({"embedding_length": "128"}, ["'llama.embedding_length'", "'128'"]),
    ({"attention.head_count_kv": 3}, ["'llama.attention.head_count' 4", "'llama.attention.head_count_kv' 3"]),
    ({"embedding_length": 4_000_000_000}, ["'llama.embedding_length'", "65,536"]),
    ({"block_count": 0}, ["'llama.block_count'", "outside [1, "]),
    ({"feed_forward_length": None}, ["'llama.feed_forward_length'", "missing"]),
])
def test_bad_gguf_metadata(tmp_path, capsys, changes, expected):
    path = write_gguf_metadata(tmp_path / "bad.gguf", changes)
    assert_mentions(cli_error(capsys, "info", "--weights", path), "bad.gguf", *expected)


def test_good_gguf_metadata_reads(tmp_path, capsys):
    """The writer above is right: unchanged, the same file is a valid config (so the cases test one fault each)."""
    path = write_gguf_metadata(tmp_path / "good.gguf")
    assert main(["info", "--weights", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_layers"] == 3


# ---- model.safetensors.index.json, through `compile --weights DIR` (fails before any tensor is read) ----

@pytest.fixture(scope="module")
def tiny_llama_weights():
    return llama_hf_tensors(TINY_LLAMA_CONFIG, seed=3)


INDEX_CASES = {
    "a list": ([], ["a safetensors index", "got a list"]),
    "no weight_map": ({"metadata": {}}, ["'weight_map'", "missing"]),
    "weight_map a list": ({"weight_map": ["model-00001-of-00002.safetensors"]}, ["'weight_map' must be", "a list"]),
    "shard not a string": ({"weight_map": {"model.norm.weight": 3}}, ["'model.norm.weight' maps to an integer"]),
    "shard escapes": ({"weight_map": {"model.norm.weight": "../elsewhere.safetensors"}}, ["points outside"]),
    "absolute shard": ({"weight_map": {"model.norm.weight": "/etc/passwd"}}, ["'/etc/passwd'", "points outside"]),
    "absent shard": ({"weight_map": {"model.norm.weight": "model-00009-of-00009.safetensors"}},
                     ["model-00009-of-00009.safetensors", "download all shards"]),
}


@pytest.mark.parametrize("case", INDEX_CASES)
def test_bad_safetensors_index(tmp_path, capsys, tiny_llama_weights, case):
    index, expected = INDEX_CASES[case]
    folder = write_hf_dir(tmp_path / "model", tiny_llama_weights, TINY_LLAMA_CONFIG, shards=2)
    (tmp_path / "elsewhere.safetensors").write_bytes(b"not for us")
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_mentions(cli_error(capsys, "compile", "--weights", folder), "model.safetensors.index.json", *expected)


# ---- weights that load but must not export ----

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weight_is_named(tmp_path, capsys, bad):
    cfg = get_preset("openelm-tiny")
    w = openelm_hf_tensors(cfg, seed=1)
    w["transformer.layers.2.attn.out_proj.weight"][7, 3] = bad
    folder = write_hf_dir(tmp_path / "model", w, openelm_config_json(cfg))
    line = cli_error(capsys, "compile", "--weights", folder)
    assert "'transformer.layers.2.attn.out_proj.weight'" in line and "non-finite" in line and "[7, 3]" in line


def test_integer_weight_is_named(tmp_path, capsys, tiny_llama_weights):
    w = dict(tiny_llama_weights)
    w["model.norm.weight"] = torch.ones(128, dtype=torch.int32)
    folder = write_hf_dir(tmp_path / "model", w, TINY_LLAMA_CONFIG)
    line = cli_error(capsys, "compile", "--weights", folder)
    assert "'model.norm.weight' has dtype int32" in line


class _Poison:
    """A pass that breaks the numbers: the manager must stop and name it."""

    name = "poison"

    def run(self, ir):
        with torch.no_grad():
            ir.gm.get_parameter("norm.weight").fill_(float("nan"))
        return {"poisoned": 1}


@pytest.fixture(scope="module")
def tiny_ir():
    return capture(init_random_weights(Transformer(get_preset("openelm-tiny"), 16), seed=0))


def test_pass_that_makes_logits_non_finite_is_named(tiny_ir):
    with pytest.raises(ElmExportError, match=r"pass poison made the logits non-finite"):
        PassManager([_Poison()]).run(tiny_ir)


def test_model_with_overflowing_logits_is_refused():
    model = init_random_weights(Transformer(get_preset("openelm-tiny"), 16), seed=0)
    with torch.no_grad():
        model.norm.weight.fill_(3e38)
    with pytest.raises(ElmExportError, match=r"non-finite logits .* before any pass"):
        PassManager([]).run(capture(model))


# ---- --quant FILE ----

QUANT_CASES = {
    "block_size a word": ("default: {mode: int4, block_size: abc}", ["default", "'block_size'", "'abc'"]),
    "negative block": ("default: {mode: int4, block_size: -32}", ["'block_size' is -32"]),
    "negative group": ("default: {mode: palettize4, group_size: -1}", ["'group_size' is -1"]),
    "unknown mode": ("default: {mode: int5}", ["unknown mode 'int5'", "int4"]),
    "overrides a list": ("default: {mode: int4}\noverrides:\n  - 'layers.0.*'\n", ["'overrides' must be a mapping"]),
    "override not a mapping": ("default: {mode: int4}\noverrides:\n  'layers.0.*': int8\n",
                               ["overrides['layers.0.*']", "got a string"]),
    "top-level typo": ("default: {mode: int4}\noverides:\n  'layers.0.*': {mode: int8}\n",
                       ["unknown key 'overides'", "default, embedding, overrides"]),
    "weight spec typo": ("default: {mode: int4, blocksize: 64}", ["unknown key 'blocksize'", "block_size"]),
    "no default": ("embedding: {mode: int8}", ["'default'", "missing"]),
    "a list": ("- {mode: int4}", ["expected a mapping", "got a list"]),
    "empty file": ("", ["expected a mapping", "got null"]),
    "not yaml": ("default: {mode: int4\n", ["cannot parse"]),
}


@pytest.mark.parametrize("case", QUANT_CASES)
def test_bad_quant_config(tmp_path, capsys, case):
    text, expected = QUANT_CASES[case]
    path = tmp_path / "q.yaml"
    path.write_text(text)
    assert_mentions(cli_error(capsys, "compile", *TINY, "--quant", path), "q.yaml", *expected)


def test_block_size_that_divides_no_weight(tmp_path, capsys):
    path = tmp_path / "q.yaml"
    path.write_text("default: {mode: int4, block_size: 48, fallback_block_size: 40}\nembedding: {mode: none}\n")
    line = cli_error(capsys, "compile", *TINY, "--context", 16, "--quant", path)
    assert "not a multiple of 48 (block_size)" in line and "no fallback_block_size fits" in line
    assert "e.g. 16 or 32" in line


def test_override_that_matches_no_module(tmp_path, capsys):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"default": {"mode": "int8", "block_size": 0},
                                "overrides": {"layers.9.*": {"mode": "none"}}}))
    line = cli_error(capsys, "compile", *TINY, "--context", 16, "--quant", path)
    assert "override 'layers.9.*' matches no module of openelm-tiny" in line
    assert "'layers.0.attn.out_proj'" in line  # an example of the names that do exist


def test_override_on_the_embedding_points_to_the_embedding_entry(tmp_path, capsys):
    path = tmp_path / "q.yaml"
    path.write_text("default: {mode: int8, block_size: 0}\noverrides:\n  token_embeddings: {mode: none}\n")
    line = cli_error(capsys, "compile", *TINY, "--context", 16, "--quant", path)
    assert "set by 'embedding'" in line


# ---- --context and --seed ----

@pytest.mark.parametrize("flag,value", [("--context", 0), ("--context", -4), ("--context", "abc"), ("--seed", -1)])
def test_bad_numbers_on_the_command_line(capsys, flag, value):
    line = cli_error(capsys, "compile", *TINY, flag, value)
    assert flag in line


def test_context_past_the_model(capsys):
    line = cli_error(capsys, "compile", *TINY, "--context", 4096)
    assert "--context 4096" in line and "openelm-tiny supports (2,048 positions" in line


def test_context_past_a_checkpoint_config(tmp_path, capsys, tiny_llama_weights):
    folder = write_hf_dir(tmp_path / "model", tiny_llama_weights, TINY_LLAMA_CONFIG)  # max_position_embeddings 256
    line = cli_error(capsys, "compile", "--weights", folder, "--context", 257)
    assert "--context 257" in line and "256 positions" in line


def test_default_context_stays_in_the_rope_range():
    raw = dict(openelm_config_json(get_preset("openelm-tiny")), rope_max_length=512)
    cfg = config_from_hf_dict(raw, "config.json", "short-rope")
    assert cfg.check_context(None) == 512
    with pytest.raises(ConfigError, match="512 positions"):
        cfg.check_context(513)


@pytest.mark.parametrize("kw,expected", [
    ({"context": 0}, "--context 0: must be a positive"),
    ({"context": -1}, "--context -1"),
    ({"seed": -1}, r"--seed -1: must be a whole number in \[0, "),
    ({"seed": 2**64}, "--seed 18446744073709551616"),
])
def test_model_spec_refuses_what_argparse_would(kw, expected):
    """The library entry (quickstart, tests, the Python API) checks too: `context=0` must not mean "default"."""
    with pytest.raises(ConfigError, match=expected):
        ModelSpec(model="openelm-tiny", random_weights=True, **kw)


def test_check_context_keeps_zero_apart_from_none():
    cfg = get_preset("openelm-tiny")
    assert cfg.check_context(None) == cfg.default_context
    assert cfg.check_context(2048) == 2048
    for bad in (0, -1, 2049, True, 3.5):
        with pytest.raises(ConfigError):
            cfg.check_context(bad)
