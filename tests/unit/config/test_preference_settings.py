"""validate() refuses bad data.preference values (ORPO, KTO and the rest of the DPO family) before anything loads."""

import pytest

from lft.config.errors import ConfigError
from lft.config.validate import validate
from lft.losses.preference import DPO_LOSSES


@pytest.mark.parametrize("override,message", [
    ("data.preference.loss=cpo", "data.preference.loss='cpo' must be one of sigmoid, ipo, simpo, orpo, kto"),
    ("data.preference.beta=0", "data.preference.beta=0 must be a number > 0"),
    ("data.preference.beta=abc", "data.preference.beta='abc' must be a number > 0"),
    ("data.preference.orpo_lambda=-1", "data.preference.orpo_lambda=-1 must be a number >= 0"),
    ("data.preference.kto_desirable_weight=0", "data.preference.kto_desirable_weight=0 must be a number > 0"),
    ("data.preference.kto_undesirable_weight=-2", "data.preference.kto_undesirable_weight=-2 must be a number > 0"),
    ("data.preference.label_smoothing=0.5", r"data.preference.label_smoothing=0.5 must be a number in \[0, 0.5\)"),
    ("data.preference.simpo_gamma=-0.1", "data.preference.simpo_gamma=-0.1 must be a number >= 0"),
    ("data.preference.cache_reference=maybe", "data.preference.cache_reference='maybe' must be true or false"),
    ("+data.preference.kto_weight=1", "did you mean data.preference.kto_desirable_weight"),
])
def test_bad_preference_values_are_refused(make_cfg, override, message):
    cfg = make_cfg("data=hh_rlhf_harmless", "data.path=unused", override)
    with pytest.raises(ConfigError, match=message):
        validate(cfg, "train")


@pytest.mark.parametrize("loss", DPO_LOSSES)
def test_every_loss_and_its_settings_pass(make_cfg, loss):
    validate(make_cfg("data=hh_rlhf_harmless", "data.path=unused", f"data.preference.loss={loss}",
                      "data.preference.orpo_lambda=0", "data.preference.kto_undesirable_weight=1.33"), "train")
