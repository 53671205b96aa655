#!/bin/bash
# Issue 25: the InstructGPT route on Anthropic HH-RLHF harmless-base, a CPU subset (sizes below), SmolLM2-135M-Instruct.
#   1. SFT on the chosen dialogues (multi-turn, loss on the assistant's turns), LoRA; merged into a model folder.
#   2. A reward model on the preference pairs (MiniLM, Bradley-Terry).
#   3. RLOO (the critic-free variant) from the SFT model against that reward model, LoRA.
# At each step (base, SFT, RL): the reward model's mean score of the policy's answers to held-out test prompts, and
# the policy's preference accuracy on all 307 test pairs. The reward model's own accuracy on the 307 pairs.
#   DATA=../shared/data/hh_rlhf_harmless bash experiments/instructgpt_hh/run.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/hh_rlhf_harmless}
ACCEL=${ACCEL:-cpu}
ALGO=${ALGO:-rloo}
HERE=experiments/instructgpt_hh
OUT=outputs/instructgpt_hh
PAIRS=(data=hh_rlhf_harmless "data.path=$DATA" data.max_length=128 data.max_prompt_length=96 "trainer.accelerator=$ACCEL")
ANSWERS=("${PAIRS[@]}" data.task=ppo data.test_size=100 "reward.run=$OUT/reward")

# 1. SFT: 128 chosen dialogues x 1 epoch (32 steps of 4), up to 256 tokens each.
time $PY -m lft.train model=smollm2_135m strategy=lora data=hh_rlhf_chat "data.path=$DATA" data.train_size=128 \
    data.val_size=32 data.max_length=256 trainer.max_epochs=1 test=false "trainer.accelerator=$ACCEL" \
    "hydra.run.dir=$OUT/sft"
time $PY -m lft.export "run=$OUT/sft" "out=$OUT/sft_merged"   # the SFT policy as a model folder: RL's start and reference
# 2. Reward model: MiniLM on 512 pairs x 1 epoch (64 steps of 8), tested on the 307 test pairs at the end.
time $PY -m lft.train model=minilm strategy=full "${PAIRS[@]}" data.task=reward data.train_size=512 data.val_size=64 \
    trainer.max_epochs=1 "hydra.run.dir=$OUT/reward"
time $PY -m lft.evaluate "run=$OUT/reward" "${PAIRS[@]}" data.task=reward name=reward-model "out=$HERE/results_reward_model.json" \
    "hydra.run.dir=$OUT/eval_reward_model"
# 3. RL from the SFT model against the reward model: 64 train prompts in batches of 8, 4 answers each.
time $PY -m lft.train "model.name_or_path=$OUT/sft_merged" model=smollm2_135m model.gguf_file=null strategy=lora "${PAIRS[@]}" \
    data.task=$ALGO data.monitor.metric=val/reward data.monitor.mode=max data.train_size=64 data.val_size=32 \
    data.test_size=100 trainer.max_epochs=1 \
    "reward.run=$OUT/reward" "hydra.run.dir=$OUT/rl"
# Each step's policy: its answers scored by the reward model (100 test prompts), its preference accuracy (307 pairs).
POLICIES=("model=smollm2_135m" "model=smollm2_135m model.name_or_path=$OUT/sft_merged model.gguf_file=null" "run=$OUT/rl")
for i in 0 1 2; do
  name=(base sft $ALGO)
  read -ra policy <<< "${POLICIES[$i]}"
  time $PY -m lft.evaluate "${policy[@]}" "${ANSWERS[@]}" name=${name[$i]} "out=$HERE/results_answers.json" \
      "hydra.run.dir=$OUT/eval_answers_${name[$i]}"
  time $PY -m lft.evaluate "${policy[@]}" "${PAIRS[@]}" name=${name[$i]} "out=$HERE/results_pairs.json" \
      "hydra.run.dir=$OUT/eval_pairs_${name[$i]}"
done
$PY -m lft.report "$HERE/results_reward_model.json" "$HERE/results_answers.json" "$HERE/results_pairs.json"
