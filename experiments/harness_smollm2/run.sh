#!/bin/bash
# Issue 26, "a harness result table for the base SmolLM2 and a fine-tuned run on the shipped local task":
# SmolLM2-135M-Instruct before and after a short LoRA on AG News, both scored by lm-evaluation-harness on lft's
# shipped task lft_ag_news (4-way multiple choice by log-likelihood) over the first $LIMIT rows of the local test file.
#   DATA=../shared/data LIMIT=200 bash experiments/harness_smollm2/run.sh
# Results append to $RESULTS; run folders go to outputs/harness_smollm2/.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
LIMIT=${LIMIT:-200}
TRAIN_SIZE=${TRAIN_SIZE:-400}
ACCEL=${ACCEL:-cpu}
RESULTS=${RESULTS:-experiments/harness_smollm2/results.json}
OUTDIR=outputs/harness_smollm2
HARNESS=('harness.tasks=[lft_ag_news]' "harness.data_dir=$DATA" "harness.limit=$LIMIT" "trainer.accelerator=$ACCEL")

time $PY -m lft.evaluate model=smollm2_135m "${HARNESS[@]}" name=smollm2-135m-instruct "out=$RESULTS" \
    "hydra.run.dir=$OUTDIR/eval_base"
# LoRA r=16 on every projection, $TRAIN_SIZE AG News train rows x 1 epoch (steps of 8), on lft_ag_news's own prompt
# (data=ag_news_instruct: "News: {text}\nTopic (World, Sports, Business or Sci/Tech):\n" -> "World").
time $PY -m lft.train model=smollm2_135m data=ag_news_instruct "data.path=$DATA/ag_news" \
    "data.train_size=$TRAIN_SIZE" data.val_size=64 trainer.max_epochs=1 test=false "trainer.accelerator=$ACCEL" \
    strategy=lora strategy.r=16 strategy.alpha=32 strategy.lr=5e-4 \
    'strategy.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]' \
    "hydra.run.dir=$OUTDIR/train_lora"
time $PY -m lft.evaluate "run=$OUTDIR/train_lora" "${HARNESS[@]}" name=lora-r16-ag-news "out=$RESULTS" \
    "hydra.run.dir=$OUTDIR/eval_lora"
$PY -m lft.report "$RESULTS"
