#!/bin/bash
# SmolLM2-135M-Instruct int4 drafting for itself in fp32, on every runtime: export the three pairs, measure
# acceptance and speed-up by k on ONNX and ExecuTorch (speculative_pairs.py), and check greedy equivalence on
# Core ML through the MIL interpreter (elmexport validate PAIR). Usage: benchmarks/speculative_pairs_all.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
git -C "$HERE" rev-parse --short HEAD > "$OUT/commit"
for rt in onnx executorch coreml; do
  ctx=512; [ "$rt" = coreml ] && ctx=128  # the interpreter is slow; 128 holds 4 prompts x 32 tokens
  /usr/bin/time -v elmexport pair --target smollm2-135m-instruct --draft smollm2-135m-instruct --to "$rt" --k 3 \
     --context "$ctx" --out "$OUT/pair-$rt" > "$OUT/export-$rt.log" 2>&1
done
for rt in onnx executorch; do
  python "$HERE/speculative_pairs.py" "$OUT/pair-$rt" --rounds 2 --new-tokens 128 --threads 2 \
     --json "$OUT/spec-$rt.json" > "$OUT/spec-$rt.txt" 2>&1
done
elmexport validate "$OUT/pair-coreml" --k-values 2 3 4 > "$OUT/validate-coreml.log" 2>&1
