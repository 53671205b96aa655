"""Evaluation generates in length-sorted batches: the same greedy fp32 texts as before, samples in row order."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from lft.evaluate import evaluate
from lft.models.loading import load_tokenizer
from lft.tasks import build_task


@pytest.fixture(scope="module")
def uneven_pairs(tmp_path_factory) -> str:
    """DialogSum-shaped splits whose dialogues run from one to six turns: prompts of different lengths."""
    path = tmp_path_factory.mktemp("uneven_pairs")
    for split, n in (("train", 8), ("validation", 4), ("test", 10)):
        with (path / f"{split}.jsonl").open("w") as f:
            for i in range(n):
                turns = " ".join(f"#Person{t % 2 + 1}#: turn {t} about item {i}." for t in range(1 + (i * 7) % 6))
                summary = f"They talk about item {i}."
                refs = {"summary1": summary, "summary2": summary, "summary3": summary} if split == "test" else {
                    "summary": summary}
                f.write(json.dumps({"fname": f"{split}_{i}", "dialogue": turns, **refs}) + "\n")
    return str(path)


def _setup(make_cfg, model_path, pairs_data):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={model_path}",
                   "data.max_source_length=64", "data.max_target_length=24", "data.eval_batch_size=4",
                   "data.generate.bf16=false")
    with open_dict(cfg):
        cfg.data.generate.test_samples = None  # every test row
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    encoded = task.encode(tokenizer, cfg.seed)
    return task, encoded, task.build_model(cfg.model).eval()


@torch.no_grad()
def _evaluate(task, encoded, model, loader) -> list[dict]:
    metrics = task.metrics(encoded)
    for batch in loader:
        task.evaluate(model, batch, metrics, encoded)
    return task.take_samples(encoded)


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_t5"])
def test_sorted_batches_generate_what_one_prompt_at_a_time_does(make_cfg, uneven_pairs, request, model):
    task, encoded, net = _setup(make_cfg, request.getfixturevalue(model), uneven_pairs)
    datamodule = encoded.datamodule
    test = datamodule.splits["test"]
    assert list(datamodule.eval_split("test")["row"]) != list(range(len(test)))  # the batches really are reordered
    rows = list(range(len(test)))

    sorted_batches = _evaluate(task, encoded, net, datamodule.test_dataloader())
    assert [s["row"] for s in sorted_batches] == rows  # samples come back in dataset order

    datamodule.eval_order, datamodule._ordered = None, {}  # the path before: dataset-order batches
    dataset_order = _evaluate(task, encoded, net, datamodule.test_dataloader())

    decoder = "prompt_length" in test.column_names
    prompts = [r["input_ids"][: r["prompt_length"]] if decoder else r["input_ids"] for r in test]
    alone = [encoded.generator.generate(net, [p])[0] for p in prompts]
    assert [s["prediction"] for s in sorted_batches] == [s["prediction"] for s in dataset_order] == alone


def test_evaluate_writes_predictions_in_row_order(make_cfg, tiny_llama, uneven_pairs):
    cfg = make_cfg("data=dialogsum", f"data.path={uneven_pairs}", f"model.name_or_path={tiny_llama}",
                   "data.max_source_length=64", "data.max_target_length=24", "data.eval_batch_size=4",
                   config="evaluate", out="eval")
    with open_dict(cfg):
        cfg.data.generate.test_samples = None
        cfg.trainer.limit_test_batches = 1.0
    row = evaluate(cfg)
    lines = (Path(cfg.paths.output_dir) / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["row"] for line in lines] == list(range(row["rows"]))
