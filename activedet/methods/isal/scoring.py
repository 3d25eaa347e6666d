"""ISAL (methods.md §8): the influence of an image's pseudo labels on the validation loss, as a query strategy.

The gradients, Hessian-vector products, the LiSSA recursion and the predictor that fills
``Detections.extras["influence"]`` are in :mod:`.model`; this module turns that value into a
ranking (the most helpful image first) and checks the options.
"""

from __future__ import annotations

import functools
import math
from numbers import Real
from typing import Any

from ...strategies.base import Strategy
from ...strategies.checks import choice, number, summary
from ...strategies.registry import register
from ...strategies.uncertainty import EMPTY_POLICIES, rank_select
from ..stochastic.model import predicting_detector
from .model import INFLUENCE_PARAMETER_SETS, InfluenceOptions, InfluencePredictor

__all__ = ["influence_score", "influence"]


def influence_score(det: Any) -> float | None:
    """Informativeness of one image for ISAL: minus its influence (the most helpful image first); ``None`` for an
    image with no pseudo label (the unscored bucket)."""
    influence = det.extras.get("influence")
    return None if influence is None else -float(influence)


def _influence_predictor(model: Any, context: Any = None, *, options: InfluenceOptions) -> InfluencePredictor:
    return InfluencePredictor(predicting_detector(model), context, options=options)


@register("influence", needs={"influence"}, requires={"val"})
def influence(
    *,
    score_threshold: float = 0.1,
    recursion_images: int = 1000,
    damping: float = 0.01,
    scales: list[float] | float | str | None = None,
    empty_policy: str = "random_fill",
    parameters: str = "last",
    recursions: int = 1,
) -> Strategy:
    """ISAL influence: predicted change of the validation loss from training on the image's pseudo labels (§8).

    Needs a validation split (``val_data``, disjoint from the test split) and a model whose adapter names its last
    prediction layers (fcos, faster_rcnn, retinanet, classifier); see :mod:`.model`.

    Options:
        score_threshold: detections at or above this score are the pseudo labels (0.1, the released command;
            images with none go to the unscored bucket).
        recursion_images: labelled images visited by the inverse-HVP recursion (1000, the official count per
            GPU), in a seeded random order; the main cost control with the config's ``score_subset``.
        damping: ``d`` of the recursion (0.01).
        scales: ``S`` per influence parameter tensor (a list in the adapter's ``INFLUENCE_PARAMETERS`` order),
            ``"auto"`` (twice each block's largest Hessian eigenvalue on 10 labelled images, by power iteration,
            raised 4x for a block that diverges), or ``null``: the
            adapter's official values where methods.md gives them (FCOS, Faster R-CNN), else ``"auto"``. One
            number: the same ``S`` for every tensor (the released classification code: 10000).
        parameters: ``"last"`` (the adapter's last prediction layers' weights) or ``"all_weights"`` (every
            trainable weight that is not a vector, as the released classification code).
        recursions: the ``recursion_images`` split into this many consecutive recursions, each from ``v``,
            averaged (1; the released classification code: 4 of 250).
        empty_policy: where unscored images go: ``"random_fill"`` (ISAL: after every scored image, in random
            order), ``"lowest"``, ``"highest"`` or ``"skip"``. Order: the most negative influence first.
    """
    name = "influence"
    number(name, "score_threshold", score_threshold, float, 0, 1)
    number(name, "recursion_images", recursion_images, int, 1)
    number(name, "damping", damping, float, 0, 1)
    choice(name, "empty_policy", empty_policy, EMPTY_POLICIES)
    choice(name, "parameters", parameters, INFLUENCE_PARAMETER_SETS)
    number(name, "recursions", recursions, int, 1)
    if int(recursions) > int(recursion_images):
        raise ValueError(
            f"The 'recursions' parameter of influence must be at most recursion_images "
            f"({recursion_images}): each recursion needs images. Got {recursions!r} instead."
        )
    single = isinstance(scales, Real) and not isinstance(scales, bool)
    if isinstance(scales, str):
        choice(name, "scales", scales, ("auto",))
    elif single and not (math.isfinite(scales) and scales > 0):
        raise ValueError(
            f"The 'scales' option of strategy 'influence' must be a number > 0, a list of numbers > 0 "
            f"(one per influence parameter), 'auto' or null. Got {scales!r} instead."
        )
    elif (
        not single
        and scales is not None
        and not (
            isinstance(scales, (list, tuple))
            and scales
            and all(isinstance(x, Real) and not isinstance(x, bool) and x > 0 for x in scales)
        )
    ):
        raise ValueError(
            f"The 'scales' option of strategy 'influence' must be a number > 0, a list of numbers > 0 "
            f"(one per influence parameter), 'auto' or null. Got {scales!r} instead."
        )
    scale_value = (
        float(scales) if single else tuple(float(x) for x in scales) if isinstance(scales, (list, tuple)) else scales
    )
    options = InfluenceOptions(
        float(score_threshold),
        int(recursion_images),
        float(damping),
        scale_value,
        parameters=parameters,
        recursions=int(recursions),
    )
    return Strategy(
        name,
        summary(influence),
        score=influence_score,
        needs=frozenset({"influence"}),
        predictor=functools.partial(_influence_predictor, options=options),
        needs_val=True,
        select=functools.partial(rank_select, empty_policy=empty_policy, strategy=name),
    )
