"""AL-MDN image scores (methods.md §4.4): four uncertainties per detection, normalised over the pool (the mixture
density head is :mod:`.model`).

1. Detections with ``score >= score_threshold`` (0.5, the released code) are kept; each carries the four values of
   ``Detections.extras["uncertainties"]`` (aleatoric/epistemic x localisation/classification, from the mixture head).
2. Per image and per type: the max over its kept detections.
3. Per type: the mean and population standard deviation over **all kept detections of the scored pool** (not over
   the per-image maxima), and each image's max is z-normalised with them.
4. Image score: the largest of its four z-scores.

Step 3 needs the whole pool, so the per-image :func:`almdn_vector` keeps the maxima plus the sums and sums of
squares of every type and the detection count (so shards gathered from several processes combine exactly), and
:func:`almdn_combine` is the pool-level step. An image with no kept detection has nothing to score (the released
code gives it -99999, i.e. picked last: the ``empty_policy="lowest"`` default). A type whose values do not vary
over the pool (standard deviation 0) contributes a z-score of 0.
"""

from __future__ import annotations

import functools

import numpy as np

from ...models.outputs import Detections
from ...plugins import BoxColumns
from ...strategies.base import ScoredPool, Strategy
from ...strategies.checks import choice, number, summary
from ...strategies.registry import register
from ...strategies.uncertainty import EMPTY_POLICIES, rank_select
from .model import UNCERTAINTY_TYPES

__all__ = ["almdn_vector", "almdn_combine", "almdn", "BOX_COLUMNS"]

_T = len(UNCERTAINTY_TYPES)


def almdn_vector(det: Detections, *, score_threshold: float = 0.5) -> np.ndarray:
    """``float64[13]``: per type the max (NaN without kept detections), the sum and the sum of squares, then the
    count of kept detections."""
    uncertainties = det.extras.get("uncertainties")
    if uncertainties is None:
        raise ValueError(
            "the AL-MDN score needs Detections.extras['uncertainties'] from a mixture-density detector "
            "(detector: almdn_ssd or almdn_retinanet)"
        )
    values = uncertainties[det.scores >= score_threshold].double().numpy()  # [N', 4]
    if len(values) == 0:
        return np.concatenate([np.full(_T, np.nan), np.zeros(2 * _T + 1)])
    return np.concatenate([values.max(axis=0), values.sum(axis=0), (values**2).sum(axis=0), [len(values)]])


def almdn_combine(pool: ScoredPool) -> np.ndarray:
    """``float64[M]``: each image's largest z-normalised per-type maximum (NaN for images with nothing kept)."""
    vectors = pool.vectors if pool.vectors is not None and len(pool) else np.zeros((0, 3 * _T + 1))
    maxima, sums, squares = vectors[:, :_T], vectors[:, _T : 2 * _T], vectors[:, 2 * _T : 3 * _T]
    count = vectors[:, -1].sum()
    if count == 0:
        return np.full(len(vectors), np.nan)
    mean = sums.sum(axis=0) / count
    std = np.sqrt(np.maximum(squares.sum(axis=0) / count - mean**2, 0.0))
    z = np.where(std > 0, (maxima - mean) / np.where(std > 0, std, 1.0), 0.0)
    z[np.isnan(maxima)] = np.nan
    return np.where(np.isnan(maxima).all(axis=1), np.nan, np.nanmax(np.where(np.isnan(z), -np.inf, z), axis=1))


@register(
    "almdn",
    needs={"uncertainties"},
    requires={"almdn_detector"},
    defines={"almdn_detector": "an almdn_* detector (mixture-density head)"},
)
def almdn(*, score_threshold: float = 0.5, empty_policy: str = "lowest") -> Strategy:
    """AL-MDN: max of the z-normalised aleatoric/epistemic loc/cls uncertainties, one pass (detector: almdn_*).

    Options (methods.md §4.4; formulas above):
        score_threshold: detections with ``score >= score_threshold`` are scored (0.5, the released code).
        empty_policy: where images with no such detection go (``"lowest"``, as the released -99999).
    """
    number("almdn", "score_threshold", score_threshold, float, 0, 1)
    choice("almdn", "empty_policy", empty_policy, EMPTY_POLICIES)
    return Strategy(
        "almdn",
        summary(almdn),
        score=functools.partial(almdn_vector, score_threshold=float(score_threshold)),
        select=functools.partial(rank_select, empty_policy=empty_policy, strategy="almdn"),
        needs=frozenset({"uncertainties"}),
        combine=almdn_combine,
    )


#: ``activedet predict --uncertainty``'s per-box columns for a mixture-density detector (:mod:`activedet.plugins`):
#: the four uncertainties of :data:`~.model.UNCERTAINTY_TYPES` from the mixture head.
BOX_COLUMNS = {
    "uncertainties": BoxColumns(
        fields=frozenset({"uncertainties"}),
        columns=lambda det: {name: det.extras["uncertainties"][:, k] for k, name in enumerate(UNCERTAINTY_TYPES)},
        short={
            "aleatoric_loc": "al.loc",
            "epistemic_loc": "ep.loc",
            "aleatoric_cls": "al.cls",
            "epistemic_cls": "ep.cls",
        },
    )
}
