#!/usr/bin/env bash
# The flan-T5 lab's table (original / full fine-tune / PEFT on DialogSum) with lft and SmolLM2-135M (issue 27).
# Every run uses the shipped defaults (conf/strategy/{lora,full}.yaml, conf/data/dialogsum.yaml), one epoch over
# N training dialogues, then greedy summaries of all 500 test dialogues, scored against all three references
# and (the lab's way) against summary1 alone, from the same generated text.
#   DATA=../shared/data/dialogsum N=3000 bash experiments/dialogsum_seed_table/run.sh
# On this project's 2-core CPU box (AVX-512-BF16: precision auto is bf16-mixed) a step of 8 dialogues took 7.3 s
# (LoRA) and 6.3 s (full), so N=3000 (374 steps) is ~47 and ~41 min with validation; all 12,460 (N=null) would
# be ~3.2 h and ~2.8 h. Results and times: README.md.
# A run that stops (Ctrl-C, the machine going away) continues where its last checkpoint left it: rerun this.
set -euo pipefail
DATA=${DATA:-../shared/data/dialogsum}
N=${N:-3000}
OUT=${OUT:-outputs/dialogsum_seed_table}
EXP=experiments/dialogsum_seed_table
RESULTS=$EXP/results.json
STRATEGIES=${STRATEGIES:-lora full}  # STRATEGIES=lora: only that column
D="model=smollm2_135m data=dialogsum data.path=$DATA"

has_row() {  # results.json is the record: a row already there is not scored again (its outputs may be gone)
  [ -f "$RESULTS" ] && python -c 'import json, sys; sys.exit(all(r["name"] != sys.argv[2] for r in json.load(open(sys.argv[1]))))' "$RESULTS" "$1"
}

score() {  # name, run folder (empty: the base model)
  local name=$1 run=${2:-}
  has_row "$name" ||
    python -m lft.evaluate $D ${run:+run=$run} name="$name" out="$RESULTS" hydra.run.dir="$OUT/eval_$name"
  has_row "$name-summary1" ||
    python -m lft.evaluate predictions="$OUT/eval_$name" data=dialogsum 'data.reference_columns=[summary1]' \
      name="$name-summary1" out="$RESULTS" hydra.run.dir="$OUT/rescore_$name"
}

score zero-shot
for strategy in $STRATEGIES; do
  run=$OUT/$strategy
  if [ ! -f "$run/metrics.json" ]; then
    if [ -f "$run/checkpoints/last.ckpt" ]; then
      python -m lft.train resume="$run"
    else
      python -m lft.train $D strategy=$strategy data.train_size=$N trainer.max_epochs=1 test=false hydra.run.dir="$run"
    fi
  fi
  [ -f "$EXP/train_$strategy.json" ] || cp "$run/metrics.json" "$EXP/train_$strategy.json"
  score "$strategy" "$run"
done
python -m lft.report "$RESULTS"  # the table, and results.png beside results.json
