import json

import pytest
import yaml

from lft.report import main


def fake_run(root, name, overrides, accuracy):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / "metrics.json").write_text(json.dumps({"test/accuracy": accuracy, "trainable_params": 10}))


def test_report_tables_and_plots_a_sweep(tmp_path, capsys):
    fake_run(tmp_path, "0", ["strategy=full"], 0.8)
    fake_run(tmp_path, "1", ["strategy=lora"], 0.9)
    main([str(tmp_path)])
    table = (tmp_path / "report.md").read_text().splitlines()
    assert table[2].startswith("| strategy=lora | 0.9000") and table[3].startswith("| strategy=full | 0.8000")
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_report_without_runs_says_so(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
