#!/usr/bin/env bash
# An ensemble of three grid runs (the best learning rate of each strategy: full, lora, freeze) scored beside its
# members on the same 500 IMDB test reviews. Needs experiments/sweeps/grid.sh first.
#   DATA=../shared/data bash experiments/sweeps/ensemble.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
GRID=${OUT:-outputs/sweeps}/grid
runs=$(python - "$GRID" <<'PY'
import json, sys, yaml
from pathlib import Path
best = {}
for job in sorted(Path(sys.argv[1]).glob("[0-9]*")):
    if not (job / "metrics.json").exists():
        continue
    strategy = yaml.safe_load((job / "config.yaml").read_text())["strategy"]["name"]
    score = json.loads((job / "metrics.json").read_text())["best_val/accuracy"]
    if strategy not in best or score > best[strategy][0]:
        best[strategy] = (score, str(job))
print(",".join(best[s][1] for s in sorted(best)))
PY
)
rm -f experiments/sweeps/ensemble.json
python -m lft.evaluate "runs=[$runs]" data=imdb data.path="$DATA/imdb" data.train_size=500 data.val_size=200 \
  data.test_size=500 trainer.enable_progress_bar=false out=experiments/sweeps/ensemble.json \
  hydra.run.dir=outputs/sweeps/ensemble
