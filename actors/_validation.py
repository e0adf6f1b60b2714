"""Checks for the settings and timeouts users pass in: type, finiteness and range, up front.

A setting that slips through unchecked fails far from where it was given: a ``nan`` capacity
makes a mailbox that is never full, a ``"1"`` drain timeout breaks shutdown on a worker loop
where nobody sees the error, a ``nan`` ask timeout waits forever. So every public setting and
timeout is checked where it enters, before anything is enqueued or started, and the error
names the setting: ``TypeError`` for a value of the wrong type (``bool`` is not a number
here, though Python says it is an ``int``), ``ValueError`` for one out of range (negative,
``nan``, infinite).

On the send and ask paths the check runs only for a timeout that is given (not None, not the
default), so the common call pays one identity comparison.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ("check_count", "check_flag", "check_name", "check_seconds", "check_timeout")

_INF: Final = math.inf


def check_count(what: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as a whole number of at least ``minimum``; ``what`` names it in the error.

    Example:
        ```python
        capacity = check_count("capacity", capacity)
        ```
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    return value


def check_seconds(what: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite number of seconds, >= 0 (> 0 with ``positive``).

    Example:
        ```python
        drain = check_seconds("drain_timeout", drain_timeout)
        ```
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds (int or float), got {value!r}")
    if not (0 < value < _INF if positive else 0 <= value < _INF):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be a finite number of seconds {bound}, got {value}")
    return float(value)


def check_timeout(what: str, value: object) -> float | None:
    """A timeout: None (wait as long as it takes) or finite seconds >= 0.

    Example:
        ```python
        timeout = check_timeout("timeout", timeout)
        ```
    """
    return None if value is None else check_seconds(what, value)


def check_name(what: str, value: object) -> str:
    """An actor or pool name: a non-empty ``str`` without ``/``.

    Example:
        ```python
        name = check_name("name", name)
        ```
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__qualname__}: {value!r}")
    if not value or "/" in value:
        raise ValueError(f"{what} must be non-empty and contain no '/', got {value!r}")
    return value


def check_flag(what: str, value: object, *, optional: bool = False) -> bool | None:
    """A ``bool`` setting (None also allowed with ``optional``).

    Example:
        ```python
        check_flag("handler_timing", handler_timing)
        ```
    """
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        allowed = "True, False or None" if optional else "True or False"
        raise TypeError(f"{what} must be {allowed}, got {value!r}")
    return value
