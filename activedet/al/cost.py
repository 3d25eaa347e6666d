"""What labelling an image costs, before (predicted) and after (actual) people label it.

Model-assisted labelling: the annotator opens an image that shows the current detector's boxes at or above
``cost_min_score`` (the pre-annotations of the exported batch), keeps the right ones, fixes or deletes the wrong
ones and draws what is missing. The cost of one image, in any unit (the defaults are seconds)::

    cost = image_cost                       open, inspect, submit
         + accept_cost  * accepted          pre-annotations kept as they are
         + correct_cost * (shown - accepted) pre-annotations moved, relabelled or deleted
         + box_cost     * (boxes - accepted) true boxes drawn from scratch

``boxes``: the image's true boxes; ``shown``: its pre-annotations; ``accepted``: pre-annotations that match a
true box of the same class with IoU >= ``accept_iou`` (one-to-one, highest score first). An image labelled
without pre-annotations (the initial set) costs ``image_cost + box_cost * boxes``; so does every image when
``accept_cost == box_cost`` and ``correct_cost == 0`` (a team that draws every box itself).

**Predicted cost** of an unlabelled image, from the detector's detections ``s_j`` (``cost_estimate``):

* ``score_sum`` (default): each detection is a true object with probability ``s_j``. Shown ones (``s_j >=
  cost_min_score``) are accepted with probability ``s_j`` and corrected otherwise; the others are drawn with
  probability ``s_j``. Expected boxes ``sum_j s_j``; expected cost ``image_cost + sum_shown (accept_cost s_j +
  correct_cost (1 - s_j)) + box_cost sum_hidden s_j``. Objects the detector misses entirely are not predicted.
* ``count``: every shown detection is a true box that is accepted: boxes = their count, cost ``image_cost +
  accept_cost * count``.

A budget in ``boxes`` or ``cost`` spends the predicted figure at selection when the oracle cannot preview an
image's labels (people labelling, or a simulation with ``simulated_preview: false``) and the actual one when it
can (simulation); the ledger keeps both.

**Calibration** (``cost_calibration``, :func:`calibration`): predicted figures are biased in a way that holds from
batch to batch (the scores estimate an IoU-0.5 match, pre-annotations are kept at ``accept_iou``; objects the
detector misses are not predicted). With it on, each predicted figure spent is multiplied by the batches labelled
so far's ``sum(actual) / sum(predicted)`` (1 before the first batch is labelled); the selection records the factor.

**Cost-aware selection** (``cost_aware``, :func:`cost_aware_order`): the candidates ranked by score / predicted
cost, the greedy solution of the knapsack "most informativeness for the budget". Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fields import check_fields, option

__all__ = [
    "CostModel",
    "CostError",
    "COST_ESTIMATES",
    "accepted_count",
    "box_iou",
    "calibration",
    "check_cost_aware",
    "cost_aware_order",
    "scores_rank",
]

#: how :meth:`CostModel.predict` turns detections into expected boxes and cost
COST_ESTIMATES = ("score_sum", "count")
#: the pre-annotation threshold when ``cost_min_score`` is unset and nothing else says (the export's default)
DEFAULT_MIN_SCORE = 0.3


class CostError(ValueError):
    """A cost setting that cannot work; ``name``/``expected``/``got`` name the key (as :class:`PlanError`)."""

    def __init__(self, name: str, expected: str, got):
        self.name, self.expected, self.got, self.key = name, expected, got, name
        super().__init__(f"The '{name}' setting must be {expected}. Got {got!r} instead.")


@dataclass
class CostModel:
    """The cost of labelling one image (module docstring); each field is also a key of the config file.

    :meth:`check` raises :class:`CostError` naming the first field its declaration refuses.
    """

    image_cost: float = option(
        3.0, "labelling cost of opening, inspecting and submitting one image (default unit: seconds)", ge=0
    )
    box_cost: float = option(
        7.0, "cost of drawing one box from scratch (7 s: extreme clicking; about 35 s for a classic drawn box)", ge=0
    )
    accept_cost: float = option(2.0, "cost of keeping one pre-annotation that matches a true box (`accept_iou`)", ge=0)
    correct_cost: float = option(
        4.0, "cost of moving, relabelling or deleting one pre-annotation that matches no true box", ge=0
    )
    accept_iou: float = option(
        0.7, "a pre-annotation with at least this IoU with a true box of its class is kept as it is", gt=0, le=1
    )
    cost_min_score: float | None = option(
        None,
        "detections at or above this score are shown as pre-annotations (actual cost) and counted as such "
        "(predicted cost); null: `export_min_score`, the pre-annotations people see",
        ge=0,
        le=1,
    )
    cost_estimate: str = option(
        "score_sum",
        "predicted cost of an unlabelled image: `score_sum` (each detection a true box with probability its "
        "score) or `count` (each shown detection a true box, accepted)",
        choices=COST_ESTIMATES,
    )
    cost_aware: bool = option(
        False,
        "select by informativeness / predicted cost (greedy knapsack) instead of the strategy's own order; "
        "needs a strategy that scores each image",
    )

    cost_calibration: bool = option(
        True,
        "a budget in boxes or cost spent on predicted figures (people labelling, or `simulated_preview: false`) "
        "scales each by actual / predicted over the batches labelled so far; `false`: the figures as predicted",
    )

    def check(self) -> CostModel:
        """Raise :class:`CostError` for the first field out of its declared range; returns ``self``."""
        check_fields(self, CostError)
        return self

    @property
    def min_score(self) -> float:
        """The pre-annotation threshold (``cost_min_score``, else :data:`DEFAULT_MIN_SCORE`)."""
        return DEFAULT_MIN_SCORE if self.cost_min_score is None else float(self.cost_min_score)

    def cost(self, boxes: int, accepted: int = 0, shown: int = 0) -> float:
        """The cost of an image with ``boxes`` true boxes, ``shown`` pre-annotations and ``accepted`` of them
        kept (``0 <= accepted <= min(boxes, shown)``)."""
        if not 0 <= accepted <= min(boxes, shown):
            raise ValueError(
                f"accepted pre-annotations must be in [0, min(boxes, shown)] = [0, {min(boxes, shown)}]. "
                f"Got accepted={accepted} (boxes={boxes}, shown={shown}) instead."
            )
        drawn, corrected = boxes - accepted, shown - accepted
        return float(
            self.image_cost + self.accept_cost * accepted + self.correct_cost * corrected + self.box_cost * drawn
        )

    def actual(self, boxes, labels, detections) -> dict:
        """The labelled image's cost against the pre-annotations it was shown.

        ``boxes`` ``[N, 4]`` xyxy and ``labels`` ``[N]``: its true boxes; ``detections``: the detector's output
        on it (anything with ``boxes``, ``labels``, ``scores``; torch or numpy), or ``None`` when it was labelled
        without pre-annotations. Returns ``{"cost", "boxes", "accepted", "shown"}``.
        """
        true_boxes = _array(boxes).reshape(-1, 4)
        if detections is None:
            shown, accepted = 0, 0
        else:
            keep = _array(detections.scores) >= self.min_score
            pred_boxes, pred_labels = _array(detections.boxes).reshape(-1, 4)[keep], _array(detections.labels)[keep]
            scores = _array(detections.scores)[keep]
            accepted = accepted_count(true_boxes, _array(labels), pred_boxes, pred_labels, scores, self.accept_iou)
            shown = int(keep.sum())
        n = len(true_boxes)
        return {"cost": self.cost(n, accepted, shown), "boxes": n, "accepted": accepted, "shown": shown}

    def predict(self, scores) -> tuple[float, float]:
        """``(expected boxes, expected cost)`` of an unlabelled image from its detections' ``scores``
        (``cost_estimate``; module docstring)."""
        scores = _array(scores).ravel()
        shown = scores >= self.min_score
        if self.cost_estimate == "count":
            count = float(shown.sum())
            return count, float(self.image_cost + self.accept_cost * count)
        expected = float(scores.sum())
        cost = (
            self.image_cost
            + float(np.sum(self.accept_cost * scores[shown] + self.correct_cost * (1.0 - scores[shown])))
            + self.box_cost * float(scores[~shown].sum())
        )
        return expected, float(cost)


def _array(values) -> np.ndarray:
    """A numpy copy of a tensor or array-like (torch tensors are read through ``.numpy()``)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, np.float64)


#: the ledger keys of a pick's actual and predicted figure, per budget unit
_FIGURES = {"boxes": ("boxes", "predicted_boxes"), "cost": ("cost", "predicted_cost")}


def calibration(picks, unit: str) -> float:
    """``sum(actual) / sum(predicted)`` in ``unit`` (``boxes`` or ``cost``) over ``picks`` (the ledger's picks,
    :attr:`~activedet.al.ledger.Ledger.picks`) that record both; 1.0 when none does or the predicted sum is 0 (a
    detector that predicted nothing gives no ratio to scale by)."""
    actual_key, predicted_key = _FIGURES[unit]
    known = [p for p in picks if p.get(actual_key) is not None and p.get(predicted_key) is not None]
    predicted = sum(float(p[predicted_key]) for p in known)
    return sum(float(p[actual_key]) for p in known) / predicted if predicted > 0 else 1.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``float64[N, M]`` IoU of xyxy boxes ``a[N, 4]`` and ``b[M, 4]`` (0 for degenerate pairs)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def accepted_count(true_boxes, true_labels, pred_boxes, pred_labels, pred_scores, iou: float) -> int:
    """How many predictions an annotator keeps: matched one-to-one to a true box of the same label with IoU >=
    ``iou``, predictions in decreasing score order each taking the best free true box (the VOC matching rule)."""
    true_labels, pred_labels = np.asarray(true_labels).ravel(), np.asarray(pred_labels).ravel()
    if len(true_labels) == 0 or len(pred_labels) == 0:
        return 0
    overlaps = box_iou(pred_boxes, true_boxes)
    overlaps[pred_labels[:, None] != true_labels[None, :]] = 0.0
    free, accepted = np.ones(len(true_labels), bool), 0
    for p in np.argsort(-np.asarray(pred_scores, np.float64), kind="stable"):
        row = np.where(free, overlaps[p], -1.0)
        best = int(np.argmax(row))
        if row[best] >= iou:
            free[best], accepted = False, accepted + 1
    return accepted


def cost_aware_order(indices, scores, costs) -> np.ndarray:
    """``int64`` pool indices in cost-aware pick order: the greedy knapsack by ``score / cost``.

    ``indices``, ``scores`` (larger = more informative; NaN = nothing to score), ``costs`` (> 0) are aligned.
    Scores are used as they are when none is negative; otherwise they are shifted so the lowest is 0 (a ratio
    needs a utility that does not change sign). Scored images come first by decreasing ratio (ties: cheaper
    first, then pool order); images without a score follow, cheapest first.
    """
    indices = np.asarray(indices, np.int64)
    scores, costs = np.asarray(scores, np.float64), np.asarray(costs, np.float64)
    if len(costs) and not (np.isfinite(costs).all() and (costs > 0).all()):
        raise ValueError(
            "cost_aware selection needs a positive, finite predicted cost per image; set image_cost > 0. "
            f"Got costs in [{costs.min()}, {costs.max()}] instead."
        )
    scored = np.isfinite(scores)
    utility = scores.copy()
    if scored.any() and utility[scored].min() < 0:
        utility[scored] -= utility[scored].min()
    ratio = np.where(scored, utility / np.where(costs > 0, costs, 1.0), -np.inf)
    # lexsort: last key first; unscored images (ratio -inf) end up last, cheapest first
    order = np.lexsort((indices, costs, -ratio, ~scored))
    return indices[order]


def scores_rank(strategy) -> bool:
    """Whether the last stage of ``strategy`` (a :class:`~activedet.strategies.base.Strategy`) picks from
    per-image scores: its own, or for a selection-only last stage the previous stage's."""
    stages = strategy.stages
    last = stages[-1]
    return last.score is not None or (not last.needs_inference and len(stages) > 1 and stages[-2].score is not None)


def check_cost_aware(cost: CostModel, strategy) -> None:
    """Raise :class:`CostError` when ``cost.cost_aware`` is on and ``strategy`` gives no per-image score, or an image
    may be predicted to cost nothing (``image_cost`` 0): refused before any work, not at the first empty image."""
    if cost.cost_aware and not scores_rank(strategy):
        raise CostError(
            "cost_aware",
            f"false with strategy '{strategy.name}' (it gives no per-image score to divide by the predicted "
            "cost); choose a strategy that scores images, e.g. entropy"
            + (
                ", or keep this strategy with cost_aware false and strategy_options "
                + ("{per_box: true}" if strategy.name == "class_balance" else "{class_balance: {per_box: true}}")
                + " (class gain per expected box)"
                if any(stage.name == "class_balance" for stage in strategy.stages)
                else ""
            ),
            True,
        )
    if cost.cost_aware and not cost.image_cost > 0:
        raise CostError(
            "image_cost",
            "> 0 with cost_aware (an image with no detection is predicted to cost image_cost, and selection "
            "divides by the predicted cost); set image_cost to the seconds it takes to open and submit an image",
            cost.image_cost,
        )
