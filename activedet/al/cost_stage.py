"""The labelling cost inside the cycle: what a pick spends at selection, what an image cost once labelled.

:mod:`activedet.al.cost` is the model (torch-free); this module applies it with the cycle's detector::

    select   candidates' predicted boxes and cost  (the cycle's model, predicted on demand and kept in memory)
             cost_aware: candidates ranked by score / predicted cost
             spend per pick: images 1; boxes / cost the oracle's previewed figure (simulation: the revealed boxes,
             the actual cost against the model's pre-annotations), else the predicted one (people labelling),
             with cost_calibration times the labelled batches' actual / predicted
             every pick records predicted_boxes and predicted_cost
    label    once its labels are in: each pick's actual cost against the batch's pre-annotations (cost, accepted)
    evaluate labelled_cost: the initial set at image_cost + box_cost per box (labelled without a model), plus the
             recorded cost of every pick

Predictions are recomputed on a resume (the model is deterministic in eval mode), so nothing here is written to
disk but the picks' records.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import numpy as np

from ..engine.inference import predict_dataset
from .cost import CostModel, calibration, check_cost_aware, cost_aware_order

__all__ = [
    "PickCosts",
    "actual_costs",
    "budget_picks",
    "check_cost_setup",
    "cost_per_image",
    "labelled_cost",
    "pick_costs",
    "spend_scale",
    "spender",
]


class PickCosts:
    """Predicted boxes and cost (and the detections behind them) of pool images under ``model``, computed on
    demand (every process of a distributed run together) and kept."""

    def __init__(self, cost: CostModel, model, pool, *, device="cpu", batch_size: int = 8):
        self.cost, self.model, self.pool = cost, model, pool
        self.device, self.batch_size = device, batch_size
        self._detections: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def ensure(self, indices) -> None:
        """Predict the images of ``indices`` not predicted yet (one sharded pass; every process calls it)."""
        missing = sorted({int(i) for i in indices} - self._detections.keys())
        if not missing:
            return
        outputs = predict_dataset(self.model, self.pool, missing, device=self.device, batch_size=self.batch_size)
        for index, det in zip(missing, outputs):
            self._detections[index] = (det.boxes.numpy(), det.labels.numpy(), det.scores.numpy())

    def predicted(self, index: int) -> tuple[float, float]:
        """``(expected boxes, expected cost)`` of image ``index`` (:meth:`CostModel.predict`)."""
        self.ensure([index])
        return self.cost.predict(self._detections[int(index)][2])

    def actual(self, index: int) -> dict:
        """The cost of image ``index`` as labelled in the pool, against the model's pre-annotations."""
        self.ensure([index])
        boxes, labels, scores = self._detections[int(index)]
        record = self.pool.records[int(index)]
        return self.cost.actual(record.boxes, record.labels, _Detections(boxes, labels, scores))

    def order(self, pool_indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The candidates in cost-aware pick order (:func:`~activedet.al.cost.cost_aware_order`)."""
        self.ensure(pool_indices)
        costs = np.array([self.predicted(i)[1] for i in pool_indices], np.float64)
        return cost_aware_order(pool_indices, scores, costs)

    def prefetch(self, picks: Iterator[int], chunk: int) -> Iterator[int]:
        """``picks`` unchanged, predicted ``chunk`` at a time ahead of their use (one pass per chunk, not per
        image)."""
        picks = iter(picks)
        while True:
            ahead = [int(i) for i in islice(picks, max(1, chunk))]
            if not ahead:
                return
            self.ensure(ahead)
            yield from ahead


class _Detections:
    """Boxes, labels and scores as :meth:`CostModel.actual` reads them."""

    def __init__(self, boxes, labels, scores):
        self.boxes, self.labels, self.scores = boxes, labels, scores


def spend_scale(unit: str, oracle, costs: PickCosts | None, picks) -> float | None:
    """The factor each predicted figure is spent at (:func:`~activedet.al.cost.calibration` over the labelled
    ``picks``), or ``None`` where the budget spends no predicted figure or ``cost_calibration`` is off."""
    if unit == "images" or costs is None or oracle.previews_cost or not costs.cost.cost_calibration:
        return None
    return calibration(picks, unit)


def spender(unit: str, oracle, costs: PickCosts | None, scale: float | None = None) -> Callable[[int], float]:
    """What a pick spends in ``unit``: the oracle's previewed figure when it has one, else the predicted one
    (times ``scale`` when given)."""
    if unit == "images":
        return lambda index: 1.0
    if oracle.previews_cost:
        if unit == "boxes":
            return lambda index: float(oracle.num_boxes(index))
        return lambda index: costs.actual(index)["cost"]
    position, factor = (0 if unit == "boxes" else 1), (1.0 if scale is None else scale)
    return lambda index: costs.predicted(index)[position] * factor


def pick_costs(costs: PickCosts, picks: list[int]) -> list[dict]:
    """Per pick: ``predicted_boxes`` and ``predicted_cost`` (rounded to 6 decimals), for its selection record."""
    costs.ensure(picks)
    out = []
    for index in picks:
        boxes, cost = costs.predicted(index)
        out.append({"predicted_boxes": round(boxes, 6), "predicted_cost": round(cost, 6)})
    return out


def actual_costs(cost: CostModel, pool, indices: list[int], predictions: list) -> list[dict]:
    """Per labelled image of a batch: its ``cost``, pre-annotations ``shown`` and ``accepted``, against
    ``predictions`` (the batch's pre-annotations, in the same order)."""
    out = []
    for index, det in zip(indices, predictions):
        record = pool.records[int(index)]
        actual = cost.actual(record.boxes, record.labels, det)
        out.append({"cost": round(actual["cost"], 6), "accepted": actual["accepted"], "shown": actual["shown"]})
    return out


def labelled_cost(cost: CostModel, ledger, oracle) -> float:
    """The labelling cost of the ledger's labelled set: each initial image drawn by hand, each pick its recorded
    ``cost`` (a pick of a run made without cost records: drawn by hand too)."""
    recorded = {int(p["index"]): float(p["cost"]) for p in ledger.picks if p.get("cost") is not None}
    labelled = ledger.labelled()
    by_hand = np.array([i for i in labelled.tolist() if i not in recorded], np.int64)
    total = sum(recorded[i] for i in labelled.tolist() if i in recorded)
    total += cost.image_cost * len(by_hand) + cost.box_cost * oracle.count_boxes(by_hand)
    return round(float(total), 6)


def check_cost_setup(unit: str, oracle, cost: CostModel | None, strategy) -> None:
    """Raise ``ValueError`` when a budget in ``unit`` cannot be spent with this oracle and cost model, or the cost
    model's settings cannot work with ``strategy``."""
    if unit == "cost" and cost is None:
        raise ValueError(
            "budget_unit 'cost' needs a labelling cost model: pass cost=CostModel(...) (activedet.al.cost) "
            "to ActiveLearningRun"
        )
    if unit == "boxes" and cost is None and not oracle.previews_cost:
        raise ValueError(
            f"budget_unit 'boxes' spends each picked image's boxes before it is labelled, which "
            f"{type(oracle).__name__} cannot tell; use budget_unit 'images', or pass cost=CostModel() "
            "(activedet.al.cost) to spend the boxes predicted from the detector's detections"
        )
    if cost is not None:
        cost.check()
        check_cost_aware(cost, strategy)


#: a budget spent on predicted figures takes at most this many times the images the labelled set predicts
PREDICTED_BATCH_CAP = 2


def budget_picks(
    stage,
    inputs,
    options,
    oracle,
    costs: PickCosts | None,
    pool_size: int,
    scale: float | None = None,
    *,
    near_duplicates: Callable[[Iterable[int]], Iterator[int]] | None = None,
) -> list[int]:
    """The picks of cycle's selection within the budget: ``stage``'s own order, or with ``cost_aware`` the
    candidates by score / predicted cost; each pick spends what :func:`spender` says (predicted figures times
    ``scale``, :func:`spend_scale`).

    A budget spent on *predicted* boxes (people labelling), or predicted cost with ``image_cost`` 0, stops at
    :data:`PREDICTED_BATCH_CAP` times ``inputs.budget_hint`` images (the labelled set's boxes or cost per image),
    with a warning: a weak detector that predicts almost nothing would otherwise send most of the pool to the
    annotators. ``near_duplicates`` filters the picks before they are spent
    (:class:`~activedet.strategies.near_duplicates.NearDuplicateFilter`)."""
    if costs is not None and costs.cost.cost_aware:
        picks = iter(costs.order(inputs.pool.indices, inputs.pool.scores).tolist())
    else:
        picks = stage.select(inputs)
    if near_duplicates is not None:
        picks = near_duplicates(picks)
    if costs is not None:
        picks = costs.prefetch(picks, inputs.budget_hint)
    spend = spender(options.budget_unit, oracle, costs, scale)
    unit = options.budget_unit
    # an image costs nothing predicted only in boxes, or in cost at image_cost 0; else the budget bounds the batch
    free = unit == "boxes" or (unit == "cost" and costs is not None and costs.cost.image_cost == 0)
    if oracle.previews_cost or not free:
        return options.take_budget(picks, spend, pool_size)
    cap = PREDICTED_BATCH_CAP * max(1, inputs.budget_hint)
    taken = options.take_budget(islice(picks, cap), spend, pool_size)
    spent, budget = sum(spend(i) for i in taken), options.budget_count(pool_size)
    if len(taken) == cap and spent < budget:
        fix = "use budget_unit 'cost', where every image costs image_cost" if unit == "boxes" else "set image_cost > 0"
        warnings.warn(
            f"the batch stopped at {cap} images ({PREDICTED_BATCH_CAP} x the {inputs.budget_hint} that the labelled "
            f"set's {unit} per image give) with {spent:.1f} of the budget's {budget} {unit} predicted: the "
            f"detector predicts few boxes; check its metrics, or {fix}",
            stacklevel=2,
        )
    return taken


def cost_per_image(cost: CostModel | None, ledger, oracle) -> float | None:
    """The labelled images' mean labelling cost (``None`` without a cost model): the selection's hint of how many
    images a cost budget buys."""
    if cost is None:
        return None
    return labelled_cost(cost, ledger, oracle) / max(1, len(ledger.labelled()))
