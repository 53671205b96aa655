"""Ensembles in lft.evaluate: tiny runs scored end to end, averaging checked by hand, the refusal of members that
do not fit together (the combining rules alone: tests/unit/evaluation/test_ensemble.py)."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.evaluate import evaluate
from lft.evaluation.ensemble import average_probabilities, check_members, mbr_select
from lft.train import train
from tests.e2e.test_evaluate_generate import best_reference_rouge1
from tests.unit.evaluation.test_ensemble import accuracy


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_bert):
    """Two tiny full fine-tunes of one classifier, trained with different seeds."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from lft.config.paths import CONFIG_DIR

    root = tmp_path_factory.mktemp("ensemble")
    runs = []
    for seed in (1, 2):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"model.name_or_path={tiny_bert}", f"seed={seed}",
                                                          "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                                                          "trainer.limit_val_batches=1", "test=false",
                                                          "callbacks=none", "trainer.enable_progress_bar=false",
                                                          "trainer.accelerator=cpu"])
        with open_dict(cfg):
            cfg.paths.output_dir = str(root / f"seed{seed}")
            cfg.paths.cache_dir = str(root / "cache")
        train(cfg)
        runs.append(cfg.paths.output_dir)
    return runs


def test_ensemble_of_two_seeds_scores_members_and_ensemble(make_cfg, two_runs, tmp_path, capsys):
    out = tmp_path / "results.json"
    cfg = make_cfg(f"runs=[{two_runs[0]},{two_runs[1]}]", f"out={out}", config="evaluate", out="eval")
    row = evaluate(cfg)
    assert row["name"] == "ensemble" and row["members"] == two_runs
    assert row["loss"] > 0

    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["seed1", "seed2", "ensemble"]
    assert [r["weights"] for r in rows[:2]] == two_runs and all("accuracy" in r for r in rows)
    assert rows[0]["rows"] == rows[1]["rows"] == row["rows"]
    table = capsys.readouterr().out
    assert "| ensemble |" in table and "| seed1 |" in table and "| seed2 |" in table

    saved = json.loads((Path(cfg.paths.output_dir) / "evaluation.json").read_text())
    assert saved["members"] == two_runs and [r["name"] for r in saved["member_results"]] == ["seed1", "seed2"]
    for i in (0, 1):
        assert (Path(cfg.paths.output_dir) / "members" / str(i) / "evaluation.json").exists()


def test_ensemble_matches_averaging_the_members_by_hand(make_cfg, two_runs):
    """The ensemble row equals average_probabilities over the members' logits, computed here separately.
    (Tiny random members are near chance, so the loss, a continuous score, carries the check.)"""
    from lft.evaluate import score
    from lft.tasks.classification import ClassificationTask

    per_member, member_rows = [], []
    for i, run in enumerate(two_runs):
        cfg = make_cfg(config="evaluate", out=f"member{i}")
        row, module, collector = score(cfg, run, collect=True)
        assert isinstance(module.task, ClassificationTask)
        logits, labels = collector.all()
        assert logits.shape == (row["rows"], 2)
        assert row["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), abs=1e-5)
        per_member.append((logits, labels))
        member_rows.append(row)
    labels = per_member[0][1]
    assert torch.equal(labels, per_member[1][1])
    assert not torch.allclose(per_member[0][0], per_member[1][0]), "different seeds, different models"
    probs = average_probabilities([x for x, _ in per_member])
    row = evaluate(make_cfg(f"runs=[{two_runs[0]},{two_runs[1]}]", config="evaluate", out="ens"))
    assert row["accuracy"] == pytest.approx(accuracy(probs, labels))
    assert row["loss"] == pytest.approx(float(torch.nn.functional.nll_loss(probs.log(), labels)), abs=1e-6)
    assert all(row["loss"] != pytest.approx(r["loss"], abs=1e-7) for r in member_rows)


def test_mismatched_members_are_refused_before_weights_load(two_runs, tmp_path, make_cfg):
    # A copy of a run whose config says it trained seq2seq, and one whose labels differ.
    import shutil

    other_task = tmp_path / "seq2seq_run"
    shutil.copytree(two_runs[1], other_task)
    cfg = OmegaConf.load(other_task / "config.yaml")
    cfg.data.task = "seq2seq"
    OmegaConf.save(cfg, other_task / "config.yaml")
    with pytest.raises(ConfigError, match="share one task type") as err:
        check_members([two_runs[0], other_task])
    assert two_runs[0] in str(err.value) and str(other_task) in str(err.value)

    other_labels = tmp_path / "labels_run"
    shutil.copytree(two_runs[1], other_labels)
    config = json.loads((other_labels / "model" / "config.json").read_text())
    config["id2label"] = {"0": "bad", "1": "good"}
    (other_labels / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="share one label set"):
        evaluate(make_cfg(f"runs=[{two_runs[0]},{other_labels}]", config="evaluate", out="refused"))
    assert not (tmp_path / "refused" / "members").exists(), "refused before any member was scored"

    with pytest.raises(ConfigError, match="at least two"):
        check_members([two_runs[0]])
    with pytest.raises(ConfigError, match="not both"):
        evaluate(make_cfg(f"runs=[{two_runs[0]},{two_runs[1]}]", f"run={two_runs[0]}", config="evaluate"))


def test_generative_ensemble_picks_one_member_text_per_row(make_cfg, tiny_t5, pairs_data, tmp_path):
    """Three tiny seq2seq runs: each ensemble prediction is one member's text, MBR-chosen, scored by ROUGE."""
    data = ("data=dialogsum", f"data.path={pairs_data}", "data.max_source_length=64", "data.max_target_length=24")
    runs = []
    for seed in (1, 2, 3):
        cfg = make_cfg(*data, f"model.name_or_path={tiny_t5}", f"seed={seed}", "strategy=lora", "test=false",
                       "callbacks=none", "trainer.limit_train_batches=1", out=f"run{seed}")
        train(cfg)
        runs.append(cfg.paths.output_dir)
    cfg = make_cfg(*data, f"runs=[{','.join(runs)}]", config="evaluate", out="eval")
    row = evaluate(cfg)
    assert row["members"] == runs and "perplexity" not in row
    folder = Path(cfg.paths.output_dir)
    chosen = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    members = [{s["row"]: s["prediction"] for s in map(json.loads, (folder / "members" / str(i) / "predictions.jsonl")
                                                        .read_text().splitlines())} for i in range(3)]
    assert len(chosen) == 4  # data.generate.test_samples in make_cfg
    assert row["rouge1"] == pytest.approx(best_reference_rouge1(folder / "predictions.jsonl"))  # of the chosen texts
    for c in chosen:
        texts = [m[c["row"]] for m in members]
        assert c["prediction"] == texts[c["member"]] == texts[mbr_select(texts)]
