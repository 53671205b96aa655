"""The config room: one compose helper on hydra.compose, one validation every entry point runs before loading."""

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lft.config.compose import group_option
from lft.config.paths import CONFIG_DIR


def merged_by_hand(file):
    """The hand-written defaults merger data/mixture.py and data/back_translation.py used before compose."""
    raw = OmegaConf.load(file)
    defaults = list(raw.pop("defaults", None) or ["_self_"])
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create()
    for entry in defaults:
        merged = OmegaConf.merge(merged, raw if entry == "_self_" else merged_by_hand(file.parent / f"{entry}.yaml"))
    return merged


@pytest.mark.parametrize("file", sorted([*(CONFIG_DIR / "data").glob("*.yaml"), *(CONFIG_DIR / "model").glob("*.yaml")]),
                         ids=lambda f: f"{f.parent.name}/{f.stem}")
def test_a_composed_group_option_is_what_the_hand_merger_gave(file):
    composed = group_option(file.parent.name, file.stem)
    assert OmegaConf.to_yaml(composed) == OmegaConf.to_yaml(merged_by_hand(file))  # same keys, order and values
    composed.new_key = 1  # a plain config, as OmegaConf.load gave: member settings may add keys


def test_composing_inside_a_running_hydra_app_leaves_the_app_as_it_was(tmp_path):
    (tmp_path / "app.yaml").write_text("own: 1\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        assert group_option("data", "alpaca").template == "alpaca"
        assert GlobalHydra.instance().is_initialized()
        assert hydra_compose("app").own == 1  # the app still composes from its own folder
