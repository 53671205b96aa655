#!/usr/bin/env bash
# Teacher (MiniLM, 6 layers, full fine-tune) -> student (3 of its layers, distilled) -> accuracy and throughput.
# Run from the repo root: flock /tmp/lft-heavy.lock bash experiments/distill_minilm_imdb/run.sh
set -euo pipefail
OUT=${OUT:-outputs/distill_minilm_imdb}
DATA="data=imdb data.path=../shared/data/imdb data.train_size=2000 data.val_size=500 data.test_size=500"
COMMON="trainer.max_epochs=1 trainer.enable_progress_bar=false ${EXTRA:-}"
[ -f $OUT/teacher/metrics.json ] || time .venv/bin/python -m lft.train strategy=full $DATA $COMMON hydra.run.dir=$OUT/teacher
time .venv/bin/python -m lft.train strategy=distill strategy.teacher=$OUT/teacher strategy.student_layer_step=2 \
    $DATA $COMMON hydra.run.dir=$OUT/student
.venv/bin/python experiments/distill_minilm_imdb/evaluate.py $OUT/teacher $OUT/student
