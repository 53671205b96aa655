"""`python -m lft.evaluate [run=<run dir>] model=... data=... [out=results.json] [name=...]`: score on the test split.

The same data flags score a base model, a run's LoRA adapter or a run's full fine-tune, so "original vs full
fine-tune vs PEFT" is three commands appending to one `out` file, printed as one table (see lft.report).
Generation settings come from `data.generate` (`test_samples`: rows generated, null = all).
"""

import json
import logging
import time
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, open_dict

from lft import CONFIG_DIR
from lft.errors import ConfigError
from lft.loggers import build_loggers
from lft.models import load_tokenizer
from lft.module import FineTuneModule
from lft.report import append_row, format_table
from lft.run_folder import load_run_config, load_trained_model
from lft.tasks import build_task

log = logging.getLogger("lft")


def evaluate(cfg: DictConfig) -> dict:
    run = cfg.get("run")
    with open_dict(cfg):
        if run:
            cfg.model = load_run_config(run).model  # the base the run trained; weights come from the run
        # Only the test split is scored: tokenize a few train rows (carving val/test from train happens before).
        cfg.data.train_size = min(cfg.data.get("train_size") or 64, 64)
        if cfg.data.get("long_targets"):
            cfg.data.long_targets = "truncate"
    L.seed_everything(cfg.seed, workers=True)
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    datamodule = task.encode(tokenizer, cfg.seed, cache_dir=cfg.paths.get("cache_dir"))
    model = load_trained_model(task, cfg.model, run)
    if run is None and hasattr(task, "policy_is_reference"):
        task.policy_is_reference = True  # DPO: a base model is its own reference (implicit rewards 0, one forward)
    model.eval()
    module = FineTuneModule(model, task, optimizer=None, scheduler_cfg=None)
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        logger=build_loggers(cfg.get("logger")) or False, enable_checkpointing=False,
                        limit_test_batches=cfg.trainer.get("limit_test_batches") or 1.0,
                        enable_progress_bar=cfg.trainer.enable_progress_bar)
    start = time.perf_counter()
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    row = {
        "name": cfg.get("name") or (Path(run).name if run else Path(str(cfg.model.name_or_path)).name),
        "model": str(cfg.model.name_or_path),
        "weights": str(run) if run else None,
        "rows": len(datamodule.splits["test"]),
        **{k.removeprefix("test/"): float(v) for k, v in results.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(row, indent=2))
    samples = module.samples.get("test", [])
    if samples:
        with (out_dir / "predictions.jsonl").open("w") as f:
            f.writelines(json.dumps(s) + "\n" for s in samples)
    rows = append_row(cfg.out, row) if cfg.get("out") else [row]
    print(format_table(rows))
    return row


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except ConfigError as err:
        log.error("%s", err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
