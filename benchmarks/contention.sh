#!/bin/bash
# Under load: SmolLM2-135M-Instruct, ours and the peers of both runtimes, with the box quiet and with one core held
# busy by another process (side_by_side.py --busy-core), at 2 threads and at 1, alternated so drift hits all alike.
# Usage: benchmarks/contention.sh OUT_DIR [ROUNDS]
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR [ROUNDS]}
ROUNDS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
for threads in 2 1; do
  for load in quiet busy; do
    flag=""; [ "$load" = busy ] && flag="--busy-core"
    echo "=== threads $threads, $load, $(date +%T), load $(cut -d' ' -f1 /proc/loadavg)"
    python "$HERE/side_by_side.py" --model smollm2-135m-instruct --configs peer-a,onnx:int4,peer-b,executorch:8da4w \
      --threads "$threads" $flag --rounds "$ROUNDS" --out "$OUT/packages" --json "$OUT/threads$threads-$load.json"
  done
done
echo "=== end $(date +%T), load $(cut -d' ' -f1 /proc/loadavg)"
