#!/usr/bin/env bash
# Forgetting that shows (issue 27): SmolLM2-135M-Instruct fine-tuned on a narrow task, IMDB sentiment as
# instructions (reviews cut to 64 tokens, the answer one word), 100 optimizer steps of 8 rows. Four recipes on the
# same steps, three seeds each: full fine-tune (lr 3e-4), LoRA (shipped defaults), replay (full, 10% of each batch
# Alpaca) and a multi-task mixture (full, 50% Alpaca); a fifth, LoRA at lr 5e-4. Every run scores three retention sets before its first
# step and after its last (forgetting=...): Tiny Shakespeare perplexity (general text), Alpaca perplexity and
# ROUGE on 100 held-out instructions (the model's earlier instruction following; the Alpaca rows the mixtures train
# on are carved apart from them), and the new task's own accuracy on 200 IMDB test reviews.
#   DATA=../shared/data bash experiments/forgetting_smollm2/run_narrow.sh
# Runs already finished are skipped; an interrupted one continues from its last checkpoint.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-outputs/forgetting_narrow}
SEEDS=${SEEDS:-1 2 3}
RECIPES=${RECIPES:-full lora replay mixture lora_lr5e-4}  # a subset reruns only those
EXP=experiments/forgetting_smollm2/narrow

COMMON="model=smollm2_135m trainer.max_epochs=1 trainer.enable_progress_bar=false
  forgetting=text forgetting.retention.text.path=$DATA/text/tinyshakespeare.txt
  +forgetting.retention.alpaca={path:$DATA/alpaca/alpaca_5000.json,test_size:100}
  +forgetting.retention.imdb_instruct={path:$DATA/imdb,test_size:200,max_source_length:64}
  data.monitor.metric=val/loss data.monitor.mode=min"
# The new task alone: 800 training reviews = 100 steps; 64 validation reviews; 32 test reviews (the 200 scored
# before and after come from the retention set above).
IMDB="data=imdb_instruct data.path=$DATA/imdb data.max_source_length=64 data.train_size=800 data.val_size=64
  data.test_size=32"
FULL="strategy=full strategy.lr=3e-4"
# Mixtures draw 800 rows (100 steps); Alpaca rows are cut to 64 + 128 tokens, so a step costs about what it does alone.
MIX="data=mixture data.epoch_rows=800
  data.members.imdb_instruct.path=$DATA/imdb +data.members.imdb_instruct.max_source_length=64
  data.members.imdb_instruct.train_size=800 data.members.imdb_instruct.val_size=64 data.members.imdb_instruct.test_size=32
  data.members.alpaca.path=$DATA/alpaca/alpaca_5000.json data.members.alpaca.train_size=2000
  data.members.alpaca.val_size=32 data.members.alpaca.test_size=32 +data.members.alpaca.max_source_length=64
  +data.members.alpaca.max_target_length=128 +data.members.alpaca.generate.val_samples=0
  +data.members.alpaca.generate.test_samples=0"

run() {
  case " $RECIPES " in *" $1 "*) ;; *) return ;; esac
  dir=$OUT/$1/seed$2; shift 2
  if [ -f "$dir/metrics.json" ]; then return; fi
  if [ -f "$dir/checkpoints/last.ckpt" ]; then python -m lft.train resume="$dir"; return; fi
  python -m lft.train "$@" hydra.run.dir="$dir"
}

for seed in $SEEDS; do  # seed by seed, so a stop leaves whole seeds of every recipe
  run full "$seed" $COMMON $IMDB $FULL seed="$seed"
  run lora "$seed" $COMMON $IMDB strategy=lora seed="$seed"
  run replay "$seed" $COMMON $MIX $FULL "data.mixture={imdb_instruct: 0.9, alpaca: 0.1}" seed="$seed"
  run mixture "$seed" $COMMON $MIX $FULL "data.mixture={imdb_instruct: 0.5, alpaca: 0.5}" seed="$seed"
  # LoRA at a quarter of its shipped rate, the rate that held on all of IMDB (experiments/defaults/lora_lr).
  run lora_lr5e-4 "$seed" $COMMON $IMDB strategy=lora strategy.lr=5e-4 seed="$seed"
done

python -m lft.report "$OUT" --over seed --metric forgetting/alpaca/rouge1_after --out "$EXP" \
  --columns 'forgetting/imdb_instruct/accuracy_after' 'forgetting/alpaca/rouge1_*' 'forgetting/alpaca/perplexity_*' \
  'forgetting/text/perplexity_*'
