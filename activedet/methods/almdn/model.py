"""AL-MDN (Choi et al., ICCV 2021): the SSD and RetinaNet detectors with mixture-density heads (methods.md §4).

The heads, their outputs and losses are in :mod:`.head`: every anchor predicts a Gaussian mixture for each box
coordinate and for the class scores, and inference is torchvision's, on the mixed prediction.

Uncertainties of a detection (from its source anchor, one forward pass; ``predict(fields={"uncertainties"})``),
the ``Detections.extras`` key this module fills (:data:`EXTRA_FIELDS`):

* ``uncertainties``: ``float32[N, 4]`` per detection, the columns of :data:`UNCERTAINTY_TYPES`: aleatoric loc
  ``max_j Σ_k π_kj σ_kj`` and epistemic loc ``max_j Σ_k π_kj (μ_kj - μ̄_j)²`` (max over the 4 box coordinates
  ``j``); aleatoric cls ``Σ_k π_k v_k[c]`` and epistemic cls ``Σ_k π_k (P(μ_k)[c] - p[c])²``, for the detected
  class ``c``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...models import SSD_BACKBONES
from ...models._common import check_choice, check_float, check_int, single_stage_predict
from ...models.additions import forwards
from ...models.outputs import Detections
from ...models.retinanet import RetinaNetDetector, build_retinanet
from ...models.ssd import SSDDetector, _out_channels, build_ssd
from ...models.weights import WeightsSpec, load_weights
from .head import (
    CLS_LOSSES,
    MDNHead,
    _MDNRetinaHead,
    _positive_loc_nll,
    _sampled_logits,
    detection_uncertainties,
    mixture_loc_nll,
)

#: The ``Detections.extras`` keys this module fills (module docstring).
EXTRA_FIELDS = frozenset({"uncertainties"})
#: Those with one row per detection (narrowed with the detections, e.g. by :mod:`activedet.models.views`).
PER_DETECTION_EXTRAS = frozenset({"uncertainties"})

#: the four AL-MDN uncertainties, in the column order of ``Detections.extras["uncertainties"]``
UNCERTAINTY_TYPES = ("aleatoric_loc", "epistemic_loc", "aleatoric_cls", "epistemic_cls")

__all__ = [
    "EXTRA_FIELDS",
    "UNCERTAINTY_TYPES",
    "MDNHead",
    "MDNSSD",
    "MDNRetinaNet",
    "build_almdn_ssd",
    "build_almdn_retinanet",
    "almdn_ssd",
    "DETECTORS",
    "CLS_LOSSES",
    "mixture_loc_nll",
    "detection_uncertainties",
]


def _uncertainty_extras(fields: frozenset[str], kind: str):
    def extras(head_outputs, anchors, image_sizes, features, detections) -> list[dict[str, Tensor]]:
        if "uncertainties" not in fields:
            return [{} for _ in detections]
        # labels are 1..C; the channel of label c is c in both layouts (RetinaNet's channel 0 is never trained)
        return [
            {"uncertainties": detection_uncertainties(head_outputs, i, det["anchor_idxs"], det["labels"], kind)}
            for i, det in enumerate(detections)
        ]

    return extras


class MDNSSD(SSDDetector):
    """SSD with the AL-MDN head (module docstring); ``predict`` adds ``uncertainties`` on request."""

    PROVIDES = SSDDetector.PROVIDES | EXTRA_FIELDS

    def __init__(self, *args: Any, cls_loss: str = "type1", beta: float = 2.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cls_loss, self.beta = cls_loss, float(beta)

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        """Mixture NLL + mixture classification with 3:1 hard-negative mining, both / N (module docstring)."""
        loc_losses, cls_targets, num_foreground = [], [], 0
        for i, (target, anchors_i, matched) in enumerate(zip(targets, anchors, matched_idxs)):
            fg = torch.where(matched >= 0)[0]
            num_foreground += fg.numel()
            loc_losses.append(
                _positive_loc_nll(
                    head_outputs, i, fg, target["boxes"][matched[fg]], anchors_i, self.box_coder, self.beta
                )
            )
            labels = torch.zeros_like(matched)
            labels[fg] = target["labels"][matched[fg]]
            cls_targets.append(labels)
        cls_targets = torch.stack(cls_targets)  # [B, A]
        logits = _sampled_logits(head_outputs, self.training)  # [B, A, K, C + 1]
        pi = head_outputs["cls_pi"]
        index = cls_targets[..., None, None].expand(*logits.shape[:3], 1)
        if self.cls_loss == "type1":
            ce = torch.logsumexp(logits, dim=-1) - logits.gather(-1, index).squeeze(-1)  # [B, A, K]
            cls_loss = (pi * ce).sum(dim=-1)
        else:
            log_probs = torch.log_softmax(logits, dim=-1).gather(-1, index).squeeze(-1)
            cls_loss = -torch.logsumexp(torch.log(pi.clamp_min(1e-12)) + log_probs, dim=-1)
        foreground = cls_targets > 0
        negative_loss = cls_loss.detach().clone()
        negative_loss[foreground] = -float("inf")
        _, order = negative_loss.sort(dim=1, descending=True)
        background = order.sort(dim=1)[1] < self.neg_to_pos_ratio * foreground.sum(dim=1, keepdim=True)
        n = max(1, num_foreground)
        return {
            "bbox_regression": torch.stack(loc_losses).sum() / n,
            "classification": (cls_loss[foreground].sum() + cls_loss[background].sum()) / n,
        }

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        return single_stage_predict(self, images, fields, extras=_uncertainty_extras(fields, "softmax"))


class MDNRetinaNet(RetinaNetDetector):
    """RetinaNet with the AL-MDN head (module docstring); ``predict`` adds ``uncertainties`` on request."""

    PROVIDES = RetinaNetDetector.PROVIDES | EXTRA_FIELDS

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        return single_stage_predict(self, images, fields, extras=_uncertainty_extras(fields, "sigmoid"))


def _check_mdn(func: str, components: Any, cls_loss: Any, beta: Any, separable: Any, options: dict[str, Any]) -> None:
    if "dropout" in options:
        raise ValueError(
            f"{func} does not take 'dropout': AL-MDN's uncertainties come from one deterministic pass "
            "(use detector ssd/retinanet with dropout for MC-dropout)"
        )
    difficulty = sorted(name for name in options if name.startswith("difficulty_"))
    if difficulty:
        raise ValueError(
            f"{func} does not take {difficulty}: PPAL's class difficulty is kept by the plain "
            "retinanet and faster_rcnn detectors"
        )
    check_int(func, "components", components, 1)
    check_choice(func, "cls_loss", cls_loss, CLS_LOSSES)
    check_float(func, "beta", beta, 1e-6, math.inf)
    if not isinstance(separable, bool):
        raise ValueError(
            f"The 'separable' parameter of {func} must be an instance of 'bool'. Got {separable!r} instead."
        )


def build_almdn_ssd(
    num_classes: int,
    *,
    components: int = 4,
    cls_loss: str = "type1",
    beta: float = 2.0,
    separable: bool = True,
    weights: WeightsSpec = None,
    weights_strict: bool = True,
    **ssd_options: Any,
) -> MDNSSD:
    """An SSD with the AL-MDN head for ``num_classes`` foreground classes (labels ``1..C``, softmax over ``C + 1``).

    Args:
        components: ``K`` mixture components (4, the released value).
        cls_loss: ``"type1"`` (default) or ``"type2"`` (module docstring).
        beta: the localisation loss's balance β (2).
        separable: depthwise-separable prediction layers (default) or the released code's dense 3x3 ones.
        weights: a checkpoint of this model (local file); ``weights_strict=False`` loads the tensors whose name
            and shape match (e.g. the extractor of a plain SSD checkpoint).
        **ssd_options: any keyword of :func:`~activedet.models.build_ssd` (``variant``, ``size``,
            ``weights_backbone``, ...) except ``dropout``.
    """
    func = "build_almdn_ssd"
    _check_mdn(func, components, cls_loss, beta, separable, ssd_options)
    template = build_ssd(num_classes, **ssd_options)
    size = template.transform.min_size[0]
    head = MDNHead(
        _out_channels(template.backbone, size),
        template.anchor_generator.num_anchors_per_location(),
        num_classes + 1,
        components,
        "softmax",
        separable=separable,
    )
    model = MDNSSD(
        template.backbone,
        template.anchor_generator,
        (size, size),
        num_classes + 1,
        head=head,
        image_mean=template.transform.image_mean,
        image_std=template.transform.image_std,
        score_thresh=template.score_thresh,
        nms_thresh=template.nms_thresh,
        detections_per_img=template.detections_per_img,
        topk_candidates=template.topk_candidates,
        cls_loss=cls_loss,
        beta=beta,
    )
    load_weights(model, weights, [], strict=weights_strict, func=func, param="weights")
    return model


@forwards(build_retinanet, sets={"dropout"}, additions=False)
def build_almdn_retinanet(
    num_classes: int,
    *,
    components: int = 4,
    cls_loss: str = "type1",
    beta: float = 2.0,
    separable: bool = True,
    weights: WeightsSpec = None,
    weights_strict: bool = True,
    **retinanet_options: Any,
) -> MDNRetinaNet:
    """A RetinaNet with the AL-MDN head for ``num_classes`` foreground classes (labels ``1..C``).

    Args:
        components, cls_loss, beta, separable: as :func:`build_almdn_ssd`.
        weights: a checkpoint of this model (local file); ``weights_strict=False`` loads the tensors whose name
            and shape match (e.g. the backbone of a plain RetinaNet checkpoint).
        **retinanet_options: any keyword of :func:`~activedet.models.build_retinanet` except ``dropout`` and
            ``difficulty_*``. The classification and regression towers are RetinaNet's; only the final layers
            become mixtures.
    """
    func = "build_almdn_retinanet"
    _check_mdn(func, components, cls_loss, beta, separable, retinanet_options)
    template = build_retinanet(num_classes, **retinanet_options)
    old = template.head
    fpn = old.classification_head.conv[0][0].in_channels
    num_anchors = template.anchor_generator.num_anchors_per_location()[0]
    head = _MDNRetinaHead(
        [fpn],
        [num_anchors],
        num_classes + 1,
        components,
        "sigmoid",
        towers=(old.classification_head.conv, old.regression_head.conv),
        prior_probability=0.01,
        separable=separable,
        box_coder=old.regression_head.box_coder,
        cls_loss=cls_loss,
        beta=beta,
    )
    model = MDNRetinaNet(
        template.backbone,
        num_classes + 1,
        min_size=template.transform.min_size[0],
        max_size=template.transform.max_size,
        anchor_generator=template.anchor_generator,
        head=head,
        score_thresh=template.score_thresh,
        nms_thresh=template.nms_thresh,
        detections_per_img=template.detections_per_img,
        topk_candidates=template.topk_candidates,
    )
    load_weights(model, weights, [], strict=weights_strict, func=func, param="weights")
    return model


@forwards(build_almdn_ssd, build_ssd, sets={"variant", "size", "dropout"})
def almdn_ssd(num_classes: int, *, backbone: str = "vgg16", min_size: int | None = None, **kwargs: Any) -> MDNSSD:
    """An SSD with the AL-MDN head; backbone and min_size as for ``ssd``.

    ``components``, ``cls_loss``, ``beta`` and every other keyword go to :func:`build_almdn_ssd`."""
    if backbone not in SSD_BACKBONES:
        raise ValueError(
            f"The 'backbone' parameter of almdn_ssd must be one of {sorted(SSD_BACKBONES)}. Got {backbone!r} instead."
        )
    return build_almdn_ssd(num_classes, variant=SSD_BACKBONES[backbone], size=min_size, **kwargs)


#: The detectors this method adds to ``activedet.models.DETECTORS`` (:mod:`activedet.plugins`).
DETECTORS = {"almdn_ssd": almdn_ssd, "almdn_retinanet": build_almdn_retinanet}
