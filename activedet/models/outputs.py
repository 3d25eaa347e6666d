"""The one per-image detector output type that every adapter returns and every strategy reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

__all__ = ["Detections", "CORE_OPTIONAL_FIELDS"]

#: The optional fields of :class:`Detections` itself, filled by the plain detector adapters on request.
CORE_OPTIONAL_FIELDS = frozenset({"class_probs", "proposals", "embedding", "dense_probs", "features"})


@dataclass
class Detections:
    """Post-NMS detections of one image, the optional outputs the detector interface shares, and one mapping of
    what a single method adds.

    Always present:
        boxes: ``float32[N, 4]`` xyxy in **original-image pixels** (the size the image had before the model's
            internal resize).
        scores: ``float32[N]`` confidence of the predicted class, in [0, 1], sorted descending.
        labels: ``int64[N]`` predicted class in ``1..C``.
        prob_kind: ``"sigmoid"`` (RetinaNet, FCOS: independent per-class probabilities, no background column)
            or ``"softmax"`` (Faster R-CNN, SSD: a distribution over ``C + 1`` classes, column 0 = background).

    Present only when requested (``None`` otherwise), all computed in the same forward pass. These are fields
    because the plain detector adapters fill them (their ``PROVIDES``) and the method-specific predictors pass
    them through:
        class_probs: ``float32[N, K]`` the full class vector each detection came from: ``K = C`` sigmoid
            vector of the source anchor/point for sigmoid heads, ``K = C + 1`` softmax row of the source RoI
            (Faster R-CNN) or default box (SSD) for softmax heads. Every adapter; read by the uncertainty
            measures, the view-consistency and localization-stability strategies and the matched formulation of
            the scores over several passes.
        proposals: ``float32[N, 4]`` xyxy original pixels, the RPN proposal each detection was regressed from
            (two-stage detectors only; ``None`` for single-stage ones even when requested). Faster R-CNN;
            read by localization tightness.
        embedding: ``float32[D]`` pooled image embedding (global average of the backbone/FPN feature map
            named in the adapter's docstring). Every adapter; read by the diversity and hybrid strategies.
        dense_probs: ``float32[A, K]`` class probabilities of every anchor/point/default box of the image before
            score thresholding and NMS (same ``K`` convention as ``class_probs``; single-stage detectors only).
            RetinaNet, FCOS, SSD (and the mean over the predictions of a stochastic predictor); read by the
            anchor-level scores.
        features: ``float32[N, D]`` one feature vector per detection (the adapter's docstring says which map
            and where it is sampled). Faster R-CNN and RetinaNet; read by the strategies that match detections
            across images.

    extras: ``{key: value}``, what a single method's detector or predictor adds (empty by default), read as
        ``det.extras["key"]`` or ``det.extras.get("key")``. Each key is documented in the module that fills it,
        which declares it in its ``EXTRA_FIELDS``; :data:`activedet.models.EXTRA_FIELDS` maps every key to that
        module: ``class_probs_2``, ``dense_probs_2``, ``dense_weights`` (:mod:`activedet.methods.miaod.model`);
        ``passes``, ``dense_expected_entropy``, ``dense_box_var`` (:mod:`activedet.methods.stochastic.model`);
        ``uncertainties`` (:mod:`activedet.methods.almdn.model`); ``views`` and, on each view, ``reference_boxes``
        (:mod:`activedet.models.views`); ``class_quality`` (:mod:`activedet.methods.ppal.model`); ``influence``
        (:mod:`activedet.methods.isal.model`).

    A requested name (``predict(..., fields=...)``, ``Strategy.needs``) is a core optional field or an extras key;
    :data:`activedet.models.OPTIONAL_FIELDS` lists them all and :meth:`check_fields` refuses any other.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    prob_kind: str = "sigmoid"
    class_probs: Tensor | None = None
    proposals: Tensor | None = None
    embedding: Tensor | None = None
    dense_probs: Tensor | None = None
    features: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: torch.device | str) -> Detections:
        """A copy with every tensor moved to ``device``, including those in ``extras`` (and in the
        :class:`Detections`, lists and dicts it holds)."""
        moved = {
            f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)
        }
        return replace(self, **moved, extras={key: _moved(value, device) for key, value in self.extras.items()})

    def with_extras(self, **values: Any) -> Detections:
        """A copy whose ``extras`` also hold ``values`` (a new mapping: this one's is left as it is)."""
        return replace(self, extras={**self.extras, **values})

    def get(self, name: str) -> Any:
        """The value of a requestable name (see :meth:`check_fields`): the optional field of that name, else the
        extras key (``None`` when absent)."""
        return getattr(self, name) if name in CORE_OPTIONAL_FIELDS else self.extras.get(name)

    def as_target_dict(self) -> dict[str, Tensor]:
        """``{"boxes", "scores", "labels"}``, the dict torchvision's models return in eval mode."""
        return {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}

    @staticmethod
    def check_fields(requested: Iterable[str]) -> frozenset[str]:
        """Validate names passed as ``fields=``; raises ``ValueError`` listing the valid ones."""
        # imported here: the package collects the extras keys from the modules that fill them, which import this one
        from . import OPTIONAL_FIELDS

        requested = frozenset(requested)
        unknown = sorted(requested - OPTIONAL_FIELDS)
        if unknown:
            raise ValueError(
                f"Unknown Detections field(s) {unknown}; valid optional fields are {sorted(OPTIONAL_FIELDS)}"
            )
        return requested


def _moved(value: Any, device: torch.device | str) -> Any:
    """``value`` with every tensor in it on ``device``: tensors, :class:`Detections`, lists, tuples and dicts of
    them; anything else unchanged."""
    if isinstance(value, (Tensor, Detections)):
        return value.to(device)
    if isinstance(value, list):
        return [_moved(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(_moved(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    return value
