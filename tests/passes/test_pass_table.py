"""An export shows each pass's result once: progress lines while the passes run, then one table of the IR passes
and the target's own passes."""

from __future__ import annotations

import elmexport


def test_one_table_with_ir_and_target_passes(tmp_path, capsys, llama2_style_tokenizer):
    lines = []
    elmexport.export("openelm-tiny", "onnx", random_weights=True, context=32, tokenizer=llama2_style_tokenizer,
                     out=tmp_path / "pkg", cache=False, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    table = capsys.readouterr().out
    pass_lines = [line for line in lines if line.startswith("pass ")]
    assert pass_lines and all(line.endswith(" s)") and "{" not in line for line in pass_lines), pass_lines
    assert table.count("passes") == 1  # the title, once
    for name in ("common::cleanup", "common::fuse_attention", "onnx::explicit_cache", "onnx::matmul_nbits"):
        assert table.count(name) == 1, name
    assert "group_query_attention=4" in table and "attention_fused=4" in table
