#!/usr/bin/env bash
# Train every variant of the docs/RESULTS.md learning table, two at a time (one torch thread each),
# then print the table. Usage: scripts/results_table.sh [SEEDS...]   (default: 0)
# Each run takes ~7 min alone on a 2-core CPU; runs/table/<variant>-s<seed>/ holds everything.
# ONLY="bc td3bc" restricts the variants; finished runs (epoch 100 logged) are skipped, others resumed.
set -u
cd "$(dirname "$0")/.."
SNN=.venv/bin/snn-drone
SEEDS=${*:-0}
PARALLEL=${PARALLEL:-2}
mkdir -p runs/table
variants=(
  "adaptive|"
  "interval|--slope interval"
  "fixed2|--slope fixed:2"
  "fixed50|--slope fixed:50"
  "fixed100|--slope fixed:100"
  "js_only|--no-bc"
  "bc_only|--no-jump-start"
  "neither|--no-jump-start --no-bc"
  "adaptive_lbc_const|--set learner.lambda_bc_decay=1.0"
  "td3|--algo td3"
  "td3bc|--algo td3bc"
  "bc|--algo bc"
  "ann_history|--actor ann_history"
  "ann|--actor ann"
)
jobs_running() { jobs -rp | wc -l; }
dirs=()
for seed in $SEEDS; do
  for v in "${variants[@]}"; do
    name=${v%%|*}; flags=${v#*|}
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
    out=runs/table/$name-s$seed
    dirs+=("$out")
    [ -f "$out/metrics.jsonl" ] && grep -q '"epoch": 100,' "$out/metrics.jsonl" && continue
    while [ "$(jobs_running)" -ge "$PARALLEL" ]; do sleep 5; done
    echo "== $name seed $seed: $SNN train $flags --seed $seed --out $out --resume"
    # shellcheck disable=SC2086
    $SNN train $flags --seed "$seed" --out "$out" --resume --no-progress > "$out.log" 2>&1 &
    sleep 1
  done
done
wait
$SNN summarize "${dirs[@]}"
