"""The real SmolLM2-135M-Instruct (packaged GGUF) on a slice of ../shared/data/dialogsum: LoRA, evaluate, generate."""

import pytest

from lft.evaluate import evaluate
from lft.generate import generate, parse_args
from lft.train import train
from tests.conftest import shared_data

pytestmark = pytest.mark.slow


def test_smollm2_lora_on_dialogsum_slice(make_cfg, tmp_path):
    data = shared_data("dialogsum")
    common = ["model=smollm2_135m", "data=dialogsum", f"data.path={data}", "data.batch_size=2",
              "data.eval_batch_size=2", "data.max_source_length=192", "data.test_size=2"]
    cfg = make_cfg(*common, "strategy=lora", "data.train_size=8", "data.val_size=2")
    cfg.paths.cache_dir = str(tmp_path.parent / "lft-cache")  # one GGUF conversion for the session
    metrics = train(cfg)
    assert metrics["test/rouge1"] > 0.0 and metrics["test/perplexity"] < 1000
    ecfg = make_cfg(*common, f"run={cfg.paths.output_dir}", config="evaluate", out="eval")
    row = evaluate(ecfg)
    assert row["rows"] == 2 and "rougeL" in row
    answer = generate(parse_args([f"run={cfg.paths.output_dir}", "prompt=#Person1#: Lunch at noon?\n#Person2#: Sure.",
                                  "max_new_tokens=16"]))[0]
    assert answer.strip()
