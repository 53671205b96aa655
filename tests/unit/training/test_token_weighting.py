"""A loss over tokens is a loss over tokens however the batch is split: k accumulated micro-batches give the
gradient of one batch of k times the rows; packed rows give the unpacked gradient (W DDP processes:
tests/e2e/test_token_weighting.py)."""

import json
from functools import partial

import lightning as L
import pytest
import torch

from lft.models.loading import load_tokenizer
from lft.strategies import apply_strategy
from lft.tasks import build_task
from lft.training.finetune_module import FineTuneModule

# SGD without momentum or decay: a step moves the weights by lr x the gradient, so weights compare gradients.
LR = 0.1
TOLERANCE = 1e-5  # on the gradient (weight difference / LR), fp32
TRAIN_ROWS = 12  # not a multiple of the batch: the epoch ends on a short batch, and with k = 2 on a short window
WORDS = ["apples", "pears", "the old red bike", "a cake", "three long reports about the weather", "rain", "a map"]


def _write_splits(path, row) -> str:
    """train/validation/test jsonl files of row(i) for i < each split's size."""
    for split, n in (("train", TRAIN_ROWS), ("validation", 4), ("test", 4)):
        with (path / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(row(i)) + "\n" for i in range(n))
    return str(path)


@pytest.fixture(scope="session")
def uneven_pairs(tmp_path_factory) -> str:
    """Dialogue -> summary rows whose prompts and summaries range from 1 to 20-odd words."""
    def row(i: int) -> dict:
        thing = " and ".join(WORDS[: 1 + (i * 5) % len(WORDS)])
        return {"dialogue": f"#Person1#: bring {WORDS[i % len(WORDS)]}" + " please" * (i % 4),
                "summary": f"bring {thing}" if i % 3 else "yes"}

    return _write_splits(tmp_path_factory.mktemp("uneven_pairs"), row)


@pytest.fixture(scope="session")
def uneven_preferences(tmp_path_factory) -> str:
    """Preference pairs with answers of different lengths."""

    def row(i: int) -> dict:
        thing = " and ".join(WORDS[: 1 + (i * 3) % len(WORDS)])
        return {"prompt": f"\n\nHuman: what about {WORDS[i % len(WORDS)]}?\n\nAssistant:",
                "chosen": f" good, i like {thing}.", "rejected": " bad." if i % 2 else f" bad, i hate {thing}."}

    return _write_splits(tmp_path_factory.mktemp("uneven_preferences"), row)


def trained_weights(make_cfg, overrides: list[str], batch_size: int, k: int) -> dict[str, torch.Tensor]:
    """The trainable weights after one epoch of TRAIN_ROWS rows in batches of batch_size, stepping every k."""
    cfg = make_cfg(*overrides, f"data.batch_size={batch_size}", "data.group_by_length=false", "model.dropout=0.0",
                   "precision=fp32", "optimizer=sgd", "optimizer.momentum=0.0", f"optimizer.lr={LR}",
                   "scheduler=constant")
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    encoded = task.encode(tokenizer, cfg.seed)
    datamodule = encoded.datamodule
    L.seed_everything(cfg.seed)  # new heads and adapters start from the same random weights in both runs
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    module = FineTuneModule(model, task, partial(torch.optim.SGD, lr=LR, momentum=0.0), cfg.scheduler, encoded)
    trainer = L.Trainer(max_epochs=1, accumulate_grad_batches=k, accelerator="cpu", precision="32-true",
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2  # 12 rows: batches of 8 step twice; micro-batches of 4 with k = 2 too
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def gradient_gap(a: dict, b: dict) -> float:
    """The largest difference of the summed gradients behind two runs' weights (SGD: weights / LR)."""
    assert a.keys() == b.keys() and a
    return max((a[n] - b[n]).abs().max().item() for n in a) / LR


CASES = {
    "causal_lm": lambda f: [f"model.name_or_path={f('tiny_llama')}", "data=dialogsum", f"data.path={f('uneven_pairs')}",
                            "data.generate.val_samples=0"],
    "seq2seq": lambda f: [f"model.name_or_path={f('tiny_t5')}", "data=dialogsum", f"data.path={f('uneven_pairs')}",
                          "data.generate.val_samples=0"],
    "dpo": lambda f: [f"model.name_or_path={f('tiny_llama')}", "data=hh_rlhf_harmless", "strategy=lora",
                      "strategy.dropout=0.0", f"data.path={f('uneven_preferences')}", "data.max_length=48",
                      "data.max_prompt_length=24"],
    # the shipped sentiment sample
    "classification": lambda f: [f"model.name_or_path={f('tiny_bert')}", f"data.train_size={TRAIN_ROWS}"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_accumulated_micro_batches_equal_one_batch(case, make_cfg, request):
    overrides = CASES[case](request.getfixturevalue)
    whole = trained_weights(make_cfg, overrides, batch_size=8, k=1)
    accumulated = trained_weights(make_cfg, overrides, batch_size=4, k=2)
    assert gradient_gap(whole, accumulated) < TOLERANCE


def test_packed_accumulated_micro_batches_equal_one_unpacked_batch(make_cfg, tiny_llama, uneven_pairs):
    overrides = [f"model.name_or_path={tiny_llama}", "data=dialogsum", f"data.path={uneven_pairs}",
                 "data.generate.val_samples=0"]
    whole = trained_weights(make_cfg, overrides, batch_size=8, k=1)
    packed = trained_weights(make_cfg, [*overrides, "data.packing=true"], batch_size=4, k=2)
    assert gradient_gap(whole, packed) < TOLERANCE


# --- the look-ahead: the sampler counts what each batch trains on --------------------------------------------------
@pytest.fixture(scope="session")
def plain_text(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("plain_text") / "text.txt"
    path.write_text("\n".join(f"line {i} of text" + " about the weather" * (i % 5) for i in range(60)))
    return str(path)


COUNTED = {  # every kind of labelled item, with length grouping, packing and a mixture
    "prompt_packed": lambda f: [f"model.name_or_path={f('tiny_llama')}", "data=dialogsum", "data.packing=true",
                                f"data.path={f('uneven_pairs')}"],
    "raw_text": lambda f: [f"model.name_or_path={f('tiny_gpt2')}", "data=text", f"data.path={f('plain_text')}",
                           "data.block_size=16"],
    "seq2seq": lambda f: [f"model.name_or_path={f('tiny_t5')}", "data=dialogsum", f"data.path={f('uneven_pairs')}"],
    "mixture_packed": lambda f: [f"model.name_or_path={f('tiny_llama')}", "data=mixture", "data.packing=true",
                                 "data.mixture={dialogsum: 2, text: 1}", f"data.members.dialogsum.path={f('uneven_pairs')}",
                                 f"data.members.text.path={f('plain_text')}", "+data.members.text.block_size=16"],
    "dpo": lambda f: [f"model.name_or_path={f('tiny_llama')}", "data=hh_rlhf_harmless",
                      f"data.path={f('uneven_preferences')}"],
    "classification": lambda f: [f"model.name_or_path={f('tiny_bert')}"],
}


@pytest.mark.parametrize("case", list(COUNTED))
def test_the_sampler_counts_the_items_each_processs_batch_trains_on(case, make_cfg, request):
    cfg = make_cfg(*COUNTED[case](request.getfixturevalue), "data.batch_size=3", "data.group_by_length=true")
    task = build_task(cfg.data, cfg.model)
    datamodule = task.encode(load_tokenizer(cfg.model), cfg.seed).datamodule
    train = datamodule.splits["train"]
    ranks = [datamodule.make_train_sampler(world_size=2, rank=r) for r in (0, 1)]
    for epoch in (0, 1):
        for sampler in ranks:
            sampler.set_epoch(epoch)
        counted = []
        for index, shares in enumerate(zip(*ranks, strict=True)):
            batches = [datamodule.train_collate_fn([train[i] for i in rows]) for rows in shares]
            items = [int(task.items(batch)) for batch in batches]
            assert items == [sampler.local_items(epoch, index) for sampler in ranks]
            assert sum(items) == ranks[0].window_items(epoch, index, index + 1) == ranks[1].window_items(
                epoch, index, index + 1)
            counted.append(sum(items))
        assert counted and ranks[0].window_items(epoch, 0, len(counted) + 5) == sum(counted)
        assert ranks[0].window_items(epoch, 2, 4) == sum(counted[2:4])


def test_labelled_tokens_counts_past_ignored_labels_in_selected_rows():
    from datasets import Dataset

    from lft.data.datamodule import labelled_tokens

    rows = Dataset.from_dict({"labels": [[-100, 1, 2], [3], [], [-100, -100, 5, 6], [7, 8, -100]]}).select([3, 0, 2, 4, 1])
    assert labelled_tokens(rows, shifted=False).tolist() == [2, 2, 0, 2, 1]
    assert labelled_tokens(rows, shifted=True).tolist() == [2, 2, 0, 1, 0]  # the first position predicts nothing


def test_a_resumed_epoch_weighs_its_windows_as_the_uninterrupted_one():
    from lft.data.sampler import ResumableBatchSampler

    items = [1 + (7 * i) % 11 for i in range(50)]
    full = ResumableBatchSampler(50, 4, seed=2, row_items=items, lengths=items)
    resumed = ResumableBatchSampler(50, 4, seed=2, row_items=items, lengths=items)
    resumed.resume_at(epoch=0, batches_done=5)
    assert len(list(resumed)) == len(full) - 5
    assert [resumed.window_items(0, s, s + 2) for s in range(0, 13, 2)] == [
        sum(items[i] for b in list(full)[s:s + 2] for i in b) for s in range(0, 13, 2)]


def test_a_task_whose_counts_disagree_with_its_batches_stops_at_the_first_step(make_cfg, tiny_llama, uneven_pairs):
    cfg = make_cfg(f"model.name_or_path={tiny_llama}", "data=dialogsum", f"data.path={uneven_pairs}")
    task = build_task(cfg.data, cfg.model)
    encoded = task.encode(load_tokenizer(cfg.model), cfg.seed)
    datamodule = encoded.datamodule
    datamodule.row_items = None  # counts rows, while the loss averages over tokens
    module = FineTuneModule(task.build_model(cfg.model), task, partial(torch.optim.SGD, lr=LR), cfg.scheduler, encoded)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(RuntimeError, match="task's items\\(\\) and its datamodule's row_items disagree"):
        trainer.fit(module, datamodule=datamodule)
