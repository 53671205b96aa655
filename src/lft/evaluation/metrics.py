"""Metrics of generative tasks: perplexity from the loss, ROUGE and BLEU on generated text.

Each metric computes one scalar, so `self.log_dict(collection)` logs `val/rouge1`, `val/rouge2`, `val/rougeL`,
`val/rougeLsum`, `val/bleu` and `val/perplexity` directly. Scores are fractions in [0, 1] (x100 for "points"). Tasks update
members by name (`metrics["rouge1"].update(preds, refs)`), not the whole collection at once.
"""

import math
import re

import torch
from rouge_score import rouge_scorer
from torchmetrics import Metric, MetricCollection
from torchmetrics.text import SacreBLEUScore

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
GENERATION_METRICS = ("rouge", "bleu", "accuracy")  # what generated text can be scored by (data.generate.metrics)


class Perplexity(Metric):
    """exp(mean token negative log-likelihood) over every target token seen."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("nll", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, mean_loss: torch.Tensor, tokens: int | torch.Tensor) -> None:
        tokens = torch.as_tensor(tokens, device=self.tokens.device)
        self.nll += mean_loss.detach().double() * tokens
        self.tokens += tokens

    def compute(self) -> torch.Tensor:
        if self.tokens == 0:
            return torch.tensor(math.nan)
        return torch.exp(self.nll / self.tokens).float()


class Rouge(Metric):
    """Mean ROUGE F-measure of one variant (rouge-score, Porter stemmer); best reference per prediction.

    rougeLsum is the summary-level LCS over sentences, which rouge-score reads as lines: texts are split after
    . ! ? first, as the Hugging Face summarization examples do (on a one-sentence text it equals rougeL)."""

    full_state_update = False

    def __init__(self, key: str):
        super().__init__()
        self.key = key
        self.scorer = rouge_scorer.RougeScorer([key], use_stemmer=True)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: list[str], references: list[list[str]]) -> None:
        lines = sentence_lines if self.key == "rougeLsum" else str
        for pred, refs in zip(preds, references, strict=True):
            self.total += max(self.scorer.score(lines(ref), lines(pred))[self.key].fmeasure for ref in refs)
            self.count += 1

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float() if self.count else torch.tensor(math.nan)


def sentence_lines(text: str) -> str:
    return "\n".join(re.split(r"(?<=[.!?])\s+", text.strip()))


class LabelAccuracy(Metric):
    """Share of generations whose first word is a reference's first word (any case, punctuation ignored):
    classification scored on generated labels ("Positive." counts as "positive")."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: list[str], references: list[list[str]]) -> None:
        for pred, refs in zip(preds, references, strict=True):
            self.correct += int(first_word(pred) in {first_word(r) for r in refs})
            self.count += 1

    def compute(self) -> torch.Tensor:
        return (self.correct / self.count).float() if self.count else torch.tensor(math.nan)


class MeanInterval(Metric):
    """Half-width of the normal 95% confidence interval of a mean: 1.96 x sample sd / sqrt(n) (nan below 2
    values), beside a MeanMetric of the same values (online RL's reward_ci95). Float64 sums: rewards of a reward
    model can be large next to their spread."""

    full_state_update = False
    Z95 = 1.96

    def __init__(self):
        super().__init__()
        for name in ("total", "squares", "count"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().double().flatten()
        self.total += values.sum()
        self.squares += (values**2).sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        if self.count < 2:
            return torch.tensor(math.nan)
        variance = (self.squares - self.total**2 / self.count).clamp(min=0) / (self.count - 1)
        return (self.Z95 * torch.sqrt(variance / self.count)).float()


def first_word(text: str) -> str:
    words = re.findall(r"\w+", text.lower())
    return words[0] if words else ""


def perplexity_metrics() -> dict[str, Metric]:
    return {"perplexity": Perplexity()}


def generation_metrics(kinds=GENERATION_METRICS) -> dict[str, Metric]:
    """rouge: ROUGE-1/2/L/Lsum; bleu: corpus BLEU (sacrebleu's 13a tokenizer; several references per prediction
    allowed); accuracy: LabelAccuracy."""
    out = {}
    if "rouge" in kinds:
        out.update({key: Rouge(key) for key in ROUGE_KEYS})
    if "bleu" in kinds:
        out["bleu"] = SacreBLEUScore()
    if "accuracy" in kinds:
        out["accuracy"] = LabelAccuracy()
    return out


def collection(metrics: dict[str, Metric]) -> MetricCollection:
    # No compute groups: two ROUGE variants with equal states after one batch must not be merged.
    return MetricCollection(metrics, compute_groups=False)


def update_generation(metrics: MetricCollection, preds: list[str], references: list[list[str]]) -> None:
    for key in (*ROUGE_KEYS, "bleu", "accuracy"):
        if key in metrics:
            metrics[key].update(preds, references)
