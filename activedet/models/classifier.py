"""Image classification in the detector interface: one whole-image "detection" per image.

Convention (shared with the data readers, training, evaluation and the strategies): a classification image is an
:class:`~activedet.data.records.ImageRecord` whose annotation is exactly one box covering the whole image,
``[0, 0, w, h]``, with ``labels=[c]``, ``c`` in ``1..C``. The classifier therefore trains and predicts as the
detectors do:

* training: ``model(images, targets) -> {"loss_classifier": cross-entropy, mean over the batch}``; only each
  target's single label is read (the box is the whole image by convention and is not checked).
* inference: ``model.predict(images, fields) -> list[Detections]`` with exactly one detection per image: box
  ``[0, 0, W, H]`` in the image's own pixels, score = the largest softmax probability, label = its class ``1..C``,
  ``prob_kind="softmax"``, ``class_probs`` ``[1, C + 1]`` (column 0, background, is 0; columns ``1..C`` the softmax)
  and ``embedding`` ``[D]`` (the globally pooled features the last linear layer reads). The uncertainty strategies
  (least confidence, margin and entropy with ``use_class_probs``) and the core-set read these unchanged. With
  more than 20 classes the top probability can fall below those strategies' default ``score_threshold`` (0.05),
  which would make the image count as empty (no detection to score): set ``score_threshold: 0`` there.

Input: every image (``[3, H, W]`` in ``[0, 1]``, any size) is resized to ``min_size x min_size`` (bilinear,
antialiased; skipped when it already has that size), then normalised with the ImageNet mean and std.

Backbones (:data:`CLASSIFIER_BACKBONES`):

* ``"small"``: a CPU-sized network for 32 px images, trained from scratch in seconds: four 3x3 conv-norm-ReLU
  blocks (32, 64, 128, 128 channels; strides 1, 2, 2, 2: a 32 px input ends at 4x4), global average pooling,
  ``D = 128``; 241k parameters before the final layer.
* ``"resnet18"``: torchvision's ResNet-18 whose 1000-way ``fc`` is replaced by the ``C``-way one, ``D = 512``
  (11.2M parameters). ``weights_backbone`` (a local state_dict file of torchvision's ``resnet18`` or a
  ``ResNet18_Weights`` name) initialises it.

Default ``min_size``: 32 for ``small``, 224 for ``resnet18`` (ImageNet's size); set 32 for CIFAR-sized images.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from ._common import NORMS, PredictMixin, add_head_dropout, check_choice, check_float, check_int, norm_layer_for
from .backbones import build_body
from .efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD
from .outputs import Detections
from .weights import WeightsSpec, load_weights, resolve_weights

__all__ = ["ImageClassifier", "SmallConvNet", "build_classifier", "CLASSIFIER_BACKBONES", "CLASSIFIER_MIN_SIZE"]

CLASSIFIER_BACKBONES = ("resnet18", "small")
#: default square input side per backbone
CLASSIFIER_MIN_SIZE = {"small": 32, "resnet18": 224}
_SMALL_CHANNELS = (32, 64, 128, 128)
_SMALL_STRIDES = (1, 2, 2, 2)


class SmallConvNet(nn.Sequential):
    """``block1..block4`` (3x3 conv-norm-ReLU, strides 1, 2, 2, 2), then a global average pool.

    Input ``[B, 3, S, S]`` normalised; output ``[B, out_features]`` (``out_features = 128``).
    """

    def __init__(
        self,
        norm_layer: Callable[[int], nn.Module],
        channels: Sequence[int] = _SMALL_CHANNELS,
        strides: Sequence[int] = _SMALL_STRIDES,
    ):
        blocks = OrderedDict()
        in_channels = 3
        for k, (out_channels, stride) in enumerate(zip(channels, strides), start=1):
            blocks[f"block{k}"] = Conv2dNormActivation(
                in_channels, out_channels, 3, stride=stride, norm_layer=norm_layer
            )
            in_channels = out_channels
        blocks["pool"] = nn.AdaptiveAvgPool2d(1)
        blocks["flatten"] = nn.Flatten(1)
        super().__init__(blocks)
        self.out_features = in_channels


class ImageClassifier(PredictMixin, nn.Module):
    """A ``C``-way image classifier with the detectors' training and ``predict`` interface (module docstring).

    ``body`` maps the normalised ``[B, 3, S, S]`` batch to the pooled features ``[B, D]`` (the ``embedding``);
    ``fc`` (``Linear(D, C)``) maps them to the class logits. Training mode:
    ``model(images, targets) -> {"loss_classifier"}``, each target a dict whose ``"labels"`` holds exactly one class
    in ``1..C`` (``ValueError`` otherwise). Eval mode: ``model(images)`` -> torchvision-style
    ``[{"boxes" [1, 4], "scores" [1], "labels" [1]}]``, the plain fields of :meth:`predict`.

    With ``dropout`` (builder option) a :class:`~activedet.models._common.HeadDropout` acts on the input of
    ``fc`` (training, and the sampled passes at query time); ``embedding`` is taken before it.

    Attributes:
        INFLUENCE_PARAMETERS: names of the last prediction layer's weights whose gradients influence functions
            use (``fc.weight``, ``[C, D]``; the bias is left out).
        task: ``"classification"``: training validates with :func:`activedet.evaluation.accuracy`.
    """

    prob_kind = "softmax"
    task = "classification"
    #: the optional Detections fields this model fills (others stay None even when requested)
    PROVIDES = frozenset({"class_probs", "embedding"})
    INFLUENCE_PARAMETERS = ("fc.weight",)

    def __init__(self, body: nn.Module, num_features: int, num_classes: int, *, min_size: int):
        super().__init__()
        self.body = body
        self.fc = nn.Linear(num_features, num_classes)
        self.num_classes = num_classes
        self.min_size = min_size
        # not persistent: checkpoints hold only body and fc
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def dropout_sites(self) -> list[nn.Module]:
        """The final linear layer: head dropout (``dropout=``) acts on its input."""
        return [self.fc]

    def preprocess(self, images: Sequence[Tensor]) -> Tensor:
        """``[B, 3, S, S]``: each ``[3, H, W]`` image in ``[0, 1]`` resized to ``S = min_size`` and normalised."""
        side = self.min_size
        batch = []
        for i, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"The 'images' parameter of {type(self).__name__} must hold [3, H, W] tensors. "
                    f"Got shape {list(image.shape)} at index {i} instead."
                )
            if tuple(image.shape[-2:]) != (side, side):
                image = F.interpolate(
                    image[None], size=(side, side), mode="bilinear", align_corners=False, antialias=True
                )[0]
            batch.append(image)
        return (torch.stack(batch) - self.image_mean) / self.image_std

    def embed(self, images: Sequence[Tensor]) -> Tensor:
        """``[B, D]`` pooled features of ``images`` (the ``embedding`` field)."""
        return self.body(self.preprocess(images))

    def forward(self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None):
        images = list(images)
        if not self.training:
            return [det.as_target_dict() for det in self._predict(images, frozenset())]
        if targets is None:
            raise ValueError(
                f"The 'targets' parameter of {type(self).__name__}.forward must be given in training "
                f"mode (one dict with 'labels' per image). Got None instead; call model.eval() to "
                f"predict."
            )
        if len(targets) != len(images):
            raise ValueError(
                f"The 'targets' parameter of {type(self).__name__}.forward must have one entry per "
                f"image ({len(images)}). Got {len(targets)} instead."
            )
        labels = self._target_classes(targets)
        logits = self.fc(self.embed(images))  # [B, C]
        return {"loss_classifier": F.cross_entropy(logits.float(), labels.to(logits.device))}

    def _target_classes(self, targets: Sequence[dict[str, Tensor]]) -> Tensor:
        """``int64[B]`` class indices ``0..C-1`` from the single label ``1..C`` of each target."""
        classes = []
        for i, target in enumerate(targets):
            labels = torch.as_tensor(target["labels"]).reshape(-1)
            where = f"target {i}" + (f" (pool index {int(target['index'])})" if "index" in target else "")
            if labels.numel() != 1:
                raise ValueError(
                    f"The 'targets' parameter of {type(self).__name__}.forward must give exactly one label per "
                    f"image: a classification image is annotated with one box covering the whole image, "
                    f"[0, 0, w, h], and labels=[c]. Got {labels.numel()} labels in {where} instead. Give every "
                    f"image one whole-image label (in training an image also loses it when its box is marked "
                    f"difficult or iscrowd, or when scale_jitter above 0.4 crops it away)."
                )
            if not 1 <= int(labels[0]) <= self.num_classes:
                raise ValueError(
                    f"The 'targets' parameter of {type(self).__name__}.forward must hold labels in "
                    f"1..{self.num_classes}. Got {int(labels[0])} in {where} instead."
                )
            classes.append(labels.to(torch.int64) - 1)
        return torch.cat(classes)

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        embeddings = self.embed(images)  # [B, D]
        probs = F.softmax(self.fc(embeddings).float(), dim=1)  # [B, C]
        scores, classes = probs.max(dim=1)  # [B], [B]
        results = []
        for i, image in enumerate(images):
            height, width = image.shape[-2:]
            results.append(
                Detections(
                    boxes=torch.tensor([[0.0, 0.0, float(width), float(height)]], device=probs.device),
                    scores=scores[i : i + 1],
                    labels=classes[i : i + 1] + 1,
                    prob_kind=self.prob_kind,
                    class_probs=F.pad(probs[i : i + 1], (1, 0)) if "class_probs" in fields else None,  # [1, C + 1]
                    embedding=embeddings[i].float() if "embedding" in fields else None,
                )
            )
        return results


def build_classifier(
    num_classes: int,
    *,
    backbone: str = "small",
    min_size: int | None = None,
    weights: WeightsSpec = None,
    weights_backbone: WeightsSpec = None,
    weights_strict: bool = True,
    norm: str = "batchnorm",
    dropout: float = 0.0,
) -> ImageClassifier:
    """An image classifier for ``num_classes`` classes (labels ``1..C``), one whole-image detection per image.

    Args:
        num_classes: ``C``.
        backbone: ``"small"`` (CPU-sized, 32 px) or ``"resnet18"`` (torchvision), see the module docstring.
        min_size: the square side images are resized to; default 32 for ``small``, 224 for ``resnet18``.
        weights: whole-classifier weights: ``None`` or a local file (a state_dict or an activedet checkpoint,
            see :mod:`activedet.models.weights`); there are no torchvision weights for the ``C``-way model.
        weights_backbone: ``resnet18`` only: a local state_dict file of torchvision's ``resnet18`` (its 1000-way
            ``fc`` included) or a ``ResNet18_Weights`` name (``"DEFAULT"``, ``"IMAGENET1K_V1"``: downloaded by
            torchvision); ``small``: ``None`` or a local file of its body (keys ``block1...``).
        weights_strict: ``False`` loads only the tensors of ``weights`` whose name and shape match.
        norm: normalisation of the body, ``"batchnorm"``, ``"frozen"`` or ``"group"`` (not with
            ``weights_backbone``: pretrained bodies carry BatchNorm statistics).
        dropout: rate of the head dropout before ``fc`` (0 = none), in ``[0, 0.95]``; the model trains with it.
    """
    func = "build_classifier"
    check_int(func, "num_classes", num_classes, 1)
    check_choice(func, "backbone", backbone, CLASSIFIER_BACKBONES)
    weights = resolve_weights(weights, (), func=func, param="weights")
    min_size = CLASSIFIER_MIN_SIZE[backbone] if min_size is None else min_size
    check_int(func, "min_size", min_size, 1)
    check_choice(func, "norm", norm, NORMS)
    check_float(func, "dropout", dropout, 0.0, 0.95)
    if norm == "group" and weights_backbone is not None:
        raise ValueError(
            f"The 'norm' parameter of {func} cannot be 'group' when 'weights_backbone' is given: "
            f"pretrained bodies carry BatchNorm statistics. Use 'batchnorm' or 'frozen'. Got 'group'."
        )
    norm_layer = norm_layer_for(norm)
    if backbone == "small":
        body = SmallConvNet(norm_layer)
        load_weights(body, weights_backbone, (), func=func, param="weights_backbone")
        num_features = body.out_features
    else:
        body = build_body("resnet18", weights_backbone=weights_backbone, norm_layer=norm_layer, func=func)
        num_features = body.fc.in_features
        body.fc = nn.Identity()  # the body ends at the pooled, flattened features
    model = ImageClassifier(body, num_features, num_classes, min_size=min_size)
    add_head_dropout(model.dropout_sites(), dropout)
    load_weights(model, weights, (), strict=weights_strict, func=func, param="weights")
    return model
