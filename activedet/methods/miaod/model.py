"""MI-AOD (Yuan et al., CVPR 2021; first released as MIAL) on torchvision's RetinaNet (methods.md §3).

The head has four parallel towers on every pyramid level:

* ``classification_head`` (``f1``) and ``classification_head_2`` (``f2``): the two adversarial instance
  classifiers, sigmoid per class, built one after the other so their random initialisations differ;
* ``regression_head`` (``f_r``): torchvision's box regressor (L1 loss, as torchvision's v1 RetinaNet);
* ``mil_head`` (``f_mil``): the multiple-instance classifier.

Per image and pyramid level, with ``z1, z2, zm`` the foreground logits ``[N_l, C]`` of ``f1, f2, f_mil``, the
MIL instance weights are (the released code's version, methods.md §3.1)::

    w[i, c] = softmax_c(zm[i])[c] * softmax_i( max_c sigmoid((z1[i, c] + z2[i, c]) / 2) )     # 2nd factor detached

and the image-level class score is ``y_hat[c] = clamp(max_level sum_i w[i, c], 1e-5, 1 - 1e-5)``. With
``mil_weighting="class"`` the second factor is the paper's class-specific ``softmax_i(sigmoid((z1 + z2) / 2)[i, c])``.
With a single class, ``softmax_c`` of one logit is identically 1 (the MIL loss would have no gradient and the
image score would be stuck at 1), so ``sigmoid(zm)`` is used instead: a softmax over the class and an implicit
zero background logit. Softmaxes over instances run over the anchors whose centre lies on the image (batch
padding is excluded).

Training (``model.train()``), ``model(images, targets, stage=...)`` returns a loss dict:

* labelled images (``targets`` given): ``classification`` = (focal(f1) + focal(f2)) / 2 (the released code's;
  ``classifier_loss="sum"``: focal(f1) + focal(f2)), ``bbox_regression``, and ``mil`` = BCE(y_hat, class presence)
  except in the ``"max"`` stage (every ``mil`` term is multiplied by ``mil_loss_weight``, 1 as released);
* unlabelled images (``targets=None``): ``"min"`` stage: ``discrepancy`` = λ Σ_i mean_c |p1 - p2| w and ``mil``
  against the pseudo labels ``1[max_i (p1 + p2) / 2 >= 0.5]`` (zero for the whole batch when any image has no
  pseudo-positive class, as the released code does); ``"max"`` stage: ``discrepancy`` = λ Σ_i mean_c
  (1 - |p1 - p2|) w. Sums run over anchors, levels and the images of the batch (as the released code).

So ``model(images, targets)`` is the label-set training step, and the plain trainer can train this detector.
:func:`activedet.methods.miaod.training.train_miaod` runs the adversarial schedule. At test time only ``f1`` and ``f_r``
produce detections (as the released code).

``predict`` adds, on request, these ``Detections.extras`` keys (:data:`EXTRA_FIELDS`), so the MI-AOD score is
computed in the same streaming pass as every other strategy:

* ``class_probs_2``: ``float32[N, C]`` as ``class_probs``, from the second classifier ``f2`` (the sigmoid vector
  of each detection's source anchor);
* ``dense_probs_2``: ``float32[A, C]`` as ``dense_probs``, from ``f2`` (every in-image anchor);
* ``dense_weights``: ``float32[A, C]`` the MIL instance weights ``w`` of the same anchors as ``dense_probs``.

Detectors with one classifier never fill them (the key is absent even when requested).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetHead

from ...models._common import anchors_per_level, check_choice, check_float, inside_image, single_stage_predict
from ...models.outputs import Detections
from ...models.retinanet import RetinaNetDetector, build_retinanet
from ...models.weights import WeightsSpec

#: The ``Detections.extras`` keys this module fills (module docstring).
EXTRA_FIELDS = frozenset({"class_probs_2", "dense_probs_2", "dense_weights"})
#: Those with one row per detection (narrowed with the detections, e.g. by :mod:`activedet.models.views`).
PER_DETECTION_EXTRAS = frozenset({"class_probs_2"})

__all__ = [
    "EXTRA_FIELDS",
    "DETECTORS",
    "MIAODHead",
    "MIAODRetinaNet",
    "build_miaod",
    "mil_weights",
    "mil_image_scores",
    "STAGES",
    "MIL_WEIGHTINGS",
    "CLASSIFIER_LOSSES",
]

STAGES = ("label", "min", "max")
MIL_WEIGHTINGS = ("code", "class")
CLASSIFIER_LOSSES = ("mean", "sum")


class MIAODHead(RetinaNetHead):
    """torchvision's RetinaNet head (``f1`` + ``f_r``) plus ``f2`` and the MIL classifier ``f_mil``.

    ``forward`` returns ``cls_logits`` (f1), ``cls_logits_2`` (f2), ``mil_logits`` and ``bbox_regression``, each
    ``[B, A, *]`` over all levels (torchvision's layout), so torchvision's eval forward runs unchanged on f1.
    ``classifier_loss`` (``"mean"`` or ``"sum"``) is how :meth:`compute_loss` combines the two focal losses.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, classifier_loss: str = "mean"):
        super().__init__(in_channels, num_anchors, num_classes)
        self.classification_head_2 = RetinaNetClassificationHead(in_channels, num_anchors, num_classes)
        self.mil_head = RetinaNetClassificationHead(in_channels, num_anchors, num_classes)
        self.classifier_loss = classifier_loss

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        return {
            "cls_logits": self.classification_head(x),
            "cls_logits_2": self.classification_head_2(x),
            "mil_logits": self.mil_head(x),
            "bbox_regression": self.regression_head(x),
        }

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        # type: (list[dict[str, Tensor]], dict[str, Tensor], list[Tensor], list[Tensor]) -> dict[str, Tensor]
        focal_1 = self.classification_head.compute_loss(targets, head_outputs, matched_idxs)
        focal_2 = self.classification_head_2.compute_loss(
            targets, {"cls_logits": head_outputs["cls_logits_2"]}, matched_idxs
        )
        return {
            "classification": (focal_1 + focal_2) / (2 if self.classifier_loss == "mean" else 1),
            "bbox_regression": self.regression_head.compute_loss(targets, head_outputs, anchors, matched_idxs),
        }

    def adversarial_classifiers(self) -> list[torch.nn.Module]:
        """``[f1, f2]``: the only modules the maximising stage trains, frozen in the minimising stage."""
        return [self.classification_head, self.classification_head_2]


def mil_weights(
    z1: Tensor, z2: Tensor, zm: Tensor, level_sizes: list[int], valid: Tensor, weighting: str = "code"
) -> Tensor:
    """MIL instance weights ``w`` ``[B, A, C]`` from foreground logits ``[B, A, C]`` of f1, f2 and f_mil.

    Args:
        level_sizes: anchors per pyramid level (the instance softmax runs within a level).
        valid: ``bool[B, A]`` anchors on the image (not batch padding); invalid anchors get weight 0.
        weighting: ``"code"`` (max over classes, then softmax over instances; the released code) or ``"class"``
            (softmax over instances per class; the paper's Eq. 5).
    """
    class_factor = torch.sigmoid(zm) if zm.shape[-1] == 1 else torch.softmax(zm, dim=-1)
    mean_probs = torch.sigmoid((z1 + z2) / 2).detach()
    instance = mean_probs.amax(dim=-1, keepdim=True) if weighting == "code" else mean_probs  # [B, A, 1 | C]
    parts = []
    for inst, mask in zip(instance.split(level_sizes, dim=1), valid.split(level_sizes, dim=1)):
        logits = inst.masked_fill(~mask[..., None], float("-inf"))
        parts.append(torch.nan_to_num(torch.softmax(logits, dim=1), nan=0.0))  # a level with no valid anchor: 0
    return class_factor * torch.cat(parts, dim=1)


def mil_image_scores(weights: Tensor, level_sizes: list[int]) -> Tensor:
    """``y_hat`` ``[B, C]``: per level the sum of the weights over instances, max over levels, clamped."""
    per_level = torch.stack([w.sum(dim=1) for w in weights.split(level_sizes, dim=1)])  # [L, B, C]
    return per_level.amax(dim=0).clamp(1e-5, 1 - 1e-5)


def _foreground_logits(
    head_outputs: dict[str, Tensor], anchors: list[Tensor], image_sizes: list[tuple[int, int]]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """f1, f2 and f_mil logits ``[B, A, C]`` without the never-trained channel 0, and ``valid`` ``bool[B, A]``:
    anchors whose centre lies on the image."""
    z1, z2, zm = (head_outputs[k][..., 1:] for k in ("cls_logits", "cls_logits_2", "mil_logits"))
    valid = torch.stack([inside_image(a, size) for a, size in zip(anchors, image_sizes)])
    return z1, z2, zm, valid


class MIAODRetinaNet(RetinaNetDetector):
    """RetinaNet with the MI-AOD head; see the module docstring for the training losses per stage."""

    PROVIDES = RetinaNetDetector.PROVIDES | EXTRA_FIELDS

    def __init__(
        self,
        *args: Any,
        lambda_dis: float = 0.5,
        mil_weighting: str = "code",
        mil_loss_weight: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.lambda_dis = float(lambda_dis)
        self.mil_weighting = mil_weighting
        self.mil_loss_weight = float(mil_loss_weight)

    def forward(self, images, targets=None, stage: str = "label"):
        """Eval: torchvision's detections from f1 + f_r. Train: the loss dict of ``stage`` (module docstring)."""
        if not self.training:
            return super().forward(images, targets)
        if stage not in STAGES:
            raise ValueError(
                f"The 'stage' parameter of MIAODRetinaNet.forward must be one of {list(STAGES)}. Got {stage!r} instead."
            )
        image_list, targets = self.transform(images, targets)
        features = list(self.backbone(image_list.tensors).values())
        head_outputs = self.head(features)
        anchors = self.anchor_generator(image_list, features)
        level_sizes = anchors_per_level(head_outputs["cls_logits"].shape[1], features)
        z1, z2, zm, valid = _foreground_logits(head_outputs, anchors, image_list.image_sizes)
        weights = mil_weights(z1, z2, zm, level_sizes, valid, self.mil_weighting)
        if targets is not None:
            losses = self.compute_loss(targets, head_outputs, anchors)
            if stage != "max":
                presence = torch.zeros_like(z1[:, 0, :])
                for row, target in zip(presence, targets):
                    row[target["labels"] - 1] = 1.0
                bce = F.binary_cross_entropy(mil_image_scores(weights, level_sizes), presence)
                losses["mil"] = self.mil_loss_weight * bce
            return losses
        p1, p2 = torch.sigmoid(z1), torch.sigmoid(z2)
        gap = (p1 - p2).abs()
        if stage == "max":
            gap = 1 - gap
        elif stage == "label":
            raise ValueError("stage 'label' trains on labelled images only: pass targets")
        losses = {"discrepancy": self.lambda_dis * ((gap * weights.detach()).mean(dim=-1) * valid).sum()}
        if stage == "min":
            with torch.no_grad():
                mean = ((p1 + p2) / 2).masked_fill(~valid[..., None], 0.0)
                pseudo = (mean.amax(dim=1) >= 0.5).float()  # [B, C]
            ignore = bool((pseudo.sum(dim=1) == 0).any())
            bce = F.binary_cross_entropy(mil_image_scores(weights, level_sizes), pseudo)
            losses["mil"] = bce * (0.0 if ignore else self.mil_loss_weight)
        return losses

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        def extras(head_outputs, anchors, image_sizes, features, detections) -> list[dict[str, Tensor]]:
            wanted = fields & EXTRA_FIELDS
            if not wanted:
                return [{} for _ in detections]
            z1, z2, zm, valid = _foreground_logits(head_outputs, anchors, image_sizes)
            p2 = torch.sigmoid(z2)
            weights = None
            if "dense_weights" in wanted:
                weights = mil_weights(z1, z2, zm, anchors_per_level(z1.shape[1], features), valid, self.mil_weighting)
            out = []
            for i, det in enumerate(detections):
                item = {}
                if "class_probs_2" in wanted:
                    item["class_probs_2"] = p2[i, det["anchor_idxs"]]
                if "dense_probs_2" in wanted:
                    item["dense_probs_2"] = p2[i, valid[i]]
                if weights is not None:
                    item["dense_weights"] = weights[i, valid[i]]
                out.append(item)
            return out

        return single_stage_predict(self, images, fields, extras=extras)


def build_miaod(
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
    anchor_sizes: Any = None,
    fpn_channels: int | None = None,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    topk_candidates: int = 1000,
    lambda_dis: float = 0.5,
    mil_weighting: str = "code",
    classifier_loss: str = "mean",
    mil_loss_weight: float = 1.0,
) -> MIAODRetinaNet:
    """An MI-AOD RetinaNet for ``num_classes`` foreground classes: :func:`build_retinanet` with the MI-AOD head.

    Args:
        lambda_dis: λ, weight of the instance-discrepancy losses (0.5, the released default).
        mil_weighting: ``"code"`` (default, the released code) or ``"class"`` (the paper's class-specific
            instance weighting); see the module docstring.
        classifier_loss: how the labelled images' focal losses of f1 and f2 combine into ``classification``:
            ``"mean"`` (default, the released code's ``(FL(f1) + FL(f2)) / 2``) or ``"sum"`` (``FL(f1) + FL(f2)``:
            each classifier's focal loss at the weight a plain RetinaNet gives its one classifier). The mean halves
            the classification gradient each classifier sends into the shared trunk and FPN, against an unchanged
            box-regression gradient; with an adaptive optimiser (AdamW) in the ``label`` stage without gradient
            clipping, whose steps on the heads ignore the 1/2, that is its only effect (the adversarial stages mix
            the heads' focal and discrepancy gradients in one optimiser state, where the scale matters too). Under
            SGD the mean also halves each classifier's own step.
        mil_loss_weight: the weight of the MIL image-classification loss, on labelled images and on the pseudo-labelled
            unlabelled ones (1, as released). 0 leaves the MIL classifier ``f_mil`` untrained, so the instance
            weights come from its initialisation: a diagnostic of what the MIL loss costs or gives the detector, not
            the method.
        every other argument: as :func:`build_retinanet` (same per-backbone defaults, :data:`RETINANET_DEFAULTS`).
            ``weights`` may be a torchvision RetinaNet checkpoint: with ``weights_strict=False`` f1, f_r and the
            trunk load from it and f2 / f_mil keep their random initialisation.
    """
    func = "build_miaod"
    check_float(func, "lambda_dis", lambda_dis, 0.0, math.inf)
    check_choice(func, "mil_weighting", mil_weighting, MIL_WEIGHTINGS)
    check_choice(func, "classifier_loss", classifier_loss, CLASSIFIER_LOSSES)
    check_float(func, "mil_loss_weight", mil_loss_weight, 0.0, math.inf)
    template = build_retinanet(
        num_classes,
        backbone=backbone,
        min_size=min_size,
        max_size=max_size,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        norm=norm,
        anchor_sizes=anchor_sizes,
        fpn_channels=fpn_channels,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        topk_candidates=topk_candidates,
    )
    fpn = template.head.classification_head.conv[0][0].in_channels
    num_anchors = template.anchor_generator.num_anchors_per_location()[0]
    head = MIAODHead(fpn, num_anchors, num_classes + 1, classifier_loss)
    model = MIAODRetinaNet(
        template.backbone,
        num_classes + 1,
        min_size=template.transform.min_size[0],
        max_size=template.transform.max_size,
        anchor_generator=template.anchor_generator,
        head=head,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        topk_candidates=topk_candidates,
        lambda_dis=lambda_dis,
        mil_weighting=mil_weighting,
        mil_loss_weight=mil_loss_weight,
    )
    if weights is not None:
        from ...models.retinanet import RetinaNet_ResNet50_FPN_Weights
        from ...models.weights import load_weights, resolve_weights

        enums = [RetinaNet_ResNet50_FPN_Weights] if backbone == "resnet50" else []
        load_weights(
            model,
            resolve_weights(weights, enums, func=func, param="weights"),
            enums,
            strict=weights_strict,
            func=func,
            param="weights",
        )
    return model


#: The detector this method adds to ``activedet.models.DETECTORS`` (:mod:`activedet.plugins`).
DETECTORS = {"miaod": build_miaod}
