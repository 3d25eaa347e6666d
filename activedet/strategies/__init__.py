"""Query strategies: what to label next.

A strategy is a per-image scoring function plus a selection step (see :mod:`.base`). Each method is one module
holding its scoring, its selection, its factory and their documentation (a method that adds to the model is a
package of :mod:`activedet.methods`, its ``scoring`` module holding these); the factory is registered by name with
:func:`~.registry.register`, and :func:`get_strategy` builds one::

    from activedet.strategies import get_strategy, list_strategies
    strategy = get_strategy("hybrid", uncertainty="entropy", diversity="coreset", factor=2.0)

Importing this package imports every method module below, which registers the built-in methods (and does
nothing else). ``activedet strategies`` lists them; :func:`~activedet.strategy_names.strategy_names` reads their
names without importing anything heavy.

======================================  ====================================================================
module                                  methods
======================================  ====================================================================
:mod:`.random`                          ``random`` (methods.md §1.1)
:mod:`.uncertainty`                     ``least_confidence``, ``margin``, ``entropy`` (§1)
:mod:`.diversity`, :mod:`.kmeans`       ``coreset``, ``kmeanspp``; ``kmeans`` (§7)
:mod:`.hybrid`, :mod:`.compose`         ``hybrid``; ``compose``, a chain of criteria (§7.1, §7.5)
:mod:`activedet.methods.stochastic`     ``mc_dropout``, ``ensemble`` (§2)
:mod:`activedet.methods.miaod`          ``miaod`` (§3.3)
:mod:`activedet.methods.almdn`          ``almdn`` (§4.4)
:mod:`.localization`, :mod:`.cald`      ``localization_tightness``, ``localization_stability`` (§5); ``cald`` (§6)
:mod:`activedet.methods.ppal`           ``ppal`` (§7.4)
:mod:`activedet.methods.isal`           ``influence``, ISAL (§8)
======================================  ====================================================================
"""

# The import order is the registry's order (`activedet strategies`, the error messages): simple methods first.
# isort: off
from . import random, uncertainty, diversity, kmeans, hybrid, compose  # (registers the methods)
from ..methods.stochastic import scoring as _stochastic
from ..methods.miaod import scoring as _miaod
from ..methods.almdn import scoring as _almdn
from . import localization, cald
from ..methods.ppal import scoring as _ppal
from ..methods.isal import scoring as _influence

# isort: on
from . import registry
from .base import ScoredPool, SelectionInput, Strategy, shortlist
from .registry import METHODS, STRATEGIES, get_strategy, list_strategies, register, strategy_names

# The same order when a method package's scoring module was imported first (it then registers after the others).
registry.keep_order(
    (
        random,
        uncertainty,
        diversity,
        kmeans,
        hybrid,
        compose,
        _stochastic,
        _miaod,
        _almdn,
        localization,
        cald,
        _ppal,
        _influence,
    )
)


def _import_added_methods() -> None:
    """Import every other module of this folder and every method package's ``scoring`` module: a method added as
    one new file registers itself (after the built-in ones), with nothing else to edit."""
    import importlib.util
    import pkgutil
    import sys
    from pathlib import Path

    methods = Path(__file__).resolve().parent.parent / "methods"
    names = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names += [f"activedet.methods.{m.name}.scoring" for m in pkgutil.iter_modules([str(methods)]) if m.ispkg]
    for name in sorted(names):
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


_import_added_methods()

__all__ = [
    "Strategy",
    "ScoredPool",
    "SelectionInput",
    "shortlist",
    "STRATEGIES",
    "METHODS",
    "register",
    "get_strategy",
    "list_strategies",
    "strategy_names",
]
