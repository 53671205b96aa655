#!/bin/bash
# Issue 25: the sentiment-RLHF demonstration. SmolLM2-135M-Instruct continues the openings of IMDB reviews (their
# first 8 tokens, plain text); the reward is P(positive) from an lft MiniLM sentiment run. PPO and RLOO (LoRA, the
# shipped defaults), then the mean reward on the same 200 held-out test openings before and after.
#   DATA=../shared/data/imdb bash experiments/rl_sentiment/run.sh
# Results append to $RESULTS; run folders go to outputs/rl_sentiment/.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/imdb}
ACCEL=${ACCEL:-cpu}
PROMPTS=${PROMPTS:-256}
RESULTS=${RESULTS:-experiments/rl_sentiment/results.json}
OUTDIR=outputs/rl_sentiment
# 1. The reward: MiniLM fine-tuned on 4,000 IMDB reviews cut to 128 tokens (it reads an 8-token opening plus at most
#    24 generated tokens), tested on 500 test reviews.
time $PY -m lft.train experiment=imdb_minilm strategy=full "data.path=$DATA" data.max_length=128 data.train_size=4000 \
    "trainer.accelerator=$ACCEL" "hydra.run.dir=$OUTDIR/reward_minilm"
RL=(model=smollm2_135m strategy=lora data=imdb_openings "data.path=$DATA" "data.train_size=$PROMPTS" data.val_size=64
    data.test_size=200 trainer.max_epochs=1 "trainer.accelerator=$ACCEL"
    "reward.run=$OUTDIR/reward_minilm" reward.label=positive)
# 2. Before: the base policy's continuations of the 200 test openings, scored by the reward.
time $PY -m lft.evaluate "${RL[@]}" name=base "out=$RESULTS" "hydra.run.dir=$OUTDIR/eval_base"
# 3. PPO and RLOO: $PROMPTS training openings in batches of 8, 4 samples each (one epoch), then the same test openings.
for algo in ppo rloo; do
  time $PY -m lft.train "${RL[@]}" data.task=$algo "hydra.run.dir=$OUTDIR/train_$algo"
  time $PY -m lft.evaluate "${RL[@]}" "run=$OUTDIR/train_$algo" name=$algo "out=$RESULTS" "hydra.run.dir=$OUTDIR/eval_$algo"
done
$PY -m lft.report "$RESULTS"
