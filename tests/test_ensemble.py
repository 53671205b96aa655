"""Ensembles in lft.evaluate: soft voting on fixed logits, an ensemble of two tiny runs, and the refusals."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lft.ensemble import average_probabilities, check_members
from lft.errors import ConfigError
from lft.evaluate import evaluate
from lft.train import train


def test_soft_voting_beats_both_members_when_each_is_right_where_the_other_is_unsure():
    labels = torch.tensor([0, 0, 1, 1])
    confident_on_0 = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.2, 0.0], [0.2, 0.0]])  # right on rows 0-1 only
    confident_on_1 = torch.tensor([[0.0, 0.2], [0.0, 0.2], [0.0, 3.0], [0.0, 3.0]])  # right on rows 2-3 only
    for member in (confident_on_0, confident_on_1):
        assert (member.argmax(-1) == labels).float().mean() == 0.5
    probabilities = average_probabilities([confident_on_0, confident_on_1])
    expected = (confident_on_0.softmax(-1) + confident_on_1.softmax(-1)) / 2
    assert torch.allclose(probabilities, expected) and torch.allclose(probabilities.sum(-1), torch.ones(4))
    assert (probabilities.argmax(-1) == labels).float().mean() == 1.0
    # Majority-of-confidence, not majority of votes: two unsure members lose to one sure member.
    sure, unsure = torch.tensor([[0.0, 4.0]]), torch.tensor([[0.3, 0.0]])
    assert average_probabilities([sure, unsure, unsure]).argmax(-1).item() == 1


def test_ensemble_of_two_runs_scores_each_member_as_evaluate_does(make_cfg, tiny_bert, tmp_path):
    runs = []
    for seed in (1, 2):
        cfg = make_cfg(f"model.name_or_path={tiny_bert}", "strategy=full", f"seed={seed}", "precision=fp32",
                       out=f"run{seed}")
        train(cfg)
        runs.append(cfg.paths.output_dir)
    out = tmp_path / "results.json"
    ecfg = make_cfg(f"model.name_or_path={tiny_bert}", f"runs=[{runs[0]},{runs[1]}]", f"out={out}",
                    "precision=fp32", config="evaluate", out="ensemble")
    result = evaluate(ecfg)
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["run1", "run2", "ensemble"]
    assert result == rows[-1] and result["members"] == ["run1", "run2"]
    assert json.loads((Path(ecfg.paths.output_dir) / "evaluation.json").read_text()) == result
    assert len({r["rows"] for r in rows}) == 1 and all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    single = evaluate(make_cfg(f"model.name_or_path={tiny_bert}", f"run={runs[0]}", "precision=fp32",
                               config="evaluate", out="single"))
    assert single["rows"] == rows[0]["rows"]
    assert single["accuracy"] == pytest.approx(rows[0]["accuracy"]) and single["f1"] == pytest.approx(rows[0]["f1"])


def _run_folder(tmp_path: Path, name: str, cfg) -> str:
    folder = tmp_path / name
    folder.mkdir()
    OmegaConf.save(cfg, folder / "config.yaml")
    return str(folder)


def test_runs_that_cannot_form_one_ensemble_are_refused(make_cfg, tiny_bert, tiny_t5, pairs_data, tmp_path):
    bert = _run_folder(tmp_path, "bert", make_cfg(f"model.name_or_path={tiny_bert}"))
    other = _run_folder(tmp_path, "other", make_cfg("model.name_or_path=/elsewhere/model"))
    t5 = _run_folder(tmp_path, "t5", make_cfg("data=dialogsum", f"data.path={pairs_data}",
                                               f"model.name_or_path={tiny_t5}"))
    with pytest.raises(ConfigError, match="at least two"):
        check_members([bert])
    with pytest.raises(ConfigError, match="share the base model"):
        check_members([bert, other])
    with pytest.raises(ConfigError, match="share the data's task"):
        check_members([bert, t5])
    with pytest.raises(ConfigError, match="take classification runs"):
        check_members([t5, t5])
    with pytest.raises(ConfigError, match="not both"):
        evaluate(make_cfg(f"run={bert}", f"runs=[{bert},{bert}]", config="evaluate"))
