"""The shared argument checks: what they accept, and that errors name the argument and the expectation."""
import math

import numpy as np
import pytest

from glassbox.core import checks


class CustomError(ValueError):
    pass


def test_integer_accepts_ints_and_numpy_ints_at_or_above_the_minimum():
    assert checks.integer(3, "n") == 3
    assert type(checks.integer(np.int64(2), "n", 2)) is int
    assert checks.integer(0, "seed", 0) == 0


@pytest.mark.parametrize("value", [0, -1, True, 1.0, "2", None])
def test_integer_rejects_with_the_name_and_expectation(value):
    with pytest.raises(ValueError, match=r"n_patients must be a positive integer, got"):
        checks.integer(value, "n_patients")


def test_integer_minimum_and_error_class():
    with pytest.raises(CustomError, match=r"patch_size must be an integer >= 2, got 1"):
        checks.integer(1, "patch_size", 2, error=CustomError)


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan, False, "1"])
def test_positive_number_rejects(value):
    with pytest.raises(ValueError, match="lr must be a positive number"):
        checks.positive_number(value, "lr")


def test_positive_number_allow_zero():
    assert checks.positive_number(0, "weight", allow_zero=True) == 0.0
    assert checks.positive_number(np.float32(0.5), "weight") == 0.5
    with pytest.raises(CustomError, match="weight must be a non-negative number"):
        checks.positive_number(-0.1, "weight", allow_zero=True, error=CustomError)
