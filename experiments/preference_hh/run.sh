#!/bin/bash
# Issue 11's experiment: SmolLM2-135M-Instruct + LoRA, DPO on a subset of HH-RLHF harmless pairs, and a MiniLM
# reward model; every model scored on all 307 test pairs by lft.evaluate (results in $EXP/results_*.json).
#   PY=.venv/bin/python bash experiments/preference_hh/run.sh        (~45 min on 2 shared CPU cores)
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/hh_rlhf_harmless}
EXP=experiments/preference_hh
OUTDIR=outputs/preference_hh
# 128 tokens per prompt + answer (prompt <= 96: oldest turns dropped first); validation: 16 pairs carved from train.
COMMON=(data=hh_rlhf_harmless "data.path=$DATA" data.max_length=128 data.max_prompt_length=96 data.val_size=16
        data.eval_batch_size=8 trainer=cpu "data.preference.reference_cache_file=$OUTDIR/reference_logps.pt")

# DPO: base first (it is its own reference, so this also caches the test pairs' reference log-probabilities).
time $PY -m lft.evaluate "${COMMON[@]}" model=smollm2_135m name=smollm2-base "out=$EXP/results_dpo.json" \
    "hydra.run.dir=$OUTDIR/eval_dpo_base"
# 96 train pairs x 1 epoch = 24 steps of 4 pairs; LoRA r=8 on q/v; sigmoid DPO, beta 0.1.
time $PY -m lft.train "${COMMON[@]}" model=smollm2_135m strategy=lora optimizer.lr=5e-4 data.train_size=96 \
    data.batch_size=4 trainer.max_epochs=1 test=false "hydra.run.dir=$OUTDIR/train_dpo"
time $PY -m lft.evaluate "${COMMON[@]}" "run=$OUTDIR/train_dpo" name=smollm2-dpo-lora "out=$EXP/results_dpo.json" \
    "hydra.run.dir=$OUTDIR/eval_dpo_tuned"
time $PY $EXP/generations.py "$OUTDIR/train_dpo" 4 "$EXP/generations.md"

# Reward model: MiniLM + a one-score head, full fine-tune, Bradley-Terry loss on 512 train pairs.
REWARD=("${COMMON[@]}" data.task=reward model=minilm)
time $PY -m lft.evaluate "${REWARD[@]}" name=minilm-untrained-head "out=$EXP/results_reward.json" \
    "hydra.run.dir=$OUTDIR/eval_reward_base"
time $PY -m lft.train "${REWARD[@]}" strategy=full data.train_size=512 data.batch_size=8 trainer.max_epochs=1 \
    test=false "hydra.run.dir=$OUTDIR/train_reward"
time $PY -m lft.evaluate "${REWARD[@]}" "run=$OUTDIR/train_reward" name=minilm-reward "out=$EXP/results_reward.json" \
    "hydra.run.dir=$OUTDIR/eval_reward_tuned"

$PY -m lft.report "$EXP/results_dpo.json"
$PY -m lft.report "$EXP/results_reward.json"
