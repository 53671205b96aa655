"""Ensembles in lft.evaluate: probability averaging on fixed logits, MBR selection, two tiny runs end to end,
and the refusal of members that do not fit together."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchmetrics.classification import MulticlassAccuracy

from lft.config.errors import ConfigError
from lft.evaluate import evaluate
from lft.evaluation.ensemble import average_probabilities, check_members, mbr_select
from lft.train import train


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(MulticlassAccuracy(num_classes=probs.shape[-1], average="micro")(probs.argmax(-1), labels))


def test_average_of_a_confident_and_an_unconfident_member():
    # Rows 0-1 (A): member a is right and confident, b wrong but unsure. Rows 2-3 (B): b right and confident,
    # a wrong but unsure. Each member alone gets 2 of 4; the average follows the confident member: 4 of 4.
    labels = torch.tensor([0, 0, 1, 1])
    a = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.3, 0.0], [0.3, 0.0]])
    b = torch.tensor([[0.0, 0.3], [0.0, 0.3], [0.0, 4.0], [0.0, 4.0]])
    assert accuracy(a.softmax(-1), labels) == accuracy(b.softmax(-1), labels) == 0.5
    probs = average_probabilities([a, b])
    assert probs.shape == (4, 2) and torch.allclose(probs.sum(-1), torch.ones(4))
    expected = (a.softmax(-1) + b.softmax(-1)) / 2
    assert torch.allclose(probs, expected)
    assert accuracy(probs, labels) == 1.0, "averaged probabilities beat both members"


def test_average_is_softmax_not_logit_mean_and_keeps_one_member():
    # One very confident vote for class 1 against two moderate votes for class 0: the mean of the logits
    # (2.0 vs 6.7) picks class 1, the mean of the probabilities (0.64 vs 0.36) picks class 0.
    a, b = torch.tensor([[0.0, 20.0]]), torch.tensor([[3.0, 0.0]])
    probs = average_probabilities([a, b, b])
    assert torch.allclose(probs, (a.softmax(-1) + 2 * b.softmax(-1)) / 3)
    assert probs.argmax(-1).item() == 0 and ((a + 2 * b) / 3).argmax(-1).item() == 1
    assert torch.allclose(average_probabilities([a]), a.softmax(-1))
    assert average_probabilities([a.half(), b.half()]).dtype == torch.float32
    with pytest.raises(ValueError):
        average_probabilities([])


def test_mbr_picks_the_generation_the_others_agree_with():
    texts = ["tom will bring the cake", "the weather is nice today", "tom brings the cake tomorrow"]
    assert mbr_select(texts) in (0, 2)
    assert mbr_select(["a b c", "x y z", "a b c d"]) == 0
    assert mbr_select(["only one"]) == 0
    assert mbr_select(["same", "other"]) == 0, "two members tie: the first is kept"


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
    assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["f1"] <= 1.0 and row["loss"] > 0

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
        row, _, task = score(cfg, run, collect=True)
        assert isinstance(task, ClassificationTask)
        logits, labels = torch.cat([x for x, _ in task.collected]), torch.cat([y for _, y in task.collected])
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
    assert row["members"] == runs and 0.0 <= row["rouge1"] <= 1.0 and "perplexity" not in row
    folder = Path(cfg.paths.output_dir)
    chosen = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    members = [{s["row"]: s["prediction"] for s in map(json.loads, (folder / "members" / str(i) / "predictions.jsonl")
                                                        .read_text().splitlines())} for i in range(3)]
    assert len(chosen) == 4  # data.generate.test_samples in make_cfg
    for c in chosen:
        texts = [m[c["row"]] for m in members]
        assert c["prediction"] == texts[c["member"]] == texts[mbr_select(texts)]
