#!/usr/bin/env bash
# 3 x 2 grid (strategy x learning rate) of MiniLM on 500 IMDB training reviews, one epoch, scored on 500 test
# reviews; then lft.report writes the table and plots into experiments/sweeps/grid/.
#   DATA=../shared/data bash experiments/sweeps/grid.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-outputs/sweeps}
python -m lft.train -m experiment=imdb_minilm data.path="$DATA/imdb" data.train_size=500 data.val_size=200 \
  data.test_size=500 trainer.max_epochs=1 trainer.enable_progress_bar=false \
  strategy=full,lora,freeze optimizer.lr=1e-4,1e-3 hydra.sweep.dir="$OUT/grid"
python -m lft.report "$OUT/grid" --out experiments/sweeps/grid
