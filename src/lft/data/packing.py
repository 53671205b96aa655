"""Sequence packing for decoder LMs: a training batch's rows share fewer, fuller rows instead of padding.

The batch keeps its rows (the sampler decides those, so resume, DDP and length grouping are untouched); the
collator places them first-fit-decreasing into rows as long as the batch's longest one. Documents stay apart
through their position ids, which restart at 0 for every document: with no attention mask and no KV cache
(the loss passes use_cache=False), transformers
builds a block-diagonal causal mask from them (`find_packed_sequence_indices`), so a token never attends to
another document, and the first token of each document gets no label (nothing before it in its document).
The loss (mean over labelled tokens) equals the unpacked batch's. `check_packing_isolates` proves a model's
attention honours this before training; models that do not are refused with a message.
"""

import torch

from lft.config.errors import ConfigError
from lft.data.labels import IGNORE


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Row indices grouped into bins of at most `capacity` tokens, longest rows placed first."""
    bins, free = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, space in enumerate(free):
            if lengths[i] <= space:
                bins[b].append(i)
                free[b] -= lengths[i]
                break
        else:
            bins.append([i])
            free.append(capacity - lengths[i])
    return bins


class PackingCollator:
    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 8):
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        lengths = [len(f["input_ids"]) for f in features]
        bins = first_fit_decreasing(lengths, max(lengths))
        width = -(-max(lengths) // self.multiple) * self.multiple
        input_ids = torch.full((len(bins), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(bins), width), IGNORE, dtype=torch.long)
        position_ids = torch.zeros((len(bins), width), dtype=torch.long)
        for row, members in enumerate(bins):
            start = 0
            for i in members:
                end = start + lengths[i]
                input_ids[row, start:end] = torch.tensor(features[i]["input_ids"])
                labels[row, start:end] = torch.tensor(features[i]["labels"])
                labels[row, start] = IGNORE  # predicted from the previous document's last token otherwise
                position_ids[row, start:end] = torch.arange(lengths[i])
                start = end
            position_ids[row, start:] = torch.arange(width - start)  # the padding is a document of its own
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


@torch.no_grad()
def check_packing_isolates(model, vocab_size: int) -> None:
    """Refuse data.packing for a model whose attention lets packed documents see each other."""
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randint(1, vocab_size, (n,), generator=generator) for n in (5, 7))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        packed = torch.cat([first, second])[None].to(device)
        positions = torch.cat([torch.arange(5), torch.arange(7)])[None].to(device)
        together = model(input_ids=packed, position_ids=positions, use_cache=False).logits[0, 5:]
        alone = model(input_ids=second[None].to(device), use_cache=False).logits[0]
    finally:
        model.train(was_training)
    if not torch.allclose(together.float(), alone.float(), atol=1e-4, rtol=1e-3):
        raise ConfigError(
            f"data.packing=true: {type(model).__name__} does not keep packed documents apart (its attention ignores "
            "per-document position ids), so they would attend to each other; set data.packing=false "
            "(data.group_by_length=true also cuts padding)."
        )
