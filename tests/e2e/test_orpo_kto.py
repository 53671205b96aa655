"""ORPO and KTO end to end on a tiny Llama: train runs, the reference is loaded only where the loss needs one,
each composes with LoRA, QLoRA and full fine-tuning, and the losses teach the toy preference."""

import json

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from lft.config.errors import ConfigError
from lft.models.loading import load_tokenizer
from lft.strategies import apply_strategy
from lft.tasks import build_task
from lft.tasks.kto import KtoTask
from lft.train import train
from lft.training.finetune_module import FineTuneModule

THINGS = ["cats", "tea", "rain", "books", "music", "trees", "bread", "boats", "maps", "snow", "bikes", "clocks"]
SHORT = ("data.max_length=32", "data.max_prompt_length=16")


def _prompt(thing: str) -> str:
    return f"\n\nHuman: what about {thing}?\n\nAssistant:"


@pytest.fixture(scope="module")
def toy_pairs(tmp_path_factory) -> str:
    """The chosen answer always likes the thing, the rejected one hates it (easy to learn)."""
    path = tmp_path_factory.mktemp("toy_pairs")
    for split, names in (("train", THINGS[:8]), ("validation", THINGS[8:10]), ("test", THINGS[10:])):
        rows = [{"prompt": _prompt(t), "chosen": f" good, i like {t}.", "rejected": f" bad, i hate {t}."}
                for t in names]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def toy_rows(tmp_path_factory) -> str:
    """Unpaired rows, one per prompt: liking is desirable, hating undesirable (more desirable than not)."""
    path = tmp_path_factory.mktemp("toy_rows")
    for split, names in (("train", THINGS[:8]), ("validation", THINGS[8:10]), ("test", THINGS[10:])):
        rows = [{"prompt": _prompt(t), "completion": f" good, i like {t}." if i % 3 else f" bad, i hate {t}.",
                 "label": bool(i % 3)} for i, t in enumerate(names)]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _cfg(make_cfg, data, model, *extra):
    return make_cfg("data=hh_rlhf_harmless", f"data.path={data}", f"model.name_or_path={model}", *SHORT, *extra)


# --- lft.train, two steps each -------------------------------------------------------------------------------------
def test_train_orpo_two_steps_writes_an_adapter(make_cfg, tiny_llama, toy_pairs):
    metrics = train(_cfg(make_cfg, toy_pairs, tiny_llama, "strategy=lora", "data.preference.loss=orpo",
                         "trainer.max_steps=2"))
    assert {"test/preference_accuracy", "test/reward_margin", "test/nll", "test/logp_accuracy"} <= set(metrics)
    assert metrics["test/nll"] > 0 and metrics["weights_dir"].endswith("adapter")


@pytest.mark.parametrize("data", ["toy_pairs", "toy_rows"])
def test_train_kto_two_steps_on_pairs_and_on_unpaired_rows(make_cfg, tiny_llama, data, request):
    metrics = train(_cfg(make_cfg, request.getfixturevalue(data), tiny_llama, "strategy=lora",
                         "data.preference.loss=kto", "data.batch_size=2", "trainer.max_steps=2"))
    assert {"test/preference_accuracy", "test/reward_margin", "test/kl", "test/desirable_reward"} <= set(metrics)
    assert metrics["test/kl"] >= 0


# --- the reference: loaded once where the loss needs it, never for ORPO ------------------------------------------------
def _one_step(cfg):
    """(task, trained model, first batch, loss) after one backward."""
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    batch = next(iter(task.encode(tokenizer, cfg.seed).datamodule.train_dataloader()))
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    loss = task.loss(model, batch)
    loss.backward()
    return task, model, batch, loss


@pytest.mark.parametrize("loss", ["orpo", "kto"])
@pytest.mark.parametrize("strategy", ["lora", "qlora", "full"])
def test_each_strategy_trains_and_the_reference_is_built_only_when_needed(make_cfg, tiny_llama_64, toy_pairs,
                                                                          strategy, loss):
    if strategy == "qlora":
        from lft.config.validate import bitsandbytes_problem

        if bitsandbytes_problem(4):
            pytest.skip(f"bitsandbytes cannot run here: {bitsandbytes_problem(4)}")
    cfg = _cfg(make_cfg, toy_pairs, tiny_llama_64, f"strategy={strategy}", f"data.preference.loss={loss}")
    task, model, _, value = _one_step(cfg)
    assert isinstance(task, KtoTask) == (loss == "kto")
    assert torch.isfinite(value)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)
    # Only a full fine-tune under a reference-based loss needs a second model (peft: the adapter is switched off).
    assert (task.reference.model is not None) == (strategy == "full" and loss == "kto")


def test_orpo_without_its_odds_term_is_the_models_own_loss_on_the_chosen_answer(make_cfg, tiny_llama, toy_pairs):
    cfg = _cfg(make_cfg, toy_pairs, tiny_llama, "strategy=full", "data.preference.loss=orpo",
               "data.preference.orpo_lambda=0", "data.batch_size=1")
    task, model, batch, loss = _one_step(cfg)
    with torch.no_grad():
        sft = model(input_ids=batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"],
                    labels=batch["chosen_labels"]).loss
    torch.testing.assert_close(loss.detach(), sft)
    assert task.reference.model is None


# --- learning the toy preference ------------------------------------------------------------------------------------------
def _fit(cfg, epochs: int):
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    encoded = task.encode(tokenizer, cfg.seed)
    model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
    module = FineTuneModule(model, task, instantiate(cfg.optimizer), cfg.scheduler, encoded)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    loader = encoded.datamodule.train_dataloader
    before = trainer.validate(module, dataloaders=loader(), verbose=False)[0]
    trainer.fit(module, train_dataloaders=loader())
    after = trainer.validate(module, dataloaders=loader(), verbose=False)[0]
    return before, after


@pytest.mark.slow  # 20-70 s on a shared CPU
@pytest.mark.parametrize("data", ["toy_pairs", "toy_rows"])
def test_kto_learns_the_toy_preference(make_cfg, tiny_llama, data, request):
    L.seed_everything(0, verbose=False)
    cfg = _cfg(make_cfg, request.getfixturevalue(data), tiny_llama, "strategy=lora", "data.preference.loss=kto",
               "optimizer.lr=3e-2", "scheduler=constant", "data.batch_size=4", "data.preference.beta=0.5")
    before, after = _fit(cfg, epochs=6)
    assert before["val/preference_accuracy"] == 0.5 and before["val/reward_margin"] == pytest.approx(0, abs=1e-5)
    assert after["val/preference_accuracy"] == 1.0 and after["val/reward_margin"] > 0.05
    assert after["val/desirable_reward"] > 0


@pytest.mark.slow
def test_orpo_learns_the_toy_preference(make_cfg, tiny_llama, toy_pairs):
    L.seed_everything(0, verbose=False)
    cfg = _cfg(make_cfg, toy_pairs, tiny_llama, "strategy=lora", "data.preference.loss=orpo", "optimizer.lr=3e-2",
               "scheduler=constant", "data.batch_size=4", "data.preference.orpo_lambda=1.0")
    before, after = _fit(cfg, epochs=6)
    assert after["val/nll"] < before["val/nll"]  # the SFT term: the chosen answers become likelier
    assert after["val/reward_margin"] > before["val/reward_margin"] and after["val/preference_accuracy"] == 1.0


def test_kto_refuses_batches_of_one_row_before_loading(make_cfg, toy_pairs):
    cfg = make_cfg("data=hh_rlhf_harmless", f"data.path={toy_pairs}", "data.preference.loss=kto", "data.batch_size=1")
    with pytest.raises(ConfigError, match=r"data.batch_size=1 with data.preference.loss=kto.*at least 2 rows"):
        train(cfg)


def test_evaluate_kto_base_and_run(make_cfg, tiny_llama, toy_rows, tmp_path):
    """lft.evaluate of the base (its own reference: every reward 0, z0 0) and of a trained KTO run."""
    from lft.evaluate import evaluate

    common = ("data=hh_rlhf_harmless", f"data.path={toy_rows}", f"model.name_or_path={tiny_llama}", *SHORT,
              "data.preference.loss=kto", "data.batch_size=2", "data.eval_batch_size=2")
    cfg = make_cfg(*common, "strategy=lora", "optimizer.lr=3e-2", "scheduler=constant")
    train(cfg)
    out = tmp_path / "results.json"
    base = evaluate(make_cfg(*common, f"out={out}", "name=base", config="evaluate", out="eval0"))
    assert base["preference_accuracy"] == 0.5 and base["reward_margin"] == 0.0 and base["kl"] == 0.0
    tuned = evaluate(make_cfg(*common, f"out={out}", f"run={cfg.paths.output_dir}", "name=kto", config="evaluate",
                              out="eval1"))
    assert tuned["reward_margin"] != 0.0 and tuned["rows"] == 2
