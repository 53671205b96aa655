"""Same work through lft and through the plain Hugging Face Trainer, in one process: throughput and ratio.

The work: full fine-tune of the packaged MiniLM on N IMDB reviews (or the shipped sample when
../shared/data is absent), batch 16, max length 256, AdamW 5e-5, linear schedule with 6% warmup,
gradient clipping 1.0, one epoch, no evaluation or checkpointing inside the timed loop.

    python bench/train_vs_hf_trainer.py --train-size 512 [--precision bf16] [--repeats 2] [--out bench/results/x.json]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from lft import CONFIG_DIR  # noqa: E402
from lft.models import load_tokenizer  # noqa: E402
from lft.tasks import build_task  # noqa: E402
from lft.train import train  # noqa: E402

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"


def lft_config(args, out_dir: Path):
    imdb = args.imdb
    data = ["data=imdb", f"data.path={imdb}"] if imdb.exists() else ["data=sentiment_sample", "data.max_length=256"]
    precision = {"fp32": "fp32", "bf16": "bf16"}[args.precision]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            *data, f"data.train_size={args.train_size}", "data.val_size=16", "data.test_size=16",
            "data.batch_size=16", "strategy=full", "strategy.lr=5e-5", "scheduler=linear", "callbacks=none",
            f"precision={precision}", "trainer.max_epochs=1", "trainer.limit_val_batches=0",
            "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=50", "test=false",
            "+trainer.enable_checkpointing=false",
        ])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir / "lft")
        cfg.logger = None
    return cfg


def run_lft(cfg) -> dict:
    metrics = train(cfg)
    return {"seconds": metrics["fit_seconds"], "steps": metrics["optimizer_steps"], "last_logged_loss": metrics["train/loss"]}


def run_hf_trainer(cfg, out_dir: Path) -> dict:
    """The same model, data, optimizer and schedule, through transformers.Trainer."""
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    datamodule = task.encode(tokenizer, cfg.seed)  # identical tokenized rows and padding collator
    model = task.build_model(cfg.model)
    bf16 = cfg.trainer.precision.startswith("bf16")
    args = TrainingArguments(
        output_dir=str(out_dir / "hf"), per_device_train_batch_size=cfg.data.batch_size, num_train_epochs=1,
        learning_rate=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay, lr_scheduler_type="linear",
        warmup_steps=cfg.scheduler.warmup_ratio, max_grad_norm=cfg.trainer.gradient_clip_val, bf16=bf16,
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=50, seed=cfg.seed,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=datamodule.splits["train"],
                      data_collator=datamodule.collate_fn)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1), "steps": result.global_step, "mean_train_loss": result.training_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating; the fastest counts")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_vs_hf_trainer.json"))
    parser.add_argument("--imdb", type=Path, default=IMDB, help="IMDB folder (the shipped sample if absent)")
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args()

    cfg = lft_config(args, args.work_dir)
    # Alternate the two and keep each one's fastest run: the first run in a process also pays one-time
    # costs (CUDA context, kernel selection, file caches) that neither framework should be charged for.
    runs = {"hf_trainer": [], "lft": []}
    for _ in range(args.repeats):
        runs["hf_trainer"].append(run_hf_trainer(cfg, args.work_dir))
        runs["lft"].append(run_lft(cfg))
    hf, lft = (min(runs[k], key=lambda r: r["seconds"]) for k in ("hf_trainer", "lft"))
    rows = args.train_size
    result = {
        "work": f"MiniLM full fine-tune, {rows} reviews, batch 16, max_length 256, {args.precision}",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU x{torch.get_num_threads()}",
        "python": platform.python_version(), "torch": torch.__version__,
        "hf_trainer": {**hf, "samples_per_s": round(rows / hf["seconds"], 2)},
        "lft": {**lft, "samples_per_s": round(rows / lft["seconds"], 2)},
        "lft_over_hf_throughput": round(hf["seconds"] / lft["seconds"], 3),
        "all_seconds": {k: [r["seconds"] for r in v] for k, v in runs.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
