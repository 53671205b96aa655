"""The forgetting callback's threshold: a rise in retention loss past the allowed one fails the run."""

import pytest

from lft.config.errors import ConfigError


def test_a_threshold_fails_past_the_allowed_rise():
    from lft.callbacks.forgetting import ForgettingCheck, change

    check = ForgettingCheck.__new__(ForgettingCheck)
    check.report = {"text": {"perplexity": change(10.0, 10.9)}}
    check.max_increase = 0.1
    check.check_run()  # +9%: allowed
    check.report = {"text": {"perplexity": change(10.0, 11.5)}}
    with pytest.raises(ConfigError, match=r"perplexity on retention set 'text' rose from 10.000 to 11.500 \(\+15.0%\)"):
        check.check_run()
