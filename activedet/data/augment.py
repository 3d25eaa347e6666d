"""Training augmentations for detection: pure functions of ``(image, boxes, ..., rng)``.

``image`` is ``float32[3, H, W]`` in [0, 1]; ``boxes`` ``float32[N, 4]`` xyxy pixels. Every function returns new
tensors with the image at its original size (so batches stay uniform), and takes its randomness from the
``numpy.random.Generator`` it is given — the dataset seeds it from ``(seed, epoch, index)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["hflip", "zoom", "color_jitter"]


def hflip(image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror left-right."""
    width = image.shape[-1]
    return image.flip(-1), torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def zoom(image: Tensor, boxes: Tensor, labels: Tensor, rng: np.random.Generator, *, jitter: float,
         min_visible: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """Scale-and-translate jitter: view a random window of ``1/s`` the image size, ``s ~ U(1 - jitter, 1 + jitter)``.

    ``s > 1`` zooms in (a crop); ``s < 1`` zooms out (the image lands on a canvas filled with its mean colour).
    The window is resized back to the original size. A box keeps its object when at least ``min_visible`` of
    its area stays in the window (clipped to it); objects mostly cut away are left out of the target, as in
    the SSD/YOLO crop augmentations.
    """
    _, height, width = image.shape
    scale = float(rng.uniform(1.0 - jitter, 1.0 + jitter))
    win_w, win_h = width / scale, height / scale
    x0 = float(rng.uniform(min(0.0, width - win_w), max(0.0, width - win_w)))
    y0 = float(rng.uniform(min(0.0, height - win_h), max(0.0, height - win_h)))
    pad_l, pad_t = max(0, int(np.ceil(-x0))), max(0, int(np.ceil(-y0)))
    pad_r, pad_b = max(0, int(np.ceil(x0 + win_w - width))), max(0, int(np.ceil(y0 + win_h - height)))
    mean = image.mean(dim=(1, 2), keepdim=True)
    canvas = mean.expand(3, height + pad_t + pad_b, width + pad_l + pad_r).clone()
    canvas[:, pad_t:pad_t + height, pad_l:pad_l + width] = image
    left, top = int(round(x0 + pad_l)), int(round(y0 + pad_t))
    window = canvas[:, top:top + int(round(win_h)), left:left + int(round(win_w))]
    out = F.interpolate(window[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    # box coordinates in the window, then in the output frame
    sx, sy = width / window.shape[2], height / window.shape[1]
    shifted = boxes - torch.tensor([left - pad_l, top - pad_t] * 2, dtype=boxes.dtype)
    clipped = torch.stack([shifted[:, 0].clamp(0, window.shape[2]), shifted[:, 1].clamp(0, window.shape[1]),
                           shifted[:, 2].clamp(0, window.shape[2]), shifted[:, 3].clamp(0, window.shape[1])], dim=1)
    area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]).clamp(min=0) * (clipped[:, 3] - clipped[:, 1]).clamp(min=0)
    keep = kept_area >= min_visible * area.clamp(min=1e-6)
    scaled = clipped[keep] * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype)
    return out.clamp_(0, 1), scaled, labels[keep]


def color_jitter(image: Tensor, rng: np.random.Generator, *, strength: float) -> Tensor:
    """Random channel order (half the time), then brightness and contrast factors in ``[1 - s, 1 + s]``."""
    if rng.random() < 0.5:
        image = image[torch.as_tensor(rng.permutation(3))]
    brightness = float(rng.uniform(1 - strength, 1 + strength))
    contrast = float(rng.uniform(1 - strength, 1 + strength))
    mean = image.mean()
    return ((image - mean) * contrast + mean * brightness).clamp_(0, 1)
