"""Faster R-CNN adapter: torchvision's FasterRCNN with a RoI head that remembers each detection's source
RoI, plus ``predict`` returning :class:`Detections`.

Class convention: the box predictor scores a softmax over ``C + 1`` classes per RoI, column 0 = background,
so labels are ``1..C`` and ``class_probs`` rows are ``C + 1`` wide (``class_probs[i, labels[i]] == scores[i]``).

Embedding: global average of the coarsest pyramid level (``"pool"``, the max-pooled top level) over the
image's unpadded area, ``fpn_channels``-d.

Per-detection features (``features``): the box head's output representation (``representation_size``-d, after
``fc7``) of the RoI the detection was regressed from: the two-stage head's own per-object representation, computed
in the same pass at no extra cost (the single-stage adapters sample their classification tower at the box centre).

Training samples (the ``"training_samples"`` hook point, :mod:`.additions`): the RoI head's sampled positive
proposals, each with the softmax probability of its GT class and the IoU of the proposal's class-specific regressed
box (for the GT class) with its matched GT box.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import (
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops

from ._common import (
    PredictMixin,
    SampleObserversMixin,
    add_head_dropout,
    broadcast_iou,
    check_choice,
    check_int,
    check_resize_and_postprocess,
    check_sizes,
    overwrite_frozen_eps,
    pooled_embedding,
    with_defaults,
)
from .additions import attach_additions, offers, take_additions
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

__all__ = ["FasterRCNNDetector", "SourceTrackingRoIHeads", "build_faster_rcnn", "FASTER_RCNN_DEFAULTS"]

#: Per-backbone defaults. ``anchor_sizes``: RPN anchor sizes per pyramid level (ratios 0.5, 1, 2);
#: ``rpn_*``/``box_*``: proposal counts per image and RoI sampling (torchvision's for the big backbones).
FASTER_RCNN_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet50": dict(
        returned_layers=[1, 2, 3, 4],
        roi_levels=["0", "1", "2", "3"],
        anchor_sizes=((32,), (64,), (128,), (256,), (512,)),
        fpn_channels=256,
        representation_size=1024,
        min_size=800,
        max_size=1333,
        rpn_pre_nms_top_n_train=2000,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=2000,
        rpn_post_nms_top_n_test=1000,
        rpn_batch_size_per_image=256,
        box_batch_size_per_image=512,
    ),
    "mobilenet_v3_large": dict(
        returned_layers=[4, 5],
        roi_levels=["0", "1"],
        anchor_sizes=((32, 64, 128, 256, 512),) * 3,
        fpn_channels=256,
        representation_size=1024,
        min_size=800,
        max_size=1333,
        rpn_pre_nms_top_n_train=2000,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=2000,
        rpn_post_nms_top_n_test=1000,
        rpn_batch_size_per_image=256,
        box_batch_size_per_image=512,
    ),
    # strides 8, 16, 32, 64: two sizes an half-octave apart per level cover 12-136 px; few proposals.
    "tiny": dict(
        returned_layers=[2, 3, 4],
        roi_levels=["0", "1", "2"],
        anchor_sizes=((12, 17), (24, 34), (48, 68), (96, 136)),
        fpn_channels=64,
        representation_size=256,
        min_size=128,
        max_size=213,
        rpn_pre_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=150,
        rpn_post_nms_top_n_train=150,
        rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=128,
        box_batch_size_per_image=128,
    ),
}
FASTER_RCNN_DEFAULTS["resnet18"] = FASTER_RCNN_DEFAULTS["resnet50"]
FASTER_RCNN_DEFAULTS["efficientnet_lite0"] = FASTER_RCNN_DEFAULTS["tiny"]  # same strides 8-64


class SourceTrackingRoIHeads(SampleObserversMixin, RoIHeads):
    """torchvision ``RoIHeads`` whose postprocessing also returns each detection's source RoI index, and which
    gives its sampled positive RoIs to the attached sample observers in training (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sample_observers: list[torch.nn.Module] = []

    @classmethod
    def from_roi_heads(cls, heads: RoIHeads) -> SourceTrackingRoIHeads:
        """The same box head, predictor and settings as ``heads`` (box-only RoI heads)."""
        return cls(
            heads.box_roi_pool,
            heads.box_head,
            heads.box_predictor,
            heads.proposal_matcher.high_threshold,
            heads.proposal_matcher.low_threshold,
            heads.fg_bg_sampler.batch_size_per_image,
            heads.fg_bg_sampler.positive_fraction,
            heads.box_coder.weights,
            heads.score_thresh,
            heads.nms_thresh,
            heads.detections_per_img,
        )

    def forward(self, features, proposals, image_shapes, targets=None):
        if not (self.training and self.sample_observers):
            return super().forward(features, proposals, image_shapes, targets)
        # torchvision's box-only training branch, plus the no-grad observation between prediction and loss
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        self._observe_samples(class_logits, box_regression, proposals, labels, regression_targets)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

    @torch.no_grad()
    def _observe_samples(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        labels: list[Tensor],
        regression_targets: list[Tensor],
    ) -> None:
        """Give the sampled positive RoIs' ``(GT class, p_c, IoU)`` to the sample observers.

        ``class_logits`` ``[R, C + 1]``, ``box_regression`` ``[R, (C + 1) * 4]`` for the sampled RoIs of all
        images; ``proposals``, ``labels`` (0 = background), ``regression_targets`` per image, as sampled.
        """
        rois, labels, targets = torch.cat(proposals), torch.cat(labels), torch.cat(regression_targets)
        positive = torch.where(labels > 0)[0]
        gt_labels = labels[positive]
        probs = F.softmax(class_logits[positive].float(), -1).gather(1, gt_labels[:, None])[:, 0]
        deltas = box_regression.reshape(box_regression.shape[0], -1, 4)[positive, gt_labels]  # [P, 4]
        predicted = self.box_coder.decode_single(deltas.float(), rois[positive])
        matched_gt = self.box_coder.decode_single(targets[positive].float(), rois[positive])
        self.notify_observers(gt_labels, probs, broadcast_iou(predicted, matched_gt))

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        # type: (Tensor, Tensor, list[Tensor], list[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]
        boxes, scores, labels, _ = self.postprocess_with_sources(class_logits, box_regression, proposals, image_shapes)
        return boxes, scores, labels

    def postprocess_with_sources(
        self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ):
        """torchvision's ``postprocess_detections`` that also returns ``roi_idxs``.

        Args:
            class_logits: ``[R, C + 1]`` for the RoIs of all images; box_regression: ``[R, (C + 1) * 4]``.
            proposals: per image ``[R_i, 4]`` (resized-image pixels).

        Returns per-image lists of boxes ``[N, 4]``, scores ``[N]``, labels ``[N]`` (``1..C``) and roi_idxs
        ``int64[N]``: the index in ``proposals[i]`` of the RoI each detection was regressed from.
        """
        num_classes = class_logits.shape[-1]
        boxes_per_image = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image)  # [R_i, C + 1, 4]
        pred_scores = F.softmax(class_logits, -1).split(boxes_per_image)  # [R_i, C + 1]
        results: tuple[list[Tensor], ...] = ([], [], [], [])
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
            roi_idxs = torch.arange(scores.shape[0], device=scores.device).view(-1, 1).expand_as(scores)
            # drop the background column, then one candidate per (RoI, class): [R_i * C, ...]
            boxes, scores = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1)
            labels, roi_idxs = labels[:, 1:].reshape(-1), roi_idxs[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            keep = keep[box_ops.remove_small_boxes(boxes[keep], min_size=1e-2)]
            keep = keep[box_ops.batched_nms(boxes[keep], scores[keep], labels[keep], self.nms_thresh)]
            keep = keep[: self.detections_per_img]
            for result, tensor in zip(results, (boxes, scores, labels, roi_idxs)):
                result.append(tensor[keep])
        return results


class IgnoringRPN(RegionProposalNetwork):
    """torchvision's ``RegionProposalNetwork`` that also honours target boxes labelled -1 (ignored: a teacher's
    uncertain detections, :data:`activedet.engine.teacher.IGNORED`): an anchor whose best-overlapping target box is
    an ignored one, with IoU at least the background threshold (or matched to it as its best anchor), trains
    neither as object nor as background. Targets without such boxes train exactly as torchvision's."""

    @classmethod
    def from_rpn(cls, rpn: RegionProposalNetwork) -> IgnoringRPN:
        """The same anchors, head and settings as ``rpn``."""
        return cls(
            rpn.anchor_generator,
            rpn.head,
            rpn.proposal_matcher.high_threshold,
            rpn.proposal_matcher.low_threshold,
            rpn.fg_bg_sampler.batch_size_per_image,
            rpn.fg_bg_sampler.positive_fraction,
            dict(rpn._pre_nms_top_n),
            dict(rpn._post_nms_top_n),
            rpn.nms_thresh,
            rpn.score_thresh,
        )

    def assign_targets_to_anchors(self, anchors, targets):
        labels, matched_gt_boxes = super().assign_targets_to_anchors(anchors, targets)
        for anchor_labels, anchors_per_image, target in zip(labels, anchors, targets):
            ignored = target["labels"] < 0
            if not bool(ignored.any()):
                continue
            best_iou, best = self.box_similarity(target["boxes"], anchors_per_image).max(0)
            near = (best_iou >= self.proposal_matcher.low_threshold) | (anchor_labels > 0)
            anchor_labels[ignored[best] & near] = -1.0
        return labels, matched_gt_boxes


class FasterRCNNDetector(PredictMixin, FasterRCNN):
    """torchvision ``FasterRCNN`` with :class:`SourceTrackingRoIHeads`.

    Training and the plain eval forward are torchvision's. ``predict(images, fields)`` returns
    :class:`Detections` with ``prob_kind="softmax"``:

    * ``class_probs`` ``[N, C + 1]``: softmax row of the detection's source RoI.
    * ``proposals`` ``[N, 4]``: that RoI (the RPN proposal), in original-image pixels.
    * ``embedding`` ``[fpn_channels]``: mean of the ``"pool"`` pyramid level.
    * ``features`` ``[N, representation_size]``: the box head's output for that RoI.
    * ``dense_probs``: ``None`` (two-stage).
    """

    prob_kind = "softmax"
    #: training targets may hold boxes labelled -1, which the RPN and the RoI sampler ignore (semi-supervision's
    #: uncertain pseudo boxes): torchvision's RoI matcher gives a proposal its box's label, and the sampler draws
    #: only labels >= 0; :class:`IgnoringRPN` does the same for anchors
    IGNORES_BOXES = True
    #: the optional Detections fields this detector can fill (others stay None even when requested)
    PROVIDES = frozenset({"class_probs", "proposals", "embedding", "features"})
    #: the last prediction layers' weights (biases excluded) whose gradients influence functions use,
    #: and the official per-tensor scales of its inverse-HVP recursion
    INFLUENCE_PARAMETERS = (
        "rpn.head.cls_logits.weight",
        "rpn.head.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.bbox_pred.weight",
    )
    INFLUENCE_SCALES = (1000.0, 1000.0, 5000.0, 1000.0)

    def dropout_sites(self) -> list[torch.nn.Module]:
        """``fc7`` and the box predictor: head dropout (``dropout=``) acts after ``fc6`` and after ``fc7``."""
        return [self.roi_heads.box_head.fc7, self.roi_heads.box_predictor]

    def add_sample_observer(self, name: str, observer: torch.nn.Module) -> None:
        """The ``"training_samples"`` hook point: ``observer`` becomes ``roi_heads.<name>`` (module docstring)."""
        self.roi_heads.add_sample_observer(name, observer)

    def __init__(self, backbone, num_classes=None, **kwargs):
        super().__init__(backbone, num_classes, **kwargs)
        self.rpn = IgnoringRPN.from_rpn(self.rpn)
        self.roi_heads = SourceTrackingRoIHeads.from_roi_heads(self.roi_heads)

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        return self.detect_from_proposals(*self.propose(images), fields=fields)

    def propose(self, images: list[Tensor]):
        """transform -> backbone -> RPN: ``(image_list, original_sizes, features, proposals)`` (eval mode)."""
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, _ = self.transform(images)
        features = self.backbone(image_list.tensors)
        proposals, _ = self.rpn(image_list, features)
        return image_list, original_sizes, features, proposals

    def detect_from_proposals(
        self, image_list, original_sizes, features, proposals, *, fields: frozenset[str]
    ) -> list[Detections]:
        """The RoI head's detections from :meth:`propose`'s outputs (run it once per head-dropout pass)."""
        heads = self.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, image_list.image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)  # [R, C + 1], [R, (C + 1) * 4]
        boxes, scores, labels, roi_idxs = heads.postprocess_with_sources(
            class_logits, box_regression, proposals, image_list.image_sizes
        )
        detections = [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(boxes, scores, labels)]
        detections = self.transform.postprocess(detections, image_list.image_sizes, original_sizes)
        rois_per_image = [p.shape[0] for p in proposals]
        probs = F.softmax(class_logits, -1).split(rois_per_image)  # [R_i, C + 1]
        box_features = box_features.split(rois_per_image)  # [R_i, representation_size]
        embeddings = pooled_embedding(list(features.values())[-1], image_list) if "embedding" in fields else None
        results = []
        for i, det in enumerate(detections):
            source = proposals[i][roi_idxs[i]]  # [N, 4] resized-image pixels
            results.append(
                Detections(
                    boxes=det["boxes"],
                    scores=det["scores"],
                    labels=det["labels"],
                    prob_kind=self.prob_kind,
                    class_probs=probs[i][roi_idxs[i]] if "class_probs" in fields else None,
                    proposals=(
                        resize_boxes(source, image_list.image_sizes[i], original_sizes[i])
                        if "proposals" in fields
                        else None
                    ),
                    embedding=embeddings[i] if embeddings is not None else None,
                    features=box_features[i][roi_idxs[i]] if "features" in fields else None,
                )
            )
        return results


@offers("training_samples")
def build_faster_rcnn(
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
    anchor_sizes: Sequence[Sequence[float]] | None = None,
    fpn_channels: int | None = None,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    dropout: float = 0.0,
    **rpn_and_box_options: Any,
) -> FasterRCNNDetector:
    """A Faster R-CNN (FPN) for ``num_classes`` foreground classes (labels ``1..C``, softmax over ``C + 1``).

    Args:
        num_classes: ``C``, foreground classes.
        backbone: one of :data:`~activedet.models.backbones.FPN_BACKBONES`; ``"resnet50"`` and
            ``"mobilenet_v3_large"`` are torchvision's ``fasterrcnn_resnet50_fpn`` and
            ``fasterrcnn_mobilenet_v3_large_fpn`` architectures.
        min_size, max_size: torchvision's resize range; default per backbone (:data:`FASTER_RCNN_DEFAULTS`).
        weights: detector weights (see :mod:`activedet.models.weights`); torchvision names
            ``FasterRCNN_ResNet50_FPN_Weights`` / ``FasterRCNN_MobileNet_V3_Large_FPN_Weights`` (90 classes).
        weights_backbone: backbone body weights (see :func:`~activedet.models.backbones.build_fpn_backbone`).
        weights_strict: ``False`` loads only the tensors of ``weights`` whose name and shape match.
        trainable_backbone_layers, norm: see ``build_fpn_backbone``; default 3 / ``"frozen"`` when starting
            from torchvision weights, all / ``"batchnorm"`` otherwise.
        anchor_sizes: RPN anchor sizes, one tuple per pyramid level.
        fpn_channels: pyramid width; default 256, 64 for ``tiny``.
        score_thresh, nms_thresh, detections_per_img: the box head's postprocessing.
        dropout: rate of the head dropout (0 = none, :func:`~activedet.models._common.add_head_dropout`); the model
            trains with it, and a strategy that samples several passes switches it on at query time.
        **rpn_and_box_options: any of ``rpn_pre_nms_top_n_train``, ``rpn_pre_nms_top_n_test``,
            ``rpn_post_nms_top_n_train``, ``rpn_post_nms_top_n_test``, ``rpn_batch_size_per_image``,
            ``box_batch_size_per_image``, ``representation_size`` (ints >= 1; defaults per backbone), and the
            keywords of the model additions at the ``"training_samples"`` hook point (:mod:`.additions`;
            ``activedet detectors`` lists them), attached after ``weights`` are loaded.
    """
    func = "build_faster_rcnn"
    taken = take_additions(func, build_faster_rcnn, rpn_and_box_options)
    check_int(func, "num_classes", num_classes, 1)
    check_choice(func, "backbone", backbone, FPN_BACKBONES)
    enums = {
        "resnet50": [FasterRCNN_ResNet50_FPN_Weights],
        "mobilenet_v3_large": [FasterRCNN_MobileNet_V3_Large_FPN_Weights],
    }.get(backbone, [])
    weights = resolve_weights(weights, enums, func=func, param="weights")
    defaults = FASTER_RCNN_DEFAULTS[backbone]
    options = _options(func, defaults, rpn_and_box_options)
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
    check_sizes(func, "anchor_sizes", anchor_sizes, len(defaults["returned_layers"]) + 1)
    sizes = tuple(tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in anchor_sizes)
    if len({len(s) for s in sizes}) != 1:
        raise ValueError(
            f"The 'anchor_sizes' parameter of {func} must give the same number of sizes at every "
            f"level (the RPN head is shared). Got {anchor_sizes!r} instead."
        )
    if trainable_backbone_layers is not None:
        check_int(func, "trainable_backbone_layers", trainable_backbone_layers, 0, NUM_STAGES[backbone])
    pretrained = uses_pretrained(weights, weights_backbone)
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
        fpn_channels=fpn_channels,
    )
    representation_size = options.pop("representation_size")
    roi_pool = MultiScaleRoIAlign(featmap_names=defaults["roi_levels"], output_size=7, sampling_ratio=2)
    model = FasterRCNNDetector(
        body,
        None,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)),
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(fpn_channels * 7 * 7, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
        box_score_thresh=score_thresh,
        box_nms_thresh=nms_thresh,
        box_detections_per_img=detections_per_img,
        **options,
    )
    add_head_dropout(model.dropout_sites(), dropout)
    member = load_weights(model, weights, enums, strict=weights_strict, func=func, param="weights")
    attach_additions(func, model, num_classes, taken)
    if member == FasterRCNN_ResNet50_FPN_Weights.COCO_V1:
        overwrite_frozen_eps(model, 0.0)
    return model


def _options(func: str, defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, int]:
    """Per-backbone RPN/box-sampling defaults overridden by ``given`` (validated)."""
    names = [
        "rpn_pre_nms_top_n_train",
        "rpn_pre_nms_top_n_test",
        "rpn_post_nms_top_n_train",
        "rpn_post_nms_top_n_test",
        "rpn_batch_size_per_image",
        "box_batch_size_per_image",
        "representation_size",
    ]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise TypeError(f"{func}() got unexpected keyword argument(s) {unknown}; the RPN/box options are {names}.")
    options = {name: given.get(name, defaults[name]) for name in names}
    for name, value in options.items():
        check_int(func, name, value, 1)
    return options
