"""Compose (methods.md §7.1, §7.5): registered criteria applied in order as a chain of stages, each but the last
narrowing the pool for the next (a config's ``strategy: [entropy, kmeans]``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import Strategy
from .checks import number, options_of, summary, unknown_options
from .registry import STRATEGIES, get_strategy, register

__all__ = ["compose"]


@register("compose", needs={"embedding"}, requires={"labelled"})
def compose(
    *, criteria: list[str] = ("entropy", "kmeans"), factors: list[float] | None = None, **options: Any
) -> Strategy:
    """Criteria applied in order: each but the last narrows the pool to its top factor x budget, the last picks.

    The medical framework's list of criteria (e.g. ``[localization_tightness, kmeans]``, methods.md §7.1, §7.5),
    run as a chain: every criterion after the first scores only the previous one's candidates, with its own
    predictor and fields, so the loop never knows which criteria are used. A config names it as a list,
    ``strategy: [entropy, coreset]``; the strategy is named after its criteria (``"entropy+coreset"``).

    Options:
        criteria: registered strategy names, at least 2 (default ``[entropy, kmeans]``). Every one but the last
            must score each image in one stage (an uncertainty criterion such as ``entropy`` or
            ``localization_tightness``; not ``random`` nor a diversity criterion); the last may be any strategy
            (diversity, uncertainty, or a chained one).
        factors: candidate factor of each narrowing criterion (``len(criteria) - 1`` floats >= 1). Default: the
            i-th of n criteria keeps ``(n - i) x budget`` images (2 x budget before the last of two criteria,
            as med_sslal's ``budget x number of criteria``).
        **options: one mapping per criterion name with that criterion's own options, e.g.
            ``{"kmeans": {"n_clusters": 10}}``.
    """
    if (
        not isinstance(criteria, (list, tuple))
        or len(criteria) < 2
        or not all(isinstance(c, str) and c in STRATEGIES for c in criteria)
    ):
        raise ValueError(
            f"The 'criteria' parameter of compose must be a list of at least 2 registered strategy "
            f"names ({list(STRATEGIES)}). Got {criteria!r} instead."
        )
    if len(set(criteria)) != len(criteria) or "compose" in criteria:
        raise ValueError(
            f"The 'criteria' parameter of compose must name each criterion once and not 'compose'. "
            f"Got {criteria!r} instead."
        )
    n = len(criteria)
    if factors is None:
        factors = [float(n - i) for i in range(n - 1)]
    if not isinstance(factors, (list, tuple)) or len(factors) != n - 1:
        raise ValueError(
            f"The 'factors' parameter of compose must be a list of {n - 1} floats >= 1 (one per "
            f"narrowing criterion). Got {factors!r} instead."
        )
    for factor in factors:
        number("compose", "factors", factor, float, 1)
    for name in (n for n in options if n not in criteria):  # a criterion's option given at the top level
        owner = next((c for c in criteria if name in options_of(STRATEGIES[c])), None)
        if owner is not None:
            raise ValueError(
                f"Unknown option {name!r} for strategy 'compose' (a list of criteria): {name!r} is an option of "
                f"{owner!r}; give it under that criterion's name, strategy_options: {{{owner}: {{{name}: ...}}}}"
            )
    unknown_options("compose", options, ["criteria", "factors"] + list(criteria))
    for name, given in options.items():
        if not isinstance(given, dict):
            raise ValueError(
                f"The '{name}' option of compose must be a mapping of {name}'s options. Got {given!r} instead."
            )
    built = [get_strategy(name, **options.get(name, {})) for name in criteria]
    for stage in built[:-1]:
        if stage.score is None or stage.then is not None or stage.combine is not None:
            raise ValueError(
                f"compose: criterion '{stage.name}' cannot narrow the pool (it must score each image "
                f"on its own in one stage, as least_confidence, entropy, localization_tightness do); "
                f"only the last criterion may be {stage.name!r}"
            )
    chain = built[-1]
    for stage, factor in zip(reversed(built[:-1]), reversed(factors)):
        chain = dataclasses.replace(stage, then=chain, shortlist=float(factor))
    return dataclasses.replace(chain, name="+".join(criteria), description=summary(compose))
