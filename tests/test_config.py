"""Presets and layer-wise scaling against the numbers published in shared/reference/openelm.md."""

import json
import subprocess
import sys

import pytest

from elmexport.models.config import ConfigError, get_preset, llama_from_hf_dict, make_divisible, size_to_preset

from .checkpoints import TINY_LLAMA_CONFIG

TOTALS = {"270M": 271_527_168, "450M": 457_179_136, "1.1B": 1_079_891_456, "3B": 3_036_647_424}


@pytest.mark.parametrize("size,total", TOTALS.items())
def test_parameter_totals(size, total):
    cfg = get_preset(size_to_preset(size))
    assert cfg.num_parameters == total
    assert get_preset(size_to_preset(size) + "-instruct").num_parameters == total


def test_270m_per_layer_table():
    cfg = get_preset("openelm-270m")
    assert cfg.num_query_heads == [12] * 5 + [16] * 7 + [20] * 4
    assert cfg.num_kv_heads == [3] * 5 + [4] * 7 + [5] * 4
    assert [cfg.qkv_dim(i) for i in (0, 5, 12)] == [1152, 1536, 1920]
    assert cfg.ffn_dims == [768, 1024, 1280, 1536, 1792, 2048, 2560, 2816, 3072, 3328, 3584, 3840,
                            4352, 4608, 4864, 5120]
    assert cfg.num_norms == 65


def test_other_sizes_match_reference_lists():
    assert get_preset("openelm-450m").num_query_heads == [12] * 3 + [16] * 7 + [20] * 6 + [24] * 4
    assert get_preset("openelm-450m").ffn_dims == [768, 1024, 1280, 1536, 1792, 2304, 2560, 2816, 3072, 3328, 3584,
                                                   3840, 4096, 4352, 4608, 5120, 5376, 5632, 5888, 6144]
    b11 = get_preset("openelm-1_1b")
    assert b11.num_query_heads == [16] * 3 + [20] * 7 + [24] * 8 + [28] * 6 + [32] * 4
    assert b11.ffn_dims == list(range(1024, 4097, 256)) + [4608, 4608] + list(range(5120, 8193, 256))
    b3 = get_preset("openelm-3b")
    assert b3.num_query_heads == [12] * 4 + [16] * 14 + [20] * 12 + [24] * 6
    assert b3.ffn_dims[:9] == [1536, 1792, 2048, 2560, 2816, 3072, 3328, 3584, 4096] and b3.ffn_dims[-1] == 12288
    assert all(q == 4 * kv for q, kv in zip(b3.num_query_heads, b3.num_kv_heads))


def test_kv_cache_sizes_match_reference():
    mib = {n: get_preset(n).kv_cache_bytes(2048) / 2**20 for n in ("openelm-270m", "openelm-450m", "openelm-1_1b", "openelm-3b")}
    assert mib == pytest.approx({"openelm-270m": 31.5, "openelm-450m": 45.5, "openelm-1_1b": 84.5, "openelm-3b": 164.0})


def test_tiny_preset_is_layer_wise_scaled():
    cfg = get_preset("openelm-tiny")
    assert (cfg.num_layers, cfg.model_dim, cfg.head_dim) == (4, 256, 32)
    assert len(set(cfg.num_query_heads)) > 1 and len(set(cfg.ffn_dims)) == 4


def test_make_divisible_reference_cases():
    assert make_divisible(640, 256) == 768  # 0.5 * 1280: rounds up past 90%
    assert make_divisible(1280 * 0.73, 256) == 1024


def test_size_shorthands_and_errors():
    assert size_to_preset("1.1B") == size_to_preset("1_1B") == "openelm-1_1b"
    with pytest.raises(ConfigError, match="unknown --size '7B'"):
        size_to_preset("7B")
    with pytest.raises(ConfigError, match="unknown model 'gpt-5'"):
        get_preset("gpt-5")


def test_llama_config_from_hf():
    cfg = llama_from_hf_dict(TINY_LLAMA_CONFIG, "tiny")
    assert cfg.family == "llama" and not cfg.qk_norm and not cfg.tie_word_embeddings
    assert cfg.num_norms == 2 * 3 + 1 and cfg.rope_theta == 50000.0 and cfg.norm_eps == 1e-5
    smol = get_preset("smollm2-135m-instruct")
    assert smol.num_parameters == 134_515_008 and smol.tie_word_embeddings


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "elmexport.cli", *args], capture_output=True, text=True)


def test_info_json_without_allocating_weights():
    code = ("import sys, time, elmexport.cli as c; t=time.time(); c.main(['info','--size','3B','--json']); "
            "sys.stderr.write(f'{time.time()-t} {\"torch\" in sys.modules}')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    data = json.loads(proc.stdout)
    assert data["num_parameters"] == 3_036_647_424 and data["num_layers"] == 36
    assert set(data) >= {"num_layers", "num_query_heads", "num_kv_heads", "ffn_dims", "num_parameters"}
    seconds, torch_loaded = proc.stderr.split()
    assert float(seconds) < 1.0 and torch_loaded == "False"


def test_info_table_and_bad_size():
    out = _run_cli("info", "--size", "270M")
    assert out.returncode == 0 and "271,527,168" in out.stdout and "RMSNorms: 65" in out.stdout
    bad = _run_cli("info", "--size", "7B")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown --size") and "Traceback" not in bad.stderr
