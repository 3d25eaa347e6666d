"""Offline benchmark data: detection scenes rendered from real handwritten digits.

Nothing is downloaded: the objects are the 1,797 real 8x8 handwritten digits bundled with scikit-learn
(:func:`sklearn.datasets.load_digits`), drawn into square RGB scenes with the properties that make active
learning matter on real detection data:

* **Long tail.** Each object's class is drawn i.i.d. from a Zipf prior ``p(d) ∝ (d + 1) ** -s``, ``d = 0..9``
  (``bench-balanced``: ``s = 0`` in every split, the ten classes equally likely; the rest as below).
  Train (the pool) and val: ``s = 1.2``, zero..nine = 40.5, 17.6, 10.9, 7.6, 5.9, 4.7, 3.9, 3.4, 2.9, 2.6 %
  (16:1). Test: ``s = 0.5``, 19.9 .. 6.3 % (3.2:1), *less* long-tailed than the pool so that the rarest class
  keeps enough test instances for a non-degenerate AP (seed 0: "nine" has 34 test boxes in quickstart,
  190 in bench); everything else about test scenes is distributed as in the pool.
* **Several scales.** Each object's 8x8 glyph cell gets a side drawn from a scale bucket (small / medium /
  large with probabilities ``scale_probs``; 10-16, 20-32, 40-60 px in 128 px images), is stretched in width by
  0.8-1.2 and rotated by up to 12 deg. Digits are ~6/8 as wide as tall: a small "1" can have a 10x3 px box.
* **Clutter.** Backgrounds are a random colour plus low-frequency colour noise, optional stripes and pixel
  grain; on top come random strokes, arcs and outlined or filled shapes, and *glyph fragments* (a crop of 3x3
  to 3x4 of the 8x8 cells of a real digit, drawn like an object but never labelled).
* **Occlusion.** Objects may overlap (pairwise box IoU <= ``max_box_iou``) and opaque occluder shapes are
  drawn over them. The ground-truth box is always the full object box, and at most ``max_occlusion`` (35 %)
  of an object's ink pixels (alpha >= 0.5) are covered by anything drawn after it, so every label stays fair.
* **Empty images.** With probability ``p_empty`` an image has no object: background, clutter and fragments.
* **Near-duplicates.** ``dup_fraction`` of the *train* images form groups of ``dup_group_size`` images
  rendered from one scene: the group's lowest index is the base image, the others are shifted by up to
  ``max_shift`` px, with a brightness gain / offset and fresh pixel noise. Groups sit at random pool indices
  and are listed in the manifest. Val and test have no groups.
* **Disjoint glyphs.** Train and val scenes use digit samples ``0..1436`` of ``load_digits``; test scenes use
  samples ``1437..1796`` (33-37 per class), so test measures generalisation to unseen handwriting.

Classes are :data:`SYNTH_CLASSES` = ``("zero", ..., "nine")``; label ``l`` (``1..10``) is digit ``l - 1``.
Boxes are the tight box of the glyph pixels with alpha >= 0.25, xyxy pixels (integer-valued), at least
``max_shift`` px inside a base image. Objects are placed largest first; one that finds no free spot in 30
tries is dropped (rare; the manifest has the actual per-class and per-scale counts).

Output layout of :func:`generate_dataset`::

    out_dir/
      images/{train,val,test}/{split}_{index:05d}.png   # RGB, image_size x image_size
      annotations/{train,val,test}.json                 # COCO, file names relative to out_dir
      voc/                                              # Pascal VOC, one image set per split
      manifest.json                                     # name, seed, version, parameters, priors, counts, groups

Determinism: the same ``(name, seed)`` gives byte-identical files on the same platform and library versions.
Image ``i`` of a split depends only on ``(seed, split, i)``, plus, for a near-duplicate, its group's base
scene (seeded by ``(seed, split, lowest index of the group)``); the group layout only on ``(seed, split)``.
Every random draw comes from :class:`numpy.random.SeedSequence` children, never from a global RNG.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import atomic_write_dir
from .coco import write_coco
from .records import DetectionDataset, ImageRecord
from .voc import write_voc

__all__ = ["GENERATOR_VERSION", "SYNTH_CLASSES", "SYNTH_SIZES", "SynthSize", "generate_dataset"]

GENERATOR_VERSION = "1.0"
SYNTH_CLASSES: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_TEST_GLYPHS_FROM = 1437  # load_digits samples [0, 1437) draw train/val scenes, [1437, 1797) test scenes
_PLACE_TRIES = 30
_BICUBIC = Image.Resampling.BICUBIC


@dataclass(frozen=True)
class SynthSize:
    """Parameters of one named dataset size. Lengths are pixels, probabilities are in [0, 1].

    Attributes:
        image_size: side of the square RGB images.
        num_train, num_val, num_test: images per split ("train" is the active-learning pool).
        max_objects: a non-empty image asks for ``U{1..max_objects}`` objects (some may not fit).
        p_empty: probability that an image has no object.
        scales: ``(bucket, lo, hi)``: side of the 8x8 glyph cell, uniform integer in ``[lo, hi]``.
        scale_probs: probability of each bucket of ``scales``.
        zipf_exponent: ``s`` of the train/val class prior ``p(d) ∝ (d + 1) ** -s``.
        test_zipf_exponent: ``s`` of the test class prior (flatter, for a stable per-class AP).
        dup_fraction: fraction of train images that belong to near-duplicate groups.
        dup_group_size: ``(lo, hi)`` inclusive number of images per near-duplicate group.
        max_shift: largest translation of a near-duplicate; objects keep this margin from the border.
        max_occlusion: largest fraction of an object's ink covered by what is drawn after it.
        max_box_iou: largest IoU between two object boxes of one image.
        min_contrast: smallest luminance difference between an object colour and the background under it.
    """

    image_size: int = 128
    num_train: int = 400
    num_val: int = 100
    num_test: int = 200
    max_objects: int = 6
    p_empty: float = 0.1
    scales: tuple[tuple[str, int, int], ...] = (("small", 10, 16), ("medium", 20, 32), ("large", 40, 60))
    scale_probs: tuple[float, ...] = (0.4, 0.35, 0.25)
    zipf_exponent: float = 1.2
    test_zipf_exponent: float = 0.5
    dup_fraction: float = 0.3
    dup_group_size: tuple[int, int] = (3, 5)
    max_shift: int = 4
    max_occlusion: float = 0.35
    max_box_iou: float = 0.3
    min_contrast: float = 0.35


# tiny: unit tests (40 images, < 1 s); quickstart: demo, a CPU detector trains on it in minutes;
# bench: the scene distribution of quickstart, a ten times larger pool. Generation takes ~1 / 7 / 45 s of CPU
# (bench-balanced as bench).
SYNTH_SIZES: dict[str, SynthSize] = {
    "tiny": SynthSize(
        image_size=96,
        num_train=24,
        num_val=8,
        num_test=8,
        max_objects=5,
        p_empty=0.15,
        scales=(("small", 10, 14), ("medium", 18, 28), ("large", 32, 44)),
    ),
    "quickstart": SynthSize(num_train=400, num_val=100, num_test=200),
    "bench": SynthSize(num_train=4000, num_val=500, num_test=1000),
    # bench with even classes everywhere: a control for what a strategy gains from the long tail
    "bench-balanced": SynthSize(num_train=4000, num_val=500, num_test=1000, zipf_exponent=0.0, test_zipf_exponent=0.0),
}


@dataclass(frozen=True)
class _Glyphs:
    """Digit samples of one glyph split: ``alphas`` float32[N, 8, 8] in [0, 1] (each sample's max is 1);
    ``by_digit[d]`` int64[N_d] indices into ``alphas`` of digit ``d``."""

    alphas: np.ndarray
    by_digit: tuple[np.ndarray, ...]


@dataclass
class _Scene:
    """A scene under construction on a canvas ``max_shift`` px larger than the image on every side.

    ``canvas`` float32[C, C, 3] RGB in [0, 1]; ``owner`` int16[C, C] index of the object whose ink is on top of
    a pixel (-1: none); ``boxes`` float32[4] xyxy canvas px; ``inks`` bool[C, C] each object's own ink pixels.
    """

    canvas: np.ndarray
    owner: np.ndarray
    boxes: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    buckets: list = field(default_factory=list)
    inks: list = field(default_factory=list)

    def occluded_fractions(self) -> list[float]:
        return [float(1 - (ink & (self.owner == k)).sum() / ink.sum()) for k, ink in enumerate(self.inks)]


def _rng(seed: int, split: str, stream: int, index: int) -> np.random.Generator:
    """Independent generator for one (split, stream, index); streams: 0 layout, 1 scene, 2 perturbation."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_CODE[split], stream, index)))


def _class_prior(size: SynthSize, split: str) -> np.ndarray:
    """float64[10] Zipf prior of ``split`` over digits 0..9: ``p(d) ∝ (d + 1) ** -s``."""
    exponent = size.test_zipf_exponent if split == "test" else size.zipf_exponent
    weights = np.arange(1, 11, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def _load_glyphs(split: str) -> _Glyphs:
    from sklearn.datasets import load_digits  # imported here: no import-time cost for users of other modules

    digits = load_digits()
    part = slice(_TEST_GLYPHS_FROM, None) if split == "test" else slice(0, _TEST_GLYPHS_FROM)
    images, targets = digits.images[part], digits.target[part]
    alphas = (images / images.max(axis=(1, 2), keepdims=True)).astype(np.float32)
    return _Glyphs(alphas, tuple(np.flatnonzero(targets == d) for d in range(10)))


def _glyph_patch(alpha8: np.ndarray, height: int, width: int, angle: float) -> np.ndarray:
    """float32[h', w'] alpha in [0, 1] of a glyph whose cell spans ``height x width`` px, rotated by ``angle``
    degrees; ``h', w'`` include a transparent margin."""
    padded = np.pad(alpha8, 1)  # so the upscaled stroke fades out instead of ending at the patch border
    image = Image.fromarray(np.round(padded * 255).astype(np.uint8))
    image = image.resize((max(1, round(width * 10 / 8)), max(1, round(height * 10 / 8))), _BICUBIC)
    image = image.rotate(angle, resample=_BICUBIC, expand=True)
    return np.asarray(image, np.float32) / 255


def _ink_box(alpha: np.ndarray, threshold: float = 0.25) -> tuple[int, int, int, int]:
    """``(y1, x1, y2, x2)`` pixel-edge box of ``alpha >= threshold`` (relative to the patch maximum if lower)."""
    ys, xs = np.nonzero(alpha >= min(threshold, 0.5 * alpha.max()))
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _window(shape: tuple, patch_shape: tuple, y: int, x: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """``(canvas slices, patch slices)`` where a patch with top-left (y, x) overlaps the canvas (maybe empty)."""
    (h, w), (height, width) = patch_shape[:2], shape[:2]
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = max(min(y + h, height), y0), max(min(x + w, width), x0)
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))


def _paste(canvas: np.ndarray, alpha: np.ndarray, y: int, x: int, colour: np.ndarray) -> None:
    """Composite solid ``colour`` float[3] through ``alpha`` float[h, w] with its top-left at (y, x), clipped."""
    dst, src = _window(canvas.shape, alpha.shape, y, x)
    a = alpha[src][..., None]
    canvas[dst] = canvas[dst] * (1 - a) + a * colour


def _mask_on_canvas(shape: tuple[int, int], alpha: np.ndarray, y: int, x: int) -> np.ndarray:
    """bool[C, C]: the pixels where ``alpha`` placed at (y, x) is >= 0.5 (its opaque ink)."""
    mask = np.zeros(shape, bool)
    dst, src = _window(shape, alpha.shape, y, x)
    mask[dst] = alpha[src] >= min(0.5, 0.5 * alpha.max())
    return mask


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _contrast_colour(rng: np.random.Generator, background: float, min_contrast: float) -> np.ndarray:
    """float32[3] random colour whose luminance differs from ``background`` (in [0, 1]) by >= min_contrast."""
    dark, light = max(background - min_contrast, 0.0), max(1.0 - background - min_contrast, 0.0)
    if rng.random() * (dark + light) < dark:
        target = rng.uniform(0, dark)
    else:
        target = rng.uniform(1 - light, 1)
    tint = rng.uniform(-0.3, 0.3, 3)
    tint -= _luminance(tint.astype(np.float32))  # a hue that keeps the target luminance (up to clipping)
    colour = np.clip(target + tint, 0, 1).astype(np.float32)
    if abs(float(_luminance(colour)) - background) < min_contrast:  # clipping moved it too close: drop the hue
        colour = np.full(3, target, np.float32)
    return colour


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """float32[side, side, 3]: random colour + low-frequency colour noise + optional stripes + grain."""
    grid = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize((side, side), _BICUBIC)
    image = rng.uniform(0.1, 0.9, 3) + rng.uniform(0.1, 0.4) * (np.asarray(grid, np.float32) / 255 - 0.5)
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:side, 0:side]
        theta, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        stripes = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        image = image + rng.uniform(0.02, 0.08) * stripes[..., None]
    image = image + rng.normal(0, rng.uniform(0.005, 0.04), (side, side, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int, int]:
    return (*(int(v) for v in rng.integers(0, 256, 3)), 255)


def _draw_strokes(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Random polylines, arcs and (outlined or filled) shapes, drawn 2x supersampled for smooth edges."""
    side = canvas.shape[0]
    overlay = Image.new("RGBA", (2 * side, 2 * side))
    draw = ImageDraw.Draw(overlay)
    for _ in range(int(rng.integers(2, 7))):
        start = rng.uniform(0, 2 * side, 2)
        points = start + np.cumsum(rng.uniform(-40, 40, (int(rng.integers(2, 5)), 2)), axis=0)
        draw.line([tuple(p) for p in points], fill=_random_colour(rng), width=int(rng.integers(2, 7)))
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(-20, 2 * side, 2)
        box = [x0, y0, x0 + rng.uniform(12, 60), y0 + rng.uniform(12, 60)]
        kind, width = int(rng.integers(0, 3)), int(rng.integers(2, 7))
        if kind == 0:
            draw.arc(box, rng.uniform(0, 360), rng.uniform(0, 360), fill=_random_colour(rng), width=width)
        elif kind == 1:
            draw.ellipse(box, outline=_random_colour(rng), width=width)
        else:
            draw.rectangle(
                box, fill=_random_colour(rng) if rng.random() < 0.5 else None, outline=_random_colour(rng), width=width
            )
    layer = np.asarray(overlay.resize((side, side), Image.Resampling.BOX), np.float32) / 255
    canvas *= 1 - layer[..., 3:]
    canvas += layer[..., 3:] * layer[..., :3]


def _draw_fragments(rng: np.random.Generator, scene: _Scene, size: SynthSize, glyphs: _Glyphs) -> None:
    """Unlabelled pieces (3x3 to 3x4 of 8x8 cells) of real digits, drawn like objects: hard negatives."""
    side = scene.canvas.shape[0]
    for _ in range(int(rng.integers(0, 3))):
        rows, cols = (int(v) for v in rng.permutation([3, int(rng.integers(3, 5))]))
        top, left = (int(v) for v in rng.integers(0, 9 - np.array([rows, cols])))
        crop = glyphs.alphas[rng.integers(len(glyphs.alphas)), top : top + rows, left : left + cols]
        if crop.max() <= 0:
            continue
        _, lo, hi = size.scales[int(rng.choice(len(size.scales), p=size.scale_probs))]
        cell = int(rng.integers(lo, hi + 1))
        patch = _glyph_patch(crop / crop.max(), cell * rows // 8 + 1, cell * cols // 8 + 1, rng.uniform(-12, 12))
        y, x = (int(v) for v in rng.integers(0, side - 1, 2))
        under = scene.canvas[y : y + patch.shape[0], x : x + patch.shape[1]]
        _paste(scene.canvas, patch, y, x, _contrast_colour(rng, float(_luminance(under).mean()), size.min_contrast))


def _occlusion_ok(scene: _Scene, cover: np.ndarray, cap: float) -> bool:
    """Whether painting ``cover`` bool[C, C] on top leaves every object with covered ink fraction <= cap."""
    for k, ink in enumerate(scene.inks):
        visible = ink & (scene.owner == k) & ~cover
        if 1 - visible.sum() / ink.sum() > cap:
            return False
    return True


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """float[M] IoU of one xyxy ``box`` float[4] with each of ``boxes`` float[M, 4]."""
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter, areas = wh[:, 0] * wh[:, 1], np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (np.prod(box[2:] - box[:2]) + areas - inter)


def _sample_object(rng: np.random.Generator, size: SynthSize, glyphs: _Glyphs, prior: np.ndarray):
    """``(label in 1..10, bucket name, alpha patch float32[h, w])`` of one random object."""
    digit = int(rng.choice(10, p=prior))
    sample = glyphs.by_digit[digit][rng.integers(len(glyphs.by_digit[digit]))]
    bucket, lo, hi = size.scales[int(rng.choice(len(size.scales), p=size.scale_probs))]
    cell = int(rng.integers(lo, hi + 1))
    patch = _glyph_patch(glyphs.alphas[sample], cell, round(cell * rng.uniform(0.8, 1.2)), rng.uniform(-12, 12))
    return digit + 1, bucket, patch


def _try_place(rng: np.random.Generator, scene: _Scene, size: SynthSize, obj: tuple) -> bool:
    """Put ``obj`` at a random spot where boxes, IoU and occlusion stay within limits; False if that fails."""
    label, bucket, patch = obj
    by1, bx1, by2, bx2 = _ink_box(patch)
    lo, hi = 2 * size.max_shift, size.image_size  # canvas span that stays inside every shifted crop
    if by2 - by1 > hi - lo or bx2 - bx1 > hi - lo:
        return False
    top, left = int(rng.integers(lo, hi - (by2 - by1) + 1)), int(rng.integers(lo, hi - (bx2 - bx1) + 1))
    box = np.array([left, top, left + bx2 - bx1, top + by2 - by1], np.float32)
    if scene.boxes and _box_iou(box, np.stack(scene.boxes)).max() > size.max_box_iou:
        return False
    ink = _mask_on_canvas(scene.owner.shape, patch, top - by1, left - bx1)
    if not _occlusion_ok(scene, ink, size.max_occlusion):
        return False
    under = float(_luminance(scene.canvas[top : top + by2 - by1, left : left + bx2 - bx1]).mean())
    _paste(scene.canvas, patch, top - by1, left - bx1, _contrast_colour(rng, under, size.min_contrast))
    scene.owner[ink] = len(scene.boxes)
    scene.boxes.append(box)
    scene.labels.append(label)
    scene.buckets.append(bucket)
    scene.inks.append(ink)
    return True


def _draw_occluders(rng: np.random.Generator, scene: _Scene, size: SynthSize) -> None:
    """0-2 opaque shapes, mostly near an object, each kept only if every object stays <= max_occlusion hidden."""
    side = scene.canvas.shape[0]
    for _ in range(int(rng.integers(0, 3))):
        for _attempt in range(10):
            near = scene.boxes[int(rng.integers(len(scene.boxes)))] if scene.boxes and rng.random() < 0.8 else None
            centre = rng.uniform(near[:2], near[2:]) if near is not None else rng.uniform(0, side, 2)
            half = rng.uniform(3, 12, 2)
            layer = Image.new("L", (2 * side, 2 * side))
            draw, box = ImageDraw.Draw(layer), [*(2 * (centre - half)), *(2 * (centre + half))]
            draw.ellipse(box, fill=255) if rng.random() < 0.5 else draw.rectangle(box, fill=255)
            alpha = np.asarray(layer.resize((side, side), Image.Resampling.BOX), np.float32) / 255
            cover = alpha >= 0.5
            if _occlusion_ok(scene, cover, size.max_occlusion):
                _paste(scene.canvas, alpha, 0, 0, rng.uniform(0, 1, 3).astype(np.float32))
                scene.owner[cover] = -1
                break


def _render_scene(rng: np.random.Generator, size: SynthSize, glyphs: _Glyphs, prior: np.ndarray) -> _Scene:
    """Background, clutter, objects (largest first), then occluders, on a canvas of image_size + 2 max_shift."""
    side = size.image_size + 2 * size.max_shift
    scene = _Scene(_background(rng, side), np.full((side, side), -1, np.int16))
    _draw_strokes(rng, scene.canvas)
    _draw_fragments(rng, scene, size, glyphs)
    count = 0 if rng.random() < size.p_empty else int(rng.integers(1, size.max_objects + 1))
    wanted = [_sample_object(rng, size, glyphs, prior) for _ in range(count)]
    for obj in sorted(wanted, key=lambda o: -o[2].size):
        for _attempt in range(_PLACE_TRIES):
            if _try_place(rng, scene, size, obj):
                break
    _draw_occluders(rng, scene, size)
    return scene


def _shoot(rng: np.random.Generator, scene: _Scene, size: SynthSize, base: bool):
    """``(uint8[S, S, 3] image, float32[N, 4] xyxy boxes)``: the scene's centre crop, or for a near-duplicate a
    crop shifted by up to max_shift px with a brightness gain / offset and fresh pixel noise."""
    m, s = size.max_shift, size.image_size
    dy, dx = (0, 0) if base else (int(v) for v in rng.integers(-m, m + 1, 2))
    image = scene.canvas[m + dy : m + dy + s, m + dx : m + dx + s]
    if not base:
        image = image * rng.uniform(0.85, 1.15) + rng.uniform(-0.06, 0.06) + rng.normal(0, 0.015, image.shape)
    offset = np.array([m + dx, m + dy, m + dx, m + dy], np.float32)
    boxes = np.stack(scene.boxes) - offset if scene.boxes else np.zeros((0, 4), np.float32)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), boxes


def _group_layout(rng: np.random.Generator, n: int, fraction: float, sizes: tuple[int, int]) -> list[list[int]]:
    """Partition of ``range(n)`` into scenes: near-duplicate groups covering about ``fraction * n`` random
    indices (``sizes`` images each), the rest singletons. Each group is sorted; its first index is the base."""
    lengths: list[int] = []
    while sum(lengths) + sizes[0] <= round(fraction * n):
        lengths.append(int(min(rng.integers(sizes[0], sizes[1] + 1), round(fraction * n) - sum(lengths))))
    lengths += [1] * (n - sum(lengths))
    parts = np.split(rng.permutation(n), np.cumsum(lengths)[:-1])
    return sorted((sorted(int(i) for i in part) for part in parts), key=lambda g: g[0])


def _render_split(split: str, size: SynthSize, seed: int, root: Path):
    """Write one split's PNGs under ``root``; returns its records, groups (of >1 image) and per-record extras
    ``(buckets, occluded fractions)``."""
    n = {"train": size.num_train, "val": size.num_val, "test": size.num_test}[split]
    fraction = size.dup_fraction if split == "train" else 0.0
    groups = _group_layout(_rng(seed, split, 0, 0), n, fraction, size.dup_group_size)
    glyphs = _load_glyphs(split)
    prior = _class_prior(size, split)
    (root / "images" / split).mkdir(parents=True)
    records, extras = [None] * n, [None] * n
    for group in groups:
        scene = _render_scene(_rng(seed, split, 1, group[0]), size, glyphs, prior)
        for index in group:
            image, boxes = _shoot(_rng(seed, split, 2, index), scene, size, base=index == group[0])
            path = root / "images" / split / f"{split}_{index:05d}.png"
            Image.fromarray(image, "RGB").save(path)
            records[index] = ImageRecord(path.stem, path, size.image_size, size.image_size, boxes, scene.labels)
            extras[index] = (list(scene.buckets), scene.occluded_fractions())
    return records, [g for g in groups if len(g) > 1], extras


def _split_summary(split: str, dataset: DetectionDataset, groups: list, extras: list, size: SynthSize) -> dict:
    """Manifest entry of one split: counts per class / scale, empty images, occlusion and duplicate groups."""
    labels = np.concatenate([r.labels for r in dataset.records])
    buckets = np.array([b for bs, _ in extras for b in bs], dtype=object)
    occluded = np.array([f for _, fs in extras for f in fs], np.float64)
    names = [b for b, _, _ in size.scales]
    return {
        "images": len(dataset),
        "boxes": dataset.num_boxes(),
        "empty_images": sum(r.num_boxes == 0 for r in dataset.records),
        "class_prior": {c: round(float(p), 4) for c, p in zip(SYNTH_CLASSES, _class_prior(size, split))},
        "class_counts": {c: int(n) for c, n in zip(SYNTH_CLASSES, dataset.class_counts())},
        "scale_counts": {b: int((buckets == b).sum()) for b in names},
        "class_scale_counts": {
            c: {b: int(((labels == k + 1) & (buckets == b)).sum()) for b in names} for k, c in enumerate(SYNTH_CLASSES)
        },
        "occluded_boxes": int((occluded > 0).sum()),
        "max_occluded_fraction": round(float(occluded.max(initial=0.0)), 4),
        "near_duplicate_groups": [[dataset.records[i].image_id for i in g] for g in groups],
    }


def _generate_into(root: Path, name: str, size: SynthSize, seed: int) -> None:
    """Write images, COCO and VOC annotations and the manifest of every split into ``root``."""
    summaries = {}
    for split in _SPLIT_CODE:
        records, groups, extras = _render_split(split, size, seed, root)
        dataset = DetectionDataset(records, list(SYNTH_CLASSES), root=root)
        write_coco(dataset, root / "annotations" / f"{split}.json", image_root=root)
        write_voc(dataset, root / "voc", image_set=split, images="link")
        summaries[split] = _split_summary(split, dataset, groups, extras, size)
    manifest = {
        "name": name,
        "seed": seed,
        "generator": "activedet.data.synth",
        "generator_version": GENERATOR_VERSION,
        "classes": list(SYNTH_CLASSES),
        "parameters": asdict(size),
        "glyph_source": {
            "dataset": "sklearn.datasets.load_digits",
            "train_val_samples": [0, _TEST_GLYPHS_FROM],
            "test_samples": [_TEST_GLYPHS_FROM, 1797],
        },
        "splits": summaries,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def generate_dataset(name: str, out_dir: str | os.PathLike, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Generate the named synthetic detection dataset into ``out_dir`` and return ``out_dir`` as a Path.

    Args:
        name: a key of :data:`SYNTH_SIZES` (``"tiny"``, ``"quickstart"``, ``"bench"``, ``"bench-balanced"``).
        out_dir: destination directory; see the module docstring for its layout.
        seed: non-negative int; the same ``(name, seed)`` gives byte-identical files.
        overwrite: replace an existing non-empty ``out_dir``.

    Generation happens in a temporary directory next to ``out_dir``, renamed into place at the end
    (:func:`activedet.atomic.atomic_write_dir`): an interrupted generation never leaves a partial dataset at
    ``out_dir``."""
    if name not in SYNTH_SIZES:
        raise ValueError(
            f"The 'name' parameter of generate_dataset must be one of {sorted(SYNTH_SIZES)}. Got {name!r} instead."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"The 'seed' parameter of generate_dataset must be a non-negative int. Got {seed!r} instead.")
    return atomic_write_dir(
        out_dir, lambda tmp: _generate_into(tmp, name, SYNTH_SIZES[name], int(seed)), overwrite=overwrite
    )
