"""lm-evaluation-harness on an lft model: `python -m lft.evaluate [run=<dir>] harness.tasks=[...]`.

The numbers people compare across papers come from lm-evaluation-harness (lm_eval). Instead of a second tool and a
hand conversion, lft hands its own model (a run's adapter merged in memory) to lm_eval as an HFLM and appends
lm_eval's metrics to the same results table as its own scores, one row per task.

Tasks are looked up in the harness.include folders, then lft's shipped tasks (assets/harness_tasks), then lm_eval's
own. The relative data_files of a task over local files (dataset_path: json, csv, parquet, ...) resolve against
harness.data_dir, so a task YAML never holds one machine's path and runs offline.
"""

import importlib.util
import logging
import time
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lft.config.errors import ConfigError
from lft.config.paths import ASSETS
from lft.runs.folder import load_run_config, load_run_model

log = logging.getLogger("lft")
SHIPPED_TASKS = ASSETS / "harness_tasks"
# datasets' builders that read files: their relative data_files resolve against harness.data_dir.
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
# Runs whose model is a classifier (a label or reward head), not a language model the harness can score.
CLASSIFIER_TASKS = ("classification", "reward")
# Metrics that mean the same in lm_eval and in lft's table (harness columns of lft.reports.results).
HARNESS_METRICS = ("acc", "acc_norm", "exact_match")
INSTALL = "install it with `pip install 'lft[harness]'` (lm-evaluation-harness)"


def wants_harness(cfg) -> bool:
    return bool((cfg.get("harness") or {}).get("tasks"))


def check_harness(cfg) -> None:
    """Before any weights load: lm_eval installed, every task name known, local task data present."""
    if cfg.get("runs"):
        raise ConfigError("harness.tasks scores one model: give run=<run dir> (or a base model=...), not runs=[...].")
    if importlib.util.find_spec("lm_eval") is None:
        raise ConfigError(f"harness.tasks={list(cfg.harness.tasks)} needs lm_eval, which is not installed; {INSTALL}.")
    if cfg.get("run"):
        task = (load_run_config(cfg.run).get("data") or {}).get("task")
        if task in CLASSIFIER_TASKS:
            raise ConfigError(f"harness.tasks scores language models, but run={cfg.run} trained a data.task={task} "
                              "model; score it with lft's own metrics (drop harness.tasks).")
    manager = task_manager(cfg.harness)
    for name in cfg.harness.tasks:
        check_task_data(manager, str(name), cfg.harness.data_dir)


def task_folders(harness: DictConfig) -> list[Path]:
    """Where task YAML files are looked for, in lm_eval's order: later folders override earlier ones."""
    return [SHIPPED_TASKS, *(Path(str(p)).expanduser() for p in harness.get("include") or [])]


def task_manager(harness: DictConfig):
    """An lm_eval TaskManager that knows every name in harness.tasks, or one ConfigError naming the unknown ones.
    lm_eval's own index (thousands of YAML files, ~10 s) is read only when a name is not in the local folders."""
    folders = task_folders(harness)
    missing = [str(p) for p in folders[1:] if not p.is_dir()]
    if missing:
        raise ConfigError(f"harness.include: {missing} is not a folder; give folders of lm_eval task YAML files.")
    names = [str(n) for n in harness.tasks]
    manager = _manager(tuple(folders), builtin=False)
    if all(n in manager.all_tasks for n in names):
        return manager
    manager = _manager(tuple(folders), builtin=True)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        local = ", ".join(str(p) for p in folders)
        raise ConfigError(f"harness.tasks: unknown task(s) {unknown}. lft looks in {local} (harness.include=[<folder>] "
                          f"adds yours; shipped: {', '.join(shipped_tasks())}) and in lm-evaluation-harness's own "
                          "tasks (`lm_eval ls tasks`).")
    return manager


@cache
def _manager(folders: tuple[Path, ...], builtin: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in folders], include_defaults=builtin)


def shipped_tasks() -> list[str]:
    return sorted(p.stem for p in SHIPPED_TASKS.glob("*.yaml"))


def task_spec(manager, name: str, data_dir) -> str | dict:
    """What lm_eval loads for a name: the name itself, or for a task over local files its YAML config with
    dataset_kwargs.data_dir set, so relative data_files resolve against harness.data_dir (datasets' own rule)."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = manager.task_index[name]
    if entry.kind is not Kind.TASK or entry.yaml_path is None:
        return name
    config = load_yaml(entry.yaml_path, resolve_func=True)
    if config.get("dataset_path") not in LOCAL_BUILDERS:
        return name
    kwargs = {"data_dir": str(Path(str(data_dir)).expanduser().resolve()), **(config.get("dataset_kwargs") or {})}
    return {**config, "dataset_kwargs": kwargs}


def check_task_data(manager, name: str, data_dir) -> None:
    spec = task_spec(manager, name, data_dir)
    if isinstance(spec, str):
        return
    root = Path(spec["dataset_kwargs"]["data_dir"])
    files = spec["dataset_kwargs"].get("data_files") or {}
    patterns = [f for v in (files.values() if isinstance(files, dict) else [files])
                for f in ([v] if isinstance(v, str) else v)]
    absent = [p for p in patterns if not any(root.glob(p)) and not Path(p).is_file()]
    if absent:
        raise ConfigError(f"harness.tasks: {name} reads {absent} under harness.data_dir={data_dir} ({root}), which is "
                          "not there; set harness.data_dir=<the folder holding them> (e.g. ../shared/data).")


def load_language_model(model_cfg, run=None):
    """The base language model, or the run's weights (an adapter merged into its base in memory where peft can)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from lft.models.loading import align_pad_token, is_encoder_decoder, load_pretrained

    def build(cfg):
        model = load_pretrained(cfg, AutoModelForSeq2SeqLM if is_encoder_decoder(cfg) else AutoModelForCausalLM)
        align_pad_token(model)
        return model

    model = build(model_cfg) if run is None else load_run_model(run, build=build, merge="auto")
    return model.eval()


def harness_rows(cfg: DictConfig, run=None) -> list[dict]:
    """Run each task of harness.tasks on the model of cfg (or run) with lm_eval: one result row per task (a group
    adds a row per member task)."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from lft.models.loading import is_quantized, load_tokenizer

    harness = cfg.harness
    manager = task_manager(harness)
    model_cfg = load_run_config(run).model if run else cfg.model
    model = load_language_model(model_cfg, run)
    # On a GPU the harness runs there (a k-bit model is placed by bitsandbytes already); CPU otherwise.
    if torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("auto", "gpu", "cuda") and not is_quantized(model):
        model.to("cuda")
    lm = HFLM(pretrained=model, tokenizer=load_tokenizer(model_cfg), batch_size=harness.batch_size)
    name = cfg.get("name") or (Path(run).name if run else Path(str(model_cfg.name_or_path)).name)
    rows = []
    for task in harness.tasks:
        start = time.perf_counter()
        out = simple_evaluate(model=lm, tasks=[task_spec(manager, str(task), harness.data_dir)], task_manager=manager,
                              limit=harness.limit, num_fewshot=harness.num_fewshot, log_samples=False,
                              random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
                              fewshot_random_seed=cfg.seed)
        seconds = round(time.perf_counter() - start, 1)
        for task_name, metrics in out["results"].items():
            rows.append({"name": name, "task": task_name, "model": str(model_cfg.name_or_path),
                         "weights": str(run) if run else None,
                         "rows": out["n-samples"].get(task_name, {}).get("effective"),
                         "num_fewshot": out["n-shot"].get(task_name),
                         **task_metrics(metrics), "seconds": seconds})
    return rows


def task_metrics(metrics: dict) -> dict:
    """lm_eval's "acc,none" / "acc_stderr,none" as acc / acc_stderr (a filter other than none is kept:
    "exact_match,flexible-extract" -> exact_match[flexible-extract]). Names lft uses for its own metrics on
    another scale (lm_eval's bleu is 0-100, lft's 0-1) get an lm_eval_ prefix so one column never mixes them."""
    from lft.reports.results import FIRST

    shown = {}
    for key, value in metrics.items():
        if "," not in key or not isinstance(value, (int, float)):
            continue
        metric, filt = key.split(",", 1)
        base = metric.removesuffix("_stderr")
        if base in FIRST and base not in HARNESS_METRICS:
            metric = f"lm_eval_{metric}"
        shown[metric if filt == "none" else f"{metric}[{filt}]"] = float(value)
    return shown


def evaluate_harness(cfg: DictConfig) -> list[dict]:
    """`lft.evaluate ... harness.tasks=[...]`: the rows, written beside the run and appended to `out`."""
    import json

    from lft.reports.results import append_row, format_table

    rows = harness_rows(cfg, cfg.get("run"))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "harness.json").write_text(json.dumps(
        {"rows": rows, "harness": OmegaConf.to_container(cfg.harness, resolve=True)}, indent=2))
    table = rows
    if cfg.get("out"):
        for row in rows:
            table = append_row(cfg.out, row)
    print(format_table(table))
    return rows
