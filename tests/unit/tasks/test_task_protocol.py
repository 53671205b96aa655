"""Tasks do not change after they are built, and encoding leaves the shared tokenizer as it was (lft/tasks/protocol.py).

Each family is built, encoded, given a model, and scores one test batch on a tiny model; its attributes must be
the very objects they were after construction, and the tokenizer (set to left padding, the side decoder tasks
used to switch to right) must keep its padding side and every setting its fingerprint reads.
"""

import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import torch

from lft.data.fingerprint import tokenizer_stamp
from lft.data.labels import IGNORE
from lft.generation.generator import EvalCollator
from lft.models.loading import load_tokenizer
from lft.tasks import build_task

PAIR = {"prompt": "\n\nHuman: question {i}?\n\nAssistant:", "chosen": " a kind answer {i}",
        "rejected": " a rude answer {i}"}
FAMILIES = {  # name: (model fixture, overrides, row template, where the data path goes)
    "classification": ("tiny_bert", (), {"text": "review number {i}", "label": "{label}"}, "data.path"),
    "seq2seq": ("tiny_t5", ("data=dialogsum", "data.generate.max_new_tokens=4"),
                {"dialogue": "#Person1#: Hi {i}.", "summary": "a greeting {i}."}, "data.path"),
    "prompt": ("tiny_llama", ("data=dialogsum", "data.generate.max_new_tokens=4"),
               {"dialogue": "#Person1#: Hi {i}.", "summary": "a greeting {i}."}, "data.path"),
    "causal_lm": ("tiny_llama", ("data=text", "data.block_size=8"), {"text": "line {i} of a short poem"},
                  "data.path"),
    "dpo": ("tiny_llama", ("data=hh_rlhf_harmless", "data.max_length=64", "data.max_prompt_length=32"), PAIR,
            "data.path"),
    "kto": ("tiny_llama", ("data=hh_rlhf_harmless", "data.preference.loss=kto", "data.max_length=64",
                           "data.max_prompt_length=32"), PAIR, "data.path"),
    "reward": ("tiny_bert", ("data=hh_rlhf_harmless", "data.task=reward", "data.max_length=64",
                             "data.max_prompt_length=32"), PAIR, "data.path"),
    "mixture": ("tiny_llama", ("data=mixture", "data.mixture={alpaca: 1.0}",
                               "+data.members.alpaca.generate.max_new_tokens=4"),
                {"instruction": "Name the number {i}.", "input": "", "output": "number {i}"},
                "data.members.alpaca.path"),
}


def write_splits(folder: Path, template: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 24), ("validation", 6), ("test", 6)):
        rows = [{k: v.format(i=i, label=["negative", "positive"][i % 2]) for k, v in template.items()}
                for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def attributes(task) -> dict:
    """vars(task), and a mixture's members' too (as member/<name>/<attribute>)."""
    out = dict(vars(task))
    for name, member in getattr(task, "members", {}).items():
        out.update({f"member/{name}/{k}": v for k, v in vars(member).items()})
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_encode_and_evaluate_change_neither_the_task_nor_the_tokenizer(family, make_cfg, request, tmp_path):
    model_fixture, overrides, row, path_key = FAMILIES[family]
    write_splits(tmp_path / "data", row)
    cfg = make_cfg(f"model.name_or_path={request.getfixturevalue(model_fixture)}", *overrides,
                   f"{path_key}={tmp_path / 'data'}")
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"  # what decoder tasks' encode() used to switch to "right" on the shared tokenizer
    tokenizer_before = tokenizer_stamp(tokenizer)
    task = build_task(cfg.data, cfg.model)
    before = attributes(task)

    encoded = task.encode(tokenizer, cfg.seed)
    model = task.build_model(cfg.model, encoded).eval()
    metrics = task.metrics(encoded)
    batch = next(iter(encoded.datamodule.test_dataloader()))
    with torch.no_grad():
        loss = task.evaluate(model, batch, metrics, encoded)
    task.take_samples(encoded)

    assert torch.isfinite(loss)
    after = attributes(task)
    assert after.keys() == before.keys()
    assert [k for k, v in before.items() if after[k] is not v] == []  # no attribute rebound, none added
    assert tokenizer.padding_side == "left"
    assert tokenizer_stamp(tokenizer) == tokenizer_before
    with pytest.raises(FrozenInstanceError):
        encoded.datamodule = None


def test_text_batches_are_right_padded_whatever_the_tokenizers_side(tiny_llama):
    """Prompt lengths index a batch's rows from the left: EvalCollator pads right, labels with IGNORE."""
    from omegaconf import OmegaConf

    tokenizer = load_tokenizer(OmegaConf.create({"name_or_path": tiny_llama}))
    tokenizer.padding_side = "left"
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [IGNORE, 6, 7], "prompt_length": 1},
            {"input_ids": [8], "attention_mask": [1], "labels": [8], "prompt_length": 0}]
    batch = EvalCollator(tokenizer)(rows)
    assert batch["input_ids"].shape == (2, 8) and batch["labels"].shape == (2, 8)
    assert batch["input_ids"][1, 0] == 8 and batch["attention_mask"][1].tolist() == [1] + [0] * 7
    assert batch["labels"][0].tolist() == [IGNORE, 6, 7] + [IGNORE] * 5
    assert batch["prompt_length"].tolist() == [1, 0] and tokenizer.padding_side == "left"
