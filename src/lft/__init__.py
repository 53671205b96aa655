"""lft: fine-tune language models with Lightning and Hydra."""

from lft.config import resolvers
from lft.config.paths import ASSETS, CONFIG_DIR  # noqa: F401  (lft.CONFIG_DIR for users' own scripts)
from lft.runs import console

resolvers.register()
console.hold_bitsandbytes_kernel_note()  # before peft or transformers import bitsandbytes

__version__ = "0.1.0"
