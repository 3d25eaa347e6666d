"""Declared options: a dataclass field that carries its help and its allowed values, checked by pydantic.

The library's option classes (:class:`~activedet.engine.options.TrainOptions`,
:class:`~activedet.al.plan.LoopOptions`) declare each field once with :func:`option`; the same declaration
validates keyword arguments (:func:`check_fields`), builds the CLI's config schema (:func:`pydantic_type`) and
writes the key reference (:func:`describe`). Torch-free.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import ConfigDict, Field, ValidationError, create_model

__all__ = [
    "option",
    "Count",
    "hints",
    "pydantic_type",
    "describe",
    "constrained",
    "type_name",
    "first_errors",
    "check_fields",
]

#: a count of images (int >= 1) or a fraction of the pool (float in (0, 1])
Count = Union[Annotated[int, Ge(1)], Annotated[float, Gt(0), Le(1)]]
_BOUNDS = {"ge": Ge, "gt": Gt, "le": Le, "lt": Lt}


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: tuple | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_items: int | None = None,
    pattern: str | None = None,
    expected: str | None = None,
    path: bool | str = False,
) -> Any:
    """A dataclass field with its one-line ``help`` and allowed values.

    ``choices`` restricts a ``str`` (or the items of a ``list[str]``); ``ge``/``gt``/``le``/``lt`` bound a number
    (the non-null arm of an ``X | None``); ``min_items`` a list's length; ``pattern`` a string's (or each list
    item's) regular expression. ``expected`` replaces the generated "what is allowed" wording of errors.
    ``path``: a config key that names a file or folder, resolved against the config file's directory (``"exists"``:
    only when such a file exists, the value may also be a name). A ``list``/``dict`` default is copied per
    instance; no default makes the key required.
    """
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    meta = {
        "help": help,
        "choices": tuple(choices) if choices else None,
        "bounds": bounds,
        "min_items": min_items,
        "pattern": pattern,
        "expected": expected,
        "path": path,
    }
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _args(tp) -> tuple:
    return typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)


def _optional(tp) -> tuple[Any, bool]:
    """``(tp without None, whether None is allowed)``."""
    args = _args(tp)
    rest = tuple(a for a in args if a is not type(None))
    if len(rest) == len(args):
        return tp, False
    return (rest[0] if len(rest) == 1 else Union[rest]), True


def hints(cls) -> dict[str, Any]:
    """The resolved annotations of a dataclass (its module may use ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls, include_extras=True)


def pydantic_type(f: dataclasses.Field, tp) -> Any:
    """The field's annotation with its declared choices and bounds, for a strict pydantic schema."""
    meta = f.metadata
    inner, nullable = _optional(tp)
    if meta.get("choices") or meta.get("pattern"):

        def restrict(t):
            if meta.get("choices"):
                return Literal[meta["choices"]]
            return Annotated[t, Field(pattern=meta["pattern"])]

        inner = list[restrict(str)] if typing.get_origin(inner) is list else restrict(inner)
    extra = [_BOUNDS[k](v) for k, v in meta.get("bounds", {}).items()]
    if meta.get("min_items"):
        extra.append(MinLen(meta["min_items"]))
    if extra:
        inner = Annotated[(inner, *extra)]
    return Union[inner, None] if nullable else inner


def _interval(bounds: dict) -> str:
    low = next(((k, v) for k, v in bounds.items() if k in ("ge", "gt")), None)
    high = next(((k, v) for k, v in bounds.items() if k in ("le", "lt")), None)
    if low and high:
        return f" in {'[' if low[0] == 'ge' else '('}{low[1]}, {high[1]}{']' if high[0] == 'le' else ')'}"
    ((name, value),) = [low or high]
    return f" {dict(ge='>=', gt='>', le='<=', lt='<')[name]} {value}"


def describe(f: dataclasses.Field, tp, value: Any = None) -> str:
    """What the field allows, in words ("an int >= 1", "one of ['sgd', 'adamw']", "a float in (0, 1] or null");
    for a :data:`Count`, the reading of ``value``'s own type comes first."""
    meta = f.metadata
    if meta.get("expected"):
        return meta["expected"]
    inner, nullable = _optional(tp)
    if inner == Count:
        fraction, count = "a fraction in (0, 1] (float)", "a count >= 1 (int)"
        text = f"{fraction} or {count}" if isinstance(value, float) else f"{count} or {fraction}"
        return text + (" or null" if nullable else "")
    if meta.get("choices"):
        listed = f"one of {list(meta['choices'])}"
        text = (
            (
                f"a non-empty list of {list(meta['choices'])}"
                if meta.get("min_items")
                else f"a list of {list(meta['choices'])}"
            )
            if typing.get_origin(inner) is list
            else listed
        )
    elif inner is bool:
        text = "true or false"
    elif inner in (int, float):
        text = ("an int" if inner is int else "a float") + (_interval(meta["bounds"]) if meta.get("bounds") else "")
    else:
        text = f"of type {type_name(inner)}"
    return text + (" or null" if nullable else "")


def constrained(f: dataclasses.Field, tp) -> bool:
    """Whether the field allows less than its type does (choices, bounds, a pattern, a :data:`Count`)."""
    meta = f.metadata
    return bool(
        meta.get("choices")
        or meta.get("bounds")
        or meta.get("expected")
        or meta.get("min_items")
        or meta.get("pattern")
        or _optional(tp)[0] == Count
    )


def type_name(tp) -> str:
    """``int``, ``list[int]``, ``str | null``: the annotation as a config file reader spells it."""
    if tp == Count:
        return "int | float"
    tp = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
    args = _args(tp)
    if len(args) > 1:
        return " | ".join(type_name(a) for a in args)
    text = tp.__name__ if isinstance(tp, type) and not typing.get_args(tp) else str(tp)
    return text.replace("typing.", "").replace("NoneType", "null")


@functools.cache
def _validator(cls):
    types_ = hints(cls)
    fields = {f.name: (pydantic_type(f, types_[f.name]), ...) for f in dataclasses.fields(cls)}
    return create_model(f"{cls.__name__}Check", __config__=ConfigDict(strict=True), **fields)


def first_errors(exc: ValidationError) -> tuple[str, bool]:
    """``(key, whether every error of that key is a wrong type)`` for the first key pydantic refused."""
    errors = exc.errors()
    key = str(errors[0]["loc"][0])
    kinds = [e["type"] for e in errors if e["loc"] and str(e["loc"][0]) == key]
    return key, all(kind.endswith("_type") for kind in kinds)


def check_fields(obj, error: type[Exception]) -> None:
    """Raise ``error(name, expected, got)`` for the first field of the dataclass ``obj`` that its declaration
    refuses."""
    cls = type(obj)
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)}
    try:
        _validator(cls)(**values)
    except ValidationError as exc:
        key, _ = first_errors(exc)
        f = next(f for f in dataclasses.fields(cls) if f.name == key)
        raise error(key, describe(f, hints(cls)[key], values[key]), values[key]) from None
