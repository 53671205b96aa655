"""lft as a user installs it: a wheel built from this repo, installed outside it, with its configs packaged
(conf/ as lft.conf), its console scripts, and a user's own config folder composing with the packaged ones."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lft.config.paths import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("lft-train", "lft-evaluate", "lft-generate", "lft-export", "lft-report")


def user_model_config(folder: Path, model_path: str) -> Path:
    """A user's config folder: model=tiny extends the packaged model=minilm with a local model."""
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "tiny.yaml").write_text(f"defaults:\n  - minilm\n\nname_or_path: {model_path}\n")
    return folder


def build_and_install(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources (the repo gets no build/ folder) and install it, without its
    dependencies (those of this venv are reused), into a folder of its own."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source], check=True)
    (wheel,) = (tmp_path / "dist").glob("lft-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    return site


def test_wheel_trains_the_embedded_sample_with_its_console_script_from_another_folder(tmp_path, tiny_bert):
    site = build_and_install(tmp_path)
    assert all((site / "bin" / script).is_file() for script in SCRIPTS)
    assert (site / "lft" / "conf" / "train.yaml").is_file() and (site / "lft" / "conf" / "model" / "minilm.yaml").is_file()
    assert (site / "hydra_plugins" / "lft_sweeper" / "sweeper.py").is_file(), "lft's Optuna sweeper ships"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import lft; print(lft.__file__); print(lft.CONFIG_DIR)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where == [str(site / "lft" / "__init__.py"), str(site / "lft" / "conf")], "the installed copy, not the repo"

    user_conf = user_model_config(tmp_path / "my_conf", tiny_bert)
    result = subprocess.run(
        [sys.executable, site / "bin" / "lft-train", "--config-dir", user_conf, "model=tiny", "trainer.max_steps=2",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
         "hydra.run.dir=run"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = elsewhere / "run"
    assert json.loads((run / "metrics.json").read_text())["optimizer_steps"] == 2
    cfg = OmegaConf.load(run / "config.yaml")
    assert cfg.model.name_or_path == tiny_bert and cfg.model.lean_blocks is True, "the user's model over the packaged one"
    assert cfg.data.path == str(site / "lft" / "assets" / "sentiment_sample"), "the sample shipped in the wheel"


def test_a_user_config_folder_on_hydras_search_path_composes_with_the_packaged_configs(tmp_path, tiny_bert):
    user_conf = user_model_config(tmp_path / "my_conf", tiny_bert)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.searchpath=[file://{user_conf}]", "model=tiny", "strategy=lora"])
    assert cfg.model.name_or_path == tiny_bert and cfg.model.dropout is None  # the rest from conf/model/minilm.yaml
    assert cfg.strategy.r > 0, "packaged groups still compose"
