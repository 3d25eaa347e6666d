"""Query strategies: what to label next.

A strategy is a per-image scoring function plus a selection step (see :mod:`.base`); the registry maps flat
names to factories::

    from activedet.strategies import get_strategy, list_strategies
    strategy = get_strategy("hybrid", uncertainty="entropy", diversity="coreset", factor=2.0)

Registered: ``random``, ``least_confidence``, ``margin``, ``entropy`` (methods.md §1), ``coreset``, ``kmeans``,
``kmeanspp`` and ``hybrid`` (§7). The plain scoring and selection functions live in :mod:`.uncertainty` and
:mod:`.diversity`.
"""

from .base import ScoredPool, SelectionInput, Strategy, shortlist
from .registry import STRATEGIES, get_strategy, list_strategies

__all__ = ["Strategy", "ScoredPool", "SelectionInput", "shortlist", "STRATEGIES", "get_strategy", "list_strategies"]
