import math

import pytest
from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.training.schedulers import lr_lambda


def schedule(**cfg):
    return lr_lambda(OmegaConf.create(cfg), total_steps=110)


def test_warmup_then_linear_decay_to_zero():
    f = schedule(name="linear", warmup_steps=10, warmup_ratio=0.0)
    assert f(0) == pytest.approx(1 / 11)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0)


def test_warmup_ratio_counts_steps():
    f = schedule(name="constant", warmup_steps=0, warmup_ratio=0.1)  # 11 of 110 steps
    assert f(5) < 1.0 and f(11) == 1.0 and f(100) == 1.0


def test_cosine_reaches_floor():
    f = schedule(name="cosine", warmup_steps=0, min_lr_ratio=0.1)
    assert f(0) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1)


def test_step_and_exponential():
    assert schedule(name="step", step_size=10, gamma=0.5)(25) == pytest.approx(0.25)
    assert schedule(name="exponential", gamma=0.9)(3) == pytest.approx(0.729)


def test_bad_schedules_are_refused():
    with pytest.raises(ConfigError, match="choose one of"):
        schedule(name="cosin")
    with pytest.raises(ConfigError, match="only one of warmup_steps and warmup_ratio"):
        schedule(name="linear", warmup_steps=5, warmup_ratio=0.1)
