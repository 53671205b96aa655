"""The model card (README.md in the Hub's format) that every export holds: what the model is and how it was made.

Front matter as the Hub reads it (huggingface_hub's ModelCardData: base_model, library_name, license, tags,
datasets); the body from the run folder alone: the method and its settings (config.yaml), the data, the final
metrics (metrics.json), the command (.hydra/overrides.yaml) and the package versions (manifest.json).
"""

import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from omegaconf import OmegaConf

from lft.runs.folder import load_run_config

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # owner/name, as opposed to a local folder or pypi:<module>
METHOD_KEYS = ("name", "r", "alpha", "dropout", "target_modules", "use_rslora", "use_dora", "quantization",
               "num_virtual_tokens", "lr")
TRAINING_KEYS = ("max_epochs", "max_steps", "accumulate_grad_batches", "precision")
# The Hub's pipeline tag from the exported class's name ending (a decoder trained on seq2seq data still generates).
PIPELINES = {"ForCausalLM": "text-generation", "ForConditionalGeneration": "text2text-generation",
             "ForSequenceClassification": "text-classification", "ForTokenClassification": "token-classification"}


def base_license(run_dir: Path) -> str | None:
    """The base model's licence where the run can tell it (a GGUF's general.license, a local card, the Hub cache)."""
    model = load_run_config(run_dir).model
    try:
        from lft.models.loading import resolve_model_path

        path = Path(resolve_model_path(model.name_or_path))
    except Exception:  # an uninstalled pypi: package: the licence stays unknown, the export goes on
        return None
    if model.get("gguf_file") and (path / model.gguf_file).exists():
        from gguf import GGUFReader

        field = GGUFReader(path / model.gguf_file).fields.get("general.license")
        return field.contents() if field else None
    readme = path / "README.md" if path.is_dir() else None
    if readme is None and HUB_ID.match(model.name_or_path):
        readme = _cached_hub_card(model.name_or_path)
    if readme is not None and readme.exists():
        found = re.search(r"^license:\s*(\S+)", readme.read_text(errors="replace").split("\n---", 1)[0], re.M)
        return found.group(1) if found else None
    return None


def _cached_hub_card(repo_id: str) -> Path | None:
    """The base's README.md from the local Hub cache only: a card is never worth a network wait."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "README.md")
    return Path(found) if isinstance(found, str) else None


def write_card(run_dir: Path, out_dir: Path, merged: bool, gguf_file: Path | None = None) -> Path:
    from huggingface_hub import ModelCardData

    cfg = load_run_config(run_dir)
    licence = base_license(run_dir)
    strategy = cfg.get("strategy", {})
    data = cfg.get("data", {})
    tags = ["lft", str(strategy.get("name", "fine-tuned"))]
    if gguf_file is not None:
        tags.append("gguf")
    hub_data = data.get("hub_id") if not data.get("path") else None
    front = ModelCardData(
        base_model=_hub_id(cfg.model.name_or_path),
        library_name="transformers" if merged else "peft",
        license=licence or "unknown",
        tags=tags,
        datasets=[hub_data] if hub_data and HUB_ID.match(hub_data) else None,
        pipeline_tag=_pipeline(out_dir),
    )
    sections = [
        f"# {out_dir.name}\n\nFine-tuned from `{cfg.model.name_or_path}`"
        + (f" (`{cfg.model.gguf_file}`)" if cfg.model.get("gguf_file") else "")
        + f" with lft ({strategy.get('name')}), "
        + ("merged into the base weights." if merged else "saved as a peft adapter."),
        "## Licence\n\n" + (f"The base model's licence: `{licence}`." if licence else
                            "The base model's licence is unknown to lft (`license: unknown`): check the base "
                            "model's own card before you share or use this model."),
        "## Method\n\n" + _table({**{f"strategy.{k}": strategy.get(k) for k in METHOD_KEYS if k in strategy},
                                  **{f"optimizer.{k}": v for k, v in cfg.get("optimizer", {}).items()
                                     if not str(k).startswith("_")},
                                  **{f"trainer.{k}": cfg.trainer.get(k) for k in TRAINING_KEYS if k in cfg.trainer},
                                  "seed": cfg.get("seed")}),
        "## Data\n\n" + _table({f"data.{k}": data.get(k) for k in ("task", "path", "template", "source_column",
                                                                   "target_column", "batch_size")
                                if data.get(k) is not None} | ({"data.hub_id": hub_data} if hub_data else {})),
        "## Metrics\n\n" + _metrics(run_dir),
        "## How it was made\n\n" + _command(run_dir) + "\n\n<details><summary>The run's resolved config"
        "</summary>\n\n```yaml\n" + OmegaConf.to_yaml(cfg).strip() + "\n```\n\n</details>",
        "## Use\n\n" + _usage(out_dir, merged, gguf_file),
        "## Versions\n\n" + _versions(run_dir),
    ]
    path = out_dir / "README.md"
    path.write_text("---\n" + front.to_yaml() + "\n---\n\n" + "\n\n".join(sections) + "\n")
    return path


def _pipeline(out_dir: Path) -> str | None:
    config = out_dir / "config.json"
    architectures = json.loads(config.read_text()).get("architectures") or [""] if config.exists() else [""]
    return next((tag for end, tag in PIPELINES.items() if architectures[0].endswith(end)), None)


def _hub_id(name: str) -> str | None:
    return name if HUB_ID.match(name) and not Path(name).exists() else None


def _table(rows: dict) -> str:
    if not rows:
        return "(none recorded)"
    body = "\n".join(f"| {k} | {_cell(v)} |" for k, v in rows.items())
    return "| setting | value |\n|---|---|\n" + body


def _cell(value) -> str:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text.replace("|", "\\|").replace("\n", "\\n")


def _metrics(run_dir: Path) -> str:
    path = run_dir / "metrics.json"
    if not path.exists():
        return "The run left no metrics.json."
    metrics = json.loads(path.read_text())
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in sorted(metrics.items()))
    return "From the run's metrics.json:\n\n| metric | value |\n|---|---|\n" + rows


def _command(run_dir: Path) -> str:
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.exists():
        args = OmegaConf.to_container(OmegaConf.load(overrides))
        return "```bash\npython -m lft.train " + " ".join(_quote(a) for a in args) + "\n```"
    return "The run was started from Python (no `.hydra/overrides.yaml`); its resolved config below repeats it."


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./:=+\-,@\[\]]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def _usage(out_dir: Path, merged: bool, gguf_file: Path | None) -> str:
    if not merged:
        return ("```python\nfrom peft import AutoPeftModel\nmodel = AutoPeftModel.from_pretrained(\"<this folder>\")"
                "\n```")
    text = ("```python\nfrom transformers import AutoModel, AutoTokenizer\n"
            "model = AutoModel.from_pretrained(\"<this folder>\")  # or the AutoModelFor* class of the task\n"
            "tokenizer = AutoTokenizer.from_pretrained(\"<this folder>\")\n```")
    if gguf_file is not None:
        text += (f"\n\nllama.cpp / Ollama: `{gguf_file.name}`, e.g.\n\n```bash\n"
                 f"llama-cli -m {gguf_file.name} -p \"Hello\" -n 64\n```")
    return text


def _versions(run_dir: Path) -> str:
    manifest = run_dir / "manifest.json"
    recorded = json.loads(manifest.read_text()) if manifest.exists() else {}
    rows = "\n".join(f"| {name} | {v} |" for name, v in recorded.get("packages", {}).items())
    text = ("Trained with (the run's manifest.json):\n\n| package | version |\n|---|---|\n" + rows if rows
            else "The run recorded no package versions.")
    if recorded.get("git_sha"):
        text += f"\n\nlft commit: `{recorded['git_sha']}`"
    exported = {name: _version(name) for name in ("lft", "transformers", "gguf")}
    return text + "\n\nExported with " + ", ".join(f"{k} {v}" for k, v in exported.items() if v) + "."


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
