"""Every config file composes, and every `_target_` in it instantiates; bad overrides fail clearly."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR
from lft.config.validate import check_config
from lft.training.loggers import build_loggers
from lft.training.schedulers import lr_lambda

GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "paths"))
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONFIG_DIR / g).glob("*.yaml"))]
# Options that cannot stand alone: an online-RL prompt set needs a reward.
COMPANIONS = {("data", "imdb_openings"): ["++reward.fn={_target_:lft.rewards.rules.TokenShare,token_id:1}"]}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_config_file_composes_and_instantiates(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}", *COMPANIONS.get((group, option), []), fast=False)
    if cfg.trainer.accelerator == "gpu" or str(cfg.trainer.precision).startswith("16"):
        pytest.skip("needs a CUDA GPU")  # composition above is still checked
    check_config(cfg)
    lr_lambda(cfg.scheduler, total_steps=100)(50)
    instantiate(cfg.optimizer)
    for sub in (cfg.get("callbacks") or {}).values():
        if sub and "_target_" in sub:
            instantiate(sub)
    # Loggers the way a run builds them (lft fills their names); wandb would start a run.
    build_loggers({name: sub for name, sub in (cfg.get("logger") or {}).items() if name != "wandb"}, task_name=option)
    trainer_cfg = {k: v for k, v in cfg.trainer.items() if k not in ("strategy", "devices")}
    instantiate(trainer_cfg, logger=False)


def test_every_group_is_tested():
    assert {"model", "data", "strategy", "optimizer", "scheduler", "precision", "trainer", "logger",
            "callbacks", "debug", "experiment", "augment"} <= set(GROUPS)
    assert all(list((CONFIG_DIR / g).glob("*.yaml")) for g in GROUPS), "a config group is empty"


def test_misspelled_option_lists_valid_choices(make_cfg):
    with pytest.raises(ConfigCompositionException, match="Available options in 'strategy'"):
        make_cfg("strategy=lorra")


def test_unknown_key_is_refused(make_cfg):
    with pytest.raises(ConfigCompositionException, match="lerning_rate"):
        make_cfg("optimizer.lerning_rate=1e-3")


def test_fp16_on_cpu_is_refused_before_training(make_cfg):
    cfg = make_cfg("precision=fp16")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="precision=bf16 or precision=fp32"):
        check_config(cfg)


def test_strategy_learning_rate_flows_into_optimizer(make_cfg):
    assert make_cfg("strategy=lora").optimizer.lr > 10 * make_cfg("strategy=full").optimizer.lr
    assert make_cfg("strategy=lora", "optimizer.lr=3e-4").optimizer.lr == 3e-4


def test_config_dir_is_the_repo_conf():
    assert CONFIG_DIR == Path(__file__).resolve().parents[3] / "conf"
