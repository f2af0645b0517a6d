"""Argument checks shared by the library, so every bad number is reported in the same words.

Each check returns the value converted (``int`` / ``float``) or raises ``error`` (a ``ValueError``
subclass of the calling module, by default ``ValueError``) naming the argument, what was expected
and what was given.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["integer", "positive_number", "power_of_two", "seed"]

SEED_LIMIT = 2**63
"""Seeds live in [0, 2**63): torch and NumPy take them as signed 64-bit integers."""


def integer(value: Any, name: str, minimum: int = 1, error: type[ValueError] = ValueError) -> int:
    """``value`` as an int if it is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{name} must be {expected}, got {value!r}")
    return int(value)


def positive_number(value: Any, name: str, *, allow_zero: bool = False,
                    error: type[ValueError] = ValueError) -> float:
    """``value`` as a float if it is a finite real number ``> 0`` (``>= 0`` with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise error(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def seed(value: Any, name: str = "seed", error: type[ValueError] = ValueError) -> int:
    """``value`` as an int if it is an integer seed in ``[0, 2**63)`` (what torch and NumPy accept)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < SEED_LIMIT:
        raise error(f"{name} must be an integer in [0, 2**63), got {value!r}")
    return int(value)


def power_of_two(value: Any, name: str, minimum: int = 1, error: type[ValueError] = ValueError,
                 why: str = "") -> int:
    """``value`` as an int if it is a power of two ``>= minimum``; ``why`` says what needs it."""
    value = integer(value, name, minimum=minimum, error=error)
    if value & (value - 1):
        reason = f" ({why})" if why else ""
        raise error(f"{name} must be a power of two >= {minimum}{reason}, got {value}")
    return value
