"""Perplexity of SmolLM2-135M-Instruct (real weights) on GPL-3 for fp32, int8, int4 and palettize4 IR (no target).

    python benchmarks/quant_perplexity.py [--text FILE] [--window 512] [--max-tokens N] [--json OUT]

Each configuration goes through the same front end and passes as an export; the optimised IR runs in PyTorch
with the elm ops' reference kernels, so the numbers isolate quantization error from any runtime.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from elmexport.pipeline import build_ir
from elmexport.validation.perplexity import DEFAULT_TEXT, perplexity
from elmexport.weights.spec import ModelSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--text", default=str(DEFAULT_TEXT))
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--max-tokens", type=int)
    ap.add_argument("--quants", default="none,int8,int4,palettize4")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    rows = []
    for quant in args.quants.split(","):
        t0 = time.perf_counter()
        compiled = build_ir(ModelSpec(model=args.model, context=args.window), quant, log=lambda *a: None)
        ids = compiled.loaded.tokenizer.encode(Path(args.text).read_text())
        result = perplexity(compiled.ir.runner(), ids, args.window, args.max_tokens)
        weights = sum(r.changed.get("bytes_after", 0) for r in compiled.reports)
        rows.append({"quant": quant, **result, "quantized_weight_bytes": weights, "seconds": time.perf_counter() - t0})
        print(f"{quant:12s} ppl {result['perplexity']:8.3f}  ({result['tokens']} tokens, window {result['window']}, "
              f"{rows[-1]['seconds']:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
