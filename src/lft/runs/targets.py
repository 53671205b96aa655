"""The `_target_`s a run folder's config may name: a run folder is data, and instantiating a target runs code.

`resume=<run>` and a SLURM requeue build the trainer, callbacks, loggers and optimizer from the folder's own
config.yaml. A fresh run's config comes from the user's command and config files, their own code; a folder's
may come from anyone (a copied run, a shared drive), and `{_target_: logging.FileHandler, filename: ~/.bashrc,
mode: w}` in it would truncate a file. So a resumed config may name only:
- classes defined in lightning, lft or torch.optim (the kinds of objects lft's configs build), reached by their
  public names: not `lft.runs.resume.os.system` (os, imported into lft) nor private helpers;
- the functions the shipped configs name (SHIPPED_FUNCTIONS; tests/unit/runs/test_targets.py checks every target in conf/);
- targets the user's own command composes or accepts by name: `trust_targets=[module.Name, ...]`.
Anything else stops before data or weights load, naming the config key and how to accept it.
"""

import inspect

from hydra._internal.utils import _locate  # how instantiate resolves _target_ (get_object also logs errors)
from omegaconf import DictConfig, ListConfig, OmegaConf

from lft.config.errors import ConfigError

PACKAGES = ("lightning", "lft", "torch.optim")
SHIPPED_FUNCTIONS = frozenset({"lft.training.engines.deepspeed", "lft.training.engines.fsdp"})  # trainer.strategy of fsdp, deepspeed_*


def targets(cfg) -> dict[str, str]:
    """Every `_target_` in a config, at any depth (lists included), as written (unresolved): {config key: target}."""
    found = {}

    def walk(node, key: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for name, value in items:
            path = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                found[path] = str(value)
            else:
                walk(value, path)

    walk(OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, (DictConfig, ListConfig)) else cfg, "")
    return found


def allowed(target: str) -> bool:
    """A class defined in lightning, lft or torch.optim, or a function a shipped config names."""
    if target in SHIPPED_FUNCTIONS:
        return True
    parts = target.split(".")
    if not any(target.startswith(p + ".") for p in PACKAGES) or any(not p or p.startswith("_") for p in parts):
        return False  # checked before importing anything: only these packages' own modules are imported
    try:
        obj = _locate(target)
    except Exception:  # unimportable: not a class lft builds (instantiate would fail on it too)
        return False
    module = getattr(obj, "__module__", None) or ""
    return inspect.isclass(obj) and any(module == p or module.startswith(p + ".") for p in PACKAGES)


def check_run_targets(cfg, where: str, trusted=()) -> None:
    """Refuse a config (read from a run folder) naming a target outside the allowlist and `trusted`."""
    trusted = set(trusted)
    for key, target in targets(cfg).items():
        if target not in trusted and not allowed(target):
            raise ConfigError(
                f"{where}: {key}={target} is not a target lft builds from a run folder's config.yaml (classes of "
                "lightning, lft and torch.optim, and the functions its shipped configs name): a run folder is data, "
                f"and instantiating {target} from it would run code the folder chose. If you wrote this config and "
                f"trust it, accept the target by adding trust_targets=[{target}] to the command.")
