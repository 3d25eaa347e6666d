"""Detection metrics: PASCAL VOC mAP (the devkit's rules or continuous-pixel ones), COCO AP (pycocotools) and FROC
(IoU or centre-in-box hits); classification accuracy (one whole-image label per record, :mod:`.accuracy`); and
:func:`evaluate`, which runs several.

Every metric takes the ground truth (a :class:`~activedet.data.records.DetectionDataset`, or a list of
:class:`~activedet.data.records.ImageRecord` plus ``class_names``) and one prediction per record, in dataset order: a
:class:`~activedet.models.outputs.Detections` or a mapping with ``"boxes"`` (``[N, 4]`` xyxy original-image pixels),
``"scores"`` (``[N]``) and ``"labels"`` (``[N]`` in ``1..C``), as torch tensors or numpy arrays. Each module's
docstring states its conventions (box arithmetic, thresholds, tie order, ignored boxes, what ``NaN`` means).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from activedet.data.records import DetectionDataset, ImageRecord

from ..constants import METRICS  # metric names evaluate accepts
from .accuracy import accuracy
from .coco import COCO_METRICS, coco_ap
from .froc import DEEPLESION_FPS_PER_IMAGE, FROC_MATCHINGS, LUNA16_FPS_PER_IMAGE, froc
from .voc import VOC_RULES, voc_map

__all__ = [
    "evaluate",
    "check_options",
    "METRICS",
    "voc_map",
    "coco_ap",
    "froc",
    "accuracy",
    "COCO_METRICS",
    "VOC_RULES",
    "FROC_MATCHINGS",
    "LUNA16_FPS_PER_IMAGE",
    "DEEPLESION_FPS_PER_IMAGE",
]

_FUNCTIONS = {"voc": voc_map, "coco": coco_ap, "froc": froc, "accuracy": accuracy}


def evaluate(
    dataset: DetectionDataset | Sequence[ImageRecord],
    predictions: Sequence[Any],
    *,
    metrics: Sequence[str] | str = ("voc",),
    class_names: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, float | int]:
    """Run the requested metrics and return their numbers in one flat dict (ready for ``json.dumps``).

    Args:
        dataset: ground truth; a :class:`DetectionDataset` or a list of :class:`ImageRecord` with ``class_names``.
        predictions: one entry per record, in order (see the package docstring).
        metrics: names from :data:`METRICS`: ``"voc"`` (:func:`voc_map`), ``"coco"`` (:func:`coco_ap`), ``"froc"``
            (:func:`froc`), ``"accuracy"`` (:func:`accuracy`, classification records only); a single name is
            accepted too.
        class_names: the ``C`` class names, only when ``dataset`` is a list of records.
        options: keyword arguments per metric, e.g. ``{"voc": {"rules": "devkit"}, "froc": {"matching": "centre",
            "fps_per_image": DEEPLESION_FPS_PER_IMAGE}}``.

    Returns:
        Keys prefixed by the metric name; values are floats or ints, ``NaN`` where a metric is undefined (no ground
        truth; written as ``NaN`` by ``json.dumps``):

        * ``voc``: ``voc/mAP_11pt``, ``voc/mAP_area``, ``voc/num_classes_evaluated`` and, per class ``name``,
          ``voc/{name}/ap_11pt``, ``voc/{name}/ap_area``, ``voc/{name}/num_gt``, ``voc/{name}/num_det``.
        * ``coco``: ``coco/AP``, ``coco/AP50``, ``coco/AP75``, ``coco/APs``, ``coco/APm``, ``coco/APl``,
          ``coco/AR1``, ``coco/AR10``, ``coco/AR100``, ``coco/ARs``, ``coco/ARm``, ``coco/ARl`` and ``coco/{name}/AP``.
        * ``froc``: ``froc/sensitivity@{rate}`` per rate (``rate`` formatted with ``:g``, e.g. ``0.125``),
          ``froc/cpm``, ``froc/num_gt``.
        * ``accuracy``: ``accuracy/top1``, ``accuracy/mean_per_class``, ``accuracy/num_images`` and, per class
          ``name``, ``accuracy/{name}/accuracy`` (``NaN`` without images of the class), ``accuracy/{name}/num_images``.
    """
    names = _check_metrics(metrics, options)
    options = options or {}
    flat: dict[str, float | int] = {}
    for name in names:
        kwargs = dict(options.get(name, {}))
        if name == "voc":
            result = voc_map(dataset, predictions, class_names=class_names, **kwargs)
            flat.update({f"voc/{k}": result[k] for k in ("mAP_11pt", "mAP_area", "num_classes_evaluated")})
            flat.update({f"voc/{cls}/{k}": v for cls, row in result["per_class"].items() for k, v in row.items()})
        elif name == "coco":
            result = coco_ap(dataset, predictions, class_names=class_names, **kwargs)
            flat.update({f"coco/{k}": result[k] for k in COCO_METRICS})
            flat.update({f"coco/{cls}/AP": v for cls, v in result["per_class"].items()})
        elif name == "accuracy":
            result = accuracy(dataset, predictions, class_names=class_names, **kwargs)
            flat.update({f"accuracy/{k}": result[k] for k in ("top1", "mean_per_class", "num_images")})
            flat.update({f"accuracy/{cls}/{k}": v for cls, row in result["per_class"].items() for k, v in row.items()})
        else:
            result = froc(dataset, predictions, class_names=class_names, **kwargs)
            flat.update({f"froc/sensitivity@{r:g}": s for r, s in zip(result["fps_per_image"], result["sensitivity"])})
            flat.update({"froc/cpm": result["cpm"], "froc/num_gt": result["num_gt"]})
    return flat


def check_options(metrics: Sequence[str] | str, options: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Raise ``ValueError`` now if :func:`evaluate` would reject ``metrics`` or ``options`` later (an unknown metric
    or option name, a bad option value), by running the metrics once on a one-image, one-box case."""
    names = _check_metrics(metrics, options)
    record = ImageRecord("check", "check.png", 10, 10, [[0, 0, 10, 10]], [1])
    evaluate(
        [record],
        [{"boxes": [[0.0, 0.0, 10.0, 10.0]], "scores": [1.0], "labels": [1]}],
        metrics=names,
        class_names=["check"],
        options=options,
    )


def _check_metrics(metrics: Sequence[str] | str, options: Mapping[str, Any] | None) -> list[str]:
    """The requested metric names, in order and without repeats; raises on an unknown name or option key."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(
            f"The 'metrics' parameter of evaluate must be a non-empty list of names from "
            f"{list(METRICS)}. Got {metrics!r} instead."
        )
    stray = sorted(set(options or {}) - set(names))
    if stray:
        raise ValueError(
            f"The 'options' parameter of evaluate has keys {stray} that are not among the requested "
            f"metrics {names}; give options only for requested metrics."
        )
    for name, given in (options or {}).items():
        if not isinstance(given, Mapping):
            raise ValueError(
                f"The 'options' parameter of evaluate must map each metric to a mapping of its options. "
                f"Got {given!r} for {name!r}."
            )
        allowed = [
            p
            for p in inspect.signature(_FUNCTIONS[name]).parameters
            if p not in ("dataset", "predictions", "class_names")
        ]
        bad = sorted(set(given) - set(allowed))
        if bad:
            raise ValueError(
                f"The 'options' parameter of evaluate has unknown options {bad} for metric {name!r}; "
                f"it takes {allowed}."
            )
    return list(dict.fromkeys(names))
