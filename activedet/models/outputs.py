"""The one per-image detector output type that every adapter returns and every strategy reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["Detections", "OPTIONAL_FIELDS", "UNCERTAINTY_TYPES"]

#: Optional fields a caller may request from ``predict(..., fields=...)``.
OPTIONAL_FIELDS = frozenset(
    {
        "class_probs",
        "proposals",
        "embedding",
        "dense_probs",
        "class_probs_2",
        "dense_probs_2",
        "dense_weights",
        "dense_expected_entropy",
        "dense_box_var",
        "passes",
        "uncertainties",
        "views",
        "features",
        "class_quality",
        "influence",
    }
)

#: the four AL-MDN uncertainties, in the column order of ``Detections.uncertainties``
UNCERTAINTY_TYPES = ("aleatoric_loc", "epistemic_loc", "aleatoric_cls", "epistemic_cls")


@dataclass
class Detections:
    """Post-NMS detections of one image, plus optional per-detection and per-image extras.

    Always present:
        boxes: ``float32[N, 4]`` xyxy in **original-image pixels** (the size the image had before the model's
            internal resize).
        scores: ``float32[N]`` confidence of the predicted class, in [0, 1], sorted descending.
        labels: ``int64[N]`` predicted class in ``1..C``.
        prob_kind: ``"sigmoid"`` (RetinaNet, FCOS: independent per-class probabilities, no background column)
            or ``"softmax"`` (Faster R-CNN, SSD: a distribution over ``C + 1`` classes, column 0 = background).

    Present only when requested (``None`` otherwise), all computed in the same forward pass:
        class_probs: ``float32[N, K]`` the full class vector each detection came from: ``K = C`` sigmoid
            vector of the source anchor/point for sigmoid heads, ``K = C + 1`` softmax row of the source RoI
            (Faster R-CNN) or default box (SSD) for softmax heads.
        proposals: ``float32[N, 4]`` xyxy original pixels, the RPN proposal each detection was regressed from
            (two-stage detectors only; ``None`` for single-stage ones even when requested).
        embedding: ``float32[D]`` pooled image embedding (global average of the backbone/FPN feature map
            named in the adapter's docstring).
        dense_probs: ``float32[A, K]`` class probabilities of every anchor/point/default box of the image before
            score thresholding and NMS (same ``K`` convention as ``class_probs``; single-stage detectors only).
        class_probs_2, dense_probs_2: as ``class_probs`` / ``dense_probs`` for a second classifier of the same
            anchors (MI-AOD's adversarial classifier ``f2``; ``None`` for detectors with one classifier).
        dense_weights: ``float32[A, C]`` MI-AOD's MIL instance weights of the same anchors as ``dense_probs``.

    Filled by several predictions of the same image (MC-dropout passes or ensemble members, see
    :mod:`activedet.models.stochastic`); ``dense_probs`` is then the mean over the ``T`` predictions:
        dense_expected_entropy: ``float32[A]`` mean over the predictions of each anchor's entropy (binary entropies
            summed over classes for sigmoid heads, the entropy of the ``C + 1`` softmax for softmax heads).
        dense_box_var: ``float32[A]`` variance over the predictions of each anchor's box regression output, summed
            over its 4 coordinates (encoded deltas, so scale-free).
        passes: ``list[Detections]``, one per prediction, each with ``class_probs``.

    Filled by mixture-density heads (AL-MDN, :mod:`activedet.models.almdn`):
        uncertainties: ``float32[N, 4]`` per detection, the columns of :data:`UNCERTAINTY_TYPES`: aleatoric and
            epistemic localisation uncertainty (max over the 4 box coordinates) and aleatoric and epistemic
            classification uncertainty (of the detected class).

    Filled by a view predictor (:mod:`activedet.models.views`: augmented or noisy copies of the image, CALD and
    localization stability):
        views: ``list[Detections]``, the detections of each view of the image, **in that view's pixel frame**;
            each carries ``reference_boxes``.
        reference_boxes: (on a view) ``float32[R, 4]`` this image's parent detections (the reference pass, in the
            parent's order) mapped into the view's pixel frame (enclosing rectangles where the view rotates).

    Per-detection embeddings (PPAL's category-conditioned matching):
        features: ``float32[N, D]`` one feature vector per detection (the adapter's docstring says which map and
            where it is sampled).

    Filled by :class:`~activedet.models.difficulty.DifficultyPredictor` (PPAL's difficulty-calibrated uncertainty):
        class_quality: ``float32[C]`` the model's per-class quality ``Q_c`` learned during training (index
            ``c - 1`` for class ``c``; 0 = hard, 1 = easy), the same tensor for every image.

    Filled by :class:`~activedet.models.influence.InfluencePredictor` (ISAL):
        influence: ``float64[]`` the predicted change of the validation loss from training on this image with its
            pseudo labels (negative = helpful); ``None`` when the image has no pseudo label to score.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    prob_kind: str = "sigmoid"
    class_probs: Tensor | None = None
    proposals: Tensor | None = None
    embedding: Tensor | None = None
    dense_probs: Tensor | None = None
    class_probs_2: Tensor | None = None
    dense_probs_2: Tensor | None = None
    dense_weights: Tensor | None = None
    dense_expected_entropy: Tensor | None = None
    dense_box_var: Tensor | None = None
    passes: list[Detections] | None = None
    uncertainties: Tensor | None = None
    views: list[Detections] | None = None
    reference_boxes: Tensor | None = None
    features: Tensor | None = None
    class_quality: Tensor | None = None
    influence: Tensor | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: torch.device | str) -> Detections:
        """A copy with every tensor moved to ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)
        }
        for name in ("passes", "views"):
            if getattr(self, name) is not None:
                moved[name] = [p.to(device) for p in getattr(self, name)]
        return replace(self, **moved)

    def as_target_dict(self) -> dict[str, Tensor]:
        """``{"boxes", "scores", "labels"}``, the dict torchvision's models return in eval mode."""
        return {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}

    @staticmethod
    def check_fields(requested: Iterable[str]) -> frozenset[str]:
        """Validate names passed as ``fields=``; raises ``ValueError`` listing the valid ones."""
        requested = frozenset(requested)
        unknown = sorted(requested - OPTIONAL_FIELDS)
        if unknown:
            raise ValueError(
                f"Unknown Detections field(s) {unknown}; valid optional fields are {sorted(OPTIONAL_FIELDS)}"
            )
        return requested
