"""Where lft's own files are: the configs (conf/) and the data shipped inside the package (assets/)."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# The repo's conf/ (lft is installed editable; the configs are the user-facing surface).
CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"
