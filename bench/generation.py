"""Generation in `lft.evaluate`: the code before this change vs now, on the same test rows, alternating.

The work: `lft.evaluate model=smollm2_135m data=dialogsum data.test_size=N` (greedy, at most 64 new tokens):
Lightning's trainer.test with the loss forward on every batch and generation on every row. Variants:

  baseline  lft at --baseline-rev (before length-sorted batches, prompt-state reuse and bf16 generation)
  fp32      this checkout with precision=fp32 data.generate.bf16=false: greedy texts must equal the baseline's
  new       this checkout as it ships (data.generate.bf16=auto)

Each variant runs lft.evaluate.evaluate() in its own process (the baseline from `git archive` of that revision),
so each imports its own lft; the rounds alternate so that both meet the machine's ups and downs. The model's
forward and generate calls are timed on the instance: prefill (generate's first forward), decode (its later
forwards), loss forward (the calls outside generate). Tokens: new ids per row up to and including the first
stop id. Per variant the fastest round counts.

    python bench/generation.py --data ../shared/data/dialogsum --rows 50 [--variants baseline,fp32,new]
        [--repeats 1] [--threads N] [--override data.eval_batch_size=48] [--out bench/results/generation_cpu.json]
"""

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIALOGSUM = REPO.parent / "shared" / "data" / "dialogsum"
BASELINE_REV = "c1ecd86"  # the last commit before this change
OVERRIDES = {"baseline": [], "fp32": ["data.generate.bf16=false", "precision=fp32"], "new": []}


class Meter:
    """Times one model instance's generate and forward calls and counts the tokens it generates."""

    def __init__(self, model, stops: list[int]):
        import torch

        self.stops = torch.tensor(stops)
        self.t = {"prefill": 0.0, "decode": 0.0, "generate": 0.0, "loss": 0.0}
        self.tokens, self._calls = 0, None
        self.forward, self.generate = model.forward, model.generate
        # wraps: generate reads forward's signature (position_ids, logits_to_keep) through __wrapped__
        model.forward = functools.wraps(self.forward)(lambda *a, **kw: self._forward(*a, **kw))
        model.generate = functools.wraps(self.generate)(lambda *a, **kw: self._generate(*a, **kw))

    def _forward(self, *a, **kw):
        start = time.perf_counter()
        out = self.forward(*a, **kw)
        if self._calls is None:  # outside generate: the loss forward
            self.t["loss"] += time.perf_counter() - start
        else:  # inside generate: the first call is the prefill
            self.t["decode" if self._calls else "prefill"] += time.perf_counter() - start
            self._calls += 1
        return out

    def _generate(self, *a, **kw):
        import torch

        self._calls, start = 0, time.perf_counter()
        out = self.generate(*a, **kw)
        self.t["generate"] += time.perf_counter() - start
        self._calls = None
        new = out[:, kw["input_ids"].shape[1]:]
        stopped = torch.isin(new, self.stops)
        self.tokens += int(torch.where(stopped.any(1), stopped.int().argmax(1) + 1, new.shape[1]).sum())
        return out


def worker(args) -> None:
    """One lft.evaluate run with the lft on sys.path; prints its measurements as JSON."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from hydra import compose, initialize_config_dir

    import lft.recipes.evaluate
    from lft.config.paths import CONFIG_DIR
    from lft.generation.generator import stop_ids
    from lft.models.loading import load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(tempfile.mkdtemp(prefix="bench_generation_"))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[
            f"model={args.model}", "data=dialogsum", f"data.path={args.data}", f"data.test_size={args.rows}",
            "trainer.enable_progress_bar=false", f"paths.output_dir={out_dir}", *OVERRIDES[args.worker], *args.override])
    meters = []
    load = lft.recipes.evaluate.load_trained_model

    def load_and_meter(*a, **kw):
        model = load(*a, **kw)
        meters.append(Meter(model, stop_ids(model, load_tokenizer(cfg.model))))
        return model

    lft.recipes.evaluate.load_trained_model = load_and_meter  # instruments the instance lft.evaluate scores
    row = lft.evaluate.evaluate(cfg)
    meter = meters[0]
    lines = (out_dir / "predictions.jsonl").read_text().splitlines()
    t = {k: round(v, 1) for k, v in meter.t.items()}
    print(json.dumps({
        "variant": args.worker, "seconds": row["seconds"], "generate_seconds": t["generate"],
        "prefill_seconds": t["prefill"], "decode_seconds": t["decode"],
        # everything outside generate (mostly the loss forward, which may bypass model.forward: lft.speed.lean_loss)
        "loss_seconds": round(row["seconds"] - meter.t["generate"], 1),
        "tokens": meter.tokens, "tokens_per_s": round(meter.tokens / row["seconds"], 2),
        "generate_tokens_per_s": round(meter.tokens / meter.t["generate"], 2), "rouge1": row["rouge1"],
        "perplexity": row["perplexity"], "threads": torch.get_num_threads(),
        "predictions": [json.loads(line)["prediction"] for line in lines],
        "references": [json.loads(line).get("references") or [json.loads(line)["reference"]] for line in lines],
    }))


def baseline_tree(rev: str) -> Path:
    """src/ and conf/ of lft at `rev`, extracted into a temporary folder."""
    tree = Path(tempfile.mkdtemp(prefix="lft_baseline_"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src", "conf"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_variant(variant: str, args, baseline: Path | None) -> dict:
    src = (baseline if variant == "baseline" else REPO) / "src"
    cmd = [sys.executable, __file__, "--worker", variant, "--data", str(args.data), "--model", args.model,
           "--rows", str(args.rows), *(["--threads", str(args.threads)] if args.threads else []),
           *(f"--override={o}" for o in (args.override if variant != "baseline" else []))]
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=src.parent)
    if done.returncode:
        sys.exit(f"{variant} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {variant}: {result['seconds']} s", flush=True)
    return result


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def report(runs: list[dict], rows: int) -> None:
    best = {}
    for r in runs:
        if r["variant"] not in best or r["seconds"] < best[r["variant"]]["seconds"]:
            best[r["variant"]] = r
    base = best.get("baseline")
    print(f"{cpu_name()}, torch threads {runs[0]['threads']}, {rows} rows; all runs (s): "
          f"{[(r['variant'], r['seconds']) for r in runs]}")
    print("| variant | seconds | tokens | tokens/s | generate s (prefill, decode) | generate tokens/s "
          "| loss forward s | ROUGE-1 | perplexity | texts as baseline |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in best.values():
        same = sum(a == b for a, b in zip(base["predictions"], r["predictions"], strict=True)) if base else "-"
        print(f"| {r['variant']} | {r['seconds']} | {r['tokens']} | {r['tokens_per_s']} | {r['generate_seconds']} "
              f"({r['prefill_seconds']}, {r['decode_seconds']}) | {r['generate_tokens_per_s']} | {r['loss_seconds']} "
              f"| {100 * r['rouge1']:.2f} | {r['perplexity']:.3f} | {same}/{len(r['predictions'])} |")
    for r in best.values():
        if base and r is not base:
            print(f"{r['variant']} / baseline: tokens/s x{r['tokens_per_s'] / base['tokens_per_s']:.2f}, "
                  f"generation alone x{r['generate_tokens_per_s'] / base['generate_tokens_per_s']:.2f}")
    compare_quality(best)


def row_rouge1(predictions: list[str], references: list[list[str]]) -> list[float]:
    """Per-row ROUGE-1 F (the scorer lft's metric uses: Porter stemmer, best reference)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    return [max(scorer.score(r, p)["rouge1"].fmeasure for r in refs) for p, refs in zip(predictions, references, strict=True)]


def paired_difference(a: list[float], b: list[float], draws: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over the same rows and its 95% paired bootstrap interval (rows resampled together)."""
    import random

    diffs = [y - x for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(draws))
    return sum(diffs) / len(diffs), means[int(0.025 * draws)], means[int(0.975 * draws)]


def compare_quality(best: dict) -> None:
    """ROUGE-1 of each variant against the fp32 texts (the baseline's texts where there is no baseline run):
    greedy texts part at near-ties, so a difference counts only if its paired interval excludes 0."""
    ref_name = "baseline" if "baseline" in best else "fp32" if "fp32" in best else None
    if ref_name is None or "references" not in best[ref_name]:
        return
    ref = best[ref_name]
    ref_scores = row_rouge1(ref["predictions"], ref["references"])
    for name, r in best.items():
        if name == ref_name:
            continue
        mean, low, high = paired_difference(ref_scores, row_rouge1(r["predictions"], r["references"]))
        verdict = "within noise" if low <= 0 <= high else "a real difference"
        print(f"ROUGE-1 {name} - {ref_name}: {100 * mean:+.2f} points, 95% paired bootstrap interval "
              f"[{100 * low:+.2f}, {100 * high:+.2f}] over {len(ref_scores)} rows: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DIALOGSUM)
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--variants", default="baseline,fp32,new")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all variants, alternating")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--override", action="append", default=[],
                        help="a config override for this checkout's variants (repeatable), e.g. data.eval_batch_size=48")
    parser.add_argument("--worker", choices=list(OVERRIDES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.out and args.out.exists():  # before any compute: earlier results are never replaced
        sys.exit(f"--out {args.out} exists; results are never overwritten: name a new file.")
    variants = args.variants.split(",")
    baseline = baseline_tree(args.baseline_rev) if "baseline" in variants else None
    runs = [run_variant(v, args, baseline) for _ in range(args.repeats) for v in variants]
    report(runs, args.rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        import torch
        from run_record import machine  # CPU flags: whether bf16 generation (auto) was on

        meta = {"cpu": cpu_name(), "machine": machine(torch.device("cpu")), "rows": args.rows, "baseline_rev": args.baseline_rev, "threads": args.threads,
                "overrides": args.override}
        with args.out.open("x") as f:
            f.write(json.dumps({**meta, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
