"""The checks of a settings value, field by field: the one place that says what a number, a
whole number, a fraction, a flag, a choice or a list of names may be, so that every settings
class (`SamplingSettings`, `TrainConfig`, `MorlhfSettings`, ...) refuses NaN, infinities, values
out of range and values of the wrong type alike, and names the field at fault.

Each check returns the value (as the type it checks for) or raises `SettingsError`, whose
`field` names the setting and `problem` says what is wrong and what would work: the command
line turns the field into its option (`--lr is nan; give ...`), a recipe into its key and the
server into OpenAI's `param`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from mavis.errors import MavisError


class SettingsError(MavisError):
    """A setting given a value it cannot take. `field` names the setting; `problem` says what
    is wrong and what would work."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


def number(name: str, value: Any, *, low: float = -math.inf, low_open: bool = False,
           high: float | None = None, high_open: bool = False,
           infinite: bool = False) -> float:
    """A real number (not a bool), not NaN, finite unless `infinite` (then +inf too), and at
    least `low` (above it when `low_open`), at most `high` (below it when `high_open`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsError(name, f"is {value!r}; give a number")
    got = float(value)
    span = _span(low, low_open, high, high_open)
    if math.isnan(got) or (math.isinf(got) and not (infinite and got > 0)):
        raise SettingsError(name, f"is {got}; give a finite number{span}"
                            + (" (or inf)" if infinite else ""))
    if got < low or (low_open and got == low) or (high is not None and (
            got > high or (high_open and got == high))):
        raise SettingsError(name, f"is {got:g}; give a number{span}")
    return got


def _span(low: float, low_open: bool, high: float | None, high_open: bool) -> str:
    """" >= 0", " in (0, 1]", " from 0 to 1", "" (any finite number)."""
    if high is None:
        return "" if low == -math.inf else f" {'>' if low_open else '>='} {low:g}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    if not low_open and not high_open:
        return f" from {low:g} to {high:g}"
    return f" in {left}{low:g}, {high:g}{right}"


def fraction(name: str, value: Any, *, low_open: bool = False,
             high_open: bool = False) -> float:
    """A number from 0 to 1 (without 0 when `low_open`, without 1 when `high_open`)."""
    return number(name, value, low=0.0, low_open=low_open, high=1.0, high_open=high_open)


def whole(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """A whole number (not a bool, not a float) from `low` (to `high`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SettingsError(name, f"is {value!r}; give a whole number")
    got = int(value)
    if got < low or (high is not None and got > high):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise SettingsError(name, f"is {got}; give a whole number {span}")
    return got


def optional_whole(name: str, value: Any, *, low: int, none: str) -> int | None:
    """None (meaning `none`, e.g. "all layers") or a whole number >= `low`."""
    if value is None:
        return None
    try:
        return whole(name, value, low=low)
    except SettingsError as exc:
        raise SettingsError(name, f"{exc.problem} (or none: {none})") from None


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(name, f"is {value!r}; give true or false")
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SettingsError(name, f"is {value!r}; choose {', '.join(map(repr, choices))}")
    return value


def text(name: str, value: Any, *, optional: bool = False) -> str | None:
    """A non-empty string (or None when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(name, f"is {value!r}; give a name")
    return value


def names(name: str, value: Any, *, optional: bool = False) -> list[str] | None:
    """A non-empty list of distinct non-empty strings (or None when `optional`)."""
    if value is None and optional:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not value or not all(
            isinstance(item, str) and item.strip() for item in value):
        raise SettingsError(name, f"is {value!r}; give a list of one or more names")
    repeated = sorted({item for item in value if list(value).count(item) > 1})
    if repeated:
        raise SettingsError(name, f"names {', '.join(map(repr, repeated))} more than once; "
                            "give each name once")
    return list(value)
