"""lft.evaluate and lft.generate on runs of tiny models, raw-text LM training, and the report table."""

import json
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from lft.evaluate import evaluate
from lft.generate import generate, parse_args
from lft.reports.results import format_table
from lft.train import train


def best_reference_rouge1(predictions: Path) -> float:
    """Mean ROUGE-1 F of the written predictions, each against its best reference, computed here with rouge-score."""
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    return sum(max(scorer.score(ref, r["prediction"])["rouge1"].fmeasure for ref in r["references"]) for r in rows) / len(rows)


def _pairs(make_cfg, model, data, *extra):
    return make_cfg("data=dialogsum", f"data.path={data}", f"model.name_or_path={model}", "data.max_source_length=64",
                    "data.max_target_length=24", "data.batch_size=4", "data.eval_batch_size=4", *extra)


@pytest.mark.parametrize("strategy", ["lora", "full", "prompt_tuning"])
def test_t5_base_vs_trained_in_one_table(make_cfg, tiny_t5, pairs_data, tmp_path, strategy):
    """Original vs fine-tuned: two evaluate commands appending to one results file."""
    cfg = _pairs(make_cfg, tiny_t5, pairs_data, f"strategy={strategy}")
    train(cfg)
    run = cfg.paths.output_dir
    out = tmp_path / "results.json"
    for i, extra in enumerate(([], [f"run={run}"])):
        ecfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={tiny_t5}",
                        "data.max_source_length=64", "data.max_target_length=24", f"out={out}", *extra,
                        config="evaluate", out=f"eval{i}")
        row = evaluate(ecfg)
        assert row["rouge1"] == pytest.approx(best_reference_rouge1(Path(ecfg.paths.output_dir) / "predictions.jsonl"))
        assert row["rows"] == 12
        assert row["precision"] == ecfg.trainer.precision and row["peak_rss_mb"] > 100  # torch alone is more
    rows = json.loads(out.read_text())
    assert [r["weights"] for r in rows] == [None, run]
    table = format_table(rows)
    assert "rouge1 (x100)" in table and "| peak_rss_mb |" in table and len(table.splitlines()) == 4


def test_generate_answers_from_a_lora_run(make_cfg, tiny_llama, pairs_data, tmp_path):
    cfg = _pairs(make_cfg, tiny_llama, pairs_data, "strategy=lora")
    train(cfg)
    answers = generate(parse_args([f"run={cfg.paths.output_dir}", "prompt=#Person1#: Hi, bring a cake?",
                                   "max_new_tokens=5"]))
    assert len(answers) == 1 and isinstance(answers[0], str)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"dialogue": "#Person1#: Hello."}) + "\n" + json.dumps({"dialogue": "Bye"}) + "\n")
    assert len(generate(parse_args([f"run={cfg.paths.output_dir}", f"prompts={prompts}", "max_new_tokens=3"]))) == 2


def test_raw_text_lm_on_a_txt_corpus(make_cfg, tiny_gpt2, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Line {i}: to be or not to be, that is the question." for i in range(400)))
    cfg = make_cfg("data=text", f"data.path={corpus}", f"model.name_or_path={tiny_gpt2}", "strategy=lora",
                   "data.block_size=32")
    metrics = train(cfg)
    assert metrics["test/perplexity"] > 1.0 and "test/rouge1" not in metrics
    assert "best_val/loss" in metrics
