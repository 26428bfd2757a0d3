"""Perplexity of ONNX packages through onnxruntime: ours and onnxruntime-genai builder's (peer A), same text.

    python benchmarks/onnx_perplexity.py dist/bench/smollm2-135m-instruct/peer-a dist/bench/smollm2-135m-instruct/onnx-int4
    python benchmarks/onnx_perplexity.py --text /usr/share/common-licenses/LGPL-2.1 DIR [DIR ...]

Why: a speed comparison means something only between packages of the same quality. This scores each package on
the text in non-overlapping windows of 512 tokens (elmexport.validation.perplexity, the quickstart's scorer), with
the package's own tokenizer.json and the runtime's own int4 kernels (MatMulNBits at the package's accuracy level,
so activations are int8 as in a real run). Our packages run through elmexport's ONNX runner; a builder package
(no manifest.json) runs in a plain onnxruntime session: one call per window from an empty cache, logits for
every row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from elmexport.validation.perplexity import DEFAULT_TEXT, perplexity
from elmexport.validation.runners import open_package_runner
from tokenizers import Tokenizer


class BuilderPackageRunner:
    """Runner protocol over an onnxruntime-genai builder package: whole windows only, each from an empty cache."""

    context = 2048

    def __init__(self, folder: Path, threads: int = 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
        self.empty_cache = {i.name: np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), np.float32)
                            for i in self.session.get_inputs() if i.name.startswith("past_key_values")}
        self.name = "builder package"

    def reset(self) -> None:
        pass

    def forward(self, ids: list[int], start_pos: int) -> np.ndarray:
        if start_pos:
            raise ValueError("BuilderPackageRunner scores whole windows (start_pos 0)")
        feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64),
                **self.empty_cache}
        return self.session.run(["logits"], feed)[0][0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packages", nargs="+", type=Path, help="ONNX package folders (ours or the builder's)")
    ap.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    ap.add_argument("--window", type=int, default=512)
    args = ap.parse_args(argv)
    text = args.text.read_text()
    for folder in args.packages:
        if not (folder / "model.onnx").exists() or not (folder / "tokenizer.json").exists():
            raise SystemExit(f"{folder}: not an ONNX package (needs model.onnx and tokenizer.json)")
        ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, add_special_tokens=False).ids
        runner = open_package_runner(folder) if (folder / "manifest.json").exists() else BuilderPackageRunner(folder)
        t0 = time.perf_counter()
        result = perplexity(runner, ids, args.window)
        print(f"{folder!s:55s} ppl {result['perplexity']:7.3f}  ({result['tokens']} tokens, window "
              f"{result['window']}, {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
