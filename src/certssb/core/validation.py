"""Parameter validation: every bad input ends with one :class:`ConfigError` that names the
parameter, the value it was given and what is allowed.

The checks are plain functions so that both the pipeline nodes and the up-front check that runs
before a Kedro pipeline starts (``certssb.hooks``) can call them; the up-front check is what makes a
bad parameter stop a run before any artifact is written.

Core names what it checks by its own argument names (``parameter 'num_models' = 0 ...``), as a Python
caller knows them; where a node calls core on the run's parameters, ``certssb.config.core_errors`` names
the parameter key instead (``parameter 'noise.num_models' = 0 ...``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


class ConfigError(ValueError):
    """A parameter or an input artifact is invalid. The message names it and what is allowed."""


def fail(name: str, value: Any, allowed: str) -> None:
    """Raise the project's one error form: ``parameter 'name' = value is invalid: allowed``."""
    raise ConfigError(f"parameter '{name}' = {value!r} is invalid: {allowed}")


def choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``; else raise naming the allowed values."""
    allowed = list(allowed)
    if value not in allowed:
        fail(name, value, "allowed values are " + ", ".join(repr(a) for a in allowed))
    return value


def number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """Check that ``value`` is a (finite) number in the interval given by ``low``/``high``.

    ``low_open``/``high_open`` make the bound strict: ``number("sigma", s, low=0, low_open=True)``
    enforces sigma > 0.
    """
    kind = "an integer" if integer else "a number"
    lo = "-inf" if low is None else f"{low}"
    hi = "inf" if high is None else f"{high}"
    interval = (
        f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    )
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):  # bool is an int; NaN, inf
        fail(name, value, f"must be {kind} in {interval}")
    if low is not None and (value < low or (low_open and value == low)):
        fail(name, value, f"must be {kind} in {interval}")
    if high is not None and (value > high or (high_open and value == high)):
        fail(name, value, f"must be {kind} in {interval}")
    return value


def positive(name: str, value: Any, *, integer: bool = False) -> Any:
    """Check ``value > 0``."""
    return number(name, value, low=0, low_open=True, integer=integer)


def sorted_radii(name: str, radii: Sequence[float]) -> list[float]:
    """Check a non-empty, strictly increasing list of non-negative radii."""
    if not isinstance(radii, (list, tuple)) or not radii:
        fail(name, radii, "must be a non-empty list of non-negative numbers in increasing order")
    for r in radii:
        number(f"{name}[]", r, low=0)
    if any(b <= a for a, b in zip(radii, radii[1:])):
        fail(name, list(radii), "must be strictly increasing (e.g. [0, 0.25, 0.5])")
    return [float(r) for r in radii]
