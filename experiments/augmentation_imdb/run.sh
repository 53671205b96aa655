#!/usr/bin/env bash
# EDA on a small IMDB subset: MiniLM full fine-tune on 500 training reviews (3 epochs), augment=none vs
# augment=eda, seeds 1-3 (each seed draws its own 500/200/500 subset; none and eda share it), test accuracy on
# 500 reviews.   DATA=../shared/data bash experiments/augmentation_imdb/run.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-outputs/augmentation_imdb}
for seed in 1 2 3; do
  for augment in none eda; do
    dir="$OUT/${augment}_seed$seed"
    [ -f "$dir/metrics.json" ] || python -m lft.train experiment=imdb_minilm data.path="$DATA/imdb" strategy=full \
      data.train_size=500 data.val_size=200 data.test_size=500 trainer.max_epochs=3 trainer.val_check_interval=1.0 \
      trainer.enable_progress_bar=false augment=$augment seed=$seed hydra.run.dir="$dir"
  done
done
python - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| augment | seed 1 | seed 2 | seed 3 | mean | std | rows changed |\n|---|---|---|---|---|---|---|")
for augment in ("none", "eda"):
    runs = [json.loads((out / f"{augment}_seed{s}" / "metrics.json").read_text()) for s in (1, 2, 3)]
    acc = [100 * r["test/accuracy"] for r in runs]
    changed = ", ".join(str(int(r.get("augment/changed", 0))) for r in runs)
    print(f"| {augment} | " + " | ".join(f"{a:.1f}" for a in acc) +
          f" | {statistics.mean(acc):.2f} | {statistics.stdev(acc):.2f} | {changed} |")
PY
