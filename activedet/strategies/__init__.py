"""Query strategies: what to label next.

A strategy is a per-image scoring function plus a selection step (see :mod:`.base`). Each method is one module
holding its scoring, its selection, its factory and their documentation (a method that adds to the model is a
package of :mod:`activedet.methods`, its ``scoring`` module holding these); the factory is registered by name with
:func:`~.registry.register`, and :func:`get_strategy` builds one::

    from activedet.strategies import get_strategy, list_strategies
    strategy = get_strategy("hybrid", uncertainty="entropy", diversity="coreset", factor=2.0)

Importing this package imports every method module (and does nothing else): the modules of this folder and every
method package's ``scoring`` module (:mod:`activedet.methods`), so a method added as one new file registers itself.
``activedet strategies`` lists them with the paper section each implements (``docs/methods.md``);
:func:`~activedet.strategy_names.strategy_names` reads their names without importing anything heavy.
"""

import importlib
import importlib.util
import pkgutil

# The simple methods first (the order of `activedet strategies` and of the error messages); the others follow.
# isort: off
from . import random, uncertainty, diversity, kmeans, hybrid, compose  # (registers the methods)

# isort: on
from . import registry
from .base import ScoredPool, SelectionInput, Strategy, shortlist
from .registry import METHODS, STRATEGIES, get_strategy, list_strategies, register, strategy_names


def _method_modules() -> list:
    """Every other module of this folder, then every method package's ``scoring`` module, in name order, imported
    (registering their methods)."""
    from ..plugins import method_modules

    own = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    found = []
    for name in own:
        module = f"{__name__}.{name}"
        if importlib.util.find_spec(module) is not None:
            found.append(importlib.import_module(module))
    return found + method_modules("scoring")


# The same order whichever module was imported first (a method package's scoring module imported on its own
# registers before the others).
_first = (random, uncertainty, diversity, kmeans, hybrid, compose)
registry.keep_order((*_first, *(m for m in _method_modules() if m not in _first)))

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
