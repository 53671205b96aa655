"""`tune.*` settings that cannot work, refused before anything loads; the finders are lft/callbacks/finders.py."""

from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR


def check_tune(cfg) -> None:
    """Refuse finder settings that cannot work, before anything loads (values and types: config_schema)."""
    tune = cfg.get("tune") or {}
    known = set(OmegaConf.load(CONFIG_DIR / "train.yaml").tune)
    for key in tune:
        if key not in known:
            raise ConfigError(f"tune.{key} is not a setting lft reads (tune settings: {', '.join(sorted(known))}); "
                              "remove it or fix its name.")
    asked = [f"tune.{k}={tune[k]}" for k in ("batch_size", "lr") if tune.get(k)]
    if not asked:
        return
    what = " and ".join(asked)
    if cfg.get("resume"):
        raise ConfigError(f"{what} with resume=: a resumed run keeps the batch size and learning rate it started "
                          "with (its config.yaml holds the values found then); drop the tune settings.")
    trainer = cfg.trainer
    devices, strategy = trainer.get("devices", 1), trainer.get("strategy", "auto")
    one_device = devices == 1 or (OmegaConf.is_list(devices) and len(devices) == 1)
    if not one_device or trainer.get("num_nodes", 1) != 1 or strategy not in ("auto", "single_device"):
        raise ConfigError(f"{what} runs on one device only (Lightning's tuner does not support DDP, FSDP or "
                          "DeepSpeed); find the values with trainer=default (trainer.devices=1), then pass them to "
                          "the multi-device run as data.batch_size=... optimizer.lr=....")
    if trainer.get("fast_dev_run"):
        raise ConfigError(f"{what} with trainer.fast_dev_run (debug=fast): Lightning skips its finders in a "
                          "fast dev run; drop one or the other.")
    if tune.get("lr") and tune.min_lr >= tune.max_lr:
        raise ConfigError(f"tune.min_lr={tune.min_lr} must be below tune.max_lr={tune.max_lr} (e.g. tune.min_lr=1e-6 "
                          "tune.max_lr=1e-2).")
