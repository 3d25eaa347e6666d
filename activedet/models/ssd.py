"""SSD adapter: torchvision's SSD (VGG16 and SSDlite/MobileNetV3 variants, plus a tiny CPU variant) with
``predict`` returning :class:`Detections`.

Class convention: SSD scores a softmax over ``C + 1`` classes per default box, column 0 = background, so
labels are ``1..C`` and probability vectors are ``K = C + 1`` wide (``class_probs[i, labels[i]] == scores[i]``).

Variants (``variant=``), each with its own multi-scale feature extractor:

* ``"ssd300_vgg16"``: torchvision's ``ssd300_vgg16`` (6 maps, strides 8-300 at 300 px); ``size`` >= 268
  because the last two extra layers are unpadded 3x3 convolutions.
* ``"ssdlite320_mobilenet_v3_large"``: torchvision's ``ssdlite320_mobilenet_v3_large`` (6 maps); any size,
  e.g. ``size=160`` for a small-input variant.
* ``"tiny"``: the :class:`~activedet.models.backbones.TinyBackbone` body (maps at strides 8, 16, 32) plus one
  extra stride-64 map; default boxes of relative scales 0.08-0.8 (10-85 px at the default ``size=128``).

Embedding: global average of the last (coarsest) extractor map: 256-d for VGG16, 128-d for SSDlite and tiny.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models import MobileNet_V3_Large_Weights, VGG16_Weights
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSD300_VGG16_Weights, SSDFeatureExtractorVGG, SSDHead
from torchvision.models.detection.ssdlite import (
    SSDLite320_MobileNet_V3_Large_Weights,
    SSDLiteFeatureExtractorMobileNet,
    SSDLiteHead,
)
from torchvision.ops import boxes as box_ops
from torchvision.ops.misc import Conv2dNormActivation

from ._common import (
    PredictMixin,
    add_head_dropout,
    check_choice,
    check_float,
    check_int,
    single_stage_predict,
    strip_sources,
)
from .backbones import NORMS, TINY_STAGES, TinyBackbone, default_norm, freeze_stages, norm_layer_for, uses_pretrained
from .outputs import Detections
from .weights import WeightsSpec, is_local_file, load_weights, resolve_weights, resolve_weights_enum

__all__ = ["SSDDetector", "TinySSDExtractor", "build_ssd", "SSD_VARIANTS", "SSD_DEFAULTS", "SSD300_BOX_SCALES"]

SSD_VARIANTS = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "tiny")
_VGG_MIN_SIZE = 268

#: Relative default-box scales of SSD300's six maps (the seventh closes the last map's extra box): ``coco`` is
#: torchvision's (the SSD paper's COCO setting: 21-315 px at 300), ``voc`` the SSD paper's VOC setting (30-315 px;
#: AL-MDN's ``voc300_active`` config, min_sizes 30/60/111/162/213/264 and max 315).
SSD300_BOX_SCALES: dict[str, list[float]] = {
    "coco": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    "voc": [0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05],
}

#: Per-variant defaults (torchvision's for the first two).
SSD_DEFAULTS: dict[str, dict[str, Any]] = {
    "ssd300_vgg16": dict(
        size=300,
        score_thresh=0.01,
        nms_thresh=0.45,
        detections_per_img=200,
        topk_candidates=400,
        image_mean=[0.48235, 0.45882, 0.40784],
        image_std=[1.0 / 255.0] * 3,
        stages=5,
        pretrained_trainable=4,
    ),
    "ssdlite320_mobilenet_v3_large": dict(
        size=320,
        score_thresh=0.001,
        nms_thresh=0.55,
        detections_per_img=300,
        topk_candidates=300,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        stages=6,
        pretrained_trainable=6,
    ),
    "tiny": dict(
        size=128,
        score_thresh=0.01,
        nms_thresh=0.45,
        detections_per_img=100,
        topk_candidates=200,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        stages=5,
        pretrained_trainable=3,
    ),
}


class SSDDetector(PredictMixin, SSD):
    """torchvision ``SSD`` whose postprocessing remembers each detection's source default box.

    Training and the plain eval forward are torchvision's. ``predict(images, fields)`` returns
    :class:`Detections` with ``prob_kind="softmax"``:

    * ``class_probs`` ``[N, C + 1]``: softmax row of the detection's source default box.
    * ``dense_probs`` ``[A, C + 1]``: softmax rows of all default boxes (all maps, finest first).
    * ``embedding``: mean of the last extractor map.
    * ``proposals``: ``None`` (single-stage).
    """

    prob_kind = "softmax"
    #: the optional Detections fields this detector can fill (others stay None even when requested)
    PROVIDES = frozenset({"class_probs", "embedding", "dense_probs"})
    #: postprocessing takes the concatenated outputs; how each head output averages over stochastic predictions
    SPLIT_LEVELS = False
    HEAD_OUTPUT_KINDS = {"cls_logits": "softmax", "bbox_regression": "linear"}

    def dropout_sites(self) -> list[nn.Module]:
        """Every per-level prediction convolution: head dropout (``dropout=``) acts on the feature map it reads."""
        return [*self.head.classification_head.module_list, *self.head.regression_head.module_list]

    def postprocess_detections(self, head_outputs, image_anchors, image_shapes):
        return strip_sources(self.postprocess_with_sources(head_outputs, image_anchors, image_shapes))

    def postprocess_with_sources(
        self, head_outputs: dict[str, Tensor], image_anchors: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """torchvision's ``postprocess_detections`` that also returns ``anchor_idxs`` (int64[N]).

        Args:
            head_outputs: ``"cls_logits"`` ``[B, A, C + 1]`` and ``"bbox_regression"`` ``[B, A, 4]``.
            image_anchors: per image ``[A, 4]`` default boxes in resized-image pixels.
            image_shapes: resized image sizes ``(h, w)``.
        """
        pred_scores = F.softmax(head_outputs["cls_logits"], dim=-1)  # [B, A, C + 1]
        detections = []
        for box_regression, scores, anchors, image_shape in zip(
            head_outputs["bbox_regression"], pred_scores, image_anchors, image_shapes
        ):
            boxes = box_ops.clip_boxes_to_image(self.box_coder.decode_single(box_regression, anchors), image_shape)
            candidates = [self._class_candidates(scores[:, label], label) for label in range(1, scores.shape[-1])]
            scores_, labels, anchor_idxs = (torch.cat(t) for t in zip(*candidates))
            boxes = boxes[anchor_idxs]
            keep = box_ops.batched_nms(boxes, scores_, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append(
                {
                    "boxes": boxes[keep],
                    "scores": scores_[keep],
                    "labels": labels[keep],
                    "anchor_idxs": anchor_idxs[keep],
                }
            )
        return detections

    def _class_candidates(self, scores: Tensor, label: int) -> tuple[Tensor, Tensor, Tensor]:
        """Top default boxes of one class: scores, labels, default-box indices."""
        anchor_idxs = torch.where(scores > self.score_thresh)[0]
        scores, order = scores[anchor_idxs].topk(min(self.topk_candidates, anchor_idxs.numel()))
        labels = torch.full_like(order, label)
        return scores, labels, anchor_idxs[order]

    def dense_class_probs(self, head_outputs: dict[str, Tensor]) -> Tensor:
        """``[B, A, C + 1]`` softmax of every default box."""
        return F.softmax(head_outputs["cls_logits"], dim=-1)

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        return single_stage_predict(self, images, fields)


class TinySSDExtractor(nn.Module):
    """Maps of a :class:`TinyBackbone` at strides 8, 16, 32 plus one extra stride-64 map.

    Input ``[B, 3, S, S]``; output ordered dict ``"0".."3"`` of ``[B, 32|64|96|128, S/8..S/64, ...]``.
    """

    def __init__(self, body: TinyBackbone, norm_layer: Callable[[int], nn.Module]):
        super().__init__()
        self.body = body
        self.extra = nn.Sequential(
            Conv2dNormActivation(body.channels[-1], 64, 1, norm_layer=norm_layer),
            Conv2dNormActivation(64, 128, 3, stride=2, norm_layer=norm_layer),
        )
        self.out_channels = [*body.channels[2:], 128]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outputs: dict[str, Tensor] = OrderedDict()
        for name, stage in self.body.named_children():
            x = stage(x)
            if name in ("layer2", "layer3", "layer4"):
                outputs[str(len(outputs))] = x
        outputs[str(len(outputs))] = self.extra(x)
        return outputs


def _freeze_blocks(blocks: nn.Sequential, stage_starts: list[int], trainable_layers: int) -> None:
    """Freeze ``blocks`` before the start of the last ``trainable_layers`` stages (torchvision's rule)."""
    freeze_before = len(blocks) if trainable_layers == 0 else stage_starts[len(stage_starts) - trainable_layers]
    for block in blocks[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)


def _torchvision_body(name: str, weights_backbone: WeightsSpec, **kwargs: Any) -> nn.Module:
    """A torchvision classification network with ``weights_backbone`` (None, local file or weights name)."""
    constructor = getattr(torchvision.models, name)
    if weights_backbone is None or is_local_file(weights_backbone):
        body = constructor(weights=None, **kwargs)
        load_weights(body, weights_backbone, func="build_ssd", param="weights_backbone")
        return body
    enum = torchvision.models.get_model_weights(name)
    member = resolve_weights_enum(weights_backbone, [enum], func="build_ssd", param="weights_backbone")
    return constructor(weights=member, **kwargs)


def _vgg_extractor(weights_backbone: WeightsSpec, trainable_layers: int) -> nn.Module:
    if weights_backbone == "DEFAULT":  # SSD's VGG16 weights are the ImageNet "features" variant
        weights_backbone = VGG16_Weights.IMAGENET1K_FEATURES
    features = _torchvision_body("vgg16", weights_backbone).features
    stage_starts = [0] + [i for i, b in enumerate(features) if isinstance(b, nn.MaxPool2d)][:-1]
    _freeze_blocks(features, stage_starts, trainable_layers)
    return SSDFeatureExtractorVGG(features, highres=False)


def _lite_extractor(weights_backbone: WeightsSpec, trainable_layers: int, norm_layer) -> nn.Module:
    if weights_backbone == "DEFAULT":
        weights_backbone = MobileNet_V3_Large_Weights.IMAGENET1K_V1
    # torchvision: the reduced tail (Table 6 of the MobileNetV3 paper) and a N(0, 0.03) init from scratch
    body = _torchvision_body(
        "mobilenet_v3_large", weights_backbone, norm_layer=norm_layer, reduced_tail=weights_backbone is None
    )
    if weights_backbone is None:
        _normal_init(body)
    features = body.features
    stage_starts = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    _freeze_blocks(features, stage_starts, trainable_layers)
    return SSDLiteFeatureExtractorMobileNet(features, stage_starts[-2], norm_layer)


def _normal_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            torch.nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                torch.nn.init.constant_(layer.bias, 0.0)


def _out_channels(extractor: nn.Module, size: int) -> list[int]:
    """Channels of each extractor map, from one eval-mode forward of a blank image."""
    training = extractor.training
    extractor.eval()
    with torch.no_grad():
        maps = extractor(torch.zeros(1, 3, size, size))
    extractor.train(training)
    return [m.shape[1] for m in maps.values()]


def _parts(
    variant: str, size: int, weights_backbone: WeightsSpec, trainable_layers: int, norm: str, box_scales: str = "coco"
):
    """(extractor, default-box generator, head factory) of ``variant``."""
    if variant == "ssd300_vgg16":
        extractor = _vgg_extractor(weights_backbone, trainable_layers)
        boxes = DefaultBoxGenerator(
            [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
            scales=list(SSD300_BOX_SCALES[box_scales]),
            steps=[s * size / 300 for s in (8, 16, 32, 64, 100, 300)],
        )
        return extractor, boxes, SSDHead
    if variant == "ssdlite320_mobilenet_v3_large":
        norm_layer = norm_layer_for(norm, eps=0.001, momentum=0.03)
        extractor = _lite_extractor(weights_backbone, trainable_layers, norm_layer)
        boxes = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
        return extractor, boxes, lambda c, a, k: SSDLiteHead(c, a, k, norm_layer)
    norm_layer = norm_layer_for(norm)
    body = TinyBackbone(norm_layer)
    load_weights(body, weights_backbone, func="build_ssd", param="weights_backbone")
    freeze_stages(body, TINY_STAGES, trainable_layers)
    boxes = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2]], scales=[0.08, 0.16, 0.32, 0.56, 0.8])
    return TinySSDExtractor(body, norm_layer), boxes, SSDHead


def build_ssd(
    num_classes: int,
    *,
    variant: str = "ssd300_vgg16",
    size: int | None = None,
    weights: WeightsSpec = None,
    weights_backbone: WeightsSpec = None,
    weights_strict: bool = True,
    trainable_backbone_layers: int | None = None,
    norm: str | None = None,
    score_thresh: float | None = None,
    nms_thresh: float | None = None,
    detections_per_img: int | None = None,
    topk_candidates: int | None = None,
    dropout: float = 0.0,
    box_scales: str = "coco",
) -> SSDDetector:
    """An SSD for ``num_classes`` foreground classes (labels ``1..C``, softmax over ``C + 1``).

    Args:
        num_classes: ``C``, foreground classes.
        variant: one of :data:`SSD_VARIANTS` (see the module docstring).
        size: square input size every image is resized to; default 300 / 320 / 128.
        weights: detector weights (see :mod:`activedet.models.weights`); torchvision names
            ``SSD300_VGG16_Weights`` / ``SSDLite320_MobileNet_V3_Large_Weights`` (90 COCO classes).
        weights_backbone: backbone weights: a local file or a torchvision name of ``vgg16`` (``"DEFAULT"`` is
            ``IMAGENET1K_FEATURES``, as torchvision's SSD) / ``mobilenet_v3_large``; a local file for tiny.
        weights_strict: ``False`` loads only the tensors of ``weights`` whose name and shape match.
        trainable_backbone_layers: trainable stages from the last; default all from scratch, else (with
            ``weights_backbone`` or torchvision ``weights``) 4 (VGG16), 6 (SSDlite), 3 (tiny), as torchvision.
        norm: ``"batchnorm"``, ``"frozen"`` or ``"group"`` for SSDlite (default ``"batchnorm"`` as torchvision)
            and tiny (default ``"frozen"`` with ``weights_backbone``); VGG16 has no normalisation layers, so
            ``norm`` changes nothing there (it is batch-independent whatever the value).
        score_thresh, nms_thresh, detections_per_img, topk_candidates: postprocessing, default per variant
            (:data:`SSD_DEFAULTS`).
        dropout: rate of the head dropout (0 = none, :func:`~activedet.models._common.add_head_dropout`); the model
            trains with it, and a strategy that samples several passes switches it on at query time.
        box_scales: ``ssd300_vgg16`` only: ``"coco"`` (default, torchvision's default boxes) or ``"voc"`` (the SSD
            paper's and AL-MDN's VOC default boxes, :data:`SSD300_BOX_SCALES`).
    """
    func = "build_ssd"
    check_int(func, "num_classes", num_classes, 1)
    check_choice(func, "variant", variant, SSD_VARIANTS)
    check_choice(func, "box_scales", box_scales, tuple(SSD300_BOX_SCALES))
    if box_scales != "coco" and variant != "ssd300_vgg16":
        raise ValueError(
            f"The 'box_scales' parameter of {func} applies to variant 'ssd300_vgg16' only; variant "
            f"{variant!r} has its own default boxes. Remove box_scales or use variant ssd300_vgg16."
        )
    enums = {
        "ssd300_vgg16": [SSD300_VGG16_Weights],
        "ssdlite320_mobilenet_v3_large": [SSDLite320_MobileNet_V3_Large_Weights],
    }.get(variant, [])
    weights = resolve_weights(weights, enums, func=func, param="weights")
    defaults = SSD_DEFAULTS[variant]
    size = defaults["size"] if size is None else size
    check_int(func, "size", size, 32)
    if variant == "ssd300_vgg16" and size < _VGG_MIN_SIZE:
        raise ValueError(
            f"The 'size' parameter of {func} must be an int >= {_VGG_MIN_SIZE} for 'ssd300_vgg16' "
            f"(its last two extra layers are unpadded 3x3 convolutions). Got {size!r} instead."
        )
    post = {
        k: defaults[k] if v is None else v
        for k, v in dict(
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            topk_candidates=topk_candidates,
        ).items()
    }
    check_float(func, "score_thresh", post["score_thresh"], 0.0, 1.0)
    check_float(func, "nms_thresh", post["nms_thresh"], 0.0, 1.0)
    check_int(func, "detections_per_img", post["detections_per_img"], 1)
    check_int(func, "topk_candidates", post["topk_candidates"], 1)
    pretrained = uses_pretrained(weights, weights_backbone)
    if trainable_backbone_layers is None:
        trainable_backbone_layers = defaults["pretrained_trainable"] if pretrained else defaults["stages"]
    check_int(func, "trainable_backbone_layers", trainable_backbone_layers, 0, defaults["stages"])
    norm = (default_norm(pretrained) if variant == "tiny" else "batchnorm") if norm is None else norm
    check_choice(func, "norm", norm, NORMS)
    extractor, anchor_generator, head_factory = _parts(
        variant, size, weights_backbone, trainable_backbone_layers, norm, box_scales
    )
    head = head_factory(_out_channels(extractor, size), anchor_generator.num_anchors_per_location(), num_classes + 1)
    model = SSDDetector(
        extractor,
        anchor_generator,
        (size, size),
        num_classes + 1,
        head=head,
        image_mean=defaults["image_mean"],
        image_std=defaults["image_std"],
        **post,
    )
    add_head_dropout(model.dropout_sites(), dropout)
    load_weights(model, weights, enums, strict=weights_strict, func=func, param="weights")
    return model
