"""ReleaseFreedMemory: a bad policy is refused, within_step hooks every block and gives back freed holes
(each option in a whole run: tests/e2e/test_release_memory.py)."""

import pytest

from lft.callbacks.release_memory import ReleaseFreedMemory


def test_an_unknown_trim_policy_or_a_negative_budget_is_refused():
    with pytest.raises(ValueError, match="trim='always'"):
        ReleaseFreedMemory(trim="always")
    with pytest.raises(ValueError, match="max_free_mb=-1"):
        ReleaseFreedMemory(trim="within_step", max_free_mb=-1)


def test_within_step_hooks_every_transformer_block_while_fitting(tiny_bert):
    """One forward hook per transformer block (the modules FSDP wraps: BERT's layers and embeddings) while fitting."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from lft.models.blocks import transformer_blocks

    class Holder(torch.nn.Module):  # what the callback reads of a LightningModule
        device = torch.device("cpu")

        def __init__(self, model):
            super().__init__()
            self.model = model

    holder = Holder(AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2))
    callback = ReleaseFreedMemory(trim="within_step")
    if callback.libc is None:
        pytest.skip("not glibc")
    callback.on_fit_start(None, holder)
    layers = holder.model.bert.encoder.layer
    assert len(callback._hooks) == len(transformer_blocks(holder)) and all(block._forward_hooks for block in layers)
    loss = holder.model(input_ids=torch.randint(5, 50, (2, 8))).logits.sum()
    callback.on_before_backward(None, holder, loss)
    loss.backward()
    callback.on_fit_end(None, holder)
    assert not any(block._forward_hooks for block in layers)


def test_within_step_gives_back_the_holes_freed_tensors_leave():
    """Freed tensors between live ones stay resident in glibc's heap until a trim; the budget check trims."""
    import torch

    from lft.callbacks.release_memory import _unused_resident_bytes

    callback = ReleaseFreedMemory(trim="within_step", max_free_mb=16)
    if callback.libc is None or not hasattr(callback.libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33")
    callback.libc.malloc_trim(0)
    callback._baseline = _unused_resident_bytes(callback.libc)
    tensors = [torch.ones(16 * 1024) for _ in range(3000)]  # 64 KB each: under glibc's mmap threshold, on the heap
    del tensors[::2]  # 94 MB of holes between live tensors
    before = _unused_resident_bytes(callback.libc)
    callback._trim_if_much_is_free()
    assert before - callback._baseline > 64 * 2**20
    assert _unused_resident_bytes(callback.libc) - callback._baseline < 16 * 2**20
    callback._trim_if_much_is_free()  # under the budget now: nothing to do
