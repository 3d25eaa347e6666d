"""RetinaNet adapter: torchvision's RetinaNet plus ``predict`` returning :class:`Detections`.

Class convention: torchvision's RetinaNet has one sigmoid channel per class index ``0..C`` and uses the
target label directly as the channel index, so channel 0 never receives a positive target. We keep that
layout (torchvision's COCO weights load unchanged) but never emit channel 0 as a detection, so labels are
``1..C`` and probability vectors are ``K = C`` wide: ``class_probs[:, c - 1]`` is the sigmoid of class ``c``.

Embedding: global average of the coarsest pyramid level (``"p7"`` for ResNet/MobileNet, ``"pool"`` = P6 for
``tiny``) over the image's unpadded area, ``fpn_channels``-d.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNet_ResNet50_FPN_Weights, RetinaNetHead
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ._common import (
    PredictMixin,
    check_choice,
    check_int,
    check_resize_and_postprocess,
    check_sizes,
    overwrite_frozen_eps,
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
from .stochastic import add_head_dropout
from .weights import WeightsSpec, load_weights, resolve_weights

__all__ = ["RetinaNetDetector", "build_retinanet", "RETINANET_DEFAULTS"]

#: Per-backbone defaults. ``anchor_sizes`` are the base size of each pyramid level (finest first); each is
#: used at scales 1, 2^(1/3), 2^(2/3) and aspect ratios 0.5, 1, 2 (9 anchors per location), as torchvision.
RETINANET_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet50": dict(returned_layers=[2, 3, 4], extra="p6p7", anchor_sizes=(32, 64, 128, 256, 512),
                     fpn_channels=256, min_size=800, max_size=1333),
    "resnet18": dict(returned_layers=[2, 3, 4], extra="p6p7", anchor_sizes=(32, 64, 128, 256, 512),
                     fpn_channels=256, min_size=800, max_size=1333),
    # strides 16, 32, 64, 128
    "mobilenet_v3_large": dict(returned_layers=[3, 5], extra="p6p7", anchor_sizes=(32, 64, 128, 256),
                               fpn_channels=256, min_size=800, max_size=1333),
    # strides 8, 16, 32, 64: anchors 12-152 px for 10-60 px objects in 96-160 px images
    "tiny": dict(returned_layers=[2, 3, 4], extra="pool", anchor_sizes=(12, 24, 48, 96),
                 fpn_channels=64, min_size=128, max_size=213),
    # as tiny: strides 8, 16, 32, 64 (stages 2-4: 40, 112, 320 channels), same anchors and head width
    "efficientnet_lite0": dict(returned_layers=[2, 3, 4], extra="pool", anchor_sizes=(12, 24, 48, 96),
                               fpn_channels=64, min_size=128, max_size=213),
}


class RetinaNetDetector(PredictMixin, RetinaNet):
    """torchvision ``RetinaNet`` whose postprocessing remembers each detection's source anchor.

    Training and the plain eval forward are torchvision's (``model(images, targets)`` -> loss dict,
    ``model(images)`` -> list of ``{"boxes", "scores", "labels"}``), except that class channel 0 is never
    a detection. ``predict(images, fields)`` returns :class:`Detections` with ``prob_kind="sigmoid"``:

    * ``class_probs`` ``[N, C]``: sigmoid of every class at the detection's source anchor
      (``class_probs[i, labels[i] - 1] == scores[i]``).
    * ``dense_probs`` ``[A, C]``: the same for every anchor whose centre lies in the image (all levels,
      level-major then location then anchor shape, as the head orders them).
    * ``embedding`` ``[fpn_channels]``: mean of the coarsest pyramid level.
    * ``proposals``: ``None`` (single-stage).
    """

    prob_kind = "sigmoid"
    #: the optional Detections fields this detector can fill (others stay None even when requested)
    PROVIDES = frozenset({"class_probs", "embedding", "dense_probs"})
    #: postprocessing takes per-level lists; how each head output averages over stochastic predictions
    SPLIT_LEVELS = True
    HEAD_OUTPUT_KINDS = {"cls_logits": "sigmoid", "bbox_regression": "linear"}

    def dropout_sites(self) -> list[torch.nn.Module]:
        """The final convolutions of both towers: MC-dropout (``dropout=``) acts on their input."""
        return [self.head.classification_head.cls_logits, self.head.regression_head.bbox_reg]

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        # type: (dict[str, list[Tensor]], list[list[Tensor]], list[tuple[int, int]]) -> list[dict[str, Tensor]]
        return strip_sources(self.postprocess_with_sources(head_outputs, anchors, image_shapes))

    def postprocess_with_sources(self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                                 image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """torchvision's ``postprocess_detections`` that also returns ``anchor_idxs`` (int64[N]).

        Args:
            head_outputs: ``"cls_logits"`` per level ``[B, HWA_l, C + 1]``, ``"bbox_regression"`` ``[B, HWA_l, 4]``.
            anchors: per image, per level ``[HWA_l, 4]``.
            image_shapes: resized image sizes ``(h, w)``.

        Returns one dict per image with ``boxes`` (resized-image pixels), ``scores``, ``labels`` (``1..C``) and
        ``anchor_idxs``: index of the source anchor among the image's anchors of all levels concatenated.
        """
        detections = []
        for index, image_shape in enumerate(image_shapes):
            candidates, offset = [], 0
            for box_regression_per_level, logits_per_level, anchors_per_level in zip(
                    [br[index] for br in head_outputs["bbox_regression"]],
                    [cl[index] for cl in head_outputs["cls_logits"]], anchors[index]):
                boxes, scores, labels, anchor_idxs = self._level_candidates(
                    box_regression_per_level, logits_per_level, anchors_per_level, image_shape)
                candidates.append((boxes, scores, labels, anchor_idxs + offset))
                offset += anchors_per_level.shape[0]
            boxes, scores, labels, anchor_idxs = (torch.cat(t) for t in zip(*candidates))
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep],
                               "anchor_idxs": anchor_idxs[keep]})
        return detections

    def _level_candidates(self, box_regression: Tensor, logits: Tensor, anchors: Tensor,
                          image_shape: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Top-scoring (anchor, class) pairs of one level: boxes, scores, labels, anchor indices in the level."""
        fg_logits = logits[:, 1:]  # [HWA, C]: channel 0 is the never-trained background slot
        num_classes = fg_logits.shape[-1]
        scores = torch.sigmoid(fg_logits).flatten()  # [HWA * C]
        flat_idxs = torch.where(scores > self.score_thresh)[0]
        scores, order = scores[flat_idxs].topk(min(self.topk_candidates, flat_idxs.numel()))
        flat_idxs = flat_idxs[order]
        anchor_idxs = torch.div(flat_idxs, num_classes, rounding_mode="floor")
        labels = flat_idxs % num_classes + 1
        boxes = self.box_coder.decode_single(box_regression[anchor_idxs], anchors[anchor_idxs])
        return box_ops.clip_boxes_to_image(boxes, image_shape), scores, labels, anchor_idxs

    def dense_class_probs(self, head_outputs: dict[str, Tensor]) -> Tensor:
        """``[B, A, C]`` class sigmoids of every anchor (channel 0, never trained, dropped)."""
        return torch.sigmoid(head_outputs["cls_logits"][..., 1:])

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        return single_stage_predict(self, images, fields)


def _anchor_generator(anchor_sizes: Sequence[Any]) -> AnchorGenerator:
    """One base size per level at 3 octave scales, or an explicit tuple of sizes per level; ratios 0.5/1/2."""
    sizes = tuple(tuple(s) if isinstance(s, (list, tuple)) else (s, s * 2 ** (1 / 3), s * 2 ** (2 / 3))
                  for s in anchor_sizes)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def build_retinanet(num_classes: int, *, backbone: str = "resnet50", min_size: int | None = None,
                    max_size: int | None = None, weights: WeightsSpec = None, weights_backbone: WeightsSpec = None,
                    weights_strict: bool = True, trainable_backbone_layers: int | None = None,
                    norm: str | None = None, anchor_sizes: Sequence[Any] | None = None,
                    fpn_channels: int | None = None, score_thresh: float = 0.05, nms_thresh: float = 0.5,
                    detections_per_img: int = 100, topk_candidates: int = 1000,
                    dropout: float = 0.0) -> RetinaNetDetector:
    """A RetinaNet for ``num_classes`` foreground classes (labels ``1..C``).

    Args:
        num_classes: ``C``, foreground classes (the head has ``C + 1`` channels, see the module docstring).
        backbone: one of :data:`~activedet.models.backbones.FPN_BACKBONES`; ``"resnet50"`` is torchvision's
            ``retinanet_resnet50_fpn`` (v1) architecture.
        min_size, max_size: torchvision's resize range; default per backbone (:data:`RETINANET_DEFAULTS`).
        weights: detector weights (see :mod:`activedet.models.weights`); torchvision names only for
            ``resnet50`` (``RetinaNet_ResNet50_FPN_Weights``, 90 COCO classes).
        weights_backbone: backbone body weights (see :func:`~activedet.models.backbones.build_fpn_backbone`).
        weights_strict: ``False`` loads only the tensors of ``weights`` whose name and shape match.
        trainable_backbone_layers, norm: see ``build_fpn_backbone``; default 3 / ``"frozen"`` when starting
            from torchvision weights, all / ``"batchnorm"`` otherwise.
        anchor_sizes: per pyramid level, a base size (3 octave scales) or a tuple of sizes.
        fpn_channels: pyramid width; default 256, 64 for ``tiny``.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: torchvision's postprocessing.
        dropout: MC-dropout rate of the head (0 = none), see :mod:`activedet.models.stochastic`; the model
            trains with it, and only the ``mc_dropout`` strategy samples it at query time.
    """
    func = "build_retinanet"
    check_int(func, "num_classes", num_classes, 1)
    check_choice(func, "backbone", backbone, FPN_BACKBONES)
    enums = [RetinaNet_ResNet50_FPN_Weights] if backbone == "resnet50" else []
    weights = resolve_weights(weights, enums, func=func, param="weights")
    defaults = RETINANET_DEFAULTS[backbone]
    min_size, max_size, fpn_channels, anchor_sizes = with_defaults(
        defaults, min_size=min_size, max_size=max_size, fpn_channels=fpn_channels, anchor_sizes=anchor_sizes).values()
    check_resize_and_postprocess(func, min_size=min_size, max_size=max_size, score_thresh=score_thresh,
                                 nms_thresh=nms_thresh, detections_per_img=detections_per_img)
    check_int(func, "topk_candidates", topk_candidates, 1)
    num_levels = len(defaults["returned_layers"]) + (2 if defaults["extra"] == "p6p7" else 1)
    check_sizes(func, "anchor_sizes", anchor_sizes, num_levels)
    if trainable_backbone_layers is not None:
        check_int(func, "trainable_backbone_layers", trainable_backbone_layers, 0, NUM_STAGES[backbone])
    pretrained = uses_pretrained(weights, weights_backbone)
    extra = (LastLevelP6P7(fpn_channels, fpn_channels) if defaults["extra"] == "p6p7" else LastLevelMaxPool())
    body = build_fpn_backbone(backbone, weights_backbone=weights_backbone,
                              trainable_layers=(default_trainable_layers(backbone, pretrained)
                                                if trainable_backbone_layers is None else trainable_backbone_layers),
                              norm=default_norm(pretrained) if norm is None else norm,
                              returned_layers=defaults["returned_layers"], extra_blocks=extra,
                              fpn_channels=fpn_channels)
    anchor_generator = _anchor_generator(anchor_sizes)
    head = RetinaNetHead(fpn_channels, anchor_generator.num_anchors_per_location()[0], num_classes + 1)
    model = RetinaNetDetector(body, num_classes + 1, min_size=min_size, max_size=max_size,
                              anchor_generator=anchor_generator, head=head, score_thresh=score_thresh,
                              nms_thresh=nms_thresh, detections_per_img=detections_per_img,
                              topk_candidates=topk_candidates)
    add_head_dropout(model.dropout_sites(), dropout)
    member = load_weights(model, weights, enums, strict=weights_strict, func=func, param="weights")
    if member == RetinaNet_ResNet50_FPN_Weights.COCO_V1:
        overwrite_frozen_eps(model, 0.0)
    return model

