"""`python -m lft.generate` refuses arguments it cannot read before loading anything."""

import pytest

from lft.config.errors import ConfigError
from lft.generate import parse_args


def test_generate_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="exactly one of prompt"):
        parse_args(["run=x"])
    with pytest.raises(ConfigError, match="not key=value"):
        parse_args(["prompt"])
