"""augment=back_translation: a model rewrites train rows, e.g. English -> German -> English (a paraphrase).

`augment.model` names the model: a file of conf/model (`flan_t5_base`, `smollm2_135m`, ...), a local folder, or a
Hub id; encoder-decoders (T5, BART) and decoder-only LMs both work. `augment.prompts` is a chain of format strings
over `{text}`: each step's output is the next step's `{text}`, and the last one replaces the row's text (one prompt
is a plain paraphrase: "Paraphrase: {text}"). `augment.generate` holds the decoding settings (as data.generate).

Rows are picked as in EDA (probability p from the row's own RNG) and generated one at a time, so a row's result does
not depend on the other rows; with do_sample=true each row samples from a torch generator seeded by the run's seed
and its index, inside a forked RNG (training's random state stays as it was). The model is loaded only when train
rows are encoded (a tokenization-cache hit loads nothing), on a CUDA GPU where there is one, and freed afterwards.
"""

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from lft.config.compose import group_option
from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR

log = logging.getLogger(__name__)


def model_config(spec: str) -> DictConfig:
    """The model config `augment.model` names: conf/model/<spec>.yaml (with its defaults), else a path or Hub id.

    Its ${paths.cache_dir} (where GGUF checkpoints convert to) falls back to lft's default cache.
    """
    file = CONFIG_DIR / "model" / f"{spec}.yaml"
    node = group_option("model", spec) if file.is_file() else OmegaConf.create({"name_or_path": spec})
    context = OmegaConf.create({"model": node, "paths": {"cache_dir": None}, "strategy": {}})
    resolved = OmegaConf.to_container(context, resolve=True)["model"]
    resolved.update(quantization=None, gradient_checkpointing=False, dropout=None)  # generation only
    return OmegaConf.create(resolved)


def check_back_translation(augment_cfg) -> None:
    prompts = list(augment_cfg.get("prompts") or [])
    if not prompts or not all(isinstance(p, str) and "{text}" in p for p in prompts):
        raise ConfigError(f"augment.prompts={prompts}: give a list of prompts that each contain {{text}}, e.g. "
                          "['translate English to German: {text}', 'translate German to English: {text}'].")
    if not augment_cfg.get("model"):
        raise ConfigError("augment=back_translation needs augment.model: a conf/model name (flan_t5_base), a "
                          "folder or a Hub id.")


class BackTranslator:
    """Runs the prompt chain with one model; `__call__(text, seed)` returns the rewritten text."""

    def __init__(self, augment_cfg):
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        from lft.generation.generator import Generator
        from lft.models.loading import is_encoder_decoder, load_pretrained, load_tokenizer

        model_cfg = model_config(augment_cfg.model)
        self.decoder_only = not is_encoder_decoder(model_cfg)
        self.tokenizer = load_tokenizer(model_cfg)
        auto = AutoModelForCausalLM if self.decoder_only else AutoModelForSeq2SeqLM
        self.model = load_pretrained(model_cfg, auto).eval()
        if torch.cuda.is_available():
            self.model.to("cuda")
        if self.model.generation_config is not None and self.model.generation_config.pad_token_id is None:
            self.model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        self.generator = Generator(self.tokenizer, augment_cfg.get("generate"), decoder_only=self.decoder_only)
        self.prompts = list(augment_cfg.prompts)
        self.sample = bool((augment_cfg.get("generate") or {}).get("do_sample"))
        log.info("Back-translation with %s (%s), %d prompt step(s).", model_cfg.name_or_path,
                 "decoder-only" if self.decoder_only else "encoder-decoder", len(self.prompts))

    def __call__(self, text: str, seed: int) -> str:
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for prompt in self.prompts:
                ids = self.tokenizer(prompt.format(text=text), add_special_tokens=not self.decoder_only)["input_ids"]
                out = self.generator.generate(self.model, [ids])[0]
                if not out:
                    return text  # nothing generated: keep the row
                text = out
        return text
