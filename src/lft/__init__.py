"""lft: fine-tune language models with Lightning and Hydra."""

from pathlib import Path

from omegaconf import OmegaConf

ASSETS = Path(__file__).parent / "assets"
# The repo's conf/ (lft is installed editable; the configs are the user-facing surface).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"

# `${lft_asset:name}` in a config points at data that ships inside the package.
if not OmegaConf.has_resolver("lft_asset"):
    OmegaConf.register_new_resolver("lft_asset", lambda name: str(ASSETS / name))

__version__ = "0.1.0"
