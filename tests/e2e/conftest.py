"""Data fixtures the end-to-end tests share with the unit tests of the same room (defined there, beside the tests
that describe the data)."""

from tests.unit.tasks.test_preference import toy_pairs  # noqa: F401
from tests.unit.training.test_token_weighting import uneven_pairs  # noqa: F401
