"""FCOS adapter: torchvision's FCOS plus ``predict`` returning :class:`Detections`.

Class convention: as torchvision's RetinaNet, FCOS has sigmoid channels for class indices ``0..C`` and
channel 0 never receives a positive target; we keep the layout (COCO weights load unchanged), never emit
channel 0, and report ``K = C`` wide probability vectors (``class_probs[:, c - 1]`` is class ``c``).

Scores: FCOS ranks detections by ``sqrt(sigmoid(class logit) * sigmoid(centerness))``. ``scores`` are these
ranking scores (as torchvision), while ``class_probs``/``dense_probs`` are the plain class sigmoids of the
source point, so ``scores[i] ** 2 <= class_probs[i, labels[i] - 1]`` with equality when centerness is 1.

Embedding: global average of the coarsest pyramid level (``"p7"`` for ResNet/MobileNet, ``"pool"`` for
``tiny``) over the image's unpadded area, ``fpn_channels``-d.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOS_ResNet50_FPN_Weights, FCOSHead
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ._common import (
    PredictMixin,
    add_head_dropout,
    check_choice,
    check_float,
    check_int,
    check_resize_and_postprocess,
    check_sizes,
    single_stage_predict,
    strip_sources,
    with_defaults,
)
from .backbones import (
    FPN_BACKBONES,
    NUM_STAGES,
    build_fpn_backbone,
    default_norm,
    default_trainable_layers,
    uses_pretrained,
)
from .outputs import Detections
from .weights import WeightsSpec, load_weights, resolve_weights

__all__ = ["FCOSDetector", "build_fcos", "FCOS_DEFAULTS"]

#: Per-backbone defaults. FCOS places one point per location; ``anchor_sizes`` (one per level) sets the
#: level's regression unit, its centre-sampling window (``center_sampling_radius * size``) and the range of
#: object sizes it is responsible for (max distance to a box side in ``(4 * size, 8 * size)``, first level
#: from 0, last level to infinity).
FCOS_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet50": dict(
        returned_layers=[2, 3, 4],
        extra="p6p7",
        anchor_sizes=(8, 16, 32, 64, 128),
        center_sampling_radius=1.5,
        fpn_channels=256,
        min_size=800,
        max_size=1333,
    ),
    "resnet18": dict(
        returned_layers=[2, 3, 4],
        extra="p6p7",
        anchor_sizes=(8, 16, 32, 64, 128),
        center_sampling_radius=1.5,
        fpn_channels=256,
        min_size=800,
        max_size=1333,
    ),
    # strides 16, 32, 64, 128
    "mobilenet_v3_large": dict(
        returned_layers=[3, 5],
        extra="p6p7",
        anchor_sizes=(16, 32, 64, 128),
        center_sampling_radius=1.5,
        fpn_channels=256,
        min_size=800,
        max_size=1333,
    ),
    # strides 8, 16, 32, 64 with sizes of half the stride: levels own max side distances 0-32, 32-64, 64-128
    # and 128+ px, so 10-60 px objects spread over the two finest levels instead of all landing on the
    # first; radius 3.0 keeps torchvision's +-1.5-stride sampling window.
    "tiny": dict(
        returned_layers=[2, 3, 4],
        extra="pool",
        anchor_sizes=(4, 8, 16, 32),
        center_sampling_radius=3.0,
        fpn_channels=64,
        min_size=128,
        max_size=213,
    ),
    # as tiny: strides 8, 16, 32, 64, same level sizes and sampling radius
    "efficientnet_lite0": dict(
        returned_layers=[2, 3, 4],
        extra="pool",
        anchor_sizes=(4, 8, 16, 32),
        center_sampling_radius=3.0,
        fpn_channels=64,
        min_size=128,
        max_size=213,
    ),
}


class FCOSDetector(PredictMixin, FCOS):
    """torchvision ``FCOS`` whose postprocessing remembers each detection's source point.

    Training and the plain eval forward are torchvision's, except that class channel 0 is never a
    detection. ``predict(images, fields)`` returns :class:`Detections` with ``prob_kind="sigmoid"``:

    * ``class_probs`` ``[N, C]``: class sigmoids at the detection's source point (no centerness factor).
    * ``dense_probs`` ``[A, C]``: the same for every point inside the image (all levels, finest first).
    * ``embedding`` ``[fpn_channels]``: mean of the coarsest pyramid level.
    * ``proposals``: ``None`` (single-stage).
    """

    prob_kind = "sigmoid"
    #: the optional Detections fields this detector can fill (others stay None even when requested)
    PROVIDES = frozenset({"class_probs", "embedding", "dense_probs"})
    #: the last prediction layers' weights (biases excluded) whose gradients influence functions use,
    #: and the official per-tensor scales of its inverse-HVP recursion (cls, reg, centerness)
    INFLUENCE_PARAMETERS = (
        "head.classification_head.cls_logits.weight",
        "head.regression_head.bbox_reg.weight",
        "head.regression_head.bbox_ctrness.weight",
    )
    INFLUENCE_SCALES = (100.0, 8000.0, 5000.0)
    #: postprocessing takes per-level lists; how each head output averages over stochastic predictions
    SPLIT_LEVELS = True
    HEAD_OUTPUT_KINDS = {"cls_logits": "sigmoid", "bbox_regression": "linear", "bbox_ctrness": "sigmoid"}

    def dropout_sites(self) -> list[torch.nn.Module]:
        """The final convolutions of both towers: head dropout (``dropout=``) acts on their input."""
        regression = self.head.regression_head
        return [self.head.classification_head.cls_logits, regression.bbox_reg, regression.bbox_ctrness]

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        return strip_sources(self.postprocess_with_sources(head_outputs, anchors, image_shapes))

    def postprocess_with_sources(
        self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """torchvision's ``postprocess_detections`` that also returns ``anchor_idxs`` (int64[N]).

        Args:
            head_outputs: per level ``"cls_logits"`` ``[B, HW_l, C + 1]``, ``"bbox_regression"`` ``[B, HW_l, 4]``,
                ``"bbox_ctrness"`` ``[B, HW_l, 1]``.
            anchors: per image, per level ``[HW_l, 4]``.
            image_shapes: resized image sizes ``(h, w)``.

        Returns one dict per image with ``boxes`` (resized-image pixels), ``scores``, ``labels`` (``1..C``) and
        ``anchor_idxs``: index of the source point among the image's points of all levels concatenated.
        """
        detections = []
        for index, image_shape in enumerate(image_shapes):
            candidates, offset = [], 0
            for level, anchors_per_level in enumerate(anchors[index]):
                boxes, scores, labels, anchor_idxs = self._level_candidates(
                    head_outputs["bbox_regression"][level][index],
                    head_outputs["cls_logits"][level][index],
                    head_outputs["bbox_ctrness"][level][index],
                    anchors_per_level,
                    image_shape,
                )
                candidates.append((boxes, scores, labels, anchor_idxs + offset))
                offset += anchors_per_level.shape[0]
            boxes, scores, labels, anchor_idxs = (torch.cat(t) for t in zip(*candidates))
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append(
                {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep], "anchor_idxs": anchor_idxs[keep]}
            )
        return detections

    def _level_candidates(
        self, box_regression: Tensor, logits: Tensor, ctrness: Tensor, anchors: Tensor, image_shape: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Top-scoring (point, class) pairs of one level: boxes, scores, labels, point indices in the level."""
        fg_logits = logits[:, 1:]  # [HW, C]: channel 0 is the never-trained background slot
        num_classes = fg_logits.shape[-1]
        scores = torch.sqrt(torch.sigmoid(fg_logits) * torch.sigmoid(ctrness)).flatten()  # [HW * C]
        flat_idxs = torch.where(scores > self.score_thresh)[0]
        scores, order = scores[flat_idxs].topk(min(self.topk_candidates, flat_idxs.numel()))
        flat_idxs = flat_idxs[order]
        anchor_idxs = torch.div(flat_idxs, num_classes, rounding_mode="floor")
        labels = flat_idxs % num_classes + 1
        boxes = self.box_coder.decode(box_regression[anchor_idxs], anchors[anchor_idxs])
        return box_ops.clip_boxes_to_image(boxes, image_shape), scores, labels, anchor_idxs

    def dense_class_probs(self, head_outputs: dict[str, Tensor]) -> Tensor:
        """``[B, A, C]`` class sigmoids of every anchor (channel 0, never trained, dropped)."""
        return torch.sigmoid(head_outputs["cls_logits"][..., 1:])

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        return single_stage_predict(self, images, fields)


def build_fcos(
    num_classes: int,
    *,
    backbone: str = "resnet50",
    min_size: int | None = None,
    max_size: int | None = None,
    weights: WeightsSpec = None,
    weights_backbone: WeightsSpec = None,
    weights_strict: bool = True,
    trainable_backbone_layers: int | None = None,
    norm: str | None = None,
    anchor_sizes: Sequence[float] | None = None,
    center_sampling_radius: float | None = None,
    fpn_channels: int | None = None,
    score_thresh: float = 0.2,
    nms_thresh: float = 0.6,
    detections_per_img: int = 100,
    topk_candidates: int = 1000,
    dropout: float = 0.0,
) -> FCOSDetector:
    """An FCOS detector for ``num_classes`` foreground classes (labels ``1..C``).

    Args:
        num_classes: ``C``, foreground classes (the head has ``C + 1`` channels, see the module docstring).
        backbone: one of :data:`~activedet.models.backbones.FPN_BACKBONES`; ``"resnet50"`` is torchvision's
            ``fcos_resnet50_fpn`` architecture.
        min_size, max_size: torchvision's resize range; default per backbone (:data:`FCOS_DEFAULTS`).
        weights: detector weights (see :mod:`activedet.models.weights`); torchvision names only for
            ``resnet50`` (``FCOS_ResNet50_FPN_Weights``, 90 COCO classes).
        weights_backbone: backbone body weights (see :func:`~activedet.models.backbones.build_fpn_backbone`).
        weights_strict: ``False`` loads only the tensors of ``weights`` whose name and shape match.
        trainable_backbone_layers, norm: see ``build_fpn_backbone``; default 3 / ``"frozen"`` when starting
            from torchvision weights, all / ``"batchnorm"`` otherwise. The FCOS head uses GroupNorm.
        anchor_sizes: one size per pyramid level (see :data:`FCOS_DEFAULTS`).
        center_sampling_radius: positives lie within ``radius * size`` of a box centre.
        fpn_channels: pyramid width; default 256, 64 for ``tiny`` (a multiple of 32: the head's GroupNorm).
        score_thresh, nms_thresh, detections_per_img, topk_candidates: torchvision's postprocessing.
        dropout: rate of the head dropout (0 = none, :func:`~activedet.models._common.add_head_dropout`); the model
            trains with it, and a strategy that samples several passes switches it on at query time.
    """
    func = "build_fcos"
    check_int(func, "num_classes", num_classes, 1)
    check_choice(func, "backbone", backbone, FPN_BACKBONES)
    enums = [FCOS_ResNet50_FPN_Weights] if backbone == "resnet50" else []
    weights = resolve_weights(weights, enums, func=func, param="weights")
    defaults = FCOS_DEFAULTS[backbone]
    min_size, max_size, fpn_channels, anchor_sizes = with_defaults(
        defaults, min_size=min_size, max_size=max_size, fpn_channels=fpn_channels, anchor_sizes=anchor_sizes
    ).values()
    radius = defaults["center_sampling_radius"] if center_sampling_radius is None else center_sampling_radius
    check_resize_and_postprocess(
        func,
        min_size=min_size,
        max_size=max_size,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )
    check_float(func, "center_sampling_radius", radius, 0.0, float("inf"))
    check_int(func, "topk_candidates", topk_candidates, 1)
    if not (isinstance(fpn_channels, int) and fpn_channels >= 32 and fpn_channels % 32 == 0):
        raise ValueError(
            f"The 'fpn_channels' parameter of {func} must be a positive multiple of 32 (the FCOS "
            f"head normalises with GroupNorm(32)). Got {fpn_channels!r} instead."
        )
    num_levels = len(defaults["returned_layers"]) + (2 if defaults["extra"] == "p6p7" else 1)
    check_sizes(func, "anchor_sizes", anchor_sizes, num_levels)
    if any(isinstance(s, (list, tuple)) and len(s) != 1 for s in anchor_sizes):
        raise ValueError(
            f"The 'anchor_sizes' parameter of {func} must give one size per level (FCOS has one "
            f"point per location). Got {anchor_sizes!r} instead."
        )
    if trainable_backbone_layers is not None:
        check_int(func, "trainable_backbone_layers", trainable_backbone_layers, 0, NUM_STAGES[backbone])
    pretrained = uses_pretrained(weights, weights_backbone)
    extra = LastLevelP6P7(fpn_channels, fpn_channels) if defaults["extra"] == "p6p7" else LastLevelMaxPool()
    body = build_fpn_backbone(
        backbone,
        weights_backbone=weights_backbone,
        trainable_layers=(
            default_trainable_layers(backbone, pretrained)
            if trainable_backbone_layers is None
            else trainable_backbone_layers
        ),
        norm=default_norm(pretrained) if norm is None else norm,
        returned_layers=defaults["returned_layers"],
        extra_blocks=extra,
        fpn_channels=fpn_channels,
    )
    sizes = tuple(tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in anchor_sizes)
    anchor_generator = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    head = FCOSHead(fpn_channels, 1, num_classes + 1)
    model = FCOSDetector(
        body,
        num_classes + 1,
        min_size=min_size,
        max_size=max_size,
        anchor_generator=anchor_generator,
        head=head,
        center_sampling_radius=radius,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        topk_candidates=topk_candidates,
    )
    add_head_dropout(model.dropout_sites(), dropout)
    load_weights(model, weights, enums, strict=weights_strict, func=func, param="weights")
    return model
