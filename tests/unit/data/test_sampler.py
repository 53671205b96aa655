"""The training batch order: seeded per epoch, exact mid-epoch skip, DDP slices, length grouping."""

import random

from lft.data.sampler import ResumableBatchSampler


def epoch(sampler, e):
    sampler.set_epoch(e)
    return list(sampler)


def test_order_is_a_function_of_seed_and_epoch_only():
    a, b = ResumableBatchSampler(50, 8, seed=3), ResumableBatchSampler(50, 8, seed=3)
    random.seed(0)  # global RNG state must not matter
    assert epoch(a, 1) == epoch(b, 1)
    assert epoch(a, 0) != epoch(a, 1)
    assert epoch(a, 0) != epoch(ResumableBatchSampler(50, 8, seed=4), 0)
    rows = [i for batch in epoch(a, 2) for i in batch]
    assert sorted(rows) == list(range(50)) and len(epoch(a, 2)) == len(a) == 7


def test_resume_skips_the_trained_batches_once():
    full = epoch(ResumableBatchSampler(50, 8, seed=1), 1)
    sampler = ResumableBatchSampler(50, 8, seed=1)
    sampler.resume_at(epoch=1, batches_done=3)
    assert epoch(sampler, 1) == full[3:]
    assert epoch(sampler, 1) == full, "the skip applies to the resumed pass only"


def test_processes_slice_the_batches_one_process_would_see_with_the_doubled_batch():
    one = epoch(ResumableBatchSampler(64, 16, seed=5), 0)
    ranks = [epoch(ResumableBatchSampler(64, 8, seed=5, num_replicas=2, rank=r), 0) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == one


def test_uneven_last_batch_gives_every_process_a_share():
    ranks = [epoch(ResumableBatchSampler(21, 4, seed=0, num_replicas=2, rank=r), 0) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    assert all(len(a) == len(b) > 0 for a, b in zip(*ranks, strict=True))
    assert set(i for r in ranks for b in r for i in b) == set(range(21))


def test_length_grouping_cuts_padding_and_keeps_every_row():
    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(2000)]

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    plain = epoch(ResumableBatchSampler(2000, 16, seed=0), 0)
    grouped = epoch(ResumableBatchSampler(2000, 16, seed=0, lengths=lengths), 0)
    assert sorted(i for b in grouped for i in b) == list(range(2000))
    assert padded(grouped) < 0.6 * padded(plain)
    again = epoch(ResumableBatchSampler(2000, 16, seed=0, lengths=lengths), 0)
    assert grouped == again, "reproducible under the seed"
    longest_first = sorted(grouped, key=lambda b: -max(lengths[i] for i in b))
    assert grouped != longest_first, "batches stay shuffled"


def test_row_lengths_of_preference_pairs_take_the_longer_answer():
    from datasets import Dataset

    from lft.data.datamodule import row_lengths

    pairs = Dataset.from_dict({"chosen_input_ids": [[1, 2, 3], [1]], "rejected_input_ids": [[1], [1, 2]]})
    assert row_lengths(pairs) == [3, 2]
    assert row_lengths(Dataset.from_dict({"input_ids": [[1, 2], [1]]})) == [2, 1]
