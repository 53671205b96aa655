"""Preference tasks end to end: a DPO run writes an adapter and generates, evaluate compares base and DPO, a reward run exports."""

import json

import torch

from lft.models.loading import load_tokenizer
from lft.tasks import build_task
from lft.train import train
from tests.unit.tasks.test_preference import TINY_BERT_LENGTHS, _pair_cfg


def test_train_dpo_end_to_end_writes_an_adapter(make_cfg, tiny_llama, toy_pairs):
    cfg = _pair_cfg(make_cfg, toy_pairs, f"model.name_or_path={tiny_llama}", "strategy=lora",
                    "data.preference.loss=simpo", "data.max_length=32", "data.max_prompt_length=16")
    metrics = train(cfg)
    assert {"test/preference_accuracy", "test/reward_margin", "test/chosen_logps", "test/logp_accuracy"} <= set(metrics)
    assert metrics["weights_dir"].endswith("adapter")
    from lft.generate import generate, parse_args

    answers = generate(parse_args([f"run={cfg.paths.output_dir}", "prompt=what about cats?", "max_new_tokens=4"]))
    assert len(answers) == 1 and isinstance(answers[0], str)


# --- lft.evaluate / lft.report: base vs tuned side by side -------------------------------------------------------------
def test_evaluate_base_vs_dpo_run_side_by_side(make_cfg, tiny_llama, toy_pairs, tmp_path):
    from lft.evaluate import evaluate
    from lft.reports.results import format_table, wilson_interval

    cache = tmp_path / "reference.pt"
    common = ("data=hh_rlhf_harmless", f"data.path={toy_pairs}", f"model.name_or_path={tiny_llama}",
              "data.max_length=32", "data.max_prompt_length=16", f"data.preference.reference_cache_file={cache}")
    cfg = make_cfg(*common, "strategy=lora", "optimizer.lr=3e-2", "scheduler=constant")
    train(cfg)
    out = tmp_path / "results.json"
    base = evaluate(make_cfg(*common, f"out={out}", "name=base", config="evaluate", out="eval0"))
    assert base["preference_accuracy"] == 0.5 and base["reward_margin"] == 0.0  # the base is its own reference
    assert cache.exists()  # ... so its log-probabilities are the reference's: the tuned evaluation reuses them
    tuned = evaluate(make_cfg(*common, f"out={out}", f"run={cfg.paths.output_dir}", "name=dpo", config="evaluate",
                              out="eval1"))
    assert tuned["reward_margin"] != 0.0 and tuned["rows"] == 2
    table = format_table(json.loads(out.read_text()))
    assert "preference_accuracy (x100, 95% CI)" in table and "| base |" in table and "| dpo |" in table
    low, high = wilson_interval(0.5, 2)
    assert f"50.00 [{100 * low:.1f}, {100 * high:.1f}]" in table


def test_reward_lora_run_exports_and_reloads_as_a_classifier(make_cfg, tiny_bert, toy_pairs, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from lft.export import export
    from lft.runs.folder import load_trained_model

    cfg = _pair_cfg(make_cfg, toy_pairs, f"model.name_or_path={tiny_bert}", "data.task=reward", "strategy=lora",
                    *TINY_BERT_LENGTHS)
    train(cfg)
    task = build_task(cfg.data, cfg.model)
    batch = next(iter(task.encode(load_tokenizer(cfg.model), 0).datamodule.test_dataloader()))
    inputs = {k.removeprefix("chosen_"): v for k, v in batch.items() if k.startswith("chosen_")}
    with torch.no_grad():
        expected = load_trained_model(task, cfg.model, cfg.paths.output_dir).eval()(**inputs).logits
        exported = AutoModelForSequenceClassification.from_pretrained(export(cfg.paths.output_dir, tmp_path / "rm"))
        assert exported.config.num_labels == 1
        torch.testing.assert_close(exported.eval()(**inputs).logits, expected)
