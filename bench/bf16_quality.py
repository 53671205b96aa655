"""Does generating with bf16 weights change the model? Teacher-forced perplexity of the references, fp32 vs bf16.

Greedy texts diverge at the first near-tie, so ROUGE of two precisions differs by chance as much as by quality;
the references' likelihood under each precision measures the model itself. Same rows and batches as
`lft.evaluate ... data=dialogsum data.test_size=N` (generation_order, data.eval_batch_size).

    python bench/bf16_quality.py --data ../shared/data/dialogsum --rows 200 [--threads N]
"""

import argparse
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from lft.config.paths import CONFIG_DIR  # noqa: E402
from lft.generation.generator import split_fields  # noqa: E402
from lft.models.loading import load_tokenizer  # noqa: E402
from lft.speed.precision import bf16_weights  # noqa: E402
from lft.tasks import build_task  # noqa: E402

DIALOGSUM = Path(__file__).resolve().parents[2] / "shared" / "data" / "dialogsum"


@torch.no_grad()
def reference_nll(model, batches) -> float:
    """Mean negative log-likelihood per reference token."""
    total = tokens = 0
    for inputs in batches:
        n = int((inputs["labels"][:, 1:] != -100).sum())
        total += float(model(**inputs).loss) * n
        tokens += n
    return total / tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DIALOGSUM)
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"model={args.model}", "data=dialogsum", f"data.path={args.data}",
                                             f"data.test_size={args.rows}"])
    with open_dict(cfg):
        cfg.data.train_size = 64
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    datamodule = task.encode(tokenizer, cfg.seed).datamodule
    model = task.build_model(cfg.model).eval()
    batches = [split_fields(batch)[0] for batch in datamodule.test_dataloader()]
    for name in ("fp32", "bf16 weights"):
        start = time.perf_counter()
        if name == "fp32":
            nll = reference_nll(model, batches)
        else:
            with bf16_weights(model):
                nll = reference_nll(model, batches)
        print(f"{name}: reference NLL {nll:.5f} nats/token, perplexity {math.exp(nll):.4f} "
              f"({time.perf_counter() - start:.0f} s, {args.rows} rows)")


if __name__ == "__main__":
    main()
