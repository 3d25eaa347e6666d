"""Detectors: one adapter file per torchvision family, and the flat name -> builder map configs refer to.

Every detector trains like torchvision's (``model(images, targets) -> loss dict``) and predicts the documented
per-image type with ``model.predict(images, fields=...) -> list[Detections]``. The image classifier
(``"classifier"``, :mod:`.classifier`) has the same interface: one whole-image box per image, in training and in
its predictions.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from . import views
from .additions import builder_keywords, forwards, model_additions
from .classifier import ImageClassifier, build_classifier
from .ensemble import EnsembleDetector
from .faster_rcnn import FasterRCNNDetector, build_faster_rcnn
from .fcos import FCOSDetector, build_fcos
from .outputs import CORE_OPTIONAL_FIELDS, Detections
from .retinanet import RetinaNetDetector, build_retinanet
from .ssd import SSDDetector, build_ssd

__all__ = [
    "DETECTORS",
    "build_detector",
    "detector_additions",
    "Detections",
    "EXTRA_FIELDS",
    "OPTIONAL_FIELDS",
    "build_retinanet",
    "build_fcos",
    "build_ssd",
    "build_faster_rcnn",
    "RetinaNetDetector",
    "FCOSDetector",
    "SSDDetector",
    "FasterRCNNDetector",
    "build_classifier",
    "ImageClassifier",
    "EnsembleDetector",
]

SSD_BACKBONES = {"vgg16": "ssd300_vgg16", "mobilenet_v3_large": "ssdlite320_mobilenet_v3_large", "tiny": "tiny"}


@forwards(build_ssd, sets={"variant", "size"})
def ssd(num_classes: int, *, backbone: str = "vgg16", min_size: int | None = None, **kwargs: Any) -> SSDDetector:
    """SSD: backbone vgg16 (SSD300), mobilenet_v3_large (SSDlite320) or tiny (CPU-sized); min_size = input side.

    The config's generic ``backbone`` / ``min_size`` keys map onto :func:`build_ssd`'s ``variant`` / ``size``;
    every other keyword goes to :func:`build_ssd` unchanged.
    """
    if backbone not in SSD_BACKBONES:
        raise ValueError(
            f"The 'backbone' parameter of ssd must be one of {sorted(SSD_BACKBONES)}. Got {backbone!r} instead."
        )
    return build_ssd(num_classes, variant=SSD_BACKBONES[backbone], size=min_size, **kwargs)


#: The detectors of this package; :data:`DETECTORS` adds those the method packages declare.
BUILTIN_DETECTORS: dict[str, Callable[..., nn.Module]] = {
    "retinanet": build_retinanet,
    "fcos": build_fcos,
    "ssd": ssd,
    "faster_rcnn": build_faster_rcnn,
    "classifier": build_classifier,
}

#: The module attributes computed on first access (:func:`__getattr__`): they read the method packages.
_LAZY = ("DETECTORS", "EXTRA_FIELDS", "OPTIONAL_FIELDS")


def __getattr__(name: str) -> Any:
    """``DETECTORS``, ``EXTRA_FIELDS`` and ``OPTIONAL_FIELDS``, collected from the method packages the first time
    one is read (so importing this package imports no method), then kept as plain module attributes.

    * ``DETECTORS``: the flat map of detector names that configs and the CLI accept: the built-in ones, then each
      method package's ``DETECTORS`` (:mod:`activedet.plugins`).
    * ``EXTRA_FIELDS``: every ``Detections.extras`` key a caller may request, mapped to the module that fills it,
      declares it in its ``EXTRA_FIELDS`` and documents it.
    * ``OPTIONAL_FIELDS``: every name ``predict(..., fields=...)`` and ``Strategy.needs`` accept: the optional
      fields of :class:`Detections` and the extras keys.
    """
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ..plugins import collect, method_modules

    detectors = collect("model", "DETECTORS", BUILTIN_DETECTORS)
    extra_fields = {
        key: module.__name__
        for module in (views, *method_modules("model"))
        for key in sorted(getattr(module, "EXTRA_FIELDS", ()))
    }
    values = {
        "DETECTORS": detectors,
        "EXTRA_FIELDS": extra_fields,
        "OPTIONAL_FIELDS": CORE_OPTIONAL_FIELDS | frozenset(extra_fields),
    }
    globals().update(values)
    return values[name]


def _detectors() -> dict[str, Callable[..., nn.Module]]:
    return globals().get("DETECTORS") or __getattr__("DETECTORS")


def build_detector(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build detector ``name`` for ``num_classes`` foreground classes (labels 1..C) with builder keywords.

    Raises ``ValueError`` for an unknown name (listing the valid ones) or a keyword the builder does not take
    (listing the ones it does).
    """
    detectors = _detectors()
    if name not in detectors:
        close = difflib.get_close_matches(name, detectors, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"Unknown detector '{name}'; {hint}valid detectors are {sorted(detectors)}")
    builder = detectors[name]
    accepted, accepts_any = builder_keywords(builder)
    unknown = sorted(set(kwargs) - set(accepted)) if not accepts_any else []
    if unknown:
        raise ValueError(f"detector '{name}' does not take {unknown}; it accepts {accepted}")
    return builder(num_classes, **kwargs)


def detector_additions(name: str) -> dict[str, str]:
    """The model additions detector ``name`` takes: each builder keyword -> the summary of its addition."""
    builder = _detectors()[name]
    points = getattr(builder, "hook_points", frozenset())
    return {k: a.summary for a in model_additions(points).values() for k in a.keywords} if points else {}
