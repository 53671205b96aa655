"""lft vs the plain Hugging Face Trainer + peft vs a bare PyTorch loop, on identical work; ratios.

The work of a case is fixed once: lft encodes the rows (same tokenizer, template and max length for all), and
every system trains the same model with the same LoRA settings (or full weights), optimizer (AdamW, the
strategy's lr, weight decay 0.01), linear schedule with 6% warmup, clipping 1.0, batch and epochs, with no
evaluation or checkpoints in the timed part. Each run is its own process (so peak RSS is its own); the systems
alternate and repeat, and each system's fastest run counts.

  lft          `python -m lft.train` as shipped: precision=auto, length-grouped batches (and --packing)
  hf_trainer   transformers.Trainer with its defaults: random order, dynamic padding, fp32 on CPU
  hf_tuned     the Trainer with the same tricks it offers: group_by_length=True, bf16 where lft uses it
  bare_loop    a plain PyTorch loop over lft's batches in lft's precision: what lft adds or saves over a loop
  lean_loop    the bare loop over lft's model (its lean blocks and fast dropout): what Lightning costs

The Trainer and the bare loop train the model as transformers builds it (`model.lean_blocks=false`); lft and the
lean loop train lft's (`src/lft/lean_blocks.py`, `src/lft/fast_dropout.py`).

Printed per system: real (non-pad) training tokens/s over the training loop's seconds (lft: on_train_start ->
on_train_end; the Trainer: on_train_begin -> on_train_end; the bare loop: its loop), the whole call's seconds
(lft's fit, Trainer.train: with each framework's setup), peak RSS (peak GPU memory on a GPU), the final metric
(test accuracy for classification, held-out loss per token for LMs), and ratios to lft.

    python bench/throughput.py --case minilm_imdb_lora --train-size 400 --repeats 2
    python bench/throughput.py --case smollm2_alpaca_lora --train-size 160 --repeats 2
    python bench/throughput.py --case minilm_imdb_full --train-size 400

On a GPU, a Llama of about 1B parameters from a config, bf16 (precision=auto), with packing or compile, and
model-FLOPs utilization (6 x parameters x real tokens/s over the GPU's dense bf16 peak):

    python bench/throughput.py --case llama_1b_synthetic --train-size 1024 --eval-size 64 --systems lft,hf_trainer,bare_loop --repeats 1
    python bench/throughput.py --case llama_1b_synthetic --train-size 1024 --eval-size 64 --systems lft,bare_loop --packing --repeats 1
    python bench/throughput.py --case llama_1b_synthetic --train-size 1024 --eval-size 64 --systems lft --override compile=true --repeats 1
    python bench/throughput.py --case llama_tiny_synthetic --train-size 64 --eval-size 16   # the same code, CPU seconds
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
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
# words, both built on first use by bench/llama_from_config.py; "tiny" runs the same code on a CPU in seconds.
SYNTHETIC = Path(tempfile.gettempdir()) / "lft-bench"
for _size in ("1b", "tiny"):
    CASES[f"llama_{_size}_synthetic"] = [
        "model=llama", f"model.name_or_path={SYNTHETIC / f'llama_{_size}'}", "model.dtype=null",
        "model.gradient_checkpointing=false", "data=alpaca", f"data.path={SYNTHETIC / 'rows.json'}",
        "data.max_source_length=256", "data.max_target_length=256", "data.batch_size=16", "strategy=lora", QV]
# Dense bf16 peak FLOP/s by GPU name, for model-FLOPs utilization (MFU); --peak-tflops overrides.
PEAK_TFLOPS = {"H100": 989.5, "H200": 989.5, "A100": 312.0}
SYSTEMS = ("lft", "hf_trainer", "hf_tuned", "bare_loop", "lean_loop")
STOCK_MODEL = ("hf_trainer", "hf_tuned", "bare_loop")  # systems that load the model as transformers builds it


# --- one run, in its own process --------------------------------------------------------------------
def compose_case(args, out_dir: Path):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from lft import CONFIG_DIR

    overrides = [*CASES[args.case], f"data.train_size={args.train_size}", f"data.val_size={args.eval_size}",
                 f"data.test_size={args.eval_size}", "callbacks=none", f"trainer.max_epochs={args.epochs}",
                 "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=50",
                 "test=false", *args.override]
    if args.system in STOCK_MODEL:
        overrides.append("model.lean_blocks=false")
    if not args.case.startswith("minilm"):  # decoders, no generation: the timed part is training
        overrides += ["data.generate.val_samples=0", "data.generate.test_samples=0", "data.monitor.metric=val/loss",
                      "data.monitor.mode=min", f"data.packing={str(args.packing).lower()}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir / "run")
        cfg.logger = None
    return cfg


def worker(args) -> dict:
    import torch

    from lft.models import load_tokenizer
    from lft.tasks import build_task

    out_dir = Path(tempfile.mkdtemp(prefix=f"bench-{args.system}-"))
    cfg = compose_case(args, out_dir)
    if args.system == "lft":  # as a user runs it: train() encodes the data itself
        from lft.run_folder import load_trained_model
        from lft.train import train

        metrics = train(cfg)
        seconds, total, peak = metrics["train_loop_seconds"], metrics["fit_seconds"], peak_memory()
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    datamodule = task.encode(tokenizer, cfg.seed, cache_dir=cfg.paths.cache_dir)  # the same rows for every system
    train_rows = datamodule.splits["train"]
    real_tokens = sum(len(ids) for ids in train_rows["input_ids"]) * args.epochs
    if args.system == "lft":
        model = load_trained_model(task, cfg.model, cfg.paths.output_dir)
    else:
        model, seconds, total = (train_hf if args.system.startswith("hf") else train_bare)(args, cfg, task, datamodule,
                                                                                         out_dir)
        peak = peak_memory()
    flops = 6 * sum(p.numel() for p in model.parameters()) * real_tokens  # 6N per token; a tied LM head counts once
    return {"system": args.system, "seconds": round(seconds, 2), "total_seconds": round(total, 2),
            "real_tokens": real_tokens, "model_tflops_per_s": round(flops / seconds / 1e12, 3),
            "tokens_per_s": round(real_tokens / seconds, 1), "peak_memory_mb": round(peak),
            "precision": str(cfg.trainer.precision), "metric": final_metric(task, model, datamodule),
            "torch_threads": torch.get_num_threads()}


def peft_model(cfg, task, model):
    """The plain peft recipe with lft's strategy settings (rank, alpha, dropout, target modules)."""
    if cfg.strategy.name == "full":
        return model
    from peft import LoraConfig, get_peft_model

    from lft.strategies.lora import target_modules

    s = cfg.strategy
    return get_peft_model(model, LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout,
                                            target_modules=target_modules(model, s), task_type=task.peft_task_type))


def train_hf(args, cfg, task, datamodule, out_dir: Path):
    import torch
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(cfg.seed)
    model = peft_model(cfg, task, task.build_model(cfg.model))
    tuned = args.system == "hf_tuned"
    bf16 = tuned and str(cfg.trainer.precision).startswith("bf16")
    targs = TrainingArguments(
        output_dir=str(out_dir / "hf"), per_device_train_batch_size=cfg.data.batch_size, num_train_epochs=args.epochs,
        learning_rate=cfg.strategy.lr, weight_decay=0.01, lr_scheduler_type="linear", warmup_steps=0.06,  # < 1: a ratio
        max_grad_norm=1.0, bf16=bf16, eval_strategy="no",
        train_sampling_strategy="group_by_length" if tuned else "random", save_strategy="no",
        report_to="none", logging_steps=50, seed=cfg.seed, dataloader_num_workers=0, disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    columns = [c for c in ("input_ids", "attention_mask", "labels", "token_type_ids")
               if c in datamodule.splits["train"].column_names]
    loop = LoopTimer()
    trainer = Trainer(model=model, args=targs, train_dataset=datamodule.splits["train"].select_columns(columns),
                      data_collator=datamodule.collate_fn, callbacks=[loop])
    start = time.perf_counter()
    trainer.train()
    return model, loop.seconds, time.perf_counter() - start


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


def train_bare(args, cfg, task, datamodule, out_dir: Path):
    """model(**batch).loss, backward, clip, AdamW, schedule: over lft's own batches, in lft's precision."""
    import torch

    from lft.schedulers import lr_lambda

    torch.manual_seed(cfg.seed)
    model = peft_model(cfg, task, task.build_model(cfg.model)).train()
    loader = datamodule.train_dataloader()  # no trainer attached: one process, the sampler counts epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.strategy.lr, weight_decay=0.01)
    steps = len(loader) * args.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.scheduler, steps))
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        datamodule.train_sampler.set_epoch(epoch)
        for batch in loader:
            batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels", "token_type_ids",
                                                             "position_ids")}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return model, seconds, seconds


def final_metric(task, model, datamodule) -> dict:
    """The same scoring for every system, in fp32: test accuracy, or loss per labelled token on held-out rows."""
    import torch

    model.eval()
    split = "test" if task.name == "classification" else "validation"
    rows = datamodule.splits[split]
    columns = [c for c in ("input_ids", "attention_mask", "labels", "token_type_ids") if c in rows.column_names]
    loader = torch.utils.data.DataLoader(rows.select_columns(columns), batch_size=16, collate_fn=datamodule.collate_fn)
    correct = total = 0
    loss_sum = 0.0
    with torch.no_grad():
        for batch in loader:
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


def peak_memory() -> float:
    """Peak GPU memory allocated on a GPU, else the process's peak RSS (MiB)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- the driver ---------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="minilm_imdb_lora")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--train-size", type=int, default=400)
    parser.add_argument("--eval-size", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each system, alternating; the fastest counts")
    parser.add_argument("--packing", action="store_true", help="lft and bare_loop pack rows (decoder cases)")
    parser.add_argument("--override", action="append", default=[], help="an extra lft config override (repeatable)")
    parser.add_argument("--out", type=Path, help="JSON results file (default bench/results/<case>.json)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for MFU (default: by GPU name)")
    parser.add_argument("--system", help=argparse.SUPPRESS)  # worker mode: one run, JSON on stdout
    args = parser.parse_args()
    if args.system:
        print("BENCH " + json.dumps(worker(args)), flush=True)
        return

    import torch

    if args.case.startswith("llama_"):
        from llama_from_config import build_model, write_rows

        size = args.case.split("_")[1]  # llama_<size>_synthetic
        build_model(size, SYNTHETIC / f"llama_{size}")
        write_rows(SYNTHETIC / "rows.json")
    systems = args.systems.split(",")
    runs = {s: [] for s in systems}
    for repeat in range(args.repeats):
        for system in systems if repeat % 2 == 0 else systems[::-1]:  # alternate the order between repeats
            cmd = [sys.executable, __file__, "--system", system, *sys.argv[1:]]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
            if proc.returncode or not lines:
                sys.exit(f"{system} failed:\n{proc.stderr[-3000:]}")
            run = json.loads(lines[-1].removeprefix("BENCH "))
            runs[system].append(run)
            print(f"{system:11s} {run['seconds']:8.1f} s loop  {run['total_seconds']:8.1f} s call  "
                  f"{run['tokens_per_s']:8.1f} tok/s  "
                  f"{run['peak_memory_mb']:6d} MB  {run['metric']}", flush=True)
    best = {s: min(r, key=lambda x: x["seconds"]) for s, r in runs.items()}
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)
    for b in best.values():
        b["mfu"] = round(b["model_tflops_per_s"] / peak, 3) if peak else None
    ref = best.get("lft")
    result = {
        "case": args.case, "train_rows": args.train_size, "epochs": args.epochs, "packing": args.packing,
        "overrides": CASES[args.case] + args.override,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name(),
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "peak_tflops": peak, "best": best, "all_seconds": {s: [r["seconds"] for r in rs] for s, rs in runs.items()},
        "lft_speedup_over": {s: round(ref["tokens_per_s"] / b["tokens_per_s"], 2) for s, b in best.items()} if ref else {},
        "lft_memory_ratio_to": {s: round(ref["peak_memory_mb"] / b["peak_memory_mb"], 2) for s, b in best.items()} if ref else {},
    }
    out = args.out or Path(__file__).parent / "results" / f"{args.case}{'_packed' if args.packing else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("\n| system | tokens/s | loop seconds | call seconds | peak MB | model TFLOP/s | MFU | metric | lft speed-up |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s, b in best.items():
        print(f"| {s} | {b['tokens_per_s']} | {b['seconds']} | {b['total_seconds']} | {b['peak_memory_mb']} | "
              f"{b['model_tflops_per_s']} | {b['mfu']} | {b['metric']} | {result['lft_speedup_over'].get(s, '')} |")
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
