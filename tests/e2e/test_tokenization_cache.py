"""A second run trains on the cached tokenized splits."""

import json
import logging
from pathlib import Path

import pytest

from lft.train import train
from tests.unit.data.test_tokenization_cache import HIT, without_datasets_map_cache  # noqa: F401 (autouse: applies here too)


def test_a_second_run_trains_on_cached_splits(make_cfg, tiny_bert, caplog):
    first = train(make_cfg(f"model.name_or_path={tiny_bert}", out="first"))
    with caplog.at_level(logging.INFO, logger="lft"):
        second = train(make_cfg(f"model.name_or_path={tiny_bert}", out="second"))
    assert HIT in caplog.text
    assert second["test/accuracy"] == pytest.approx(first["test/accuracy"])  # same rows, same seed, same run
    manifests = [json.loads((Path(m["weights_dir"]).parent / "manifest.json").read_text()) for m in (first, second)]
    assert manifests[0]["data_fingerprints"] == manifests[1]["data_fingerprints"]
