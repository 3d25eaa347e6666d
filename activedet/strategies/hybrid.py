"""Hybrid (methods.md §7.5): an uncertainty measure narrows the pool to the top factor x budget images, then a
diversity selector picks among them, in one scoring pass (the general chain of criteria is :mod:`.compose`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

from .base import SelectionInput, Strategy, first_picks
from .checks import choice, number, options_of, summary, unknown_options
from .registry import STRATEGIES, register

__all__ = ["UNCERTAINTY", "DIVERSITY", "hybrid", "hybrid_select"]

UNCERTAINTY = ("least_confidence", "margin", "entropy")
DIVERSITY = ("coreset", "kmeans", "kmeanspp")


@register("hybrid", needs={"embedding"}, requires={"labelled"})
def hybrid(
    *, uncertainty: str = "entropy", diversity: str = "coreset", factor: float = 2.0, **options: Any
) -> Strategy:
    """Uncertainty pre-filter to the top factor x budget images, then a diversity selector on those (§7.5).

    Options:
        uncertainty: ``"least_confidence"`` | ``"margin"`` | ``"entropy"`` (default), ranks the pool.
        diversity: ``"coreset"`` (default) | ``"kmeans"`` | ``"kmeanspp"``, picks among the candidates.
        factor: candidates = the top ``ceil(factor x budget_hint)`` images (2.0, med_sslal; the papers of
            docs/methods.md §7 use 1.2 to 4).
        **options: the chosen uncertainty's and diversity's own options (``aggregation``, ``projection_dim``...).
    """
    choice("hybrid", "uncertainty", uncertainty, UNCERTAINTY)
    choice("hybrid", "diversity", diversity, DIVERSITY)
    number("hybrid", "factor", factor, float, 1)
    u_factory, d_factory = STRATEGIES[uncertainty], STRATEGIES[diversity]
    unknown_options(
        "hybrid", options, ["uncertainty", "diversity", "factor"] + options_of(u_factory) + options_of(d_factory)
    )
    ranker = u_factory(**{k: v for k, v in options.items() if k in options_of(u_factory)})
    picker = d_factory(**{k: v for k, v in options.items() if k in options_of(d_factory)})
    select = functools.partial(hybrid_select, ranker=ranker, picker=picker, factor=float(factor))
    return Strategy(
        "hybrid",
        summary(hybrid),
        score=ranker.score,
        select=select,
        needs=ranker.needs | picker.needs,
        needs_labelled=ranker.needs_labelled or picker.needs_labelled,
    )


def hybrid_select(inputs: SelectionInput, *, ranker: Strategy, picker: Strategy, factor: float) -> Iterator[int]:
    """Candidates = the first ``ceil(factor · budget_hint)`` picks of ``ranker``; yield ``picker``'s picks among
    them. Stops when the candidates are exhausted: never yields an image outside them."""
    number("hybrid selection", "budget_hint", inputs.budget_hint, int, 1)
    chosen = first_picks(ranker, inputs, factor)
    yield from picker.select(dataclasses.replace(inputs, pool=inputs.pool.subset(inputs.pool.positions_of(chosen))))
