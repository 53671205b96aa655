"""lft.evaluate and lft.generate on online-RL policies (the word llama of test_rl_train.py): a base model on prompts,
and a PPO run scored with its own prompts, sampling settings and reward."""

import json
import math
import statistics
from pathlib import Path

import pytest

from lft.recipes.evaluate import config_for_run, evaluate
from lft.recipes.train import train
from lft.reports.results import format_table
from tests.conftest import config_maker
from tests.e2e.test_rl_train import SPECIALS, WORDS, _rl_cfg, word_llama, word_prompts  # noqa: F401

TARGET = WORDS.index("w5") + len(SPECIALS)
REWARD = f"+reward.fn={{_target_:lft.rewards.rules.TokenShare,token_id:{TARGET}}}"


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory, word_llama, word_prompts):  # noqa: F811
    """One batch of PPO (4 updates) with full fine-tuning: model/ holds the value head beside the policy."""
    cfg = _rl_cfg(config_maker(tmp_path_factory.mktemp("ppo")), word_llama, word_prompts, "ppo", "strategy=full",
                  "optimizer.lr=1e-2", "trainer.max_steps=4", "trainer.limit_val_batches=1")
    train(cfg)
    return cfg.paths.output_dir


def _predictions(cfg) -> list[dict]:
    return [json.loads(line) for line in (Path(cfg.paths.output_dir) / "predictions.jsonl").read_text().splitlines()]


def _check_interval(row: dict, rewards: list[float]) -> None:
    assert row["reward"] == pytest.approx(statistics.fmean(rewards), abs=1e-6)
    assert row["reward_ci95"] == pytest.approx(1.96 * statistics.stdev(rewards) / math.sqrt(len(rewards)), rel=1e-4)


def _eval_cfg(make_cfg, *overrides, out):
    return make_cfg("data.max_length=16", "data.eval_batch_size=32", "rl.max_new_tokens=6", *overrides,
                    config="evaluate", out=out)


def test_a_base_policy_scored_on_prompts(make_cfg, word_llama, word_prompts, tmp_path):  # noqa: F811
    cfg = _eval_cfg(make_cfg, f"model.name_or_path={word_llama}", "model.dtype=null", f"data.path={word_prompts}",
                    "data.task=ppo", REWARD, f"out={tmp_path / 'results.json'}", out="base")
    row = evaluate(cfg)
    predictions = _predictions(cfg)
    assert row["rows"] == len(predictions) == 16
    assert set(predictions[0]) == {"row", "prompt", "response", "reward"}
    _check_interval(row, [p["reward"] for p in predictions])
    assert row["kl"] == 0.0  # a base model is its own reference
    assert 0 < row["response_length"] <= 6 and "clip_fraction" not in row
    table = format_table([row])
    assert "reward (95% CI)" in table
    assert f"{row['reward']:.3f} [{row['reward'] - row['reward_ci95']:.3f}, " in table


def test_a_ppo_run_is_scored_with_its_own_prompts_and_reward(make_cfg, ppo_run, tmp_path):
    """`python -m lft.evaluate run=<ppo run>`: no data or reward on the command line (the entry point passes its
    overrides to config_for_run as here), and a sampling setting changed there."""
    overrides = [f"run={ppo_run}", "rl.max_new_tokens=2"]
    cfg = config_for_run(make_cfg(*overrides, config="evaluate", out="eval"), overrides)
    assert cfg.data.task == "ppo" and cfg.reward.fn.token_id == TARGET and cfg.rl.max_new_tokens == 2
    row = evaluate(cfg)
    predictions = _predictions(cfg)
    _check_interval(row, [p["reward"] for p in predictions])
    for p in predictions:  # the run's reward: the share of w5 among the response's tokens
        assert (p["reward"] > 0) == ("w5" in p["response"].split()), p
    assert 0 < row["response_length"] <= 2
    assert row["kl"] != 0  # the trained policy against its starting point


def test_generate_answers_with_a_ppo_run_its_value_head_loaded_quietly(ppo_run, caplog):
    """lft.generate formats the prompt as training did and continues it greedily, as the policy's weights loaded
    independently do; the full run's model/ holds the trained critic, which loads back without a load report."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lft.generate import generate, parse_args
    from lft.runs.folder import load_run_config, load_trained_model
    from lft.tasks import build_task

    answers = generate(parse_args([f"run={ppo_run}", "prompt=w1 w2 w3", "max_new_tokens=4", "do_sample=false",
                                   "num_beams=1"]))
    folder = Path(ppo_run) / "model"
    tokenizer, policy = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tokenizer("w1 w2 w3", return_tensors="pt")
    new = policy.generate(**prompt, max_new_tokens=4, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    assert answers == [tokenizer.decode(new, skip_special_tokens=True).strip()]

    caplog.clear()
    cfg = load_run_config(ppo_run)
    model = load_trained_model(build_task(cfg.data, cfg.model), cfg.model, ppo_run)
    saved = load_file(folder / "model.safetensors")
    assert saved["value_head.weight"].abs().sum() > 0
    torch.testing.assert_close(model.value_head.weight, saved["value_head.weight"])
    assert "LOAD REPORT" not in caplog.text
