"""Issue 23 finding 5 on SmolLM2: LoRA (dropout 0), 32 Alpaca rows, fp32, plain SGD, 3 steps, no grouping:
batch 8 vs batch 2 x accumulate_grad_batches=4 (the same rows per step). Prints the relative lora_B distance.

    PYTHONPATH=src python experiments/token_weighting/smollm2_accumulation.py <label>
"""
import sys
from functools import partial

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from lft.config.paths import CONFIG_DIR
from lft.models.loading import load_tokenizer
from lft.strategies import apply_strategy
from lft.tasks import build_task
from lft.training.finetune_module import FineTuneModule


def run(batch, k):
    over = ["model=smollm2_135m", "strategy=lora", "strategy.dropout=0.0", "data=alpaca",
            "data.path=/work/shared/data/alpaca/alpaca_5000.json", "data.train_size=32", f"data.batch_size={batch}",
            "data.group_by_length=false", "model.dropout=0.0", "precision=fp32", "seed=0"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=over)
    tok = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    dm = task.encode(tok, cfg.seed, cache_dir=cfg.paths.cache_dir)
    L.seed_everything(0)
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    module = FineTuneModule(model, task, partial(torch.optim.SGD, lr=cfg.strategy.lr, momentum=0.0), cfg.scheduler)
    trainer = L.Trainer(max_steps=3, accumulate_grad_batches=k, accelerator="cpu", precision="32-true",
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=None)
    trainer.fit(module, datamodule=dm)
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}


a, b = run(8, 1), run(2, 4)
diff = sum(((a[n] - b[n]) ** 2).sum() for n in a) ** 0.5
size = sum((a[n] ** 2).sum() for n in a) ** 0.5
print(f"RESULT {sys.argv[1]}: lora_B relative distance {diff / size:.3e} (|B_8|={size:.4e})", flush=True)
