"""lft: fine-tune language models with Lightning and Hydra."""

from lft.config import resolvers
from lft.config.paths import ASSETS, CONFIG_DIR  # noqa: F401  (lft.CONFIG_DIR for users' own scripts)

resolvers.register()

__version__ = "0.1.0"
