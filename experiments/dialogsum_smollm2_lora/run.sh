#!/bin/bash
# Done-when #1 of issue #3: SmolLM2-135M-Instruct zero-shot vs LoRA on 1,000 DialogSum training dialogues,
# both scored (ROUGE-1/2/L, BLEU; greedy, 64 new tokens) on the same 100 test dialogues (three references each).
#   DATA=../shared/data/dialogsum ACCEL=cpu bash experiments/dialogsum_smollm2_lora/run.sh
# On a GPU machine: ACCEL=gpu. Results append to $RESULTS; run folders go to outputs/dialogsum_smollm2_lora/.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/dialogsum}
ACCEL=${ACCEL:-cpu}
RESULTS=${RESULTS:-experiments/dialogsum_smollm2_lora/results.json}
OUTDIR=outputs/dialogsum_smollm2_lora
COMMON=(model=smollm2_135m data=dialogsum "data.path=$DATA" data.test_size=100 "trainer.accelerator=$ACCEL")
LORA=(strategy=lora strategy.r=16 strategy.alpha=32 strategy.lr=5e-4
      'strategy.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]')

time $PY -m lft.evaluate "${COMMON[@]}" name=zero-shot "out=$RESULTS" "hydra.run.dir=$OUTDIR/eval_zero_shot"
# 1,000 dialogues x 1 epoch = 125 steps of 8; validation generates 32 of 100 validation dialogues.
time $PY -m lft.train "${COMMON[@]}" "${LORA[@]}" data.train_size=1000 data.val_size=100 trainer.max_epochs=1 \
    test=false "hydra.run.dir=$OUTDIR/train_lora"
time $PY -m lft.evaluate "${COMMON[@]}" "run=$OUTDIR/train_lora" name=lora-r16-1epoch "out=$RESULTS" \
    "hydra.run.dir=$OUTDIR/eval_lora"
$PY -m lft.generate "run=$OUTDIR/train_lora" "prompt=#Person1#: Hi Tom, are you coming to the party on Saturday?
#Person2#: I'd love to, but I have to finish my report first.
#Person1#: Come after you finish then. It starts at eight.
#Person2#: OK, I'll be there around nine."
$PY -m lft.report "$RESULTS"
