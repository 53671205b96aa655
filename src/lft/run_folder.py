"""What a run leaves behind: resolved config, metrics, manifest, and the trained weights in Hugging Face format."""

import json
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from peft import PeftModel

from lft.errors import ConfigError

PACKAGES = ("torch", "lightning", "transformers", "peft", "datasets", "torchmetrics", "hydra-core")


def save_config(cfg, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def save_metrics(metrics: dict, run_dir: Path) -> Path:
    path = run_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return path


def save_manifest(run_dir: Path, data_fingerprints: dict) -> None:
    manifest = {
        "python": platform.python_version(),
        "packages": {p: version(p) for p in PACKAGES},
        "git_sha": _git_sha(),
        "data_fingerprints": data_fingerprints,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def save_weights(model, tokenizer, run_dir: Path) -> Path:
    """PEFT models save the adapter only (`PeftModel.from_pretrained`); others the whole model."""
    out = run_dir / ("adapter" if isinstance(model, PeftModel) else "model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def load_run_config(run_dir) -> DictConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"run={str(run_dir)!r}: no config.yaml there; give a run folder written by lft.train.")
    return OmegaConf.load(path)


def load_trained_model(task, model_cfg, run_dir=None):
    """The base model (run_dir=None), base + the run's LoRA adapter (merged for speed), or the run's full weights."""
    if run_dir is None:
        return task.build_model(model_cfg)
    run = Path(run_dir)
    if (run / "adapter").is_dir():
        base = task.build_model(model_cfg)
        return PeftModel.from_pretrained(base, run / "adapter").merge_and_unload()
    if (run / "model").is_dir():
        full = OmegaConf.merge(model_cfg, {"name_or_path": str(run / "model"), "gguf_file": None})
        return task.build_model(full)
    raise ConfigError(f"run={str(run_dir)!r} holds no adapter/ or model/ folder; did the training run finish?")
