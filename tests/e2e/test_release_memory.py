"""Every memory-release option through a whole training run."""

import pytest

from lft.train import train


@pytest.mark.parametrize("options", [["trim=on_new_peak"], ["trim=every_batch", "mmap_threshold_mb=1"], ["trim=never"],
                                     ["trim=within_step", "max_free_mb=0"]])
def test_every_memory_release_option_trains(make_cfg, tiny_bert, options):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", *(f"callbacks.release_memory.{o}" for o in options))
    assert train(cfg)["optimizer_steps"] == 4
