"""The strategy registry: the :func:`register` decorator and the name -> method map.

A method is one module holding its scoring, its selection and its factory. The factory takes keyword options only,
checks them (:mod:`.checks`), binds them into a scoring function and a selection step and returns a
:class:`~activedet.strategies.base.Strategy`; the first line of its docstring is the description that
``activedet strategies`` prints, the rest documents every option::

    from activedet.strategies.registry import register

    @register("my_method", needs={"class_probs"})
    def my_method(*, empty_policy: str = "lowest") -> Strategy:
        \"\"\"One line for `activedet strategies`. ... every option documented ...\"\"\"
        ...

``import activedet.strategies`` imports every method module of the package, so every built-in method is
registered then; a method defined elsewhere is registered when its module is imported. This module imports no
method module and nothing heavy (standard library only), so :func:`strategy_names` stays cheap.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..strategy_names import strategy_names
from .checks import options_of, summary, unknown_options

if TYPE_CHECKING:
    from .base import Strategy

__all__ = [
    "REQUIREMENTS",
    "Method",
    "METHODS",
    "STRATEGIES",
    "register",
    "keep_order",
    "get_strategy",
    "list_strategies",
    "strategy_names",
]

REQUIREMENTS = {
    "val": "a validation split (val_data) beside the test split",
    "labelled": "the labelled images pass through the model too",
    "passes": "several predictions per image (stochastic passes, several trained models or augmented views)",
    "two_stage": "a two-stage detector (RPN proposals: faster_rcnn)",
}
"""What a method may require of the run beyond detector outputs (``requires=``), with the words that say so: these
shared ones, then those a method defines when it registers (``register(..., defines=...)``)."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class Method:
    """One registered method.

    Attributes:
        name: the name a config's ``strategy`` key uses.
        factory: keyword options -> :class:`~activedet.strategies.base.Strategy`.
        needs: the optional ``Detections`` fields its scoring passes fill with the default options (every stage of
            a chain); some options add fields (e.g. ``use_class_probs``: ``class_probs``).
        requires: what it needs of the run, keys of :data:`REQUIREMENTS` (with the default options).
    """

    name: str
    factory: Callable[..., Strategy]
    needs: frozenset[str] = frozenset()
    requires: frozenset[str] = frozenset()

    @property
    def description(self) -> str:
        """The factory docstring's first line."""
        return summary(self.factory)


METHODS: dict[str, Method] = {}
"""name -> :class:`Method`: the built-in methods in the order of :func:`keep_order`'s modules, then the others in
registration order."""

_MODULE_RANK: dict[str, int] = {}


class _Factories(Mapping):
    """A read-only view of :data:`METHODS` as ``name -> factory``."""

    def __getitem__(self, name: str) -> Callable[..., Strategy]:
        return METHODS[name].factory

    def __iter__(self) -> Iterator[str]:
        return iter(list(METHODS))

    def __len__(self) -> int:
        return len(METHODS)

    def __repr__(self) -> str:
        return f"STRATEGIES({list(METHODS)})"


STRATEGIES: Mapping[str, Callable[..., Strategy]] = _Factories()
"""name -> factory, a read-only view of :data:`METHODS`."""


def register(
    name: str, *, needs: Iterable[str] = (), requires: Iterable[str] = (), defines: Mapping[str, str] | None = None
) -> Callable:
    """Decorator: register a strategy factory under ``name`` and return it unchanged.

    Args:
        name: lower-case letters, digits and ``_``, starting with a letter; unique (registering another function
            under a taken name is refused; the same function again, e.g. on a module reload, replaces itself).
        needs: ``Detections`` fields the default build's scoring passes fill (see :class:`Method`).
        requires: keys of :data:`REQUIREMENTS` the default build needs of the run.
        defines: requirements this method introduces, ``{key: the words that describe it}`` (e.g. a detector of
            its own); added to :data:`REQUIREMENTS`. A key already there must come with the same words.

    The factory must take keyword options only (``**options`` allowed, for a method that forwards options) and
    have a docstring whose first line describes it.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"register: a strategy name must be lower-case letters, digits and '_', starting with a "
            f"letter (it is a config value); got {name!r}"
        )
    needs, requires = frozenset(needs), frozenset(requires)
    if not all(isinstance(field, str) for field in needs):
        raise ValueError(f"register({name!r}): needs must be Detections field names (strings); got {sorted(needs)}")
    defines = dict(defines or {})
    clash = sorted(k for k, words in defines.items() if REQUIREMENTS.get(k, words) != words)
    if clash:
        raise ValueError(
            f"register({name!r}): requirement(s) {clash} are already defined with other words "
            f"({ {k: REQUIREMENTS[k] for k in clash} }); use them as they are or choose another key"
        )
    unknown = sorted(requires - set(REQUIREMENTS) - set(defines))
    if unknown:
        raise ValueError(
            f"register({name!r}): unknown requirement(s) {unknown}; valid: {list(REQUIREMENTS)} "
            "(define a new one with defines={key: the words that describe it})"
        )
    REQUIREMENTS.update(defines)

    def decorate(factory: Callable[..., Strategy]) -> Callable[..., Strategy]:
        where = _where(factory)
        positional = [
            p.name
            for p in inspect.signature(factory).parameters.values()
            if p.kind not in (p.KEYWORD_ONLY, p.VAR_KEYWORD)
        ]
        if positional:
            raise ValueError(
                f"register({name!r}): {where} must take keyword options only (def {name}(*, ...)); "
                f"{positional} can be given by position"
            )
        if not summary(factory):
            raise ValueError(
                f"register({name!r}): {where} needs a docstring; its first line is the description "
                "`activedet strategies` prints"
            )
        taken = METHODS.get(name)
        if taken is not None and _where(taken.factory) != where:
            raise ValueError(
                f"register({name!r}): the name is taken by {_where(taken.factory)}; choose another name for {where}"
            )
        METHODS[name] = Method(name, factory, needs, requires)
        _reorder()
        return factory

    return decorate


def keep_order(modules: Iterable[ModuleType]) -> None:
    """List the methods of ``modules`` first, in the order of the modules (registration order within one).

    The order of ``activedet strategies`` and of the error messages would otherwise depend on what was imported
    first: a method package's ``scoring`` module imported before :mod:`activedet.strategies` registers its method
    only after the package has imported (and registered) all the others. Methods of other modules follow in
    registration order.
    """
    _MODULE_RANK.clear()
    _MODULE_RANK.update({module.__name__: rank for rank, module in enumerate(modules)})
    _reorder()


def _reorder() -> None:
    last = len(_MODULE_RANK)
    ranked = sorted(METHODS.values(), key=lambda method: _MODULE_RANK.get(method.factory.__module__, last))
    if [method.name for method in ranked] != list(METHODS):
        METHODS.clear()
        METHODS.update((method.name, method) for method in ranked)


def _where(factory: Callable) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"


def get_strategy(name: str, **options: Any) -> Strategy:
    """The registered strategy ``name`` built with ``options``.

    Raises ``ValueError`` for an unknown name (with the closest valid name and the full list), an unknown option
    (naming the strategy and its valid options) or a bad option value (sklearn-style message).
    """
    if name not in METHODS:
        close = difflib.get_close_matches(str(name), list(METHODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"Unknown strategy {name!r}{hint} Valid strategies: {list(METHODS)}")
    factory = METHODS[name].factory
    if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()):
        unknown_options(name, options, options_of(factory))
    return factory(**options)


def list_strategies() -> list[tuple[str, str]]:
    """``[(name, one-line description)]`` in registration order."""
    return [(name, method.description) for name, method in METHODS.items()]
