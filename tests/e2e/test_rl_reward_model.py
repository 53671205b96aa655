"""Rewards from an lft reward-model run on a decoder with a chat template, and the HH route: dialogue prompts
("\\n\\nHuman: ...\\n\\nAssistant:") become chat messages for the policy and for the reward model alike; policies
of other tasks (chat SFT, PPO) scored on the preference pairs."""

import json
import math
import shutil

import pytest
import torch
from transformers import AutoTokenizer

from lft.recipes.train import train
from tests.conftest import config_maker
from tests.e2e.test_chat_sft import MISTRAL

THINGS = ["cats", "tea", "rain", "books", "music", "trees", "bread", "boats", "maps", "snow", "bikes", "clocks"]
OPENING = "\n\nHuman: hello there\n\nAssistant: hi, how can i help?"
TURNS = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi, how can i help?"}]


@pytest.fixture(scope="module")
def chat_llama(tiny_llama, tmp_path_factory) -> str:
    """tiny_llama with Mistral's chat template ([SEP] is its EOS)."""
    folder = tmp_path_factory.mktemp("chat_llama") / "model"
    shutil.copytree(tiny_llama, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = MISTRAL
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def dialogues(tmp_path_factory) -> str:
    """Two-turn HH-style pairs: the chosen answer likes the thing, the rejected one hates it."""
    path = tmp_path_factory.mktemp("dialogues")
    for split, names in (("train", THINGS[:8]), ("validation", THINGS[8:10]), ("test", THINGS[10:])):
        rows = [{"prompt": f"{OPENING}\n\nHuman: what about {name}?\n\nAssistant:", "chosen": f" good, i like {name}.",
                 "rejected": f" bad, i hate {name}."} for name in names]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _hh(*overrides, llama, data):
    return ("data=hh_rlhf_harmless", f"data.path={data}", f"model.name_or_path={llama}", "data.max_length=64",
            "data.max_prompt_length=48", *overrides)


@pytest.fixture(scope="module")
def reward_model_run(tmp_path_factory, chat_llama, dialogues) -> str:
    """A LoRA sequence-classifier reward model of the chat llama, one step on the dialogue pairs."""
    cfg = config_maker(tmp_path_factory.mktemp("rm"))(
        *_hh("data.task=reward", "strategy=lora", "optimizer.lr=3e-2", "trainer.max_steps=1", "test=false",
             llama=chat_llama, data=dialogues))
    train(cfg)
    return cfg.paths.output_dir


def test_a_reward_model_run_scores_a_response_as_its_own_evaluation_does(reward_model_run, caplog):
    """RunReward's score of (prompt, response) equals RewardTask's forward over the pair lft.evaluate's path
    encodes, for chosen and rejected answers; the input ends in EOS and carries the dialogue as chat turns. The
    reward model loads without a load report (its new score head is the adapter's)."""
    from pathlib import Path

    from lft.data.preference_pairs import load_preference_splits
    from lft.models.loading import load_tokenizer
    from lft.rewards.scorers import RunReward
    from lft.runs.folder import load_run_config, load_trained_model
    from lft.tasks import build_task
    from lft.tasks.preference import PairCollator

    cfg = load_run_config(reward_model_run)
    task, tokenizer = build_task(cfg.data, cfg.model), load_tokenizer(cfg.model)
    encoded = task.encode(tokenizer, cfg.seed)
    model = load_trained_model(task, cfg.model, reward_model_run, encoded).eval()
    test = encoded.datamodule.splits["test"]
    with torch.no_grad():
        _, chosen, rejected, _ = task.forward(model, PairCollator(tokenizer.pad_token_id)(list(test)))
    pairs = list(load_preference_splits(cfg.data, cfg.seed)["test"])

    reward = RunReward(Path(reward_model_run), None)
    prompts = [p["prompt"] for p in pairs] * 2
    responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    caplog.clear()
    scores = reward(prompts, responses, [[0]] * len(responses), torch.device("cpu"))
    assert "LOAD REPORT" not in caplog.text
    torch.testing.assert_close(scores, torch.cat([chosen, rejected]))
    assert chosen.ne(rejected).all()

    ids = reward.inputs.score_features(pairs[0]["prompt"], pairs[0]["chosen"])["input_ids"]
    assert ids == test[0]["chosen_input_ids"] and ids[-1] == tokenizer.eos_token_id
    turns = [*TURNS, {"role": "user", "content": f"what about {THINGS[10]}?"}]
    prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(ids).startswith(tokenizer.decode(tokenizer(prompt, add_special_tokens=False)["input_ids"]))


def test_hh_prompts_are_chat_turns_for_the_policy_and_rloo_trains_on_the_reward_model(make_cfg, chat_llama, dialogues,
                                                                                      reward_model_run):
    from lft.data.policy_prompts import PolicyPrompts
    from lft.models.loading import load_tokenizer

    watch = ("data.monitor.metric=val/reward", "data.monitor.mode=max")
    cfg = make_cfg(*_hh("data.task=rloo", f"reward.run={reward_model_run}", "rl.max_new_tokens=4",
                        "rl.samples_per_prompt=2", "rl.mini_batch_size=8", "data.batch_size=4", "strategy=lora",
                        "trainer.max_steps=2", "trainer.limit_val_batches=1", "test=false", *watch,
                        llama=chat_llama, data=dialogues))
    tokenizer = load_tokenizer(cfg.model)
    prompts = PolicyPrompts(cfg.data, tokenizer)  # PolicyTask.encode's formatting
    row = {"prompt": f"{OPENING}\n\nHuman: what about cats?\n\nAssistant:"}
    turns = [*TURNS, {"role": "user", "content": "what about cats?"}]
    expected = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    # the reward reads the dialogue as the data holds it; the policy sees it as chat turns
    assert prompts.encode([row]) == [(row["prompt"], tokenizer(expected, add_special_tokens=False)["input_ids"])]

    metrics = train(cfg)
    # one batch: 4 prompts x 2 samples in one minibatch, 2 epochs
    assert metrics["optimizer_steps"] == 2 and math.isfinite(metrics["train/reward"]) and metrics["train/reward"] != 0


@pytest.mark.parametrize("trained", ["chat", "ppo"])
def test_a_policy_run_of_another_task_is_scored_on_preference_pairs(make_cfg, chat_llama, dialogues, reward_model_run,
                                                                    trained):
    """`python -m lft.evaluate run=<chat SFT or PPO run> data=hh_rlhf_harmless`: DPO's metrics, the implicit
    reward against the run's base as the reference (the PPO run's value head is no part of it)."""
    from lft.recipes.evaluate import config_for_run, evaluate

    task = ("data=hh_rlhf_chat", "data.max_length=64") if trained == "chat" else _hh(
        "data.task=ppo", f"reward.run={reward_model_run}", "rl.max_new_tokens=4",
        "rl.samples_per_prompt=2", "rl.mini_batch_size=8", "data.monitor.metric=val/reward", "data.monitor.mode=max",
        llama=chat_llama, data=dialogues)
    run = make_cfg(*task, f"data.path={dialogues}", f"model.name_or_path={chat_llama}", "strategy=lora",
                   "optimizer.lr=3e-2", "trainer.max_steps=2", "test=false", out="policy")
    train(run)
    overrides = [f"run={run.paths.output_dir}", "data=hh_rlhf_harmless", f"data.path={dialogues}",
                 "data.max_length=64", "data.max_prompt_length=48"]
    row = evaluate(config_for_run(make_cfg(*overrides, config="evaluate", out="eval"), overrides))
    assert row["rows"] == 2 and 0 <= row["preference_accuracy"] <= 1
    assert row["reward_margin"] != 0  # the tuned policy against its base: implicit rewards moved
    assert {"chosen_logps", "rejected_logps", "logp_accuracy"} <= set(row)
