"""How an ensemble combines its members: probability averaging and minimum Bayes risk, on hand-made outputs."""

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from lft.evaluation.ensemble import average_probabilities, mbr_select


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(MulticlassAccuracy(num_classes=probs.shape[-1], average="micro")(probs.argmax(-1), labels))


def test_average_of_a_confident_and_an_unconfident_member():
    # Rows 0-1 (A): member a is right and confident, b wrong but unsure. Rows 2-3 (B): b right and confident,
    # a wrong but unsure. Each member alone gets 2 of 4; the average follows the confident member: 4 of 4.
    labels = torch.tensor([0, 0, 1, 1])
    a = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.3, 0.0], [0.3, 0.0]])
    b = torch.tensor([[0.0, 0.3], [0.0, 0.3], [0.0, 4.0], [0.0, 4.0]])
    assert accuracy(a.softmax(-1), labels) == accuracy(b.softmax(-1), labels) == 0.5
    probs = average_probabilities([a, b])
    assert probs.shape == (4, 2) and torch.allclose(probs.sum(-1), torch.ones(4))
    expected = (a.softmax(-1) + b.softmax(-1)) / 2
    assert torch.allclose(probs, expected)
    assert accuracy(probs, labels) == 1.0, "averaged probabilities beat both members"


def test_average_is_softmax_not_logit_mean_and_keeps_one_member():
    # One very confident vote for class 1 against two moderate votes for class 0: the mean of the logits
    # (2.0 vs 6.7) picks class 1, the mean of the probabilities (0.64 vs 0.36) picks class 0.
    a, b = torch.tensor([[0.0, 20.0]]), torch.tensor([[3.0, 0.0]])
    probs = average_probabilities([a, b, b])
    assert torch.allclose(probs, (a.softmax(-1) + 2 * b.softmax(-1)) / 3)
    assert probs.argmax(-1).item() == 0 and ((a + 2 * b) / 3).argmax(-1).item() == 1
    assert torch.allclose(average_probabilities([a]), a.softmax(-1))
    assert average_probabilities([a.half(), b.half()]).dtype == torch.float32
    with pytest.raises(ValueError):
        average_probabilities([])


def test_mbr_picks_the_generation_the_others_agree_with():
    texts = ["tom will bring the cake", "the weather is nice today", "tom brings the cake tomorrow"]
    assert mbr_select(texts) in (0, 2)
    assert mbr_select(["a b c", "x y z", "a b c d"]) == 0
    assert mbr_select(["only one"]) == 0
    assert mbr_select(["same", "other"]) == 0, "two members tie: the first is kept"
