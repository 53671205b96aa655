"""lft vs the Hugging Face Trainer + peft (plain and tuned) vs a bare PyTorch loop, on identical work, in one run.

The work of a case is fixed once: lft encodes the rows (same tokenizer, template and max length for all), and
every system trains the same model with the same LoRA settings (or full weights), AdamW at the strategy's lr
with weight decay 0.01, a linear schedule with 6% warmup, clipping 1.0, the same batch and epochs, with no
evaluation or checkpoints in the timed part. Each run is its own process (so its peak memory is its own); the
systems run in rounds, in reversed order every other round, and each system's fastest round counts.

  plain       transformers.Trainer + peft with its defaults: random order, fp32 (as it ships, CPU or GPU)
  tuned       the Trainer given what it offers: group_by_length, and lft's precision (bf16 where lft uses it)
  lft         `train(cfg)` as `python -m lft.train` runs it: precision=auto, length-grouped batches
  bare        a plain PyTorch loop (forward, backward, clip, AdamW, schedule) over lft's own model, loss and
              batches: the model lft's strategy builds (lean blocks, fast dropout, adapter dropout), bf16 base
              weights as lft's fit casts them, lft's loss. So lft / bare is what Lightning's loop costs or saves.
  bare_stock  the same loop over the model as transformers + peft build it, `model(**batch).loss`: lft /
              bare_stock is lft's model and loss tricks plus its loop

Recorded per run (read from what ran, not from the settings; `run_record.py`): the precision the training
forwards ran in (autocast state inside the backbone's forward) beside the one the framework declares (lft's
Trainer flag, the Trainer's args.bf16/fp16, the loop's autocast), optimizer steps, real (non-pad) tokens of the
training rows and the tokens the forwards were given, training-loop seconds (lft: on_train_start ->
on_train_end; the Trainer: on_train_begin -> on_train_end; the loops: their loop), the whole call's and the
whole process's seconds, peak RSS (and peak GPU memory), model FLOPs per token (run_record: 4N + 2N_trainable),
and the final metric, scored the same way in fp32 for every system (test accuracy, or held-out loss per
labelled token). The machine (CPU model and bf16 flags, threads; or the GPU) goes in the header.

Results go to a new file, never over an old one: bench/results/<case>-<UTC time>.json (or --out, refused if it
exists), rewritten as runs finish so a stopped run keeps what it measured. The headline table (markdown) is
printed and stored with them.

    OMP_NUM_THREADS=2 python bench/throughput.py --case smollm2_alpaca_lora --train-size 200 --eval-size 64 \
        --systems plain,tuned,lft,bare --rounds 2
    OMP_NUM_THREADS=2 python bench/throughput.py --case minilm_imdb_lora --train-size 400 --eval-size 200 \
        --systems plain,tuned,lft,bare --rounds 2
    python bench/throughput.py --case smollm2_alpaca_lora --packing --override data.group_by_length=false

On a GPU (`--device cuda`, the default where one is visible), a Llama of about 1B parameters from a config, bf16
(precision=auto), and model-FLOPs utilization (model FLOP/s over the GPU's dense bf16 peak):

    python bench/throughput.py --case llama_1b_synthetic --train-size 1024 --eval-size 64 --systems plain,tuned,lft,bare --rounds 1
    python bench/throughput.py --case llama_1b_synthetic --train-size 1024 --eval-size 64 --systems lft,bare --packing --rounds 1
    python bench/throughput.py --case llama_1b_synthetic --train-size 1024 --eval-size 64 --systems lft --override compile=true --rounds 1
    python bench/throughput.py --case llama_tiny_synthetic --train-size 64 --eval-size 16   # the same code, CPU seconds
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
# The cases adapt the attention query/value projections (the LoRA default was that when they were set).
QV = "strategy.target_modules=null"
CASES = {
    "minilm_imdb_lora": ["model=minilm", "data=imdb", f"data.path={SHARED / 'imdb'}", "data.max_length=256",
                         "data.batch_size=16", "strategy=lora", QV],
    "minilm_imdb_full": ["model=minilm", "data=imdb", f"data.path={SHARED / 'imdb'}", "data.max_length=256",
                         "data.batch_size=16", "strategy=full"],
    "smollm2_alpaca_lora": ["model=smollm2_135m", "data=alpaca", f"data.path={SHARED / 'alpaca' / 'alpaca_5000.json'}",
                            "data.max_source_length=192", "data.max_target_length=64", "data.batch_size=8",
                            "strategy=lora", QV],
    "smollm2_dialogsum_lora": ["model=smollm2_135m", "data=dialogsum", f"data.path={SHARED / 'dialogsum'}",
                               "data.batch_size=8", "strategy=lora", QV],
}
# Speed cases for a lent GPU: a Llama of about 1B parameters from a config (random weights) on rows of random
# words, both built on first use by bench/llama_from_config.py under --synthetic-dir; "tiny" runs the same code
# on a CPU in seconds.
SYNTHETIC = ("llama_1b_synthetic", "llama_tiny_synthetic")
# Dense bf16 peak FLOP/s by GPU name, for model-FLOPs utilization (MFU); --peak-tflops overrides.
PEAK_TFLOPS = {"H100": 989.5, "H200": 989.5, "A100": 312.0}
SYSTEMS = ("plain", "tuned", "lft", "bare", "bare_stock")
STOCK_MODEL = ("plain", "tuned", "bare_stock")  # systems that train the model as transformers + peft build it
HEADLINE = ("plain", "tuned", "bare")  # the ratios the table's last line gives, lft over each
AUTOCAST = {"32-true": None, "bf16-mixed": "bfloat16", "16-mixed": "float16"}  # the precisions the loops run
STOCK_INPUTS = ("input_ids", "attention_mask", "labels", "token_type_ids", "position_ids")


def case_overrides(case: str, synthetic_dir: Path) -> list[str]:
    if case not in SYNTHETIC:
        return CASES[case]
    size = case.split("_")[1]  # llama_<size>_synthetic
    return ["model=llama", f"model.name_or_path={synthetic_dir / f'llama_{size}'}", "model.dtype=null",
            "model.gradient_checkpointing=false", "data=alpaca", f"data.path={synthetic_dir / 'rows.json'}",
            "data.max_source_length=256", "data.max_target_length=256", "data.batch_size=16", "strategy=lora", QV]


# --- one run, in its own process --------------------------------------------------------------------
def compose_case(args, out_dir: Path):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from lft.config.paths import CONFIG_DIR

    overrides = [*case_overrides(args.case, args.synthetic_dir), f"data.train_size={args.train_size}",
                 f"data.val_size={args.eval_size}", f"data.test_size={args.eval_size}", "callbacks=none",
                 f"trainer.max_epochs={args.epochs}", "trainer.limit_val_batches=0",
                 "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=50", "test=false"]
    device = args.device.split(":")
    overrides += ["trainer.accelerator=cpu"] if device[0] == "cpu" else [
        "trainer.accelerator=gpu", f"trainer.devices=[{device[1] if len(device) > 1 else 0}]"]
    if args.system in STOCK_MODEL:
        overrides.append("model.lean_blocks=false")
    if not args.case.startswith("minilm"):  # decoders, no generation: the timed part is training
        overrides += ["data.generate.val_samples=0", "data.generate.test_samples=0", "data.monitor.metric=val/loss",
                      "data.monitor.mode=min", f"data.packing={str(args.packing).lower()}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *args.override])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir / "run")
        cfg.logger = None
    return cfg


def worker(args) -> dict:
    """One system's run: trains, then scores; returns its record (see the module docstring)."""
    import torch

    from lft.models.loading import load_tokenizer
    from lft.runs.memory import peak_memory_mb, reset_peak_memory
    from lft.tasks import build_task

    start = time.perf_counter()
    reset_peak_memory()
    device = pick_device(args.device)
    args.device = str(device)
    cfg = compose_case(args, Path(tempfile.mkdtemp(prefix=f"bench-{args.system}-")))
    if args.system == "lft":  # as a user runs it: train() encodes the data itself
        model, run = train_lft(cfg)
        run.update(process_seconds=round(time.perf_counter() - start, 2), **peak_memory_mb())
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    datamodule = task.encode(tokenizer, cfg.seed, cache_dir=cfg.paths.cache_dir).datamodule  # the same rows for all
    if args.system != "lft":
        train = train_trainer if args.system in ("plain", "tuned") else train_bare
        model, run = train(args, cfg, task, datamodule, device)
        run.update(process_seconds=round(time.perf_counter() - start, 2), **peak_memory_mb())
    real_tokens = sum(len(ids) for ids in datamodule.splits["train"]["input_ids"]) * args.epochs
    run.update(system=args.system, real_tokens=real_tokens, tokens_per_s=round(real_tokens / run["loop_seconds"], 1),
               model_tflops_per_s=round(run["flops_per_token"] * real_tokens / run["loop_seconds"] / 1e12, 4),
               metric=final_metric(task, model.to(device), datamodule), torch_threads=torch.get_num_threads(),
               device=str(device))
    return run


def train_lft(cfg):
    """train(cfg) with run_record.LftProbe among its callbacks: the trained model and what the probe saw."""
    from omegaconf import open_dict
    from run_record import LftProbe

    from lft.train import train

    with open_dict(cfg):
        cfg.callbacks["bench_probe"] = {"_target_": "run_record.LftProbe"}
    metrics = train(cfg)
    probe = LftProbe.last
    probe.probe.close()
    return probe.model, {"declared_precision": probe.declared_precision, **probe.probe.record(),
                         "optimizer_steps": metrics["optimizer_steps"], "loop_seconds": metrics["train_loop_seconds"],
                         "call_seconds": metrics["fit_seconds"]}


def peft_model(cfg, task, model):
    """The plain peft recipe with lft's strategy settings (rank, alpha, dropout, target modules)."""
    if cfg.strategy.name == "full":
        return model
    from peft import LoraConfig, get_peft_model

    from lft.strategies.lora import target_modules

    s = cfg.strategy
    return get_peft_model(model, LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout,
                                            target_modules=target_modules(model, s), task_type=task.peft_task_type))


def train_trainer(args, cfg, task, datamodule, device):
    """transformers.Trainer on the stock model: its defaults (plain), or grouping and lft's precision (tuned)."""
    import torch
    from run_record import ForwardProbe
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(cfg.seed)
    model = peft_model(cfg, task, task.build_model(cfg.model))
    tuned = args.system == "tuned"
    lft_precision = str(cfg.trainer.precision)  # what precision=auto resolves to on this machine
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-hf-"), per_device_train_batch_size=cfg.data.batch_size,
        num_train_epochs=args.epochs, learning_rate=cfg.strategy.lr, weight_decay=0.01, lr_scheduler_type="linear",
        warmup_steps=0.06,  # < 1: a ratio
        max_grad_norm=1.0, bf16=tuned and lft_precision == "bf16-mixed", fp16=tuned and lft_precision == "16-mixed",
        eval_strategy="no", train_sampling_strategy="group_by_length" if tuned else "random", save_strategy="no",
        report_to="none", logging_steps=50, seed=cfg.seed, dataloader_num_workers=0, disable_tqdm=True,
        use_cpu=device.type == "cpu",
    )
    columns = [c for c in STOCK_INPUTS if c in datamodule.splits["train"].column_names]
    loop, probe = LoopTimer(), ForwardProbe(model)
    trainer = Trainer(model=model, args=targs, train_dataset=datamodule.splits["train"].select_columns(columns),
                      data_collator=datamodule.collate_fn, callbacks=[loop])
    start = time.perf_counter()
    trainer.train()
    call_seconds = time.perf_counter() - start
    probe.close()
    declared = "bf16-mixed" if targs.bf16 else "16-mixed" if targs.fp16 else "32-true"
    return model, {"declared_precision": declared, **probe.record(), "optimizer_steps": trainer.state.global_step,
                   "loop_seconds": round(loop.seconds, 2), "call_seconds": round(call_seconds, 2)}


def LoopTimer():  # noqa: N802 (a class built late: transformers is imported in the worker only)
    """Times the Trainer's training loop (on_train_begin -> on_train_end), as lft's train_loop_seconds does."""
    from transformers import TrainerCallback

    class _LoopTimer(TrainerCallback):
        seconds = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self._start

    return _LoopTimer()


def train_bare(args, cfg, task, datamodule, device):
    """Forward, backward, clip, AdamW, schedule over lft's batches on `device`, in lft's precision: over lft's own
    model and loss (bare), or the stock model's `model(**batch).loss` (bare_stock)."""
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from run_record import ForwardProbe

    from lft.strategies import apply_strategy
    from lft.training.finetune_module import NO_DECAY
    from lft.training.schedulers import lr_lambda

    precision = str(cfg.trainer.precision)
    if precision not in AUTOCAST:
        sys.exit(f"{args.system}: precision {precision} is not one the bare loop runs ({', '.join(AUTOCAST)}).")
    L.seed_everything(cfg.seed)
    if args.system == "bare":  # as train() builds it
        model, task = apply_strategy(task.build_model(cfg.model), cfg.strategy, task)
        if cfg.get("compile"):
            from lft.speed.compile import compile_blocks

            compile_blocks(model)
        loss_of = task.loss
    else:
        model = peft_model(cfg, task, task.build_model(cfg.model))

        def loss_of(model, batch):
            return model(**{k: v for k, v in batch.items() if k in STOCK_INPUTS}).loss
    model.to(device).train()
    fit_callbacks = lft_fit_callbacks(model, precision, device) if args.system == "bare" else []
    for callback, trainer, module in fit_callbacks:
        callback.on_fit_start(trainer, module)
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # lft's groups (FineTuneModule.configure_optimizers)
        if param.requires_grad:
            (no_decay if any(k in name.lower() for k in NO_DECAY) else decay).append(param)
    params = decay + no_decay
    optimizer = instantiate(cfg.optimizer)([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
    loader = datamodule.train_dataloader()  # no trainer attached: one process, the sampler counts epochs
    steps = len(loader) * args.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.scheduler, steps))
    dtype = getattr(torch, AUTOCAST[precision]) if AUTOCAST[precision] else None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    probe = ForwardProbe(model)
    taken = 0
    start = time.perf_counter()
    for epoch in range(args.epochs):
        datamodule.train_sampler.set_epoch(epoch)
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_of(model, batch)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            taken += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    probe.close()
    for callback, trainer, module in fit_callbacks:
        callback.on_fit_end(trainer, module)
    return model, {"declared_precision": precision, **probe.record(), "optimizer_steps": taken,
                   "loop_seconds": round(seconds, 2), "call_seconds": round(seconds, 2)}


def lft_fit_callbacks(model, precision: str, device) -> list[tuple]:
    """The strategy callbacks lft's fit adds for this model (bf16 base weights for adapters), each with the
    stand-ins for a one-device Lightning trainer and module that its on_fit_start/on_fit_end read."""
    from types import SimpleNamespace

    from lightning.pytorch.strategies import SingleDeviceStrategy

    from lft.speed.bf16_base_weights import Bf16BaseWeights
    from lft.strategies import strategy_callbacks

    callbacks = strategy_callbacks(model)
    others = [type(c).__name__ for c in callbacks if not isinstance(c, Bf16BaseWeights)]
    if others:
        sys.exit(f"bare: the loop does not run the strategy's callbacks {others}; bench a strategy without them.")
    trainer = SimpleNamespace(precision=precision, strategy=SingleDeviceStrategy(device=device))
    return [(c, trainer, SimpleNamespace(model=model)) for c in callbacks]


def final_metric(task, model, datamodule) -> dict:
    """The same scoring for every system, in fp32 on the model's device: test accuracy, or loss per labelled
    token on held-out rows."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    split = "test" if task.name == "classification" else "validation"
    rows = datamodule.splits[split]
    columns = [c for c in ("input_ids", "attention_mask", "labels", "token_type_ids") if c in rows.column_names]
    loader = torch.utils.data.DataLoader(rows.select_columns(columns), batch_size=16, collate_fn=datamodule.collate_fn)
    correct = total = 0
    loss_sum = 0.0
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(**batch)
            if task.name == "classification":
                correct += (out.logits.argmax(-1) == batch["labels"]).sum().item()
                total += len(batch["labels"])
            else:
                tokens = (batch["labels"][:, 1:] != -100).sum().item()
                loss_sum += out.loss.item() * tokens
                total += tokens
    if task.name == "classification":
        return {"test_accuracy": round(correct / total, 4), "rows": total}
    return {"val_loss_per_token": round(loss_sum / total, 4), "tokens": total}


# --- the driver ---------------------------------------------------------------------------------------
def claim_result_file(args) -> Path:
    """A file no earlier run wrote: --out if it does not exist, else <results-dir>/<case>-<UTC time>.json, with
    -2, -3, ... if that exists. Created here with an exclusive create, so a concurrent run cannot take it either."""
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            args.out.open("x").close()
        except FileExistsError:
            sys.exit(f"--out {args.out} exists; results are never overwritten: name a new file, or leave --out out "
                     f"for {args.results_dir}/<case>-<UTC time>.json.")
        return args.out
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{args.case}{'_packed' if args.packing else ''}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    for n in itertools.count(1):
        path = args.results_dir / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            continue


def ratio(a, b) -> float | None:
    """a / b, or None where either is missing or zero (a system that used no GPU memory, say)."""
    return round(a / b, 2) if a and b else None


def summarize(runs: list[dict], peak_tflops: float | None) -> dict:
    """Each system's fastest round, lft's ratios to the others, and the headline table."""
    systems = list(dict.fromkeys(r["system"] for r in runs))
    rounds = {s: [r for r in runs if r["system"] == s] for s in systems}
    best = {s: dict(min(rs, key=lambda r: r["loop_seconds"])) for s, rs in rounds.items()}
    for b in best.values():
        b["mfu"] = ratio(b["model_tflops_per_s"], peak_tflops) if peak_tflops else None
    memory = "peak_gpu_mb" if any(b.get("peak_gpu_mb") for b in best.values()) else "peak_rss_mb"
    ref = best.get("lft")
    summary = {
        "best": best, "loop_seconds": {s: [r["loop_seconds"] for r in rs] for s, rs in rounds.items()},
        "lft_speedup_over": {s: ratio(ref["tokens_per_s"], b["tokens_per_s"]) for s, b in best.items()} if ref else {},
        "memory_compared": memory,
        "lft_memory_ratio_to": {s: ratio(ref.get(memory), b.get(memory)) for s, b in best.items()} if ref else {},
    }
    summary["table"] = headline_table(summary)
    return summary


def headline_table(summary: dict) -> str:
    """Markdown: one row per system (fastest round), then lft's speed-up over plain, tuned and bare."""
    best, speedup = summary["best"], summary["lft_speedup_over"]
    lines = ["| system | precision | optimizer steps | real tokens | tokens seen | loop s (each round) | "
             "real tokens/s | peak RSS MB | peak GPU MB | MFU | metric | lft speed-up |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s, b in best.items():
        precision = b["precision"] if b["precision"] == b["declared_precision"] else \
            f"{b['precision']} (declared {b['declared_precision']})"
        metric = ", ".join(f"{k} {v}" for k, v in b["metric"].items())
        rounds = ", ".join(f"{x:.1f}" for x in summary["loop_seconds"][s])
        lines.append(f"| {s} | {precision} | {b['optimizer_steps']} | {b['real_tokens']:,} | {b['tokens_seen']:,} | "
                     f"{rounds} | {b['tokens_per_s']:,.1f} | {b['peak_rss_mb']:,.0f} | {b.get('peak_gpu_mb') or '-'} | "
                     f"{b['mfu'] if b['mfu'] is not None else '-'} | {metric} | {speedup.get(s) or '-'} |")
    ratios = [f"lft / {s} **{speedup[s]}x**" for s in HEADLINE if speedup.get(s)]
    if ratios:
        lines += ["", ", ".join(ratios) + " (real tokens per second of training loop, each system's fastest round)"]
    return "\n".join(lines)


def pick_device(name: str | None):
    import torch

    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def worker_env(device, environ: dict) -> tuple[dict, str]:
    """(environment, device) for a run's process: on a GPU it sees that GPU alone, as cuda:0 (the Trainer would
    otherwise spread each batch over every visible GPU with nn.DataParallel)."""
    env = dict(environ)
    if device.type != "cuda":
        return env, str(device)
    visible, index = env.get("CUDA_VISIBLE_DEVICES"), device.index or 0
    env["CUDA_VISIBLE_DEVICES"] = visible.split(",")[index] if visible else str(index)
    return env, "cuda:0"


def run_worker(system: str, argv: list[str], device) -> dict:
    env, device = worker_env(device, os.environ)
    cmd = [sys.executable, __file__, *argv, "--system", system, "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{system} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("BENCH "))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted([*CASES, *SYNTHETIC]), default="minilm_imdb_lora")
    parser.add_argument("--systems", default="plain,tuned,lft,bare", help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--train-size", type=int, default=400)
    parser.add_argument("--eval-size", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", "--repeats", type=int, default=2,
                        help="runs of each system, alternating the order; the fastest counts")
    parser.add_argument("--packing", action="store_true", help="lft and the loops pack rows (decoder cases)")
    parser.add_argument("--override", action="append", default=[], help="an extra lft config override (repeatable)")
    parser.add_argument("--device", help="cpu, cuda or cuda:<i> (default: cuda where a GPU is visible, else cpu)")
    parser.add_argument("--out", type=Path, help="a new JSON results file (refused if it exists)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where <case>-<UTC time>.json goes")
    parser.add_argument("--synthetic-dir", type=Path, default=Path(tempfile.gettempdir()) / "lft-bench",
                        help="where the llama_*_synthetic cases build their model and rows")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for MFU (default: by GPU name)")
    parser.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)  # worker mode: one run, JSON on stdout
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.system:
        print("BENCH " + json.dumps(worker(args)), flush=True)
        return
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        sys.exit(f"--systems: unknown {unknown}; choose from {', '.join(SYSTEMS)}.")
    import torch
    from run_record import machine

    device = pick_device(args.device)
    out = claim_result_file(args)
    if args.case in SYNTHETIC:
        from llama_from_config import build_model, write_rows

        size = args.case.split("_")[1]
        build_model(size, args.synthetic_dir / f"llama_{size}")
        write_rows(args.synthetic_dir / "rows.json")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)
    result = {"case": args.case, "command": [Path(sys.executable).name, *sys.argv], "status": "running",
              "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "train_rows": args.train_size,
              "eval_rows": args.eval_size, "epochs": args.epochs, "packing": args.packing, "rounds": args.rounds,
              "overrides": case_overrides(args.case, args.synthetic_dir) + args.override, "machine": machine(device),
              "peak_tflops": peak, "runs": []}
    for n in range(args.rounds):
        for system in systems if n % 2 == 0 else systems[::-1]:  # alternate the order between rounds
            try:
                run = run_worker(system, sys.argv[1:], device)
            except RuntimeError as err:
                result["status"] = f"failed: {system}"
                out.write_text(json.dumps(result, indent=2))
                sys.exit(f"{err}\n(what finished is in {out})")
            result["runs"].append({"round": n + 1, **run})
            result.update(summarize(result["runs"], peak))
            out.write_text(json.dumps(result, indent=2))
            print(f"round {n + 1} {system:10s} {run['precision']:10s} {run['optimizer_steps']:4d} steps  "
                  f"{run['loop_seconds']:8.1f} s loop  {run['tokens_per_s']:8.1f} tok/s  "
                  f"{run['peak_rss_mb']:7.0f} MB  {run['metric']}", flush=True)
            if run["precision"] != run["declared_precision"]:
                print(f"  {system}: its forwards ran {run['precision']}, it declared {run['declared_precision']}")
    result.update(status="complete", finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{result['table']}\n\nwritten {out}")


if __name__ == "__main__":
    main()
