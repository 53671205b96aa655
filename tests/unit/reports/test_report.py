"""lft.report on hand-made run folders: labels from varying overrides, order, states, CSV and plots."""

import csv
import json

import pytest
import yaml

from lft.report import main
from lft.reports.labels import label_rows, short_keys, short_value
from lft.reports.table import lower_is_better, parse_overrides


def fake_run(root, name, overrides, metrics=None, failed=None, curve=None, monitor=("val/accuracy", "max")):
    """A run folder as lft.train leaves it: .hydra/overrides.yaml, config.yaml, and metrics.json or failed.json."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / "config.yaml").write_text(yaml.safe_dump({"monitor": {"metric": monitor[0], "mode": monitor[1]}}))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps({"trainable_params": 10, "fit_seconds": 1.5,
                                                      "peak_rss_mb": 700.0, **metrics}))
    if failed is not None:
        (run / "failed.json").write_text(json.dumps({"error": failed, "type": "NonFiniteLossError", "traceback": ""}))
    if curve:
        (run / "csv").mkdir()
        lines = ["epoch,step,train/loss,val/accuracy,val/loss"]
        lines += [f"{i},{9 + 10 * i},,{acc},{1 - acc}" for i, acc in enumerate(curve)]
        (run / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def grid(root):
    """A 2x2 grid over lr and strategy with one failed and one still running job."""
    common = ["trainer.max_epochs=2", "data=sentiment_sample"]
    fake_run(root, "0", ["optimizer.lr=1e-4", "strategy=full", *common],
             {"val/accuracy": 0.7, "best_val/accuracy": 0.75, "test/accuracy": 0.72}, curve=[0.6, 0.7])
    fake_run(root, "1", ["optimizer.lr=1e-4", "strategy=lora", *common],
             {"val/accuracy": 0.9, "best_val/accuracy": 0.9, "test/accuracy": 0.88}, curve=[0.8, 0.9])
    fake_run(root, "2", ["optimizer.lr=1e30", "strategy=full", *common], failed="train/loss is nan at step 1")
    fake_run(root, "3", ["optimizer.lr=1e30", "strategy=lora", *common])  # .hydra only: still running


def test_report_lists_every_job_best_first_with_states_and_common_overrides(tmp_path, capsys):
    grid(tmp_path)
    main([str(tmp_path)])
    report = (tmp_path / "report.md").read_text()
    assert "Common: trainer.max_epochs=2 data=sentiment_sample" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    header, *rows = rows
    assert header.startswith("| run | state | val/accuracy | best val/accuracy | test/accuracy | trainable params")
    assert "error" in header
    assert [r.split(" | ")[0] for r in rows] == ["| optimizer.lr=0.0001 strategy=lora", "| optimizer.lr=0.0001 strategy=full",
                                                 "| optimizer.lr=1e+30 strategy=lora", "| optimizer.lr=1e+30 strategy=full"]
    assert [r.split(" | ")[1] for r in rows] == ["finished", "finished", "running", "failed"]
    assert "NonFiniteLossError: train/loss is nan at step 1" in rows[3]
    assert "trainer.max_epochs" not in "".join(rows), "constant overrides are not repeated per row"

    with (tmp_path / "report.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["state"] for r in table] == ["finished", "finished", "running", "failed"]
    assert table[0]["optimizer.lr"] == "1e-4" and table[0]["strategy"] == "lora"
    assert float(table[0]["best_val/accuracy"]) == 0.9 and table[0]["fit_seconds"] == "1.5"
    assert table[3]["error"].startswith("NonFiniteLossError") and table[2]["error"] == ""
    for png in ("report_curves.png", "report_params.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / png).stat().st_size > 5000


def test_lower_is_better_metrics_sort_ascending(tmp_path):
    monitor = ("val/loss", "min")
    fake_run(tmp_path, "0", ["optimizer.lr=1e-3"], {"val/loss": 0.5, "best_val/loss": 0.4}, monitor=monitor)
    fake_run(tmp_path, "1", ["optimizer.lr=1e-4"], {"val/loss": 0.3, "best_val/loss": 0.2}, monitor=monitor)
    fake_run(tmp_path, "2", ["optimizer.lr=1e-5"], {"val/loss": 0.9, "best_val/loss": 0.8}, monitor=monitor)
    main([str(tmp_path)])
    with (tmp_path / "report.csv").open() as f:
        assert [r["optimizer.lr"] for r in csv.DictReader(f)] == ["1e-4", "1e-3", "1e-5"]
    assert "val/loss (lower is better)" in (tmp_path / "report.md").read_text()
    # An explicit metric and direction win over the monitor's.
    main([str(tmp_path), "--metric", "val/loss", "--mode", "max"])
    with (tmp_path / "report.csv").open() as f:
        assert [r["optimizer.lr"] for r in csv.DictReader(f)][0] == "1e-5"


def test_direction_from_monitor_mode_else_from_the_name():
    assert lower_is_better("val/loss") and lower_is_better("test/perplexity") and lower_is_better("fit_seconds")
    assert not lower_is_better("val/accuracy") and not lower_is_better("test/rouge1")
    assert lower_is_better("best_val/reward", monitor="val/reward", mode="min")
    assert not lower_is_better("test/loss", monitor="val/loss", mode="max")


def test_labels_use_only_the_overrides_that_vary():
    rows = [{"name": str(i), "overrides": parse_overrides(o)} for i, o in enumerate([
        ["a=1", "b=x", "c=same", "hydra.job.chdir=true"],
        ["a=2", "b=x", "c=same"],
        ["a=1", "b=y", "c=same", "+d=extra"],
    ])]
    varying, common = label_rows(rows)
    assert varying == ["a", "b", "d"] and common == {"c": "same"}
    assert [r["label"] for r in rows] == ["a=1 b=x", "a=2 b=x", "a=1 b=y d=extra"]


def test_identical_labels_are_told_apart_by_folder():
    rows = [{"name": n, "overrides": {"seed": "1", "x": v}} for n, v in (("0", "1"), ("1", "1"), ("2", "2"))]
    label_rows(rows)
    assert [r["label"] for r in rows] == ["x=1 [0]", "x=1 [1]", "x=2"]


def test_plots_label_runs_by_folder_names_the_user_chose():
    overrides = [{"data": "dialogsum", "strategy": "lora", "strategy.r": "16"}, {"data": "mixture", "strategy": "full"}]
    named = [{"name": n, "overrides": o} for n, o in zip(("lora", "replay_text"), overrides, strict=True)]
    label_rows(named)
    assert [r["short_label"] for r in named] == ["lora", "replay_text"]
    assert named[0]["label"].startswith("data=dialogsum")  # the table still says what differs
    numbered = [{"name": n, "overrides": o} for n, o in zip(("0", "1"), overrides, strict=True)]
    label_rows(numbered)
    assert numbered[1]["short_label"] == "data=mixture strategy=full"


def test_seed_folders_are_named_with_their_recipe_folder():
    rows = [{"name": s, "dir": f"out/{recipe}/{s}", "overrides": {"strategy": recipe, "seed": s[-1]}}
            for recipe in ("full", "lora") for s in ("seed1", "seed2")]
    label_rows(rows)
    assert [r["short_label"] for r in rows] == ["full/seed1", "full/seed2", "lora/seed1", "lora/seed2"]


def test_a_label_too_long_for_its_cell_leads_with_the_folder_name(tmp_path):
    # Two recipes that differ only in their last override, after 200 characters of overrides they share with
    # neither the third run: the cut label alone would read the same for both.
    long = [f"data.members.member_number_{i}.max_source_length=64" for i in range(5)]
    fake_run(tmp_path, "replay", [*long, "data.mixture=0.1"], {"val/accuracy": 0.6})
    fake_run(tmp_path, "mixture", [*long, "data.mixture=0.5"], {"val/accuracy": 0.7})
    fake_run(tmp_path, "alone", ["data=imdb"], {"val/accuracy": 0.8})
    main([str(tmp_path)])
    cells = [line.split(" | ")[0] for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert cells[2] == "| data=imdb", "a label that fits is left as it is"
    assert cells[3].startswith("| mixture: data.members.member_number_0") and cells[4].startswith("| replay: data.")
    assert cells[3].endswith("…") and cells[4].endswith("…")


def test_params_plot_skips_overrides_that_vary_only_by_absence(tmp_path):
    from lft.reports.plots import plot_params

    rows = [{"overrides": {"a": "1", "only_here": "x"}, "metrics": {"m": 0.5}, "state": "finished"},
            {"overrides": {"a": "1"}, "metrics": {"m": 0.7}, "state": "finished"}]
    assert plot_params(rows, ["only_here"], "m", lower=False, out=tmp_path / "p.png") is None
    rows[1]["overrides"]["a"] = "2"
    assert plot_params(rows, ["a", "only_here"], "m", lower=False, out=tmp_path / "p.png").stat().st_size > 0


def test_short_keys_and_values():
    assert short_keys(["optimizer.lr", "strategy.lr", "scheduler.name"]) == {
        "optimizer.lr": "optimizer.lr", "strategy.lr": "strategy.lr", "scheduler.name": "name"}
    assert short_keys(["optimizer.lr", "data.max_length"]) == {"optimizer.lr": "lr", "data.max_length": "max_length"}
    assert short_value("0.000123456789") == "0.000123" and short_value("16") == "16" and short_value("lora") == "lora"
    assert short_value("/tmp/pytest-of-me/pytest-1/tiny_bert0/") == ".../tiny_bert0" and short_value("a/b") == "a/b"


def test_resume_folders_inside_a_run_are_not_runs(tmp_path):
    run = fake_run(tmp_path, "0", ["optimizer.lr=1e-3"], {"val/accuracy": 0.8})
    (run / "resumes" / "2026-01-01_00-00-00" / ".hydra").mkdir(parents=True)
    fake_run(tmp_path, "1", ["optimizer.lr=1e-4"], {"val/accuracy": 0.7})
    main([str(tmp_path)])
    with (tmp_path / "report.csv").open() as f:
        assert [r["state"] for r in csv.DictReader(f)] == ["finished", "finished"]


def test_report_of_single_runs_writes_no_params_plot(tmp_path):
    run = fake_run(tmp_path, "run", [], {"val/accuracy": 0.8}, curve=[0.7, 0.8])
    main([str(run), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "report_curves.png").exists()
    assert not (tmp_path / "out" / "report_params.png").exists(), "nothing varies"


def test_report_without_runs_says_so(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])


def test_a_damaged_failed_json_is_reported_not_fatal(tmp_path):
    fake_run(tmp_path, "0", ["optimizer.lr=1e-3"], {"val/accuracy": 0.8})
    (fake_run(tmp_path, "1", ["optimizer.lr=1e-4"]) / "failed.json").write_text('{"error": "cut sh')
    main([str(tmp_path)])
    with (tmp_path / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["state"] == "failed" and "failed.json unreadable" in rows[1]["error"]


def test_retention_columns_sit_beside_the_task_metrics(tmp_path):
    from lft.reports.table import table_columns

    rows = [{"metrics": {"val/loss": 1.0, "forgetting/text/perplexity_before": 9.0,
                         "forgetting/text/perplexity_after": 9.5, "forgetting/text/perplexity_change": 0.5}}]
    headers = [h for _, h in table_columns(rows, "val/loss", "val/loss")]
    assert headers[0] == "val/loss"
    assert {"text/perplexity before", "text/perplexity after", "text/perplexity change"} <= set(headers)


def test_results_file_gets_a_bar_plot_of_shared_scores(tmp_path, capsys):
    results = tmp_path / "results.json"
    rows = [{"name": "zero-shot", "rows": 500, "rouge1": 0.27, "rouge2": 0.08, "bleu": 0.04, "loss": 2.4},
            {"name": "lora", "rows": 500, "rouge1": 0.45, "rouge2": 0.20, "bleu": 0.17, "loss": 1.5},
            {"name": "lora (summary1)", "rows": 500, "rouge1": 0.41, "bleu": 0.12}]
    results.write_text(json.dumps(rows))
    main([str(results)])
    out = capsys.readouterr().out
    assert "| lora (summary1) |" in out and f"Wrote {tmp_path / 'results.png'}" in out
    png = (tmp_path / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    from lft.reports.plots import plot_results

    assert plot_results([{"name": "a", "loss": 1.0}], tmp_path / "none.png") is None  # no score in points
    assert not (tmp_path / "none.png").exists()


def test_over_seed_reports_each_recipe_as_mean_and_sample_sd(tmp_path, capsys):
    for recipe, accs in (("full", [0.80, 0.90, 0.85]), ("lora", [0.70, 0.74, None])):
        for seed, acc in zip((1, 2, 3), accs, strict=True):
            metrics = None if acc is None else {"val/accuracy": acc, "forgetting/text/perplexity_change": 10 * acc}
            fake_run(tmp_path / recipe, f"seed{seed}", [f"strategy={recipe}", f"seed={seed}"], metrics)
    main([str(tmp_path), "--over", "seed"])
    report = (tmp_path / "report.md").read_text()
    assert "Runs differing only in seed are one row: mean ± sample sd." in report
    rows = {r.split(" | ")[0].lstrip("| "): r.split(" | ") for r in report.splitlines() if r.startswith("| strategy")}
    assert set(rows) == {"strategy=full", "strategy=lora"}, "seed leaves the label; one row per recipe"
    assert rows["strategy=full"][1:4] == ["3", "finished", "0.8500 ± 0.0500"]
    assert rows["strategy=full"][5] == "10", "a value every seed shares is shown as it is"
    # lora's third seed is still running: its row says so, and the mean is over the two that finished.
    assert rows["strategy=lora"][1:4] == ["3", "running", "0.7200 ± 0.0283 (n=2)"]
    assert "seed3 running" in rows["strategy=lora"][-1]
    with (tmp_path / "report.csv").open() as f:
        table = {r["run"]: r for r in csv.DictReader(f)}
    assert float(table["strategy=full"]["forgetting/text/perplexity_change"]) == pytest.approx(8.5)
    assert float(table["strategy=full"]["forgetting/text/perplexity_change_sd"]) == pytest.approx(0.5)
    assert table["strategy=lora"]["val/accuracy_n"] == "2"


def test_over_a_key_no_run_sets_is_refused(tmp_path):
    fake_run(tmp_path, "a", ["strategy=full"], {"val/accuracy": 0.5})
    with pytest.raises(SystemExit, match="--over seed: no run sets it"):
        main([str(tmp_path), "--over", "seed"])


def test_columns_patterns_pick_the_metrics_shown(tmp_path, capsys):
    metrics = {"val/accuracy": 0.8, "test/accuracy": 0.7, "forgetting/text/perplexity_before": 10.0,
               "forgetting/text/perplexity_after": 12.0, "forgetting/alpaca/rouge1_after": 0.1}
    fake_run(tmp_path, "a", ["strategy=full"], metrics)
    fake_run(tmp_path, "b", ["strategy=lora"], metrics)
    main([str(tmp_path), "--columns", "forgetting/*/perplexity_*", "nothing/*"])
    assert "--columns nothing/* matched no metrics.json key" in capsys.readouterr().out
    header = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| run"))
    assert header == ("| run | state | val/accuracy | text/perplexity after | text/perplexity before | trainable params "
                      "| fit s | peak RSS MB |")
