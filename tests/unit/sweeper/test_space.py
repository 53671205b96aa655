"""The search sweeper's pieces: its space and pruner checks, and how a resumed journal counts finished jobs."""

import json

import pytest
from omegaconf import OmegaConf

from hydra_plugins.lft_sweeper.space import parse_space
from hydra_plugins.lft_sweeper.sweeper import check_pruner
from lft.config.errors import ConfigError


def states(study) -> list[str]:
    return [t.state.name for t in study.trials]


def test_space_checks():
    config = OmegaConf.create({"optimizer": {"lr": 1e-3}, "strategy": {"name": "full"}})
    space = parse_space({"optimizer.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                         "+strategy.extra": {"type": "categorical", "choices": [[1, 2], None]}}, config)
    assert [p.key for p in space] == ["optimizer.lr", "+strategy.extra"]
    assert space[1].override((1, 2)) == "+strategy.extra=[1,2]" and space[1].override(None) == "+strategy.extra=null"
    bad = [
        ({}, "is empty"),
        ({"optimizer.lr": {"type": "gaussian"}}, "type: float | int | categorical"),
        ({"optimizer.lr": {"type": "float", "low": 1.0, "high": 0.1}}, "low=1.0 is above high=0.1"),
        ({"optimizer.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log: true needs low > 0"),
        ({"optimizer.lr": {"type": "int", "low": 1, "high": 4.5}}, "int needs whole"),
        ({"optimizer.lr": {"type": "categorical", "choices": []}}, "non-empty list of choices"),
        ({"optimizer.lr": {"type": "float", "low": 0, "hi": 1}}, "unknown setting(s) ['hi']"),
        ({"strategy.r": {"type": "int", "low": 4, "high": 16}}, "strategy.r is not a key of this config"),
    ]
    for params, message in bad:
        with pytest.raises(ConfigError, match=None) as err:
            parse_space(params, config)
        assert message in str(err.value), (params, str(err.value))

    assert check_pruner(None) is None and check_pruner("median") == {"type": "median", "n_startup_trials": 2,
                                                                    "n_warmup_steps": 0}
    for pruner in ({"type": "hyperband"}, {"type": "median", "warmup": 3}, {"type": "median", "n_warmup_steps": -1}):
        with pytest.raises(ConfigError, match="hydra.sweeper.pruner"):
            check_pruner(pruner)


def test_resume_counts_a_job_that_finished_before_the_kill(tmp_path):
    # Killed between a job's metrics.json and Optuna's tell: the trial is RUNNING in the journal, but the job
    # finished, so it counts with its value; a trial whose job never finished is FAIL (interrupted).
    from hydra_plugins.lft_sweeper.sweeper import LftSweeper, counts

    sweeper = LftSweeper(sampler="random", seed=0, n_trials=4, n_jobs=1, direction="maximize", n_startup_trials=1,
                         storage=None, study_name="train", params={})
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "monitor": {"metric": "val/acc"}})
    study = sweeper.load_study()
    for number in range(2):
        study.ask().set_user_attr("job_dir", str(tmp_path / str(number)))
        (tmp_path / str(number)).mkdir()
    (tmp_path / "0" / "metrics.json").write_text(json.dumps({"val/acc": 0.75}))

    study = sweeper.load_study()  # as a resumed search does
    sweeper.close_interrupted(study)
    assert states(study) == ["COMPLETE", "FAIL"] and study.trials[0].value == 0.75
    assert study.trials[1].user_attrs["interrupted"] and (tmp_path / "1" / "failed.json").exists()
    assert [counts(t) for t in study.trials] == [True, False]
