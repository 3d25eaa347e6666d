"""Detectors: one adapter file per torchvision family, and the flat name -> builder map configs refer to.

Every detector trains like torchvision's (``model(images, targets) -> loss dict``) and predicts the documented
per-image type with ``model.predict(images, fields=...) -> list[Detections]``. The image classifier
(``"classifier"``, :mod:`.classifier`) has the same interface: one whole-image box per image, in training and in
its predictions.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from ..methods.almdn import model as almdn
from ..methods.almdn.model import MDNSSD, MDNRetinaNet, build_almdn_retinanet, build_almdn_ssd
from ..methods.isal import model as influence
from ..methods.miaod import model as miaod
from ..methods.miaod.model import MIAODRetinaNet, build_miaod
from ..methods.ppal import model as difficulty
from ..methods.stochastic import model as stochastic
from ..methods.stochastic.model import EnsembleDetector, StochasticPredictor
from . import views
from .classifier import ImageClassifier, build_classifier
from .faster_rcnn import FasterRCNNDetector, build_faster_rcnn
from .fcos import FCOSDetector, build_fcos
from .outputs import CORE_OPTIONAL_FIELDS, Detections
from .retinanet import RetinaNetDetector, build_retinanet
from .ssd import SSDDetector, build_ssd

__all__ = [
    "DETECTORS",
    "build_detector",
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
    "build_miaod",
    "MIAODRetinaNet",
    "EnsembleDetector",
    "StochasticPredictor",
    "build_almdn_ssd",
    "build_almdn_retinanet",
    "MDNSSD",
    "MDNRetinaNet",
    "build_classifier",
    "ImageClassifier",
]

#: Every ``Detections.extras`` key a caller may request, mapped to the module that fills it, declares it in its
#: ``EXTRA_FIELDS`` and documents it.
EXTRA_FIELDS: dict[str, str] = {
    name: module.__name__
    for module in (miaod, stochastic, almdn, views, difficulty, influence)
    for name in sorted(module.EXTRA_FIELDS)
}

#: Every name ``predict(..., fields=...)`` and ``Strategy.needs`` accept: the optional fields of
#: :class:`Detections` and the extras keys.
OPTIONAL_FIELDS = CORE_OPTIONAL_FIELDS | frozenset(EXTRA_FIELDS)

SSD_BACKBONES = {"vgg16": "ssd300_vgg16", "mobilenet_v3_large": "ssdlite320_mobilenet_v3_large", "tiny": "tiny"}


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


def almdn_ssd(num_classes: int, *, backbone: str = "vgg16", min_size: int | None = None, **kwargs: Any) -> MDNSSD:
    """AL-MDN SSD: backbone and min_size as :func:`ssd`; ``components``, ``cls_loss``, ``beta`` and every other
    keyword go to :func:`build_almdn_ssd`."""
    if backbone not in SSD_BACKBONES:
        raise ValueError(
            f"The 'backbone' parameter of almdn_ssd must be one of {sorted(SSD_BACKBONES)}. Got {backbone!r} instead."
        )
    return build_almdn_ssd(num_classes, variant=SSD_BACKBONES[backbone], size=min_size, **kwargs)


#: The flat map of detector names that configs and the CLI accept.
DETECTORS: dict[str, Callable[..., nn.Module]] = {
    "retinanet": build_retinanet,
    "fcos": build_fcos,
    "ssd": ssd,
    "faster_rcnn": build_faster_rcnn,
    "miaod": build_miaod,
    "almdn_ssd": almdn_ssd,
    "almdn_retinanet": build_almdn_retinanet,
    "classifier": build_classifier,
}


#: builders whose ``**kwargs`` go to another builder: (that builder, its keywords the wrapper sets itself)
_FORWARDS = {
    ssd: ((build_ssd,), {"variant", "size"}),
    almdn_ssd: ((build_almdn_ssd, build_ssd), {"variant", "size", "dropout"}),
    build_almdn_retinanet: (
        (build_retinanet,),
        {"dropout", "difficulty_ema", "difficulty_momentum", "difficulty_xi", "difficulty_absent"},
    ),
}


def build_detector(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build detector ``name`` for ``num_classes`` foreground classes (labels 1..C) with builder keywords.

    Raises ``ValueError`` for an unknown name (listing the valid ones) or a keyword the builder does not take
    (listing the ones it does).
    """
    if name not in DETECTORS:
        close = difflib.get_close_matches(name, DETECTORS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"Unknown detector '{name}'; {hint}valid detectors are {sorted(DETECTORS)}")
    builder = DETECTORS[name]
    params = inspect.signature(builder).parameters
    accepted = {k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if builder in _FORWARDS:  # wrappers that pass their other keywords on to another builder
        targets, hidden = _FORWARDS[builder]
        accepted |= {
            k
            for target in targets
            for k, p in inspect.signature(target).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        } - hidden
        accepts_any = False
    accepted = sorted(accepted)
    unknown = sorted(set(kwargs) - set(accepted)) if not accepts_any else []
    if unknown:
        raise ValueError(f"detector '{name}' does not take {unknown}; it accepts {accepted}")
    return builder(num_classes, **kwargs)
