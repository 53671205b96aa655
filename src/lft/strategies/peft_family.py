"""The peft family over one code path: build the peft config `strategy.name` names, prepare k-bit weights, wrap.

LoRA and its variants (rsLoRA, DoRA, bias, modules to save, 8-bit, QLoRA) come from lora.lora_config; the
other methods are a few lines each below. Every method reports its trainable parameters (apply_strategy logs them).
"""

import inspect
from importlib.metadata import version

from packaging.version import Version
from peft import (
    AdaLoraConfig,
    IA3Config,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from peft.utils import TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING as ADALORA_DEFAULTS
from peft.utils import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as IA3_FEEDFORWARD
from peft.utils import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3_DEFAULTS

from lft.config.errors import ConfigError
from lft.models.loading import is_quantized
from lft.speed.adapter_dropout import use_adapter_dropout
from lft.speed.contract import applies, mark
from lft.strategies.adalora_budget import PLACEHOLDER_STEPS
from lft.strategies.lora import check_target_modules, lora_config, peft_common, target_modules

# Tasks peft's prompt learning (virtual tokens) has a model class for.
PROMPT_LEARNING_TASKS = ("SEQ_CLS", "CAUSAL_LM", "SEQ_2_SEQ_LM")


def _defaults(table, model, cfg, key="target_modules"):
    value = cfg.get(key)
    if value is not None:
        return value if isinstance(value, str) else list(value)
    found = table.get(model.config.model_type)
    if not found:
        raise ConfigError(f"strategy.{key}: peft has no default for model type {model.config.model_type!r}; "
                          f"list module names, e.g. strategy.{key}=[query,value].")
    return list(found)


def ia3_config(model, cfg, task) -> IA3Config:
    targets = _defaults(IA3_DEFAULTS, model, cfg)
    feedforward = _defaults(IA3_FEEDFORWARD, model, cfg, "feedforward_modules")
    check_target_modules(model, targets)
    return IA3Config(target_modules=targets, feedforward_modules=feedforward, **peft_common(cfg, task, model))


def adalora_config(model, cfg, task) -> AdaLoraConfig:
    targets = cfg.get("target_modules")
    targets = _defaults(ADALORA_DEFAULTS, model, cfg) if targets is None else target_modules(model, cfg)
    check_target_modules(model, targets)
    return AdaLoraConfig(
        init_r=cfg.init_r, target_r=cfg.target_r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=targets, tinit=cfg.tinit, tfinal=cfg.tfinal, deltaT=cfg.delta_t,
        total_step=cfg.get("total_step") or PLACEHOLDER_STEPS, **peft_common(cfg, task, model),
    )


def _check_prompt_learning(cfg, task):
    if task.peft_task_type not in PROMPT_LEARNING_TASKS:
        raise ConfigError(
            f"strategy={cfg.name}: peft's virtual tokens support {', '.join(PROMPT_LEARNING_TASKS)} models, not the "
            f"{task.name} task ({task.peft_task_type}); use strategy=lora or strategy=ia3 instead."
        )
    if cfg.num_virtual_tokens < 1:
        raise ConfigError(f"strategy.num_virtual_tokens={cfg.num_virtual_tokens} must be at least 1.")


def keep_4bit_weights_trainable(model) -> None:
    """bitsandbytes (0.50) repacks a 4-bit weight for its AVX512-BF16 CPU kernel the first time the layer runs
    in eval mode, and never unpacks it: training after a validation pass then fails or stops learning. Unpack
    before the next training forward (evaluation keeps the fast packed kernel)."""
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse as unpack
    except ImportError:  # a bitsandbytes without the CPU repacking
        return

    def unpack_for_training(module, args):
        state = getattr(module.weight, "quant_state", None)
        if module.training and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = unpack(module.weight.data, state)

    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.register_forward_pre_hook(unpack_for_training)


NEWEST_PEFT_TESTED = Version("0.21.2")
OLD_NAME_REMOVED = Version("5.40.0")  # transformers' FutureWarning: `past_key_values` goes in 5.40


def _check_takes_past_key_values(model, cfg, task):
    """Prefix tuning feeds its prefixes as past key values; recent transformers dropped them from encoders (BERT).

    transformers 5.24 renamed the models' `past_key_values` argument to `cache`. peft passes its prefixes as
    `past_key_values=` to generative models, which transformers still maps onto `cache`; for classification
    peft (<= 0.21) looks the old name up in the forward's signature and refuses the model, so lft says so first."""
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), model)
    names = {name for m in (model, backbone) for name in inspect.signature(m.forward).parameters}
    old_peft = Version(version("peft")) <= NEWEST_PEFT_TESTED  # a later peft may pass `cache` itself
    if "cache" in names and old_peft and Version(version("transformers")) >= OLD_NAME_REMOVED:
        raise ConfigError(
            f"strategy={cfg.name} needs transformers < {OLD_NAME_REMOVED} with peft <= {NEWEST_PEFT_TESTED}: peft passes "
            "the prefixes as past_key_values, a name transformers dropped in favour of cache. Upgrade peft, or use "
            "strategy=prompt_tuning or strategy=lora."
        )
    if "past_key_values" in names or ("cache" in names and task.peft_task_type != "SEQ_CLS"):
        return
    if "cache" in names and old_peft:
        raise ConfigError(
            f"strategy={cfg.name} on a classification model needs transformers < 5.24 with peft <= 0.21: transformers "
            "5.24 renamed the models' past_key_values argument to cache, and peft's classification path still looks for "
            "the old name. Use strategy=prompt_tuning or strategy=lora, or pip install 'transformers<5.24'."
        )
    raise ConfigError(
        f"strategy={cfg.name}: {type(model).__name__} takes no past key values in this transformers version, "
        "and prefix tuning needs them; use a decoder model (GPT-2, Llama, SmolLM2) or T5, or "
        "strategy=prompt_tuning / strategy=lora."
    )


def prompt_tuning_config(model, cfg, task) -> PromptTuningConfig:
    _check_prompt_learning(cfg, task)
    text = cfg.get("init_text")  # start the soft prompt from a phrase's embeddings, e.g. "Classify the sentiment:"
    init = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": text,
            "tokenizer_name_or_path": model.name_or_path} if text else {}
    return PromptTuningConfig(num_virtual_tokens=cfg.num_virtual_tokens, **init, **peft_common(cfg, task, model))


def prefix_tuning_config(model, cfg, task) -> PrefixTuningConfig:
    _check_prompt_learning(cfg, task)
    _check_takes_past_key_values(model, cfg, task)
    return PrefixTuningConfig(num_virtual_tokens=cfg.num_virtual_tokens, prefix_projection=cfg.projection,
                              **peft_common(cfg, task, model))


BUILDERS = {
    "lora": lora_config,
    "ia3": ia3_config,
    "adalora": adalora_config,
    "prompt_tuning": prompt_tuning_config,
    "prefix_tuning": prefix_tuning_config,
}


def apply(model, cfg, task):
    peft_config = BUILDERS[cfg.name](model, cfg, task)
    checkpointing = any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    if is_quantized(model):
        # The seed guide's post-processing: freeze, cast norms and other small fp16/bf16 weights to fp32.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
        keep_4bit_weights_trainable(model)
    if checkpointing:
        # Frozen embeddings: the first checkpointed block still needs an input that requires grad.
        model.enable_input_require_grads()
    try:
        model = get_peft_model(model, peft_config)
    except (ValueError, TypeError, NotImplementedError, AttributeError) as err:
        raise ConfigError(f"strategy={cfg.name}: peft cannot apply it to {type(model).__name__}: {err}") from err
    if applies("adapter_dropout", model) and use_adapter_dropout(model):  # lft/speed/contract.py lists the class
        mark(model, "adapter_dropout")  # a 1-bit mask for backward, not a float copy (adapter_dropout.py)
    return model, task
