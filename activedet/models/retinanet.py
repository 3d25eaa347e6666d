"""RetinaNet adapter: torchvision's RetinaNet plus ``predict`` returning :class:`Detections`.

Class convention: torchvision's RetinaNet has one sigmoid channel per class index ``0..C`` and uses the
target label directly as the channel index, so channel 0 never receives a positive target. We keep that
layout (torchvision's COCO weights load unchanged) but never emit channel 0 as a detection, so labels are
``1..C`` and probability vectors are ``K = C`` wide: ``class_probs[:, c - 1]`` is the sigmoid of class ``c``.

Embedding: global average of the coarsest pyramid level (``"p7"`` for ResNet/MobileNet, ``"pool"`` = P6 for
``tiny``) over the image's unpadded area, ``fpn_channels``-d.

Per-detection features (``features``, e.g. for matching detections across images): the classification tower's output
(after its stacked convolutions, before ``cls_logits``; ``fpn_channels``-d) at the pyramid level of the detection's
source anchor, bilinearly sampled (``grid_sample``) at the box centre. Feature cell ``(i, j)`` of a level with stride
``s`` is taken to cover pixels ``[j s, (j + 1) s)`` of the padded batch (the official code normalises by the unpadded
image size instead, which shifts the samples on padded images).

Training samples (the ``"training_samples"`` hook point, :mod:`.additions`): the positive anchors (matched as
torchvision's loss matches them), each with the sigmoid of its GT class and the IoU of the anchor's decoded box with
its matched GT box.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNet_ResNet50_FPN_Weights, RetinaNetHead
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ._common import (
    PredictMixin,
    SampleObserversMixin,
    add_head_dropout,
    broadcast_iou,
    check_choice,
    check_int,
    check_resize_and_postprocess,
    check_sizes,
    dense_detections,
    dense_forward,
    overwrite_frozen_eps,
    single_stage_predict,
    strip_sources,
    with_defaults,
)
from ._common import anchors_per_level as _anchors_per_level
from .additions import attach_additions, offers, refuse_unknown, take_additions
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

__all__ = ["RetinaNetDetector", "build_retinanet", "RETINANET_DEFAULTS"]

#: Per-backbone defaults. ``anchor_sizes`` are the base size of each pyramid level (finest first); each is
#: used at scales 1, 2^(1/3), 2^(2/3) and aspect ratios 0.5, 1, 2 (9 anchors per location), as torchvision.
RETINANET_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet50": dict(
        returned_layers=[2, 3, 4],
        extra="p6p7",
        anchor_sizes=(32, 64, 128, 256, 512),
        fpn_channels=256,
        min_size=800,
        max_size=1333,
    ),
    "resnet18": dict(
        returned_layers=[2, 3, 4],
        extra="p6p7",
        anchor_sizes=(32, 64, 128, 256, 512),
        fpn_channels=256,
        min_size=800,
        max_size=1333,
    ),
    # strides 16, 32, 64, 128
    "mobilenet_v3_large": dict(
        returned_layers=[3, 5],
        extra="p6p7",
        anchor_sizes=(32, 64, 128, 256),
        fpn_channels=256,
        min_size=800,
        max_size=1333,
    ),
    # strides 8, 16, 32, 64: anchors 12-152 px for 10-60 px objects in 96-160 px images
    "tiny": dict(
        returned_layers=[2, 3, 4],
        extra="pool",
        anchor_sizes=(12, 24, 48, 96),
        fpn_channels=64,
        min_size=128,
        max_size=213,
    ),
    # as tiny: strides 8, 16, 32, 64 (stages 2-4: 40, 112, 320 channels), same anchors and head width
    "efficientnet_lite0": dict(
        returned_layers=[2, 3, 4],
        extra="pool",
        anchor_sizes=(12, 24, 48, 96),
        fpn_channels=64,
        min_size=128,
        max_size=213,
    ),
}


class RetinaNetDetector(SampleObserversMixin, PredictMixin, RetinaNet):
    """torchvision ``RetinaNet`` whose postprocessing remembers each detection's source anchor.

    Training and the plain eval forward are torchvision's (``model(images, targets)`` -> loss dict,
    ``model(images)`` -> list of ``{"boxes", "scores", "labels"}``), except that class channel 0 is never
    a detection. ``predict(images, fields)`` returns :class:`Detections` with ``prob_kind="sigmoid"``:

    * ``class_probs`` ``[N, C]``: sigmoid of every class at the detection's source anchor
      (``class_probs[i, labels[i] - 1] == scores[i]``).
    * ``dense_probs`` ``[A, C]``: the same for every anchor whose centre lies in the image (all levels,
      level-major then location then anchor shape, as the head orders them).
    * ``embedding`` ``[fpn_channels]``: mean of the coarsest pyramid level.
    * ``features`` ``[N, fpn_channels]``: classification-tower output sampled at the box centre (module docstring).
    * ``proposals``: ``None`` (single-stage).

    With sample observers attached (:meth:`add_sample_observer`), every training loss computation also gives them
    the positive anchors (module docstring).
    """

    prob_kind = "sigmoid"
    #: the optional Detections fields this detector can fill (others stay None even when requested)
    PROVIDES = frozenset({"class_probs", "embedding", "dense_probs", "features"})
    #: the last prediction layers' weights (biases excluded) whose gradients influence functions use;
    #: the official code gives no RetinaNet scales, so the recursion's scales default to "auto"
    INFLUENCE_PARAMETERS = ("head.classification_head.cls_logits.weight", "head.regression_head.bbox_reg.weight")
    #: postprocessing takes per-level lists; how each head output averages over stochastic predictions
    SPLIT_LEVELS = True
    HEAD_OUTPUT_KINDS = {"cls_logits": "sigmoid", "bbox_regression": "linear"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sample_observers: list[torch.nn.Module] = []

    def dropout_sites(self) -> list[torch.nn.Module]:
        """The final convolutions of both towers: head dropout (``dropout=``) acts on their input."""
        return [self.head.classification_head.cls_logits, self.head.regression_head.bbox_reg]

    def compute_loss(self, targets, head_outputs, anchors):
        # type: (list[dict[str, Tensor]], dict[str, Tensor], list[Tensor]) -> dict[str, Tensor]
        matched_idxs = []  # torchvision's matching: -1 background, -2 ignored, >= 0 the GT index
        for anchors_per_image, targets_per_image in zip(anchors, targets):
            if targets_per_image["boxes"].numel() == 0:
                matched_idxs.append(
                    torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64, device=anchors_per_image.device)
                )
                continue
            matched_idxs.append(self.proposal_matcher(box_ops.box_iou(targets_per_image["boxes"], anchors_per_image)))
        if self.sample_observers:
            self._observe_samples(targets, head_outputs, anchors, matched_idxs)
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)

    @torch.no_grad()
    def _observe_samples(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> None:
        """Give the positive anchors' ``(GT class, sigmoid of that class, IoU)`` to the sample observers."""
        labels, probs, ious = [], [], []
        for i, (anchors_per_image, matched) in enumerate(zip(anchors, matched_idxs)):
            positive = torch.where(matched >= 0)[0]
            gt_boxes = targets[i]["boxes"][matched[positive]]
            gt_labels = targets[i]["labels"][matched[positive]]  # the channel index, as torchvision's loss
            logits = head_outputs["cls_logits"][i, positive].float()  # [P, C + 1]
            predicted = self.box_coder.decode_single(
                head_outputs["bbox_regression"][i, positive].float(), anchors_per_image[positive]
            )
            labels.append(gt_labels)
            probs.append(torch.sigmoid(logits.gather(1, gt_labels[:, None])[:, 0]))
            ious.append(broadcast_iou(predicted, gt_boxes.float()))
        self.notify_observers(torch.cat(labels), torch.cat(probs), torch.cat(ious))

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        # type: (dict[str, list[Tensor]], list[list[Tensor]], list[tuple[int, int]]) -> list[dict[str, Tensor]]
        return strip_sources(self.postprocess_with_sources(head_outputs, anchors, image_shapes))

    def postprocess_with_sources(
        self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
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
                [cl[index] for cl in head_outputs["cls_logits"]],
                anchors[index],
            ):
                boxes, scores, labels, anchor_idxs = self._level_candidates(
                    box_regression_per_level, logits_per_level, anchors_per_level, image_shape
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
        self, box_regression: Tensor, logits: Tensor, anchors: Tensor, image_shape: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
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
        if "features" not in fields:
            return single_stage_predict(self, images, fields)
        with _captured_inputs(self.head.classification_head.cls_logits) as towers:  # one [B, D, h, w] per level
            parts = dense_forward(self, images)
        padded_size = tuple(parts[0].tensors.shape[-2:])
        return dense_detections(
            self, *parts, fields=fields, extras=partial(_detection_features, towers=towers, padded_size=padded_size)
        )


@contextmanager
def _captured_inputs(module: torch.nn.Module) -> Iterator[list[Tensor]]:
    """Context: the list of the first inputs ``module`` receives while open (one per call, in call order)."""
    captured: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        handle.remove()


def _detection_features(
    head_outputs: dict[str, Tensor],
    anchors: list[Tensor],
    image_sizes: list[tuple[int, int]],
    features: list[Tensor],
    detections: list[dict[str, Tensor]],
    *,
    towers: list[Tensor],
    padded_size: tuple[int, int],
) -> list[dict[str, Tensor]]:
    """``{"features": [N, D]}`` per image: each detection's tower output at its source anchor's level, sampled at
    the box centre (boxes in resized pixels, ``anchor_idxs`` into the image's anchors of all levels)."""
    level_ends = torch.tensor(_anchors_per_level(head_outputs["cls_logits"].shape[1], features)).cumsum(0)
    results = []
    for i, det in enumerate(detections):
        levels = torch.bucketize(det["anchor_idxs"].cpu(), level_ends, right=True)  # [N] level of each source
        centres = (det["boxes"][:, :2] + det["boxes"][:, 2:]) / 2  # [N, 2] (x, y), resized-image pixels
        out = centres.new_zeros((centres.shape[0], towers[0].shape[1]))
        for level, tower in enumerate(towers):
            mask = (levels == level).to(out.device)
            if not bool(mask.any()):
                continue
            stride_y, stride_x = padded_size[0] // tower.shape[-2], padded_size[1] // tower.shape[-1]
            extent = centres.new_tensor([tower.shape[-1] * stride_x, tower.shape[-2] * stride_y])
            grid = (centres[mask] / extent * 2 - 1).view(1, 1, -1, 2)  # grid_sample's [-1, 1], x first
            sampled = F.grid_sample(tower[i : i + 1], grid, mode="bilinear", align_corners=False)  # [1, D, 1, n]
            out[mask] = sampled[0, :, 0].T
        results.append({"features": out})
    return results


def _anchor_generator(anchor_sizes: Sequence[Any]) -> AnchorGenerator:
    """One base size per level at 3 octave scales, or an explicit tuple of sizes per level; ratios 0.5/1/2."""
    sizes = tuple(
        tuple(s) if isinstance(s, (list, tuple)) else (s, s * 2 ** (1 / 3), s * 2 ** (2 / 3)) for s in anchor_sizes
    )
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


@offers("training_samples")
def build_retinanet(
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
    anchor_sizes: Sequence[Any] | None = None,
    fpn_channels: int | None = None,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    topk_candidates: int = 1000,
    dropout: float = 0.0,
    **additions: Any,
) -> RetinaNetDetector:
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
        dropout: rate of the head dropout (0 = none, :func:`~activedet.models._common.add_head_dropout`); the model
            trains with it, and a strategy that samples several passes switches it on at query time.
        **additions: the keywords of the model additions at the ``"training_samples"`` hook point
            (:mod:`activedet.models.additions`; ``activedet detectors`` lists them).
    """
    func = "build_retinanet"
    taken = take_additions(func, build_retinanet, additions)
    refuse_unknown(func, build_retinanet, additions)
    check_int(func, "num_classes", num_classes, 1)
    check_choice(func, "backbone", backbone, FPN_BACKBONES)
    enums = [RetinaNet_ResNet50_FPN_Weights] if backbone == "resnet50" else []
    weights = resolve_weights(weights, enums, func=func, param="weights")
    defaults = RETINANET_DEFAULTS[backbone]
    min_size, max_size, fpn_channels, anchor_sizes = with_defaults(
        defaults, min_size=min_size, max_size=max_size, fpn_channels=fpn_channels, anchor_sizes=anchor_sizes
    ).values()
    check_resize_and_postprocess(
        func,
        min_size=min_size,
        max_size=max_size,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )
    check_int(func, "topk_candidates", topk_candidates, 1)
    num_levels = len(defaults["returned_layers"]) + (2 if defaults["extra"] == "p6p7" else 1)
    check_sizes(func, "anchor_sizes", anchor_sizes, num_levels)
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
    anchor_generator = _anchor_generator(anchor_sizes)
    head = RetinaNetHead(fpn_channels, anchor_generator.num_anchors_per_location()[0], num_classes + 1)
    model = RetinaNetDetector(
        body,
        num_classes + 1,
        min_size=min_size,
        max_size=max_size,
        anchor_generator=anchor_generator,
        head=head,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        topk_candidates=topk_candidates,
    )
    add_head_dropout(model.dropout_sites(), dropout)
    member = load_weights(model, weights, enums, strict=weights_strict, func=func, param="weights")
    attach_additions(func, model, num_classes, taken)
    if member == RetinaNet_ResNet50_FPN_Weights.COCO_V1:
        overwrite_frozen_eps(model, 0.0)
    return model
