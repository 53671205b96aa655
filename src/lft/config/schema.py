"""Types, ranges and known keys of a composed config, checked before anything loads.

Hydra composes whatever a command line says: `trainer.max_epochs=abc` arrives as a string and `+data.max_lenght=1`
as a new key. Unchecked, the first ends in a TypeError deep inside Lightning after the data and model have loaded,
and the second is silently ignored. SETTINGS lists the values users set most, each with the rule it must follow and
an example of a good value; check_schema reports the first that breaks its rule in one line.
"""

import codecs
import difflib
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR


@dataclass(frozen=True)
class Rule:
    accepts: Callable[[object], bool]
    parts: tuple[str, ...]  # what a value must be, alternatives: ("an integer >= 1", "-1", "null")

    def __or__(self, other: "Rule") -> "Rule":
        return Rule(lambda v: self.accepts(v) or other.accepts(v), self.parts + other.parts)

    @property
    def says(self) -> str:
        """Completes "<key>=<value> must be ...": "an integer >= 1, -1 or null"."""
        return self.parts[0] if len(self.parts) == 1 else f"{', '.join(self.parts[:-1])} or {self.parts[-1]}"


def rule(accepts: Callable[[object], bool], says: str) -> Rule:
    return Rule(accepts, (says,))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def integer(at_least: int) -> Rule:
    return rule(lambda v: _is_int(v) and v >= at_least, f"an integer >= {at_least}")


def number(low: float, high: float = float("inf"), low_open: bool = False, high_open: bool = True) -> Rule:
    """A number in an interval; by default [low, high)."""
    def accepts(v) -> bool:
        return _is_number(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if high == float("inf"):
        return rule(accepts, f"a number {'>' if low_open else '>='} {low:g}")
    return rule(accepts, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")


def one_of(*values) -> Rule:
    says = str(values[0]) if len(values) == 1 else "one of " + ", ".join(map(str, values))
    return rule(lambda v: v in values and type(v) in {type(x) for x in values}, says)


def fraction_or_count() -> Rule:
    """Lightning's limit_*_batches: a float share of the batches, or an int count of them."""
    return rule(lambda v: (isinstance(v, float) and 0 <= v <= 1) or (_is_int(v) and v >= 0),
                "a fraction in [0, 1] (float) or a number of batches (integer >= 0)")


NULL = rule(lambda v: v is None, "null")
BOOL = rule(lambda v: isinstance(v, bool), "true or false")
TEXT = rule(lambda v: isinstance(v, str) and v != "", "a non-empty string")
DEVICES = integer(1) | one_of(-1, "auto") | rule(
    lambda v: (isinstance(v, str) and all(p.strip().isdigit() for p in v.strip(",").split(",")))
    or (isinstance(v, list) and v != [] and all(_is_int(i) and i >= 0 for i in v)),
    "a list of device indices")
CODEC = rule(lambda v: isinstance(v, str) and _is_codec(v), "a text encoding Python knows")
LABELS = NULL | rule(lambda v: isinstance(v, list) and len(set(map(str, v))) == len(v) >= 2,
                     "a list of at least two distinct labels")
BETAS = rule(lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
             "two numbers in [0, 1), e.g. [0.9, 0.999]")


# data.preference.loss (lft/losses/preference.py implements them as DPO_LOSSES).
PREFERENCE_LOSSES = ("sigmoid", "ipo", "simpo", "orpo", "kto")

NO_DEFAULT = object()


@dataclass(frozen=True)
class Setting:
    key: str  # dotted path in the composed config; settings a config lacks are skipped
    rule: Rule
    example: str
    default: object = NO_DEFAULT  # what readers assume where a config lacks the key (see default())


SETTINGS = [
    Setting("seed", integer(0), "42"),
    Setting("test", BOOL, "true"),
    Setting("compile", BOOL, "true"),
    Setting("monitor.mode", one_of("min", "max"), "max"),
    # Lightning Trainer arguments
    Setting("trainer.max_epochs", integer(1) | one_of(-1) | NULL, "3"),
    Setting("trainer.min_epochs", integer(0) | NULL, "1"),
    Setting("trainer.max_steps", integer(1) | one_of(-1), "1000"),
    Setting("trainer.accumulate_grad_batches", integer(1), "4"),
    Setting("trainer.gradient_clip_val", number(0) | NULL, "1.0"),
    Setting("trainer.gradient_clip_algorithm", one_of("norm", "value") | NULL, "norm"),
    Setting("trainer.devices", DEVICES, "1"),
    Setting("trainer.limit_train_batches", fraction_or_count() | NULL, "0.5"),
    Setting("trainer.limit_val_batches", fraction_or_count() | NULL, "0.5"),
    Setting("trainer.limit_test_batches", fraction_or_count() | NULL, "0.5"),
    Setting("trainer.val_check_interval",
            rule(lambda v: isinstance(v, float) and 0 < v <= 1, "a fraction of an epoch in (0, 1]")
            | integer(1) | NULL, "0.5"),
    Setting("trainer.check_val_every_n_epoch", integer(1) | NULL, "1"),
    Setting("trainer.log_every_n_steps", integer(1), "10"),
    Setting("trainer.num_sanity_val_steps", integer(-1), "0"),
    Setting("trainer.fast_dev_run", BOOL | integer(0), "1"),
    Setting("trainer.deterministic", BOOL | one_of("warn"), "true"),
    Setting("trainer.enable_progress_bar", BOOL, "false"),
    # optimizer and schedule
    Setting("strategy.lr", number(0, low_open=True), "2e-4"),  # before optimizer.lr, which defaults to it
    Setting("optimizer.lr", number(0, low_open=True), "3e-4"),
    Setting("optimizer.weight_decay", number(0), "0.01"),
    Setting("optimizer.momentum", number(0, 1), "0.9"),
    Setting("optimizer.betas", BETAS, "[0.9,0.999]"),
    Setting("optimizer.eps", number(0, low_open=True), "1e-8"),
    Setting("scheduler.warmup_steps", integer(0), "100"),
    Setting("scheduler.warmup_ratio", number(0, 1), "0.06"),
    Setting("scheduler.min_lr_ratio", number(0, 1, high_open=False), "0.1"),
    Setting("scheduler.gamma", number(0, 1, low_open=True, high_open=False), "0.5"),
    Setting("scheduler.step_size", integer(1), "100"),
    # data
    *(Setting(f"data.{key}", integer(1), "16") for key in ("batch_size", "eval_batch_size")),
    *(Setting(f"data.{key}", integer(1) | NULL, "128")
      for key in ("max_length", "max_source_length", "max_target_length", "block_size")),
    Setting("data.max_prompt_length", integer(1), "192"),
    *(Setting(f"data.{key}", integer(1) | NULL, "1000") for key in ("train_size", "val_size", "test_size")),
    Setting("data.encoding", CODEC, "latin-1"),
    Setting("data.val_fraction", number(0, 1), "0.1", default=0.1),
    Setting("data.num_workers", integer(0), "2"),
    *(Setting(f"data.{key}", TEXT, "text") for key in ("text_column", "label_column", "target_column")),
    Setting("data.text_pair_column", TEXT | NULL, "hypothesis"),
    Setting("data.label_names", LABELS, "[negative,positive]"),
    Setting("data.long_targets", one_of("error", "truncate", "drop"), "truncate", default="error"),
    Setting("data.chat_template", one_of("auto", True, False), "auto", default="auto"),
    Setting("data.train_on_inputs", BOOL, "false"),
    Setting("data.train_on", one_of("all_assistant", "last_assistant"), "last_assistant", default="all_assistant"),
    Setting("data.conversation_column", TEXT | NULL | rule(lambda v: isinstance(v, list) and len(v) >= 2 and all(
        isinstance(c, str) and c for c in v), "a list of text columns to join"), "messages"),
    Setting("data.group_by_length", BOOL, "true"),
    Setting("data.packing", BOOL, "true"),
    Setting("data.cache", BOOL, "false"),
    Setting("data.sampling", one_of("weights", "proportional", "temperature"), "proportional"),
    Setting("data.temperature", number(0, low_open=True), "2"),
    Setting("data.epoch_rows", integer(1) | NULL, "10000"),
    Setting("data.max_bad_fraction", number(0, 1, high_open=False), "0.05", default=0.05),
    # preference tuning (data.task=dpo; conf/data/hh_rlhf_harmless.yaml says what each does)
    Setting("data.preference.loss", one_of(*PREFERENCE_LOSSES), "orpo", default="sigmoid"),
    Setting("data.preference.beta", number(0, low_open=True), "0.1", default=0.1),
    Setting("data.preference.label_smoothing", number(0, 0.5), "0.1", default=0.0),
    Setting("data.preference.simpo_gamma", number(0), "0.5", default=0.5),
    Setting("data.preference.orpo_lambda", number(0), "0.1", default=0.1),
    Setting("data.preference.kto_desirable_weight", number(0, low_open=True), "1.0", default=1.0),
    Setting("data.preference.kto_undesirable_weight", number(0, low_open=True), "1.0", default=1.0),
    Setting("data.preference.cache_reference", BOOL, "true", default=True),
    Setting("callbacks.last_checkpoint.every_n_steps", integer(0), "50"),
    Setting("data.generate.max_new_tokens", integer(1), "64"),
    Setting("data.generate.num_beams", integer(1), "4"),
    Setting("data.generate.val_samples", integer(0), "32"),
    Setting("data.generate.test_samples", integer(0) | NULL, "100"),
    Setting("data.generate.do_sample", BOOL, "true"),
    Setting("data.generate.temperature", number(0, low_open=True), "0.7"),
    Setting("data.generate.top_p", number(0, 1, low_open=True, high_open=False), "0.9"),
    Setting("data.generate.repetition_penalty", number(0, low_open=True) | NULL, "1.2"),
    Setting("data.generate.bf16", one_of("auto", True, False), "false"),
    # model and strategy
    Setting("model.dropout", number(0, 1) | NULL, "0.1"),
    Setting("model.dtype", one_of("float32", "bfloat16", "float16") | NULL, "bfloat16"),
    Setting("model.gradient_checkpointing", BOOL, "true"),
    Setting("model.lean_blocks", BOOL, "false"),
    Setting("strategy.r", integer(1), "8"),
    Setting("strategy.dropout", number(0, 1), "0.1"),
    Setting("strategy.freeze_bottom_layers", integer(0) | NULL, "4"),
    Setting("strategy.num_virtual_tokens", integer(1), "20"),
    # finders run when fit starts (tune block of conf/train.yaml, lft/callbacks/finders.py)
    Setting("tune.batch_size", one_of("auto") | NULL, "auto"),
    Setting("tune.max_batch_size", integer(1), "256"),
    Setting("tune.mode", one_of("power", "binsearch"), "binsearch"),
    Setting("tune.steps_per_trial", integer(1), "3"),
    Setting("tune.lr", one_of("find") | NULL, "find"),
    Setting("tune.min_lr", number(0, low_open=True), "1e-6"),
    Setting("tune.max_lr", number(0, low_open=True), "1e-2"),
    Setting("tune.num_training_steps", integer(13), "100"),  # the LR finder's suggestion needs 13 losses
    # data augmentation (conf/augment)
    Setting("augment.p", number(0, 1, high_open=False), "0.5"),
    Setting("augment.alpha", number(0, 1, high_open=False), "0.1"),
    Setting("augment.columns", NULL | rule(lambda v: isinstance(v, list) and v != [] and all(
        isinstance(c, str) and c for c in v), "a non-empty list of column names"), "[text]"),
    Setting("augment.model", TEXT, "flan_t5_base"),
    Setting("augment.generate.max_new_tokens", integer(1), "128"),
    Setting("augment.generate.num_beams", integer(1), "4"),
    Setting("augment.generate.do_sample", BOOL, "true"),
    Setting("augment.generate.temperature", number(0, low_open=True), "0.7"),
    Setting("augment.generate.top_p", number(0, 1, low_open=True, high_open=False), "0.9"),
    # online RL (conf/rl, conf/reward; lft/tasks/rl.py)
    *(Setting(f"rl.{key}", integer(1), example) for key, example in (
        ("samples_per_prompt", "4"), ("max_new_tokens", "24"), ("ppo_epochs", "2"), ("mini_batch_size", "16"))),
    Setting("rl.temperature", number(0, low_open=True), "1.0"),
    Setting("rl.clip_range", number(0, 1, low_open=True), "0.2"),
    Setting("rl.value_clip_range", number(0, low_open=True), "0.2"),
    Setting("rl.vf_coef", number(0), "0.1"),
    Setting("rl.kl_coef", number(0), "0.05"),
    Setting("rl.kl_estimator", one_of("k1", "k3"), "k3"),
    *(Setting(f"rl.{key}", number(0, 1, high_open=False), "0.95") for key in ("gamma", "lam")),
    Setting("rl.whiten_advantages", BOOL, "true"),
    Setting("reward.run", TEXT | NULL, "outputs/train/runs/<time>"),
    Setting("reward.label", TEXT | NULL, "positive"),
    Setting("reward.text", one_of("full", "response"), "full"),
    Setting("reward.fn", NULL | rule(lambda v: isinstance(v, dict) and isinstance(v.get("_target_"), str),
                                     "a {_target_: module.name, ...} callable"), "{_target_:lft.rewards.rules.TokenShare,token_id:42}"),
    # lm-evaluation-harness (conf/evaluate.yaml; task names are checked by lft/evaluation/harness.py)
    *(Setting(f"harness.{key}", rule(lambda v: isinstance(v, list) and all(isinstance(t, str) and t for t in v),
                                     "a list of names"), example) for key, example in
      (("tasks", "[lft_ag_news]"), ("include", "[my_tasks]"))),
    Setting("harness.data_dir", TEXT, "../shared/data"),
    Setting("harness.limit", integer(1) | number(0, 1, low_open=True) | NULL, "200"),
    Setting("harness.num_fewshot", integer(0) | NULL, "5"),
    Setting("harness.batch_size", integer(1) | one_of("auto"), "8"),
]

# Entry points that take key=value arguments of their own instead of a composed config: their keys and defaults
# (None: required).
ENTRY_SETTINGS = {
    "export": [
        Setting("run", NULL | TEXT, "outputs/train/runs/<time>", default=None),
        Setting("out", NULL | TEXT, "exported", default=None),
        Setting("merge", BOOL, "true", default=True),
        Setting("format", one_of("hf", "gguf"), "gguf", default="hf"),
        Setting("quantization", one_of("f16", "q8_0", "f32"), "q8_0", default="f16"),
        Setting("push_to_hub", NULL | TEXT, "me/my-model", default=None),
    ],
}

ENTRY_REQUIRED = {"export": ("run", "out")}


def entry_defaults(entry: str) -> dict:
    return {s.key: s.default for s in ENTRY_SETTINGS[entry]}


def default(key: str):
    """The value a setting takes where a config lacks it: not every data config sets data.long_targets (a
    classification set has no targets), so its reader falls back to this one home of the default."""
    return next(s.default for s in SETTINGS if s.key == key and s.default is not NO_DEFAULT)


# Groups whose keys only lft reads: a key no file of the group sets is a typo (added with +key=...).
KEYED_GROUPS = ("data", "model", "scheduler", "strategy", "augment", "rl", "reward")
# Dicts whose keys are names, not settings (a mixture's members): their reader checks them.
FREE_FORM = ("data.mixture", "data.members", "reward.fn")
# Groups whose keys are a class's arguments (`_target_`): the class's signature lists the valid ones.
TARGET_GROUPS = ("trainer", "optimizer")
_ABSENT = object()


def check_schema(cfg) -> None:
    """Raise ConfigError for the first unknown key or ill-typed value, with the key, the rule and an example."""
    for group in KEYED_GROUPS:
        if group in cfg:
            _check_known_keys(cfg[group], group)
    for group in TARGET_GROUPS:
        if group in cfg:
            _check_arguments(cfg[group], group)
    check_settings(cfg, SETTINGS)
    _check_precision_and_accelerator(cfg.get("trainer") or {})


def check_data_config(data_cfg, shown_as: str) -> None:
    """A data config built from a name and settings (a mixture's member, a retention set), checked as data is;
    the message names its keys as the user sets them: `<shown_as>.<key>`."""
    try:
        check_schema(OmegaConf.create({"data": data_cfg}))
    except ConfigError as err:
        raise ConfigError(re.sub(r"\bdata\.", f"{shown_as}.", str(err))) from None


def check_settings(cfg, settings: list[Setting]) -> None:
    """Raise ConfigError for the first value that breaks its setting's rule (settings cfg lacks are skipped)."""
    for setting in settings:
        value = OmegaConf.select(cfg, setting.key, default=_ABSENT)
        if value is _ABSENT:
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if not setting.rule.accepts(value):
            raise ConfigError(f"{setting.key}={value!r} must be {setting.rule.says} "
                              f"(e.g. {setting.key}={setting.example}).")


def _check_known_keys(node: DictConfig, path: str) -> None:
    known = known_keys(path.split(".")[0])
    for key, value in node.items_ex(resolve=False):
        full = f"{path}.{key}"
        if full not in known:
            siblings = _children(known, path)
            close = difflib.get_close_matches(str(key), siblings, n=1)
            hint = f"did you mean {path}.{close[0]}?" if close else f"{path} settings: {', '.join(siblings)}"
            raise ConfigError(f"{full} is not a setting lft reads ({hint}); remove it or fix its name.")
        if isinstance(value, DictConfig) and full not in FREE_FORM and any(k.startswith(full + ".") for k in known):
            _check_known_keys(value, full)


@cache
def known_keys(group: str) -> frozenset[str]:
    """Dotted keys set by any conf/<group>/*.yaml: every setting lft reads appears in one of them."""
    keys = set()

    def walk(node, prefix):
        for key, value in node.items_ex(resolve=False):
            if key == "defaults" and prefix == group:
                continue
            keys.add(f"{prefix}.{key}")
            if isinstance(value, DictConfig):
                walk(value, f"{prefix}.{key}")

    for file in sorted((CONFIG_DIR / group).glob("*.yaml")):
        walk(OmegaConf.load(file), group)
    return frozenset(keys)


def _children(known, path: str) -> list[str]:
    return sorted(k.removeprefix(path + ".") for k in known if k.startswith(path + ".") and "." not in k[len(path) + 1:])


def _check_arguments(node: DictConfig, group: str) -> None:
    target = node.get("_target_")
    if not target:
        return
    try:
        params = inspect.signature(get_class(target)).parameters
    except Exception as err:  # an unimportable _target_: instantiate would fail the same way, later
        raise ConfigError(f"{group}._target_={target!r} cannot be imported ({type(err).__name__}: {err}).") from err
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if not str(key).startswith("_") and key not in params:
            close = difflib.get_close_matches(str(key), list(params), n=1)
            names = [n for n in params if n not in ("self", "params")]
            hint = f"did you mean {group}.{close[0]}?" if close else f"it takes {', '.join(names)}"
            raise ConfigError(f"{group}.{key} is not an argument of {target} ({hint}); remove it or fix its name.")


def _check_precision_and_accelerator(trainer) -> None:
    precision = trainer.get("precision")
    valid = _lightning_precisions()
    if precision is not None and valid and str(precision) not in valid:
        raise ConfigError(f"trainer.precision={precision!r} is not a Lightning precision; choose precision=fp32, bf16, "
                          f"bf16_true or fp16 (or trainer.precision= one of {', '.join(valid)}).")
    accelerator = trainer.get("accelerator")
    if isinstance(accelerator, str):
        from lightning.pytorch.accelerators import AcceleratorRegistry

        names = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
        if accelerator not in names:
            raise ConfigError(f"trainer.accelerator={accelerator!r} must be one of {', '.join(names)}.")


@cache
def _lightning_precisions() -> tuple:
    try:  # the values Lightning's Trainer accepts, from its own type hint
        from lightning.fabric.connector import _PRECISION_INPUT
    except ImportError:
        return ()
    values = [v for literal in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(literal)]
    return tuple(dict.fromkeys(str(v) for v in values))
