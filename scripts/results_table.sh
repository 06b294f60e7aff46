#!/usr/bin/env bash
# Train the rows of the docs/RESULTS.md learning table, PARALLEL at a time (one torch thread each),
# then print the table with every run's actor_best.pt and actor_last.pt flown on 500 fresh test
# episodes (snn-drone summarize --test 500). Usage: scripts/results_table.sh [SEEDS...] (default: 0)
# A 100-epoch run takes 18-25 min when two share the 2 cores; $OUT/<variant>-s<seed>/ (default
# runs/table) holds everything. ONLY="default lbc02" restricts the rows; finished runs (final epoch
# logged) are skipped, unfinished ones resumed. Flags are relative to the default (config/train.yaml).
# The slope study (Fig. 3, in the Q-driven regime: jump-start, no BC term) is
#   OUT=runs/slope ONLY="js_fixed2 js_fixed50 js_fixed100 js_interval js_adaptive" scripts/results_table.sh 0 1 2
set -u
cd "$(dirname "$0")/.."
SNN=.venv/bin/snn-drone
SEEDS=${*:-0}
PARALLEL=${PARALLEL:-2}
EPOCHS=${EPOCHS:-100}
OUT=${OUT:-runs/table}
mkdir -p "$OUT"
variants=(
  # the default (TD3BC + JSRL, adaptive slope, the controller as guide, lambda_BC 1.0 per stage)
  # and the choices it rests on
  "default|"
  "lbc02|--set learner.lambda_bc=0.2"
  "lbc02_per_epoch|--set learner.lambda_bc=0.2 --set learner.lambda_bc_decay_per=epoch"
  "critic_burn_in|--set learner.critic_steps=burn_in"
  # guides of different skill (the paper's open question), at Table 6's lambda_BC 0.2
  "lbc02_guide_ann|--set learner.lambda_bc=0.2 --set guide=checkpoints/guide.pt"
  "lbc02_guide_long|--set learner.lambda_bc=0.2 --set guide=checkpoints/guide_long.pt"
  "lbc02_guide_weak|--set learner.lambda_bc=0.2 --set guide=checkpoints/guide_random_rotors.pt"
  # slope schedules in the Q-driven regime (jump-start, no BC: learning follows the critic's gradient)
  "js_fixed2|--no-bc --slope fixed:2"
  "js_fixed50|--no-bc --slope fixed:50"
  "js_fixed100|--no-bc --slope fixed:100"
  "js_interval|--no-bc --slope interval"
  "js_adaptive|--no-bc"
  # slope schedules in the default (BC-led) regime
  "interval|--slope interval"
  "fixed2|--slope fixed:2"
  "fixed50|--slope fixed:50"
  "fixed100|--slope fixed:100"
  # Table 4 and the baselines
  "js_only|--no-bc"
  "bc_only|--no-jump-start"
  "neither|--no-jump-start --no-bc"
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
    out=$OUT/$name-s$seed
    dirs+=("$out")
    [ -f "$out/metrics.jsonl" ] && grep -q "\"epoch\": $EPOCHS," "$out/metrics.jsonl" && continue
    while [ "$(jobs_running)" -ge "$PARALLEL" ]; do sleep 5; done
    echo "== $name seed $seed: $SNN train $flags --epochs $EPOCHS --seed $seed --out $out --resume"
    # shellcheck disable=SC2086
    $SNN train $flags --epochs "$EPOCHS" --seed "$seed" --out "$out" --resume --no-progress > "$out.log" 2>&1 &
    sleep 1
  done
done
wait
$SNN summarize --by-variant --test 500 "${dirs[@]}"
