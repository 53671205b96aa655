"""lft.evaluate predictions=<folder>: saved generations scored again against some reference columns, no model."""

import json
from pathlib import Path

import pytest

from lft.config.errors import ConfigError
from lft.evaluate import evaluate

GENERATED = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu")


def write_predictions(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "evaluation.json").write_text(json.dumps({"name": "lora", "model": "m", "weights": "runs/lora"}))
    return folder


def row(i: int, prediction: str) -> dict:
    refs = [f"Amy brings cake {i}.", f"Bob asks Amy for the cake {i}.", f"Amy brings cake {i}."]
    return {"row": i, "prompt": "...", "reference": refs[0], "references": refs,
            "reference_columns": ["summary1", "summary2", "summary3"], "prediction": prediction}


def test_rescoring_picks_the_named_columns(make_cfg, tmp_path):
    # Each prediction is summary2 word for word: perfect against all references, not against summary1 alone.
    folder = write_predictions(tmp_path / "eval", [row(i, f"Bob asks Amy for the cake {i}.") for i in range(3)])
    out = tmp_path / "results.json"
    every = evaluate(make_cfg("data=dialogsum", f"predictions={folder}", f"out={out}", config="evaluate", out="a"))
    assert every["rouge1"] == pytest.approx(1.0) and every["bleu"] == pytest.approx(1.0)
    assert every["references"] == ["summary1", "summary2", "summary3"] and every["rows"] == 3
    first = evaluate(make_cfg("data=dialogsum", f"predictions={folder}", "data.reference_columns=[summary1]",
                              "name=first", f"out={out}", config="evaluate", out="b"))
    assert first["references"] == ["summary1"] and first["weights"] == "runs/lora"
    # "bob asks amy for the cake i" vs "amy brings cake i": 3 shared unigrams of 7 and 4 words
    assert first["rouge1"] == pytest.approx(2 * (3 / 7) * (3 / 4) / (3 / 7 + 3 / 4))
    assert [r["name"] for r in json.loads(out.read_text())] == ["lora (rescored)", "first"]


def test_rescoring_refusals(make_cfg, tmp_path):
    folder = write_predictions(tmp_path / "eval", [row(0, "x")])
    with pytest.raises(ConfigError, match="none of data.reference_columns"):
        evaluate(make_cfg("data=dialogsum", f"predictions={folder}", "data.reference_columns=[summary9]",
                          config="evaluate", out="a"))
    with pytest.raises(ConfigError, match="names a model to score"):
        evaluate(make_cfg("data=dialogsum", f"predictions={folder}", "run=somewhere", config="evaluate", out="b"))
    with pytest.raises(ConfigError, match="no predictions.jsonl"):
        evaluate(make_cfg("data=dialogsum", f"predictions={tmp_path}", config="evaluate", out="c"))
    with pytest.raises(ConfigError, match="own output folder"):
        evaluate(make_cfg("data=dialogsum", f"predictions={folder}", config="evaluate", out="eval"))


def test_an_evaluation_rescored_against_all_its_references_gives_its_own_numbers(make_cfg, pairs_data, tiny_t5):
    data = ["data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_t5}",
            "data.max_source_length=64", "data.max_target_length=24", "data.eval_batch_size=4"]
    cfg = make_cfg(*data, config="evaluate", out="eval")
    scored = evaluate(cfg)
    saved = [json.loads(line) for line in (Path(cfg.paths.output_dir) / "predictions.jsonl").read_text().splitlines()]
    tests = [json.loads(line) for line in (Path(pairs_data) / "test.jsonl").read_text().splitlines()]
    by_text = {t["summary2"]: t for t in tests}
    for sample in saved:  # each row names its columns, and the texts are that test row's
        assert sample["reference_columns"] == ["summary1", "summary2", "summary3"]
        source = by_text[sample["references"][1]]
        assert sample["references"] == [source["summary1"], source["summary2"], source["summary3"]]
    again = evaluate(make_cfg(*data, f"predictions={cfg.paths.output_dir}", config="evaluate", out="again"))
    assert again["rows"] == len(saved) == 4
    for key in GENERATED:
        assert again[key] == pytest.approx(scored[key], abs=1e-6), key
