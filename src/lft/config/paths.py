"""Where lft's own files are: the configs (conf/) and the data shipped inside the package (assets/)."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
ASSETS = PACKAGE / "assets"
# A wheel carries the repo's top-level conf/ as the package lft.conf (setup.py maps it); a source checkout
# (editable install, PYTHONPATH=src) has no src/lft/conf and reads the repo's conf/ itself.
CONFIG_DIR = PACKAGE / "conf" if (PACKAGE / "conf").is_dir() else PACKAGE.parents[1] / "conf"
