"""The command line as a user runs it: help, generate on a tiny model, and one-line errors."""

import subprocess
import sys


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "elmexport.cli", *args], capture_output=True, text=True, env=env)


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0 and "info" in out.stdout and "generate" in out.stdout


def test_generate_tiny_random_with_tokenizer(llama2_style_tokenizer):
    out = run("generate", "--model", "openelm-tiny", "--random-weights", "--tokenizer", str(llama2_style_tokenizer),
              "--prompt", "the program", "--max-new-tokens", "5", "--temperature", "0.8", "--top-k", "20")
    assert out.returncode == 0, out.stderr
    assert "decode" in out.stderr and "tok/s" in out.stderr


def test_openelm_without_tokenizer_offline_is_a_clear_error(tmp_path):
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path))
    out = run("generate", "--model", "openelm-tiny", "--random-weights", "--prompt", "hi", env=env)
    assert out.returncode == 2
    assert "--tokenizer" in out.stderr and "Llama-2" in out.stderr and "Traceback" not in out.stderr


def test_bad_tokenizer_path_and_weights_path(tmp_path):
    out = run("generate", "--model", "openelm-tiny", "--random-weights", "--tokenizer", str(tmp_path / "x.json"),
              "--prompt", "hi")
    assert out.returncode == 2 and "no tokenizer.json" in out.stderr
    out = run("generate", "--weights", str(tmp_path / "missing"), "--prompt", "hi")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "no such file" in out.stderr
