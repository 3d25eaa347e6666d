"""AL-MDN's mixture-density prediction layers and losses (methods.md §4); the detectors are in :mod:`.model`.

Every anchor (default box) predicts a mixture of ``K`` components (``components=``, default 4):

* localisation, per box coordinate ``j``: means ``μ_kj`` (encoded deltas), standard deviations
  ``σ_kj = sigmoid(·)`` and mixture weights ``π_kj`` (softmax over ``k``, one per coordinate);
* classification: logits ``μ_k`` (``C + 1`` channels), variances ``v_k = sigmoid(·)`` (one per channel) and one
  mixture weight ``π_k`` per anchor (softmax over ``k``).

Head outputs (``[B, A, ...]``, all levels): ``loc_mu``/``loc_sigma_logit``/``loc_pi`` ``[B, A, K, 4]``,
``cls_mu``/``cls_var_logit`` ``[B, A, K, C + 1]``, ``cls_pi`` ``[B, A, K]`` (σ and v are the sigmoids of the
logits), and the mixed prediction torchvision's postprocessing reads:
``bbox_regression = Σ_k π_kj μ_kj`` and ``cls_logits`` whose softmax (SSD) or sigmoid (RetinaNet) is the mixture
probability ``p = Σ_k π_k P(μ_k)``, with ``P`` the softmax (SSD) or the per-class sigmoid (RetinaNet). So inference
is torchvision's, on ordinary detections.

Losses (the released ``multibox_loss_gmm.py``), both normalised by the number of positive anchors ``N``:

* localisation, positives only: ``-(1/β) log(Σ_k π_kj G(t_j; μ_kj, σ_kj) + 1e-9)`` summed over coordinates, with
  the code's kernel ``G = exp(-½((t - μ)/σ)²) / (√(2π) (σ + 0.3))``, β = 2 (``beta=``), computed in log space;
* classification, ``cls_loss="type1"`` (default): reparameterised logits ``ẑ_k = μ_k + √v_k · ε`` (ε ~ N(0, I),
  training only) and ``Σ_k π_k CE(ẑ_k, y)``; ``"type2"``: ``-log Σ_k π_k softmax(ẑ_k)_y``.

  SSD: cross-entropy over ``C + 1`` and 3:1 hard-negative mining ranked by that loss, as torchvision's SSD.
  RetinaNet (the adaptation): the sigmoid focal loss replaces the softmax cross-entropy and the hard-negative
  mining, because RetinaNet's head has independent per-class sigmoids and trains on every anchor that is not in
  the ignore band (IoU 0.4-0.5); type 1 is ``Σ_k π_k focal(ẑ_k, y)``, type 2 the focal loss of the mixed
  probability ``Σ_k π_k sigmoid(ẑ_k)``. The mixture NLL replaces the L1 box loss.

Prediction layers: the mixture parameters of a level come from one layer for localisation and one for
classification, the components' filters stacked (the same function as ``K`` separate layers, computed at once).
The mixture multiplies the head's outputs by about ``3K`` (``K (2 (C + 1) + 1)`` class and ``12 K`` box channels per
anchor instead of ``C + 1`` and 4), so with the released code's dense 3x3 convolutions those layers take a large
share of a small detector's time (AL-MDN RetinaNet-EfficientNet-Lite0 at 128 px, untrained: 0.71x the plain
RetinaNet's throughput with them, 0.89x with separable layers; docs/benchmarks.md). By default
(``separable=True``) each layer is a 3x3 depthwise convolution followed by a 1x1 convolution, as SSDLite's heads
are: the same receptive field, about 9x fewer multiply-adds in the wide layer. ``separable=False`` restores the
dense 3x3 layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.focal_loss import sigmoid_focal_loss

__all__ = ["CLS_LOSSES", "MDNHead", "mixture_loc_nll", "detection_uncertainties"]

CLS_LOSSES = ("type1", "type2")
_LOC = 12  # 4 means, 4 standard deviations, 4 mixture logits per component


class MDNHead(nn.Module):
    """Mixture-density prediction layers on a list of feature maps (one per level).

    Args:
        in_channels: channels of each level's input.
        num_anchors: anchors per location of each level.
        num_classes: ``C + 1`` channels per class vector (SSD: background + C; RetinaNet: torchvision's C + 1).
        components: ``K``.
        kind: ``"softmax"`` (SSD) or ``"sigmoid"`` (RetinaNet): how ``P(μ_k)`` and the mixed ``cls_logits`` are made.
        towers: optional ``(classification, regression)`` modules applied to every level before the prediction
            layers (RetinaNet's four-conv towers, shared over levels); ``None`` for SSD.
        prior_probability: RetinaNet's initial foreground probability (bias of the class means), or ``None``.
        separable: prediction layers are a 3x3 depthwise then a 1x1 convolution (default) instead of one 3x3
            convolution (the released code); see the module docstring.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_anchors: Sequence[int],
        num_classes: int,
        components: int,
        kind: str,
        towers: tuple[nn.Module, nn.Module] | None = None,
        prior_probability: float | None = None,
        separable: bool = True,
    ):
        super().__init__()
        self.num_classes, self.components, self.kind = num_classes, components, kind
        self.num_anchors = list(num_anchors)
        cls_width = 2 * num_classes + 1
        self.cls_tower, self.reg_tower = towers if towers is not None else (nn.Identity(), nn.Identity())
        shared = towers is not None  # RetinaNet: one set of prediction layers for every level
        levels = [0] if shared else range(len(in_channels))
        layer = _separable if separable else _dense
        self.cls_layers = nn.ModuleList(layer(in_channels[i], num_anchors[i] * components * cls_width) for i in levels)
        self.loc_layers = nn.ModuleList(layer(in_channels[i], num_anchors[i] * components * _LOC) for i in levels)
        self._init(prior_probability)

    def _init(self, prior_probability: float | None) -> None:
        for layers, mu_width in ((self.cls_layers, self.num_classes), (self.loc_layers, 4)):
            for layer, anchors in zip(layers, self.num_anchors):
                conv = layer[-1]  # the layer that makes the output channels; the means are its first block
                n_mu = anchors * self.components * mu_width
                weight = conv.weight.data[:n_mu].view(anchors, self.components, mu_width, *conv.weight.shape[1:])
                bias = conv.bias.data[:n_mu].view(anchors, self.components, mu_width)
                if prior_probability is not None:  # RetinaNet: torchvision's N(0, 0.01) and the class prior
                    nn.init.normal_(conv.weight, std=0.01)
                    nn.init.zeros_(conv.bias)
                    if layers is self.cls_layers:
                        bias.fill_(-math.log((1 - prior_probability) / prior_probability))
                else:  # the released code: xavier for the first component's means, default init elsewhere
                    fan_in, fan_out = weight[0, 0, 0].numel(), anchors * mu_width * weight[0, 0, 0, 0].numel()
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    weight[:, 0].uniform_(-bound, bound)
                    bias[:, 0].zero_()

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        levels = [self._level(x, 0 if len(self.cls_layers) == 1 else i) for i, x in enumerate(features)]
        outputs = {key: torch.cat([level[key] for level in levels], dim=1) for key in levels[0]}
        mixed, eps = outputs.pop("mixed_probs"), 1e-7
        outputs["cls_logits"] = (
            mixed.clamp_min(eps).log() if self.kind == "softmax" else torch.logit(mixed.clamp(eps, 1 - eps))
        )
        return outputs

    def _level(self, x: Tensor, layer: int) -> dict[str, Tensor]:
        """One level's outputs, flattened to ``[B, H W A_l, ...]``. The softmaxes over components and the mixtures
        are computed on the ``[B, A_l, K, D, H, W]`` maps, where the reduced dimension has a long inner stride
        (measured 5x faster on CPU than over a last dimension of size K)."""
        anchors, k, c = self.num_anchors[layer], self.components, self.num_classes
        cls = self.cls_layers[layer](self.cls_tower(x))
        b, _, h, w = cls.shape
        mu, var, pi = cls.split([anchors * k * c, anchors * k * c, anchors * k], dim=1)
        mu, var = mu.view(b, anchors, k, c, h, w), var.view(b, anchors, k, c, h, w)
        pi = torch.softmax(pi.view(b, anchors, k, 1, h, w), dim=2)
        probs = _component_probs(mu, self.kind, dim=3)
        mixed = (pi * probs).sum(dim=2)  # [B, A_l, C + 1, H, W]
        loc = self.loc_layers[layer](self.reg_tower(x))
        loc_mu, loc_sigma, loc_pi = (t.view(b, anchors, k, 4, h, w) for t in loc.split(anchors * k * 4, dim=1))
        loc_pi = torch.softmax(loc_pi, dim=2)
        return {
            "cls_mu": _flat(mu),
            "cls_var_logit": _flat(var),
            "cls_pi": _flat(pi.squeeze(3)),
            "loc_mu": _flat(loc_mu),
            "loc_sigma_logit": _flat(loc_sigma),
            "loc_pi": _flat(loc_pi),
            "bbox_regression": _flat((loc_pi * loc_mu).sum(dim=2)),
            "mixed_probs": _flat(mixed),
        }


def _flat(maps: Tensor) -> Tensor:
    """``[B, A_l, *inner, H, W]`` -> contiguous ``[B, H W A_l, *inner]`` (location-major, then anchor: torchvision's
    order of anchors)."""
    dims = maps.dim()
    order = (0, dims - 2, dims - 1, 1, *range(2, dims - 2))
    return maps.permute(*order).reshape(maps.shape[0], -1, *maps.shape[2:-2])


def _dense(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1))


def _separable(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels), nn.Conv2d(in_channels, out_channels, 1)
    )


def _component_probs(cls_mu: Tensor, kind: str, dim: int = -1) -> Tensor:
    """``P(μ_k)``: softmax over the class dimension ``dim`` (SSD) or per-class sigmoids (RetinaNet)."""
    return torch.softmax(cls_mu, dim=dim) if kind == "softmax" else torch.sigmoid(cls_mu)


def mixture_loc_nll(target: Tensor, mu: Tensor, sigma: Tensor, pi: Tensor, beta: float = 2.0) -> Tensor:
    """``float[P]``: ``-(1/β) Σ_j log(Σ_k π_kj G(t_j; μ_kj, σ_kj) + 1e-9)`` (module docstring) for targets ``[P, 4]``
    and mixture parameters ``[P, K, 4]``."""
    # σ is a sigmoid: in float32 it reaches 0 for logits below about -88, and t/0 made a training run NaN (bench
    # seed 1, epoch 12); 1e-4 is far below any σ that fits the data (the kernel's normaliser adds 0.3 anyway)
    z = (target.unsqueeze(1) - mu) / sigma.clamp_min(1e-4)
    log_kernel = -0.5 * z * z - math.log(math.sqrt(2 * math.pi)) - torch.log(sigma + 0.3)
    log_mix = torch.logsumexp(torch.log(pi.clamp_min(1e-12)) + log_kernel, dim=1)  # [P, 4]
    log_mix = torch.logaddexp(log_mix, torch.full_like(log_mix, math.log(1e-9)))
    return -(log_mix.sum(dim=-1)) / beta


def _positive_loc_nll(
    outputs: dict[str, Tensor], image: int, positives: Tensor, gt_boxes: Tensor, anchors: Tensor, box_coder, beta: float
) -> Tensor:
    """Summed mixture NLL of image ``image``'s positive anchors against their matched boxes ``gt_boxes``."""
    encoded = box_coder.encode_single(gt_boxes, anchors[positives])
    return mixture_loc_nll(
        encoded,
        outputs["loc_mu"][image, positives],
        torch.sigmoid(outputs["loc_sigma_logit"][image, positives]),
        outputs["loc_pi"][image, positives],
        beta,
    ).sum()


def _sampled_logits(outputs: dict[str, Tensor], training: bool) -> Tensor:
    """``ẑ_k = μ_k + √v_k ε`` in training (ε ~ N(0, I)), ``μ_k`` otherwise: ``[..., K, C + 1]``."""
    mu = outputs["cls_mu"]
    if not training:
        return mu
    # √sigmoid(x) as exp(½ logsigmoid(x)): the same value, with a finite gradient where the variance underflows to 0
    return mu + torch.exp(0.5 * F.logsigmoid(outputs["cls_var_logit"])) * torch.randn_like(mu)


def detection_uncertainties(
    outputs: dict[str, Tensor], image: int, anchor_idxs: Tensor, channels: Tensor, kind: str
) -> Tensor:
    """``float[N, 4]`` (module docstring) for the detections of image ``image`` with source anchors
    ``anchor_idxs`` and detected class channels ``channels``."""
    pick = lambda key: outputs[key][image, anchor_idxs]
    loc_pi, loc_mu, loc_sigma = pick("loc_pi"), pick("loc_mu"), torch.sigmoid(pick("loc_sigma_logit"))  # [N, K, 4]
    loc_mean = (loc_pi * loc_mu).sum(dim=1, keepdim=True)
    aleatoric_loc = (loc_pi * loc_sigma).sum(dim=1).amax(dim=-1)
    epistemic_loc = (loc_pi * (loc_mu - loc_mean) ** 2).sum(dim=1).amax(dim=-1)
    cls_pi = pick("cls_pi")  # [N, K]
    rows = torch.arange(len(anchor_idxs), device=anchor_idxs.device)
    var = torch.sigmoid(pick("cls_var_logit")[rows, :, channels])  # [N, K]
    probs = _component_probs(pick("cls_mu"), kind)[rows, :, channels]  # [N, K]
    mixed = (cls_pi * probs).sum(dim=1, keepdim=True)
    aleatoric_cls = (cls_pi * var).sum(dim=1)
    epistemic_cls = (cls_pi * (probs - mixed) ** 2).sum(dim=1)
    return torch.stack([aleatoric_loc, epistemic_loc, aleatoric_cls, epistemic_cls], dim=1).float()


class _MDNRetinaHead(MDNHead):
    """:class:`MDNHead` with RetinaNet's loss interface (``compute_loss(targets, outputs, anchors, matched)``)."""

    def __init__(self, *args: Any, box_coder, cls_loss: str, beta: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.box_coder, self.cls_loss, self.beta = box_coder, cls_loss, float(beta)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        # type: (list[dict[str, Tensor]], dict[str, Tensor], list[Tensor], list[Tensor]) -> dict[str, Tensor]
        logits = _sampled_logits(head_outputs, self.training)  # [B, A, K, C + 1]
        cls_losses, loc_losses = [], []
        for i, (target, anchors_i, matched) in enumerate(zip(targets, anchors, matched_idxs)):
            fg = torch.where(matched >= 0)[0]
            n = max(1, fg.numel())
            onehot = torch.zeros_like(head_outputs["cls_mu"][i, :, 0])  # [A, C + 1]
            onehot[fg, target["labels"][matched[fg]]] = 1.0
            valid = matched != -2  # torchvision's BETWEEN_THRESHOLDS: ignored anchors
            pi = head_outputs["cls_pi"][i, valid]  # [V, K]
            z, y = logits[i, valid], onehot[valid, None, :].expand(-1, logits.shape[2], -1)
            if self.cls_loss == "type1":
                per_component = sigmoid_focal_loss(z, y, reduction="none").sum(dim=-1)  # [V, K]
                cls_losses.append((pi * per_component).sum() / n)
            else:
                mixed = (pi.unsqueeze(-1) * torch.sigmoid(z)).sum(dim=1).clamp(1e-7, 1 - 1e-7)  # [V, C + 1]
                cls_losses.append(_focal_of_probability(mixed, onehot[valid]).sum() / n)
            loc_losses.append(
                _positive_loc_nll(
                    head_outputs, i, fg, target["boxes"][matched[fg]], anchors_i, self.box_coder, self.beta
                )
                / n
            )
        b = max(1, len(targets))
        return {"classification": sum(cls_losses) / b, "bbox_regression": sum(loc_losses) / b}


def _focal_of_probability(p: Tensor, y: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """torchvision's sigmoid focal loss, from probabilities instead of logits."""
    ce = -(y * p.log() + (1 - y) * (1 - p).log())
    p_t = p * y + (1 - p) * (1 - y)
    return ce * (1 - p_t) ** gamma * (alpha * y + (1 - alpha) * (1 - y))
