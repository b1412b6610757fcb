"""The corpus fixture of test_bad_inputs, shared with the other reliability tests."""

from tests.reliability.test_bad_inputs import corpus  # noqa: F401
