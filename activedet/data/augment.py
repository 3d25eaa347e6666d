"""Training augmentations for detection: pure functions of ``(image, boxes, ..., rng)``.

``image`` is ``float32[3, H, W]`` in [0, 1]; ``boxes`` ``float32[N, 4]`` xyxy pixels. Every function returns new
tensors with the image at its original size (so batches stay uniform), and takes its randomness from the
``numpy.random.Generator`` it is given — the dataset seeds it from ``(seed, epoch, index)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["hflip", "zoom", "color_jitter", "ssd_photometric", "ssd_expand", "ssd_crop", "ssd_augment"]


def hflip(image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror left-right."""
    width = image.shape[-1]
    return image.flip(-1), torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def zoom(
    image: Tensor, boxes: Tensor, labels: Tensor, rng: np.random.Generator, *, jitter: float, min_visible: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
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
    canvas[:, pad_t : pad_t + height, pad_l : pad_l + width] = image
    left, top = int(round(x0 + pad_l)), int(round(y0 + pad_t))
    window = canvas[:, top : top + int(round(win_h)), left : left + int(round(win_w))]
    out = F.interpolate(window[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    # box coordinates in the window, then in the output frame
    sx, sy = width / window.shape[2], height / window.shape[1]
    shifted = boxes - torch.tensor([left - pad_l, top - pad_t] * 2, dtype=boxes.dtype)
    clipped = torch.stack(
        [
            shifted[:, 0].clamp(0, window.shape[2]),
            shifted[:, 1].clamp(0, window.shape[1]),
            shifted[:, 2].clamp(0, window.shape[2]),
            shifted[:, 3].clamp(0, window.shape[1]),
        ],
        dim=1,
    )
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


# ---------------------------------------------------------------------------------------------------------------
# SSD's training augmentation (ssd.pytorch ``SSDAugmentation``, as AL-MDN trains with it): photometric distortion,
# zoom-out expansion, random crop. Pixel values in [0, 1] (the reference works on 0-255 and never clips; here each
# step is clipped to [0, 1]); every output has the input's size (the detector's transform resizes it anyway).
# ---------------------------------------------------------------------------------------------------------------
#: ssd.pytorch's fill colour (BGR 104, 117, 123) as RGB in [0, 1].
SSD_MEAN = (123 / 255, 117 / 255, 104 / 255)
#: the crop modes: ``None`` keeps the whole image, else ``(min IoU, max IoU)`` of the reference (``None`` = open).
SSD_CROP_MODES = (None, (0.1, None), (0.3, None), (0.7, None), (0.9, None), (None, None))


def _rgb_to_hsv(image: Tensor) -> Tensor:
    r, g, b = image
    top, low = image.max(dim=0).values, image.min(dim=0).values
    delta = top - low
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(top == r, ((g - b) / safe) % 6, torch.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    saturation = torch.where(top > 0, delta / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(top))
    return torch.stack([hue, saturation, top])


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    h, s, v = hsv
    sector = torch.floor(h * 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = sector.long() % 6
    table = torch.stack([torch.stack(c) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table.gather(0, sector[None, None].expand(1, 3, *sector.shape))[0]


def ssd_photometric(image: Tensor, rng: np.random.Generator) -> Tensor:
    """``PhotometricDistort``: brightness ``± 32/255`` (half the time); then contrast ``x U(0.5, 1.5)`` before or
    after (even odds) saturation ``x U(0.5, 1.5)`` and hue ``± 18°`` in HSV, each half the time; then a random
    channel order (half the time)."""
    out = image
    if rng.integers(2):
        out = (out + float(rng.uniform(-32, 32)) / 255).clamp(0, 1)

    def contrast(x: Tensor) -> Tensor:
        return (x * float(rng.uniform(0.5, 1.5))).clamp(0, 1) if rng.integers(2) else x

    contrast_first = bool(rng.integers(2))
    if contrast_first:
        out = contrast(out)
    hsv = _rgb_to_hsv(out)
    if rng.integers(2):
        hsv[1] = (hsv[1] * float(rng.uniform(0.5, 1.5))).clamp(0, 1)
    if rng.integers(2):
        hsv[0] = (hsv[0] + float(rng.uniform(-18, 18)) / 360) % 1.0
    out = _hsv_to_rgb(hsv).clamp(0, 1)
    if not contrast_first:
        out = contrast(out)
    if rng.integers(2):
        out = out[torch.as_tensor(rng.permutation(3))]
    return out


def ssd_expand(image: Tensor, boxes: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """``Expand`` (half the time): the image on a canvas ``r ~ U(1, 4)`` times its size filled with
    :data:`SSD_MEAN`, at a random place; returned at the input size (so the image shrinks by ``1 / r``)."""
    if rng.integers(2):
        return image, boxes
    _, height, width = image.shape
    ratio = float(rng.uniform(1, 4))
    left, top = float(rng.uniform(0, width * ratio - width)), float(rng.uniform(0, height * ratio - height))
    small_h, small_w = max(1, round(height / ratio)), max(1, round(width / ratio))
    x0, y0 = min(width - small_w, round(left / ratio)), min(height - small_h, round(top / ratio))
    canvas = torch.tensor(SSD_MEAN, dtype=image.dtype)[:, None, None].expand(3, height, width).clone()
    canvas[:, y0 : y0 + small_h, x0 : x0 + small_w] = F.interpolate(
        image[None], size=(small_h, small_w), mode="bilinear", align_corners=False
    )[0]
    scale = torch.tensor([small_w / width, small_h / height] * 2, dtype=boxes.dtype)
    return canvas.clamp_(0, 1), boxes * scale + torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)


def _iou_with(boxes: Tensor, rect: Tensor) -> Tensor:
    inter = (torch.minimum(boxes[:, 2:], rect[2:]) - torch.maximum(boxes[:, :2], rect[:2])).clamp(min=0).prod(dim=1)
    union = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1) + (rect[2:] - rect[:2]).prod() - inter
    return inter / union.clamp(min=1e-12)


def ssd_crop(
    image: Tensor, boxes: Tensor, labels: Tensor, rng: np.random.Generator, max_modes: int = 20
) -> tuple[Tensor, Tensor, Tensor]:
    """``RandomSampleCrop``: a mode from :data:`SSD_CROP_MODES`; ``None`` keeps the image; otherwise up to 50
    tries of a window with sides ``U(0.3, 1)`` of the image's and aspect ``h / w`` in [0.5, 2] that keeps every
    box whose centre lies strictly inside (at least one), clipped to it; the window is resized to the input size.

    The overlap test is the reference's, ``min IoU < low and high < max IoU`` rejects, which never rejects with the
    open upper bound every mode has. An image without boxes, or no window found after ``max_modes`` modes (the
    reference tries forever), keeps the whole image.
    """
    _, height, width = image.shape
    if len(boxes) == 0:
        return image, boxes, labels
    for _ in range(max_modes):
        mode = SSD_CROP_MODES[int(rng.integers(len(SSD_CROP_MODES)))]
        if mode is None:
            return image, boxes, labels
        low = -math.inf if mode[0] is None else mode[0]
        high = math.inf if mode[1] is None else mode[1]
        for _ in range(50):
            w, h = float(rng.uniform(0.3 * width, width)), float(rng.uniform(0.3 * height, height))
            if not 0.5 <= h / w <= 2:
                continue
            left, top = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            rect = torch.tensor([int(left), int(top), int(left + w), int(top + h)], dtype=boxes.dtype)
            overlap = _iou_with(boxes, rect)
            if float(overlap.min()) < low and high < float(overlap.max()):
                continue
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            keep = (rect[:2] < centres).all(dim=1) & (centres < rect[2:]).all(dim=1)
            if not bool(keep.any()):
                continue
            x0, y0, x1, y1 = (int(v) for v in rect)
            window = image[:, y0:y1, x0:x1]
            out = F.interpolate(window[None], size=(height, width), mode="bilinear", align_corners=False)[0]
            kept = torch.cat(
                [torch.maximum(boxes[keep, :2], rect[:2]), torch.minimum(boxes[keep, 2:], rect[2:])], dim=1
            ) - rect[:2].repeat(2)
            scale = torch.tensor([width / (x1 - x0), height / (y1 - y0)] * 2, dtype=boxes.dtype)
            return out.clamp_(0, 1), kept * scale, labels[keep]
    return image, boxes, labels


def ssd_augment(
    image: Tensor, boxes: Tensor, labels: Tensor, rng: np.random.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """SSD's training augmentation in the reference order: photometric, expand, crop (the flip is ``hflip``)."""
    image = ssd_photometric(image, rng)
    image, boxes = ssd_expand(image, boxes, rng)
    return ssd_crop(image, boxes, labels, rng)
