#!/usr/bin/env bash
# Shipped defaults vs the alternatives a new user tries, MiniLM on two classification datasets nobody tuned on:
# LoRA as shipped (query/value, r 8, lr 2e-3), LoRA on every linear layer of the blocks (query, key, value,
# dense), and a full fine-tune (lr 5e-5), each one epoch. AG News: 4,000 training / 1,600 test rows;
# IMDB: 1,000 training / 500 test reviews. Then lft.report per dataset into experiments/defaults/<data>/.
#   DATA=../shared/data bash experiments/defaults/run.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-outputs/defaults}
ALL="strategy.target_modules=[query,key,value,dense]"
run() { dir=$1; shift; [ -f "$dir/metrics.json" ] || python -m lft.train model=minilm trainer.max_epochs=1 \
  trainer.enable_progress_bar=false "$@" hydra.run.dir="$dir"; }
AG="data=ag_news data.path=$DATA/ag_news data.train_size=4000 data.val_size=400"
IMDB="data=imdb data.path=$DATA/imdb data.train_size=1000 data.val_size=200 data.test_size=500"
for data in ag_news imdb; do
  [ $data = ag_news ] && D=$AG || D=$IMDB
  run "$OUT/$data/lora_qv" $D strategy=lora
  run "$OUT/$data/lora_all" $D strategy=lora "$ALL"
  run "$OUT/$data/full" $D strategy=full
  python -m lft.report "$OUT/$data" --out "experiments/defaults/$data"
done
