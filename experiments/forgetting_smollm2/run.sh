#!/usr/bin/env bash
# Forgetting on SmolLM2-135M-Instruct: LoRA vs full fine-tune on DialogSum, a DialogSum+Alpaca mixture and a
# replay run (DialogSum + 20% Tiny Shakespeare), the same 60 optimizer steps of 8 rows each. Each run scores
# Tiny Shakespeare perplexity before its first step and after its last (forgetting=text) and ROUGE-1 on the
# same 100 DialogSum test dialogues.   DATA=../shared/data bash experiments/forgetting_smollm2/run.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-outputs/forgetting_smollm2}
EXP=experiments/forgetting_smollm2
LORA="strategy=lora strategy.r=16 strategy.alpha=32 strategy.lr=5e-4 strategy.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
COMMON="model=smollm2_135m trainer.max_epochs=1 trainer.enable_progress_bar=false
  forgetting=text forgetting.retention.text.path=$DATA/text/tinyshakespeare.txt
  data.monitor.metric=val/loss data.monitor.mode=min"
# DialogSum alone: 480 training dialogues = 60 steps; 32 validation dialogues (8 generated); 100 test dialogues.
DIALOGSUM="data=dialogsum data.path=$DATA/dialogsum data.train_size=480 data.val_size=32 data.test_size=100
  data.generate.val_samples=8"
# Mixtures draw 480 rows per epoch (60 steps) across members; DialogSum keeps the same 100 test dialogues.
MEMBER_DS="data.members.dialogsum.path=$DATA/dialogsum data.members.dialogsum.train_size=2000
  data.members.dialogsum.val_size=32 data.members.dialogsum.test_size=100 +data.members.dialogsum.generate.val_samples=8"

run() { name=$1; shift; [ -f "$OUT/$name/metrics.json" ] || python -m lft.train "$@" hydra.run.dir="$OUT/$name"; }

run lora $COMMON $DIALOGSUM $LORA
run full $COMMON $DIALOGSUM strategy=full
run mixture_alpaca $COMMON $LORA data=mixture "data.mixture={dialogsum: 0.5, alpaca: 0.5}" data.epoch_rows=480 $MEMBER_DS \
  data.members.alpaca.path=$DATA/alpaca/alpaca_5000.json data.members.alpaca.train_size=2000 \
  data.members.alpaca.val_size=32 data.members.alpaca.test_size=32 +data.members.alpaca.generate.val_samples=0
run replay_text $COMMON $LORA data=mixture "data.mixture={dialogsum: 0.8, text: 0.2}" data.epoch_rows=480 $MEMBER_DS \
  data.members.text.path=$DATA/text/tinyshakespeare.txt data.members.text.val_size=200 data.members.text.test_size=200

python -m lft.report "$OUT" --metric val/loss --out "$EXP"
