"""Answering prompts with a trained (or base) model: its config, the prompts formatted as in training, generation.

lft.generate is its command line."""


import json
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from lft.config.compose import compose
from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR
from lft.config.validate import validate
from lft.data.templates import PromptBuilder, Template, chat_enabled, chat_setting
from lft.generation.generator import Generator
from lft.models.loading import load_tokenizer
from lft.runs.folder import load_run_config, load_trained_model
from lft.tasks import build_task
from lft.tasks.causal_lm import CausalLMTask
from lft.tasks.preference import DpoTask
from lft.tasks.rl import PolicyTask


def load_cfg(args: dict):
    if args.get("run"):
        return load_run_config(args["run"])
    model = args["model"]
    override = f"model={model}" if (CONFIG_DIR / "model" / f"{model}.yaml").exists() else f"model.name_or_path={model}"
    return compose("train", overrides=[override, f"data={args.get('data', 'dialogsum')}", "paths.output_dir=."])


def read_prompts(args: dict) -> list[dict | str]:
    if args.get("prompt"):
        return [args["prompt"]]
    path = Path(args["prompts"])
    if not path.exists():
        raise ConfigError(f"lft.generate: prompts={str(path)!r} does not exist.")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines] if path.suffix == ".jsonl" else lines


def prompt_ids(item: dict | str, task, tokenizer, fmt: str) -> list[int]:
    """Format one prompt the way the task formatted training prompts."""
    data = task.cfg
    if isinstance(task, DpoTask) and fmt != "raw":  # a preference run: its prompts in the pairs' (chat) format
        return task.prompt_ids(tokenizer, item if isinstance(item, str) else str(item.get("prompt", "")))
    if isinstance(task, PolicyTask) and fmt == "template":  # online RL: its prompts' format (lft/data/policy_prompts.py)
        return task.prompt_ids(tokenizer, item)
    if fmt == "raw" or (isinstance(task, CausalLMTask) and task.raw_text):
        return tokenizer(item if isinstance(item, str) else json.dumps(item))["input_ids"]
    chat_template = chat_setting(data)
    chat = isinstance(task, (CausalLMTask, PolicyTask)) and chat_enabled(chat_template, tokenizer)
    if fmt == "chat":
        return PromptBuilder(Template("{text}"), tokenizer, None, chat=chat).build({"text": str(item)})[1]
    builder = task.prompt_builder(tokenizer)
    if isinstance(item, str):  # the text fills the template's first column (dialogue, instruction)
        item = {**{c: "" for c in builder.template.columns()}, builder.template.columns()[0]: item}
    return builder.build(item)[1]


def generate_settings(args: dict) -> dict:
    """The data.generate overrides among the arguments; a value that is not a number stays text, for validate()
    to refuse with the key's rule."""
    settings = {}
    for key, cast in (("max_new_tokens", int), ("num_beams", int), ("temperature", float), ("top_p", float)):
        if key in args:
            try:
                settings[key] = cast(args[key])
            except ValueError:
                settings[key] = args[key]
    if "do_sample" in args:
        settings["do_sample"] = args["do_sample"].lower() in ("1", "true", "yes")
    return settings


def generate(args: dict) -> list[str]:
    cfg = load_cfg(args)
    overrides = generate_settings(args)
    if overrides:
        with open_dict(cfg):
            cfg.data.generate = OmegaConf.merge(cfg.data.get("generate") or {}, overrides)
    validate(cfg, "generate")
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    model = load_trained_model(task, cfg.model, args.get("run")).eval()
    settings = OmegaConf.to_container(cfg.data.get("generate") or OmegaConf.create({}), resolve=True)
    decoder_only = isinstance(task, (CausalLMTask, DpoTask, PolicyTask))
    generator = Generator(tokenizer, OmegaConf.create(settings), decoder_only=decoder_only)
    items = read_prompts(args)
    return generator.generate(model, [prompt_ids(item, task, tokenizer, args["format"]) for item in items])
