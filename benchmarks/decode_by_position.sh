#!/bin/bash
# Decode speed as the position grows: SmolLM2-135M-Instruct, ours (ONNX int4, ExecuTorch 8da4w, both at the model's
# default context of 2048) and peer A, with a 1024-token and a 128-token prompt, alternated twice (side_by_side.py
# interleaves the configurations within each run). Usage: benchmarks/decode_by_position.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
for n in 1024 128 1024 128; do
  echo "=== prompt $n $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python "$HERE/side_by_side.py" --model smollm2-135m-instruct --configs peer-a,onnx:int4,executorch:8da4w \
    --prompt-tokens "$n" --new-tokens 128 --rounds 3 --out "$OUT/packages" --json "$OUT/prompt$n-$(date +%H%M%S).json"
done
echo "=== end $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
