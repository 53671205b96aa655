"""Preference tuning: DPO-family losses against a plain-Python reference, pair data, DPO with LoRA/full, reward
models (whole runs through train/evaluate/generate: tests/e2e/test_preference.py)."""

import json
import math

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from lft.config.errors import ConfigError
from lft.data.preference_pairs import PairEncoder, parse_turns, split_shared_prefix
from lft.losses.preference import bradley_terry_loss, dpo_loss, pair_accuracy, sequence_logps
from lft.models.loading import load_tokenizer
from lft.strategies import apply_strategy
from lft.strategies.params import count_parameters
from lft.tasks import build_task
from lft.training.finetune_module import FineTuneModule


# --- losses against an independent scalar implementation of the papers' formulas ------------------------------------
def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def reference_loss(pc, pr, rc, rr, beta, kind, smoothing=0.0, gamma=0.0):
    """One pair, written from the DPO / IPO / SimPO papers without tensors."""
    if kind == "simpo":
        return -_log_sigmoid(beta * pc - beta * pr - gamma)
    h = (pc - rc) - (pr - rr)
    if kind == "ipo":
        return (h - 1 / (2 * beta)) ** 2
    return -(1 - smoothing) * _log_sigmoid(beta * h) - smoothing * _log_sigmoid(-beta * h)


@pytest.mark.parametrize("kind,smoothing", [("sigmoid", 0.0), ("sigmoid", 0.2), ("ipo", 0.0), ("simpo", 0.0)])
@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_losses_match_reference(kind, smoothing, beta):
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-40 * torch.rand(16, generator=g, dtype=torch.float64) for _ in range(4))
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta, loss_type=kind, label_smoothing=smoothing,
                                        gamma=0.3)
    expected = [reference_loss(*map(float, v), beta, kind, smoothing, 0.3) for v in zip(pc, pr, rc, rr, strict=True)]
    torch.testing.assert_close(losses, torch.tensor(expected, dtype=torch.float64))
    if kind != "simpo":
        torch.testing.assert_close(chosen - rejected, beta * ((pc - rc) - (pr - rr)))


def test_sigmoid_dpo_is_log2_without_signal():
    pc, pr = torch.tensor([-3.0, -10.0]), torch.tensor([-7.0, -1.0])
    same, _, _ = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)  # policy == reference
    tiny_beta, _, _ = dpo_loss(pc, pr, torch.zeros(2), torch.zeros(2), beta=1e-9)
    torch.testing.assert_close(same, torch.full((2,), math.log(2)))
    torch.testing.assert_close(tiny_beta, torch.full((2,), math.log(2)))


def test_bradley_terry_and_accuracy():
    c, r = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 3.0, 1.0])
    expected = [-_log_sigmoid(a - b) for a, b in zip(c.tolist(), r.tolist(), strict=True)]
    torch.testing.assert_close(bradley_terry_loss(c, r), torch.tensor(expected))
    assert pair_accuracy(c, r).tolist() == [1.0, 0.0, 0.5]


def test_sequence_logps_counts_answer_tokens_only():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 11, generator=g)
    labels = torch.tensor([[-100, -100, -100, 4, 5, 6], [-100, -100, 7, 8, -100, -100]])
    logps, counts = sequence_logps(logits, labels)
    lsm = logits.log_softmax(-1)
    expected = [sum(lsm[b, t - 1, labels[b, t]] for t in range(6) if labels[b, t] >= 0) for b in range(2)]
    torch.testing.assert_close(logps, torch.stack(expected))
    assert counts.tolist() == [3, 2]
    changed = logits.clone()
    changed[0, :2] += 5 * torch.randn(2, 11, generator=g)  # positions predicting prompt tokens only
    torch.testing.assert_close(sequence_logps(changed, labels)[0], logps)


# --- pair data --------------------------------------------------------------------------------------------------------
HH = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant:"


def test_conversations_split_at_the_shared_prefix():
    prompt, chosen, rejected = split_shared_prefix(HH + " A pun.", HH + " No.", "\n\nAssistant:")
    assert (prompt, chosen, rejected) == (HH, " A pun.", " No.")
    assert split_shared_prefix("Q: x A: yes", "Q: x A: yup", "")[0] == "Q: x A: "


def test_pairs_without_a_prompt_column_are_split(make_cfg, tmp_path):
    from lft.data.preference_pairs import load_preference_splits

    rows = [{"chosen": HH + " A pun.", "rejected": HH + " No."}] * 4
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_preference_splits(_pair_cfg(make_cfg, tmp_path).data, 0)
    assert splits["test"][0] == {"prompt": HH, "chosen": " A pun.", "rejected": " No."}


def test_hh_prompt_becomes_chat_turns():
    turns = parse_turns(HH, "\n\nHuman:", "\n\nAssistant:")
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[-1]["content"] == "Tell me a joke"
    assert parse_turns("just text", "\n\nHuman:", "\n\nAssistant:") == [{"role": "user", "content": "just text"}]


# tiny_bert has 128 positions, fewer than hh_rlhf_harmless's data.max_length=256 (the toy pairs are shorter).
TINY_BERT_LENGTHS = ("data.max_length=128", "data.max_prompt_length=96")


def _pair_cfg(make_cfg, path, *extra):
    return make_cfg("data=hh_rlhf_harmless", f"data.path={path}", *extra)


def test_truncation_drops_old_turns_then_cuts_the_answer_end(make_cfg, tiny_llama, tmp_path):
    cfg = _pair_cfg(make_cfg, tmp_path, f"model.name_or_path={tiny_llama}", "data.max_length=40",
                    "data.max_prompt_length=24")
    tokenizer = load_tokenizer(cfg.model)
    encoder = PairEncoder(cfg.data, tokenizer, eos=True)
    long_history = "\n\nHuman: " + "old words " * 30 + "\n\nAssistant: sure" + "\n\nHuman: last question\n\nAssistant:"
    pair = encoder.encode(long_history, " short answer", " another short one")
    text = tokenizer.decode(pair.prompt)
    assert "last question" in text and "old" not in text and not pair.truncated
    pair = encoder.encode("\n\nHuman: hi\n\nAssistant:", " word" * 80, " no")
    assert pair.truncated and len(pair.prompt) + len(pair.chosen) == 40
    assert encoder.encode("\n\nHuman: " + "many words " * 40 + "\n\nAssistant:", " a", " b") == "prompt_too_long"
    assert encoder.encode(HH, " same", "same ") == "identical"
    assert encoder.encode(HH, " ", " b") == "empty"


# --- training on a toy preference set -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def toy_pairs(tmp_path_factory) -> str:
    """Prompts about things; the chosen answer always likes the thing, the rejected one hates it (easy to learn)."""
    things = ["cats", "tea", "rain", "books", "music", "trees", "bread", "boats", "maps", "snow", "bikes", "clocks"]
    path = tmp_path_factory.mktemp("toy_pairs")
    for split, names in (("train", things[:8]), ("validation", things[8:10]), ("test", things[10:])):
        with (path / f"{split}.jsonl").open("w") as f:
            for name in names:
                row = {"prompt": f"\n\nHuman: what about {name}?\n\nAssistant:", "chosen": f" good, i like {name}.",
                       "rejected": f" bad, i hate {name}."}
                f.write(json.dumps(row) + "\n")
    return str(path)


def _fit(cfg, epochs: int):
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    encoded = task.encode(tokenizer, cfg.seed)
    dm = encoded.datamodule
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    from hydra.utils import instantiate

    module = FineTuneModule(model, task, instantiate(cfg.optimizer), cfg.scheduler, encoded)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    before = trainer.validate(module, dataloaders=dm.train_dataloader(), verbose=False)[0]
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    after = trainer.validate(module, dataloaders=dm.train_dataloader(), verbose=False)[0]
    return module, task, dm, before, after


def _base_logits(cfg, task, batch):
    base = task.reference.build()
    inputs = {"input_ids": batch["chosen_input_ids"], "attention_mask": batch["chosen_attention_mask"]}
    return base(**inputs).logits


def test_dpo_lora_learns_and_keeps_the_reference(make_cfg, tiny_llama, toy_pairs):
    cfg = _pair_cfg(make_cfg, toy_pairs, f"model.name_or_path={tiny_llama}", "strategy=lora", "optimizer.lr=3e-2",
                    "data.batch_size=4", "scheduler=constant", "data.max_length=32", "data.max_prompt_length=16")
    module, task, dm, before, after = _fit(cfg, epochs=6)
    assert before["val/reward_margin"] == pytest.approx(0.0, abs=1e-5)  # policy == reference at the start
    assert before["val/preference_accuracy"] == 0.5
    assert after["val/reward_margin"] > 0.05 and after["val/preference_accuracy"] == 1.0
    assert task.reference.model is None  # LoRA: no second model, the adapter is switched off instead
    batch = next(iter(dm.val_dataloader()))
    model = module.model.eval()
    with model.disable_adapter(), torch.no_grad():
        off = model(input_ids=batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"]).logits
        torch.testing.assert_close(off, _base_logits(cfg, task, batch))


@pytest.mark.parametrize("strategy", ["full", "freeze"])
def test_dpo_full_reference_is_a_frozen_copy_outside_the_module(make_cfg, tiny_llama, toy_pairs, strategy):
    extra = ["strategy.freeze_bottom_layers=1"] if strategy == "freeze" else []
    cfg = _pair_cfg(make_cfg, toy_pairs, f"model.name_or_path={tiny_llama}", f"strategy={strategy}", *extra,
                    "optimizer.lr=1e-3",
                    "data.preference.loss=ipo", "data.max_length=32", "data.max_prompt_length=16")
    module, task, _, _, after = _fit(cfg, epochs=2)
    reference = task.reference.model
    assert reference is not None and not any(p.requires_grad for p in reference.parameters())
    assert count_parameters(module.model)[1] == count_parameters(reference)[1]  # one model's worth counted
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert all(k.startswith("model.") for k in checkpoint["state_dict"])
    assert len(checkpoint["state_dict"]) == sum(1 for p in module.model.parameters() if p.requires_grad)
    assert after["val/reward_margin"] > 0


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_llama"])  # encoder: [CLS] p [SEP] a [SEP]; decoder: last token
def test_reward_model_learns_to_rank(make_cfg, toy_pairs, backbone, request):
    cfg = _pair_cfg(make_cfg, toy_pairs, f"model.name_or_path={request.getfixturevalue(backbone)}", "data.task=reward",
                    "strategy=full", "optimizer.lr=3e-3", "scheduler=constant", *TINY_BERT_LENGTHS)
    _, _, _, _, after = _fit(cfg, epochs=8)
    assert after["val/preference_accuracy"] == 1.0 and after["val/reward_margin"] > 0


# --- mistakes stop before any model loads ---------------------------------------------------------------------------------
def test_bad_rows_over_the_limit_name_the_key(make_cfg, tiny_llama, tmp_path):
    rows = [{"prompt": "\n\nHuman: q\n\nAssistant:", "chosen": " a", "rejected": " a"}] * 3 + \
        [{"prompt": "\n\nHuman: q\n\nAssistant:", "chosen": " a", "rejected": " b"}] * 7
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _pair_cfg(make_cfg, tmp_path, f"model.name_or_path={tiny_llama}")
    task = build_task(cfg.data, cfg.model)
    with pytest.raises(ConfigError, match=r"3 of 10 train pairs are unusable \(3 identical answers\).*max_bad_fraction"):
        task.encode(load_tokenizer(cfg.model), 0)
    with open_dict(cfg):
        cfg.data.max_bad_fraction = 0.5
    dm = build_task(cfg.data, cfg.model).encode(load_tokenizer(cfg.model), 0).datamodule
    assert len(dm.splits["train"]) == 7


def test_unknown_loss_is_refused(make_cfg, toy_pairs):
    cfg = _pair_cfg(make_cfg, toy_pairs, "data.preference.loss=cpo")
    with pytest.raises(ConfigError, match="data.preference.loss"):
        build_task(cfg.data, cfg.model)


def test_reference_cache_file_skips_the_reference_forward(make_cfg, tiny_llama, toy_pairs, tmp_path):
    cfg = _pair_cfg(make_cfg, toy_pairs, f"model.name_or_path={tiny_llama}", "strategy=full",
                    f"data.preference.reference_cache_file={tmp_path / 'ref.pt'}")
    task = build_task(cfg.data, cfg.model)
    dm = task.encode(load_tokenizer(cfg.model), 0).datamodule
    model = task.build_model(cfg.model)
    batch = next(iter(dm.train_dataloader()))
    first = task.loss(model, batch)
    assert task.reference.model is not None  # the full fine-tune's frozen copy, built for the first forward
    fresh = build_task(cfg.data, cfg.model)  # a later run: reads the file, never builds the reference model
    torch.testing.assert_close(fresh.loss(model, batch), first)
    assert fresh.reference.model is None


def test_distillation_of_pairs_is_refused_before_loading(make_cfg, toy_pairs):
    from lft.config.validate import check_config

    with pytest.raises(ConfigError, match="strategy=distill with data.task=dpo"):
        check_config(_pair_cfg(make_cfg, toy_pairs, "strategy=distill"))


def test_dpo_with_qlora_uses_the_4bit_base_as_reference(make_cfg, tiny_llama_64, toy_pairs):
    from lft.config.validate import bitsandbytes_problem

    if bitsandbytes_problem(4):
        pytest.skip(f"bitsandbytes cannot run here: {bitsandbytes_problem(4)}")
    cfg = _pair_cfg(make_cfg, toy_pairs, f"model.name_or_path={tiny_llama_64}", "strategy=qlora", "optimizer.lr=3e-2",
                    "scheduler=constant", "data.max_length=32", "data.max_prompt_length=16")
    # Validation first: bitsandbytes repacks 4-bit CPU weights in eval mode; training must go on after it.
    module, task, _, _, after = _fit(cfg, epochs=2)
    assert task.reference.model is None  # the reference is the 4-bit base with the adapter off
    assert after["val/reward_margin"] > 0 and after["val/preference_accuracy"] > 0.5


def _aten_dropped(x, p):
    """`dropout_masks.dropped` with ATen's Bernoulli masks instead of dropout_masks' lanes (for comparison)."""
    out, keep = torch.native_dropout(x, p, True)
    return out, keep.logical_not(), 1 / (1 - p)


@pytest.mark.slow
@pytest.mark.parametrize("masks", ["lanes", "aten"])
def test_dpo_with_qlora_learns_over_seeds(make_cfg, tiny_llama_64, toy_pairs, masks, monkeypatch):
    """The toy QLoRA DPO fit above, over 40 seeds, with the shipped adapter-dropout masks and with ATen's.

    Seeds change the data order and the dropout draws, not the tiny model (fixed in conftest). Run with `-s` to
    see both arms' margins (bench/README.md has a run)."""
    from lft.config.validate import bitsandbytes_problem
    from lft.speed import adapter_dropout

    if bitsandbytes_problem(4):
        pytest.skip(f"bitsandbytes cannot run here: {bitsandbytes_problem(4)}")
    if masks == "aten":
        monkeypatch.setattr(adapter_dropout, "dropped", _aten_dropped)
    cfg = _pair_cfg(make_cfg, toy_pairs, f"model.name_or_path={tiny_llama_64}", "strategy=qlora", "optimizer.lr=3e-2",
                    "scheduler=constant", "data.max_length=32", "data.max_prompt_length=16")
    margins = []
    for seed in range(40):
        L.seed_everything(seed, verbose=False)
        margins.append(_fit(cfg, epochs=2)[-1]["val/reward_margin"])
    below = sum(m <= 0 for m in margins)
    print(f"\n{masks} masks: mean val reward margin {sum(margins) / len(margins):.3f}, {below} of 40 at or below 0")
    assert sum(margins) / len(margins) > 0.1 and below <= 4
