"""ReleaseFreedMemory's options run end to end; a bad policy is refused."""

import pytest

from lft.callbacks.release_memory import ReleaseFreedMemory
from lft.train import train


@pytest.mark.parametrize("options", [["trim=on_new_peak"], ["trim=every_batch", "mmap_threshold_mb=1"], ["trim=never"]])
def test_every_memory_release_option_trains(make_cfg, tiny_bert, options):
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", *(f"callbacks.release_memory.{o}" for o in options))
    assert train(cfg)["optimizer_steps"] > 0


def test_an_unknown_trim_policy_is_refused():
    with pytest.raises(ValueError, match="trim='always'"):
        ReleaseFreedMemory(trim="always")
