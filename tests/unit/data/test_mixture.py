"""Multi-task mixtures: mixing probabilities, each epoch's draw, per-member evaluation batches; classification
as instructions scored by the generated label (whole runs and refusals: tests/e2e/test_mixture.py)."""

from collections import Counter

import pytest
import torch

from lft.config.errors import ConfigError
from lft.data.datamodule import member_batches
from lft.data.mixture import member_counts, mixing_probabilities, mixture_order
from lft.data.sampler import ResumableBatchSampler
from lft.evaluation.metrics import LabelAccuracy


def test_mixing_probabilities():
    sizes = {"a": 900, "b": 100}
    assert mixing_probabilities({"a": 3, "b": 1}, sizes, "weights") == {"a": 0.75, "b": 0.25}
    assert mixing_probabilities({"a": 1, "b": 1}, sizes, "proportional") == pytest.approx({"a": 0.9, "b": 0.1})
    hot = mixing_probabilities({"a": 1, "b": 1}, sizes, "temperature", temperature=2.0)
    assert hot == pytest.approx({"a": 30 / 40, "b": 10 / 40})  # sqrt(900) : sqrt(100)
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(ConfigError, match="weights must be positive numbers"):
            mixing_probabilities({"a": 1, "b": bad}, sizes, "weights")


def test_counts_sum_to_the_epoch_and_follow_the_probabilities():
    counts = member_counts({"a": 0.6, "b": 0.3, "c": 0.1}, 101)
    assert sum(counts.values()) == 101 and counts == {"a": 61, "b": 30, "c": 10}


def test_draws_match_the_proportions_over_many_epochs():
    """Member a has 50 rows, b 500: at 0.5/0.5 a is repeated (fresh passes), b subsampled; the draw is
    reproducible, differs by epoch, and each epoch has exactly epoch_rows rows."""
    sizes, offsets = {"a": 50, "b": 500}, {"a": 0, "b": 50}
    counts = member_counts({"a": 0.5, "b": 0.5}, 200)
    order = mixture_order(offsets, sizes, counts)
    seen = Counter()
    for epoch in range(50):
        rows = order(torch.Generator().manual_seed(7 + epoch), epoch)
        assert len(rows) == 200
        member_a = [r for r in rows if r < 50]
        assert len(member_a) == 100 and max(Counter(member_a).values()) == 2  # two full passes over a
        seen.update("a" if r < 50 else "b" for r in rows)
    assert seen["a"] / sum(seen.values()) == pytest.approx(0.5)
    first = order(torch.Generator().manual_seed(7), 0)
    assert first == order(torch.Generator().manual_seed(7), 0) != order(torch.Generator().manual_seed(8), 1)


def test_sampler_epoch_length_is_epoch_rows_and_proportions_hold_in_batches():
    sizes, offsets = {"a": 300, "b": 100}, {"a": 0, "b": 300}
    counts = member_counts({"a": 0.2, "b": 0.8}, 1000)
    sampler = ResumableBatchSampler(1000, 10, seed=3, order=mixture_order(offsets, sizes, counts),
                                    lengths=[i % 37 for i in range(400)])
    batches = list(sampler)
    assert len(batches) == len(sampler) == 100
    rows = [r for b in batches for r in b]
    assert len(rows) == 1000 and sum(r >= 300 for r in rows) == 800


def test_evaluation_batches_never_mix_members():
    members = [0] * 5 + [1] * 3 + [2] * 9
    batches = member_batches(members, 4)
    assert [len(b) for b in batches] == [4, 1, 3, 4, 4, 1]
    assert all(len({members[i] for i in b}) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(members)))


def test_label_accuracy_reads_the_first_word():
    metric = LabelAccuracy()
    metric.update(["Positive.", "negative review", "I think positive", ""], [["positive"], ["negative"],
                                                                            ["positive"], ["negative"]])
    assert metric.compute().item() == 0.5
