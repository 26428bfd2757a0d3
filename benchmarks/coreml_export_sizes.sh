#!/usr/bin/env bash
# Wall time and peak RSS of `elmexport coreml --quant int4` for each OpenELM size (random weights).
#   bash benchmarks/coreml_export_sizes.sh [270M 450M 1.1B 3B]
# Writes benchmarks/results/coreml_<size>.time (GNU time -v output) and prints a summary line per size.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
sizes=("${@:-270M 450M 1.1B 3B}")
for size in ${sizes[@]}; do
  out="dist/openelm-${size}-coreml-int4"
  /usr/bin/time -v elmexport coreml --size "$size" --random-weights --quant int4 --out "$out" \
    > "benchmarks/results/coreml_${size}.log" 2> "benchmarks/results/coreml_${size}.time"
  rc=$?
  wall=$(grep "Elapsed (wall clock)" "benchmarks/results/coreml_${size}.time" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "benchmarks/results/coreml_${size}.time" | awk '{print $NF}')
  pkg=$(du -sh "$out" 2>/dev/null | cut -f1)
  echo "$size exit=$rc wall=$wall peak_rss=$((rss / 1024)) MiB package=$pkg"
done
