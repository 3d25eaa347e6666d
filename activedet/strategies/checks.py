"""The option checks every strategy factory shares (sklearn-style messages naming the strategy and the option).

Each check raises ``ValueError`` saying which parameter of which strategy is wrong, what was expected and what was
given; :func:`unknown_options` also names the closest valid option and lists the valid ones. Standard library only.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

__all__ = ["choice", "number", "flag", "options_of", "unknown_options", "summary"]


def choice(strategy: str, name: str, value: Any, choices: tuple) -> None:
    """``value`` must be one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"The '{name}' parameter of {strategy} must be one of {list(choices)}. Got {value!r} instead.")


def number(
    strategy: str, name: str, value: Any, kind: type, low: float, high: float = math.inf, extra: str = ""
) -> None:
    """``value`` must be an int (``kind=int``) or a finite real (``kind=float``) in ``[low, high]``; ``extra`` is
    appended to the expected range in the message (e.g. ``" or None"``)."""
    ok_type = isinstance(value, Integral if kind is int else Real) and not isinstance(value, bool)
    if not ok_type or not low <= value <= high or (kind is float and not math.isfinite(value)):
        upper = "inf)" if high == math.inf else f"{high}]"
        raise ValueError(
            f"The '{name}' parameter of {strategy} must be {'an int' if kind is int else 'a float'}"
            f" in [{low}, {upper}{extra}. Got {value!r} instead."
        )


def flag(strategy: str, name: str, value: Any) -> None:
    """``value`` must be a bool (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"The '{name}' parameter of {strategy} must be an instance of 'bool'. Got {value!r} instead.")


def options_of(factory: Callable) -> list[str]:
    """The keyword-only options of a strategy factory, in signature order."""
    return [p.name for p in inspect.signature(factory).parameters.values() if p.kind is p.KEYWORD_ONLY]


def unknown_options(strategy: str, given: dict, valid: list[str]) -> None:
    """Refuse the first name of ``given`` that is not in ``valid``, with the closest valid name and the full list."""
    unknown = [name for name in given if name not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(
            f"Unknown option {unknown[0]!r} for strategy {strategy!r}{hint} Valid options of {strategy}: {valid}"
        )


def summary(factory: Callable) -> str:
    """The first line of ``factory``'s docstring: the strategy's one-line description."""
    doc = inspect.getdoc(factory)
    return doc.splitlines()[0] if doc else ""
