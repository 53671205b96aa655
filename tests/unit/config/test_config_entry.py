"""The config room: one compose helper on hydra.compose, one validation every entry point runs before loading."""

import re

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


# One bad setting each entry point must refuse, in the words lft.train uses, before any model loads: the model
# named below does not exist, so a refusal that came after loading would be a different error.
NO_MODEL = "model.name_or_path=/no/such/model"
BAD_SETTINGS = [
    pytest.param(("data=dialogsum", "+data.generate.max_new_token=5"),
                 r"data\.generate\.max_new_token is not a setting lft reads \(did you mean data\.generate\.max_new_tokens\?\)",
                 id="misspelt-generate-key"),
    pytest.param(("data=dialogsum", "data.generate.top_p=1.5"), r"data\.generate\.top_p=1\.5 must be a number in \(0, 1\]",
                 id="out-of-range"),
    pytest.param(("data=dialogsum", "data.long_targets=ignore"), r"data\.long_targets='ignore' must be one of",
                 id="unknown-choice"),
]


@pytest.mark.parametrize(("overrides", "match"), BAD_SETTINGS)
def test_evaluate_refuses_what_train_refuses_in_the_same_words(make_cfg, overrides, match):
    from lft.config.errors import ConfigError
    from lft.evaluate import evaluate
    from lft.train import train

    with pytest.raises(ConfigError, match=match) as by_train:
        train(make_cfg(NO_MODEL, *overrides))
    with pytest.raises(ConfigError, match=match) as by_evaluate:
        evaluate(make_cfg(NO_MODEL, *overrides, config="evaluate"))
    assert str(by_evaluate.value) == str(by_train.value)
    assert "\n" not in str(by_train.value)


def test_evaluate_refuses_one_run_and_an_ensemble_at_once(make_cfg):
    from lft.config.errors import ConfigError
    from lft.evaluate import evaluate

    with pytest.raises(ConfigError, match=r"Give either run=<run dir> \(one model\) or runs="):
        evaluate(make_cfg(NO_MODEL, "run=/no/run", "runs=[/no/a,/no/b]", config="evaluate"))


@pytest.mark.parametrize(("argument", "match"), [
    ("num_beams=0", r"data\.generate\.num_beams=0 must be an integer >= 1 \(e\.g\. data\.generate\.num_beams=4\)"),
    ("temperature=hot", r"data\.generate\.temperature='hot' must be a number > 0"),
    ("top_p=2", r"data\.generate\.top_p=2\.0 must be a number in \(0, 1\]"),
])
def test_generate_refuses_a_bad_setting_before_the_model_loads(argument, match):
    from lft.config.errors import ConfigError
    from lft.generate import generate, parse_args

    with pytest.raises(ConfigError, match=match):
        generate(parse_args(["model=/no/such/model", "prompt=Hello", argument]))


@pytest.mark.parametrize(("argv", "match"), [
    (["run=/no/run", "out=/no/out", "merge=perhaps"], r"merge='perhaps' must be true or false \(e\.g\. merge=true\)"),
    (["run=/no/run", "out=/no/out", "forse=true"], r"unknown argument\(s\) \['forse'\]; use run=, out=, merge=, format="),
    (["out=/no/out"], r"run= is required: python -m lft\.export run=<run dir> out=<new dir>"),
])
def test_export_refuses_bad_arguments_in_one_line_with_exit_code_2(argv, match, caplog):
    from lft.export import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert caplog.records and caplog.records[-1].levelname == "ERROR"
    message = caplog.records[-1].getMessage()
    assert "\n" not in message
    assert re.search(match, message), message


@pytest.mark.parametrize(("overrides", "match"), [
    (("data=mixture", "data.mixture={dialogsum: 1}", "+data.members.dialogsum.long_targets=ignore"),
     r"^data\.members\.dialogsum\.long_targets='ignore' must be one of error, truncate, drop "
     r"\(e\.g\. data\.members\.dialogsum\.long_targets=truncate\)\.$"),
    (("data=mixture", "data.mixture={alpaca: 1}", "+data.members.alpaca.max_target_lenght=128"),
     r"^data\.members\.alpaca\.max_target_lenght is not a setting lft reads "
     r"\(did you mean data\.members\.alpaca\.max_target_length\?\)"),
    (("forgetting=text", "forgetting.retention.text.block_size=0"),
     r"^forgetting\.retention\.text\.block_size=0 must be an integer >= 1"),
])
def test_named_data_sets_are_checked_as_data_is(make_cfg, overrides, match):
    from lft.config.errors import ConfigError
    from lft.config.validate import validate

    with pytest.raises(ConfigError, match=match):
        validate(make_cfg(*overrides), "train")
    good = [o for o in overrides if not o.startswith(("+data.members", "forgetting.retention"))]
    validate(make_cfg(*good), "train")  # the same sets with their own settings pass


def test_every_default_in_the_schema_follows_its_own_rule():
    from lft.config.schema import ENTRY_SETTINGS, NO_DEFAULT, SETTINGS

    with_defaults = [s for s in SETTINGS if s.default is not NO_DEFAULT]
    assert with_defaults
    for setting in with_defaults:
        assert setting.rule.accepts(setting.default), setting.key
    for setting in ENTRY_SETTINGS["export"]:  # None marks a required argument
        assert setting.default is None or setting.rule.accepts(setting.default), setting.key
