"""Checking the options callers pass: exactly the documented values.

Python's ``0 == False`` and ``1.0 == True`` make ``value in (False, True, ...)``
accept numbers, and ``value is False`` reject ``np.False_``; these helpers
compare by kind first, so a flag is a bool (Python's or numpy's) and nothing
else, and a mode is one of its documented strings or flags.
"""

import numbers

import numpy as np


def flag(value, name: str) -> bool:
    """``value`` as a bool; True and False (or numpy's) only, never 0, 1 or "yes"."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def choice(value, name: str, allowed: tuple):
    """``value`` if it is one of ``allowed`` (strings and flags), compared by kind and value."""
    if isinstance(value, (bool, np.bool_)):
        if bool(value) in [option for option in allowed if isinstance(option, bool)]:
            return bool(value)
    elif isinstance(value, str) and value in [option for option in allowed if isinstance(option, str)]:
        return value
    raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def integer(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within [minimum, maximum]; bools and floats (even 4.0) are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f">= {minimum}"
        high = "" if maximum is None else f"<= {maximum}"
        raise ValueError(f"{name} must be {' and '.join(b for b in (low, high) if b)}, got {value}")
    return value


def probability(value, name: str) -> float:
    """``value`` as a float in [0, 1]; bools and strings are refused."""
    # NaN fails the range test too.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)
