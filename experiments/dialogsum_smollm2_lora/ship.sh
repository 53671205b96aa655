#!/bin/bash
# Shipping (issue 26): a DialogSum LoRA run as one GGUF file (LoRA merged, f16) with its model card beside it, run by
# llama.cpp (the llama-cpp extra) on the first two test dialogues next to lft.generate's summaries of the same two.
#   RUN=outputs/dialogsum_smollm2_lora/train_lora bash experiments/dialogsum_smollm2_lora/ship.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/dialogsum}
RUN=${RUN:-outputs/dialogsum_smollm2_lora/train_lora}
OUT=${OUT:-outputs/dialogsum_smollm2_lora/smollm2-dialogsum-lora}
time $PY -m lft.export "run=$RUN" "out=$OUT" format=gguf quantization=f16
head -n 2 "$DATA/test.jsonl" > "$(dirname "$OUT")/two_test_dialogues.jsonl"
time $PY -m lft.generate "run=$RUN" "prompts=$(dirname "$OUT")/two_test_dialogues.jsonl"
time $PY experiments/dialogsum_smollm2_lora/llama_cpp_generate.py "$RUN" "$OUT" "$(dirname "$OUT")/two_test_dialogues.jsonl"
ls -l "$OUT"
