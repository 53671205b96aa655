"""QLoRA vs LoRA on the real SmolLM2-135M: peak memory and step time for N training steps on CPU.

One strategy per process, so the peak RSS is that strategy's alone:
    .venv/bin/python bench/kbit_memory.py strategy=lora
    .venv/bin/python bench/kbit_memory.py strategy=qlora
    .venv/bin/python bench/kbit_memory.py strategy=qlora strategy.quantization=null   # same LoRA, fp32 base
The model, the strategy and the k-bit loading are lft's own (conf/model/smollm2_135m.yaml, conf/strategy/*.yaml);
the loop is plain PyTorch on causal-LM blocks of Tiny Shakespeare, so no task class is needed.
Prints one JSON line.
"""

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM

from lft.config.paths import CONFIG_DIR
from lft.models.loading import load_pretrained, load_tokenizer
from lft.strategies import apply_strategy

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "tinyshakespeare.txt"
STEPS = int(os.environ.get("BENCH_STEPS", 20))
BATCH, BLOCK = 2, 64  # 2 x 64 = 128 tokens per step: 20 steps fit in minutes on 2 CPU cores


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["model=smollm2_135m", *overrides])
    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg.model)
    ids = tokenizer(TEXT.read_text()[:200_000], return_tensors="pt").input_ids[0]
    blocks = ids[: (len(ids) // BLOCK) * BLOCK].view(-1, BLOCK)

    start = time.perf_counter()
    model = load_pretrained(cfg.model, AutoModelForCausalLM)
    task = SimpleNamespace(name="causal_lm", peft_task_type="CAUSAL_LM", head_modules=lambda m: [])
    model, _ = apply_strategy(model, cfg.strategy, task)
    load_s, rss_ready = time.perf_counter() - start, rss_mib()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.strategy.lr)

    times, losses, rss_steps = [], [], []
    for step in range(STEPS):
        batch = blocks[(step % 4) * BATCH:(step % 4 + 1) * BATCH]  # 4 batches, 5 times: the loss must fall
        t0 = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(round(loss.item(), 3))
        rss_steps.append(rss_mib())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "overrides": overrides,
        "quantization": str(cfg.model.quantization and dict(cfg.model.quantization)),
        "gradient_checkpointing": bool(cfg.model.gradient_checkpointing),
        "trainable_params": trainable,
        "weights_mib": round(model.get_memory_footprint() / 2**20),  # parameters + buffers as stored
        "load_and_prepare_s": round(load_s, 1),
        "rss_after_load_mib": round(rss_ready),
        "rss_peak_during_steps_mib": round(max(rss_steps)),
        "maxrss_process_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "mean_step_s": round(statistics.mean(times[1:]), 3),  # the first step warms up kernels and caches
        "first_step_s": round(times[0], 3),
        "mean_loss_first_last_4_steps": [round(statistics.mean(losses[:4]), 3), round(statistics.mean(losses[-4:]), 3)],
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
