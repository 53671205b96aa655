"""One validation of a config for every entry point, run before anything loads: `validate(cfg, entry)`.

First the schema (lft.config.schema: unknown keys, types, ranges), then the checks across keys each entry
needs. Checks that need the data or the weights stay with their readers. Only the schema and the checks below
are imported at module level: torch, Lightning and the rooms whose own checks training runs load when a
check needs them, so lft.report and the sweeper can import the config package cheaply.
"""

from functools import cache

from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR
from lft.config.rl import check_reward, check_rl
from lft.config.schema import ENTRY_REQUIRED, ENTRY_SETTINGS, check_data_config, check_schema, check_settings

ENTRIES = ("train", "evaluate", "generate", "export")
GPU_ONLY_PRECISION = ("16-mixed", "16-true")
GENERATED_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu")


def validate(cfg, entry: str = "train") -> None:
    """Raise ConfigError (one line: the key, what is wrong, how to fix it) for the first bad setting."""
    if entry not in ENTRIES:
        raise ValueError(f"entry={entry!r}: one of {', '.join(ENTRIES)}")
    if entry == "export":
        return check_arguments(cfg, entry)
    check_schema(cfg)  # unknown keys, wrong types and out-of-range values first: the checks below rely on types
    check_named_data(cfg)
    if entry == "train":
        check_training(cfg)
    elif entry == "evaluate":
        check_devices(cfg)
        if cfg.get("run") and cfg.get("runs"):
            raise ConfigError("Give either run=<run dir> (one model) or runs=[<run a>,<run b>,...] (an ensemble), "
                              "not both.")
        check_reward(cfg)  # prompts (data.task=ppo or rloo) are scored by sampling responses and rewarding them
        if (cfg.get("harness") or {}).get("tasks"):
            from lft.evaluation.harness import check_harness

            check_harness(cfg)


def check_config(cfg) -> None:
    """The checks of `python -m lft.train` (validate(cfg, "train"))."""
    validate(cfg, "train")


def check_named_data(cfg) -> None:
    """Data configs named inside this one, with settings of their own: a mixture's members, forgetting's retention
    sets. Their settings are free-form in the schema (the names are data configs), so each composed set is checked
    here as data is."""
    from lft.data.mixture import data_config, member_configs

    data = cfg.get("data") or {}
    if data.get("task") == "mixture" and data.get("mixture"):  # no mixture named: the task refuses it, saying how
        for name, member in member_configs(data).items():
            check_data_config(member, f"data.members.{name}")
    forgetting = cfg.get("forgetting") or {}
    for name, settings in (forgetting.get("retention") or {}).items():
        check_data_config(data_config(str(name), settings), f"forgetting.retention.{name}")


def check_arguments(args, entry: str) -> None:
    """An entry point's own key=value arguments (lft.export): known keys, required ones, types."""
    settings = ENTRY_SETTINGS[entry]
    names = [s.key for s in settings]
    unknown = set(args) - set(names)
    if unknown:
        raise ConfigError(f"unknown argument(s) {sorted(unknown)}; use {', '.join(f'{k}=' for k in names)}.")
    for key in ENTRY_REQUIRED[entry]:
        if not args.get(key):
            raise ConfigError(f"{key}= is required: {ENTRY_USAGE[entry]}.")
    check_settings(args, settings)


ENTRY_USAGE = {"export": "python -m lft.export run=<run dir> out=<new dir> [merge=true] [format=hf|gguf]"}


def check_training(cfg) -> None:
    from lft.data.augment import check_augment  # the checks that live beside their readers
    from lft.training.engines import check_engine
    from lft.training.schedulers import lr_lambda

    check_engine(cfg)
    lr_lambda(cfg.scheduler, total_steps=1)  # unknown names or both warmups fail here
    check_devices(cfg)
    if cfg.strategy.name == "distill" and cfg.data.get("task") in ("dpo", "reward"):
        raise ConfigError(f"strategy=distill with data.task={cfg.data.task}: distillation follows a teacher's "
                          "outputs per example, not preference pairs; use strategy=lora, qlora, full or freeze.")
    gen = cfg.data.get("generate") or {}
    if str(cfg.monitor.metric).removeprefix("val/") in GENERATED_METRICS and gen and not gen.get("val_samples"):
        raise ConfigError(f"monitor.metric={cfg.monitor.metric} is scored on generated text, but "
                          "data.generate.val_samples=0 generates none in validation; set data.generate.val_samples "
                          "above 0, or follow the loss: data.monitor.metric=val/loss data.monitor.mode=min.")
    if cfg.data.get("packing") and cfg.strategy.name in ("prefix_tuning", "prompt_tuning"):
        raise ConfigError(f"data.packing=true with strategy={cfg.strategy.name}: the virtual tokens it adds would be "
                          "shared by every packed document; set data.packing=false.")
    check_quantization(cfg)
    check_augment(cfg.get("augment"), cfg.data.get("task"))
    check_tune(cfg)
    check_rl(cfg)


def check_devices(cfg) -> None:
    """Precision and accelerator that this machine cannot run."""
    import torch

    precision = str(cfg.trainer.precision)
    if precision in GPU_ONLY_PRECISION and not torch.cuda.is_available():
        raise ConfigError(f"precision={precision}: fp16 needs a CUDA GPU; on CPU use precision=bf16 or precision=fp32.")
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator=gpu but no CUDA GPU is visible; use trainer=cpu or trainer.accelerator=auto.")


def check_tune(cfg) -> None:
    """Refuse finder settings that cannot work (lft/training/finders.py), before anything loads."""
    tune = cfg.get("tune") or {}
    known = set(OmegaConf.load(CONFIG_DIR / "train.yaml").tune)
    for key in tune:
        if key not in known:
            raise ConfigError(f"tune.{key} is not a setting lft reads (tune settings: {', '.join(sorted(known))}); "
                              "remove it or fix its name.")
    asked = [f"tune.{k}={tune[k]}" for k in ("batch_size", "lr") if tune.get(k)]
    if not asked:
        return
    what = " and ".join(asked)
    if cfg.get("resume"):
        raise ConfigError(f"{what} with resume=: a resumed run keeps the batch size and learning rate it started "
                          "with (its config.yaml holds the values found then); drop the tune settings.")
    trainer = cfg.trainer
    devices, strategy = trainer.devices, trainer.strategy  # every conf/trainer file sets both and num_nodes
    one_device = devices == 1 or (OmegaConf.is_list(devices) and len(devices) == 1)
    if not one_device or trainer.num_nodes != 1 or strategy not in ("auto", "single_device"):
        raise ConfigError(f"{what} runs on one device only (Lightning's tuner does not support DDP, FSDP or "
                          "DeepSpeed); find the values with trainer=default (trainer.devices=1), then pass them to "
                          "the multi-device run as data.batch_size=... optimizer.lr=....")
    if trainer.get("fast_dev_run"):
        raise ConfigError(f"{what} with trainer.fast_dev_run (debug=fast): Lightning skips its finders in a "
                          "fast dev run; drop one or the other.")
    if tune.get("lr") and tune.min_lr >= tune.max_lr:
        raise ConfigError(f"tune.min_lr={tune.min_lr} must be below tune.max_lr={tune.max_lr} (e.g. tune.min_lr=1e-6 "
                          "tune.max_lr=1e-2).")


def check_quantization(cfg) -> None:
    """k-bit loading needs a peft strategy (quantized weights cannot train) and a working bitsandbytes."""
    from lft.strategies import PEFT_STRATEGIES

    q = cfg.model.get("quantization")
    if not q:
        return
    if cfg.strategy.name not in PEFT_STRATEGIES:
        raise ConfigError(
            f"model.quantization (bits={q.get('bits')}) with strategy={cfg.strategy.name}: k-bit weights cannot be "
            f"trained directly; use a peft strategy ({', '.join(sorted(PEFT_STRATEGIES))}) or set model.quantization=null."
        )
    problem = bitsandbytes_problem(int(q.get("bits") or 0))
    if problem:
        raise ConfigError(
            f"model.quantization.bits={q.get('bits')}: bitsandbytes cannot run on this machine ({problem}). "
            "Install a bitsandbytes build for this platform (>=0.48 runs on CPU too), or train without "
            "quantization: strategy=lora instead of qlora/lora_8bit."
        )


@cache
def bitsandbytes_problem(bits: int) -> str | None:
    """None when a tiny k-bit layer runs forward and backward here; else what went wrong."""
    import torch

    try:
        import bitsandbytes as bnb

        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32) if bits == 4 else \
            bnb.nn.Linear8bitLt(64, 64, has_fp16_weights=False)
        layer = layer.to("cuda" if torch.cuda.is_available() else "cpu")  # quantizes the weights
        x = torch.randn(2, 64, device=layer.weight.device, requires_grad=True)
        layer(x).float().sum().backward()
    except Exception as err:  # any import, backend or kernel failure means the same to the user
        return f"{type(err).__name__}: {err}".strip()[:300]
    return None
