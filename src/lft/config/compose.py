"""Configs composed by Hydra itself, from lft's conf/, the way `python -m lft.*` composes them.

lft.generate composes a training config for a base model; a mixture's members, forgetting's retention sets and
back-translation's model are single files of a group (conf/data/alpaca.yaml extends dialogsum.yaml through its
defaults list). Hydra's compose applies those defaults lists as a command line would, so no reader merges them
by hand. Composing works inside a running Hydra app too (a mixture inside `python -m lft.train`): the app's
global Hydra state is put aside for the call and restored afterwards.
"""

from collections.abc import Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, OmegaConf

from lft.config.paths import CONFIG_DIR


def compose(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """conf/<config_name>.yaml with its defaults and the overrides applied, as Hydra composes it (unresolved)."""
    app_state = get_gh_backup()  # None outside a Hydra app
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides))
    finally:
        restore_gh_from_backup(app_state)


def group_option(group: str, name: str) -> DictConfig:
    """conf/<group>/<name>.yaml with its defaults list applied: a plain config of its own (not struct, unresolved)."""
    node = compose(f"{group}/{name}")[group]
    return OmegaConf.create(OmegaConf.to_container(node, resolve=False))
