"""model=smollm2_135m with model.name_or_path=<an exported folder>: the packaged GGUF name is not there, and the
message says how to load the folder instead."""

from pathlib import Path

import pytest

from lft.config.errors import ConfigError
from lft.models.loading import convert_gguf


def test_a_plain_folder_without_the_gguf_file_says_set_it_to_null(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"set model.gguf_file=null"):
        convert_gguf(str(tmp_path), "SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path / "cache")
    assert not (Path(tmp_path) / "cache").exists()  # refused before any conversion
