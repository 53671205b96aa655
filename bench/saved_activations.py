"""What one training step keeps for backward: bytes of activations per token per layer, by dtype and shape.

A forward of SmolLM2-135M (lft's loss, bf16 autocast as `precision=auto` gives on a bf16 CPU, frozen linear weights
in bf16 as an adapter fit holds them) on one random batch of 8 x 448 tokens with the last 64 labelled and one row
padded (so attention gets a padding mask, as in training), under a saved-tensors hook that counts each distinct
storage once (weights excluded). Strategy overrides as on the command line:

    python bench/saved_activations.py                                   # LoRA, all linear layers (the default)
    python bench/saved_activations.py strategy.target_modules=null      # LoRA on query/value
    python bench/saved_activations.py strategy=full
"""

import collections
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from lft.config.paths import CONFIG_DIR  # noqa: E402
from lft.speed.bf16_base_weights import frozen_linear_params  # noqa: E402
from lft.speed.lean_loss import causal_lm_loss  # noqa: E402
from lft.strategies import apply_strategy  # noqa: E402
from lft.tasks import build_task  # noqa: E402

BATCH, LENGTH, LABELLED = 8, 448, 64


def main() -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=smollm2_135m", "data=dialogsum", "strategy=lora", *sys.argv[1:]])
    task = build_task(cfg.data, cfg.model)
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    model.train()
    for param in frozen_linear_params(model):  # what Bf16BaseWeights does for an adapter fit
        param.data = param.data.to(torch.bfloat16)
    ids = torch.randint(0, 49000, (BATCH, LENGTH))
    labels = torch.where(torch.arange(LENGTH) >= LENGTH - LABELLED, ids, -100)
    mask = torch.ones_like(ids)
    mask[0, -96:] = 0  # a right-padded row, as lft pads for training
    labels[0, -96:] = -100
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    seen = {p.untyped_storage().data_ptr() for p in model.parameters()}  # weights (views of them too) excluded
    tally = collections.Counter()

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen and t.numel() >= BATCH * LENGTH * 32:
            seen.add(storage.data_ptr())
            tally[(str(t.dtype).removeprefix("torch."), tuple(t.shape[1:]))] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        causal_lm_loss(model, batch)
    per = BATCH * LENGTH * model.config.num_hidden_layers * 1024
    print(f"{' '.join(sys.argv[1:]) or 'defaults'}: {sum(tally.values()) / 2**30:.2f} GiB kept for backward, "
          f"{sum(tally.values()) / per:.1f} KB per token per layer")
    for (dtype, shape), size in tally.most_common(10):
        print(f"  {size / per:6.2f} KB  {dtype} {shape}")


if __name__ == "__main__":
    main()
