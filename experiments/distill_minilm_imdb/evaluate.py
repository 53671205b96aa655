"""Accuracy and CPU inference throughput of finished classification runs on the same test reviews.

    .venv/bin/python experiments/distill_minilm_imdb/evaluate.py <run dir> [<run dir> ...]

Each run's test split is rebuilt from its own config.yaml (same path, seed and test_size, so the same 500 reviews);
throughput counts the model's forward passes only (tokenized and padded beforehand), batch 64, fp32, torch threads
as set by the machine. Prints one JSON line per run.
"""

import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import DataCollatorWithPadding

from lft.models.loading import load_tokenizer
from lft.runs.folder import load_run_model
from lft.tasks import build_task

BATCH = 64


def evaluate(run_dir: Path) -> dict:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    tokenizer = load_tokenizer(cfg.model)
    test = build_task(cfg.data).encode(tokenizer, cfg.seed).splits["test"]
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    batches = [collate([test[i] for i in range(s, min(s + BATCH, len(test)))]) for s in range(0, len(test), BATCH)]
    model = load_run_model(run_dir, merge=True).eval()
    with torch.inference_mode():
        model(**{k: v for k, v in batches[0].items() if k != "labels"})  # warm-up
        correct, start = 0, time.perf_counter()
        for batch in batches:
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            correct += (logits.argmax(-1) == batch["labels"]).sum().item()
        seconds = time.perf_counter() - start
    return {"run": str(run_dir), "layers": model.config.num_hidden_layers,
            "params": sum(p.numel() for p in model.parameters()), "test_reviews": len(test),
            "accuracy": round(correct / len(test), 4), "reviews_per_s": round(len(test) / seconds, 1),
            "seconds": round(seconds, 1), "threads": torch.get_num_threads()}


if __name__ == "__main__":
    for run in sys.argv[1:]:
        print(json.dumps(evaluate(Path(run))), flush=True)
