#!/usr/bin/env bash
# MiniLM on all of IMDB (issue 27): a full fine-tune (shipped defaults) and LoRA (shipped defaults but lr 5e-4:
# the shipped 2e-3 collapsed to chance at this length, see README), one epoch over the 25,000 training reviews
# (1,000 carved off for validation), tested on all 25,000 test reviews, reviews cut to 128 tokens.
#   DATA=../shared/data/imdb bash experiments/imdb_sentiment/run_full_scale.sh
# About 40 minutes per run on 2 CPU cores. A run stopped midway continues where it left off: rerun this.
set -euo pipefail
DATA=${DATA:-../shared/data/imdb}
OUT=${OUT:-outputs/imdb_full_scale}
EXP=experiments/imdb_sentiment/full_scale
ALL="experiment=imdb_minilm data.path=$DATA data.train_size=null data.val_fraction=0.04 data.val_size=null
  data.test_size=null data.max_length=128"

train() {  # run name, overrides
  local name=$1; shift
  if [ ! -f "$OUT/$name/metrics.json" ]; then
    if [ -f "$OUT/$name/checkpoints/last.ckpt" ]; then
      python -m lft.train resume="$OUT/$name"
    else
      python -m lft.train $ALL "$@" hydra.run.dir="$OUT/$name"
    fi
  fi
  [ -f "$EXP/$name.json" ] || cp "$OUT/$name/metrics.json" "$EXP/$name.json"
}

mkdir -p "$EXP"
train full strategy=full
train lora_lr5e-4 strategy=lora strategy.lr=5e-4
python -m lft.report "$OUT/full" "$OUT/lora_lr5e-4" --out "$EXP"
