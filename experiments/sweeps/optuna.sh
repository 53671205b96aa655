#!/usr/bin/env bash
# An 8-trial Optuna (TPE) search over LoRA on MiniLM (500 IMDB training reviews, one epoch, 500 test reviews),
# killed (SIGKILL) once 3 trials have finished and started again with the same command: the journal in the
# sweep folder carries the search on to its 8 trials. Then lft.report writes experiments/sweeps/optuna/.
#   DATA=../shared/data bash experiments/sweeps/optuna.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
SWEEP=${OUT:-outputs/sweeps}/optuna
search() {
  python -m lft.train hparams_search=optuna experiment=imdb_minilm data.path="$DATA/imdb" data.train_size=500 \
    data.val_size=200 data.test_size=500 trainer.max_epochs=1 trainer.enable_progress_bar=false \
    hydra.sweeper.n_trials=8 hydra.sweep.dir="$SWEEP"
}
finished() { ls "$SWEEP"/*/metrics.json 2>/dev/null | wc -l; }
if [ ! -f "$SWEEP/best.json" ]; then
  setsid bash -c "$(declare -f search); DATA='$DATA' SWEEP='$SWEEP' search" & pid=$!
  while [ "$(finished)" -lt 3 ] && kill -0 $pid 2>/dev/null; do sleep 5; done
  kill -9 -- -$pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  echo "killed the search after $(finished) finished trials"
fi
search   # the same command: resumes from $SWEEP/study.journal
python -m lft.report "$SWEEP" --out experiments/sweeps/optuna
