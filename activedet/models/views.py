"""Views of an image with exact box mapping, and a predictor that runs a detector on the image and its views
(the consistency-based augmentations of methods.md §6.1; the noisy copies of §5.2).

A *view* is a small callable ``view(image, boxes, generator) -> (view_image, view_boxes)``:

* ``image``: float ``[3, H, W]`` in ``[0, 1]``; ``boxes``: float ``[R, 4]`` xyxy in that image's pixels (the
  reference detections); ``generator``: a CPU ``torch.Generator``, the only randomness a view uses.
* ``view_image``: float ``[3, H', W']`` in ``[0, 1]``; ``view_boxes``: ``[R, 4]`` the same boxes mapped into the
  view's pixel frame (row ``r`` is the image of row ``r``).

=================  ======  ==================================================================================
view               letter  mapping
=================  ======  ==================================================================================
:class:`Flip`      ``F``   horizontal mirror: ``x -> W - x``
:class:`Cutout`    ``C``   2 rectangles of 5-20 % of each side set to 0, each accepted only if the largest
                           fraction of any reference box it covers is in [10 %, 40 %] (50 tries); boxes unchanged
:class:`Resize`    ``D``   down-resize by 0.8 (bilinear, antialiased); boxes scaled by the exact size ratios
:class:`Rotate`    ``R``   5° counter-clockwise about the image centre on the same canvas (corners cut off,
                           uncovered pixels 0); boxes -> enclosing rectangle of the rotated corners, clipped
:class:`Noise`     ``G``   additive Gaussian noise, std 16 on the 0-255 scale (``std / 255`` here), clamped
                   ``N``   six Gaussian noise views, std ``8 n``, ``n = 1..6`` (§6.1's ``multi_ga``, §5.2's copies)
:class:`SaltPepper` ``S``  each pixel set to 1 or 0 with probability 0.05 each (§6.1's ``sp``, 0.1)
=================  ======  ==================================================================================

:func:`parse_views` turns a letter string (``"FCDR"``, §6.1's default) into views; :func:`noise_views` gives the
localization-stability copies.

:class:`ViewPredictor` fills, on request (``"views"``), these ``Detections.extras`` keys (:data:`EXTRA_FIELDS`):

* ``views``: ``list[Detections]``, the detections of each view of the image, **in that view's pixel frame**;
  each carries ``reference_boxes``;
* ``reference_boxes`` (on a view, not requested by name): ``float32[R, 4]`` this image's parent detections (the
  reference pass, in the parent's order) mapped into the view's pixel frame (enclosing rectangles where the view
  rotates).

Differences from the released code of §6.1: its rotation expands the canvas, then resizes the result back to
``W x H`` (so nothing is cut off but the content shrinks a little); here the canvas is kept, as a plain rotation.
Its salt-and-pepper draws per pixel and channel; here too.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from ._common import check_float, check_int, unwrap_ddp
from .outputs import Detections

#: The ``Detections.extras`` keys a caller may request from this module (module docstring); each view also
#: carries ``reference_boxes``.
EXTRA_FIELDS = frozenset({"views"})


@functools.lru_cache(maxsize=1)
def _per_detection_extras() -> frozenset[str]:
    """The ``Detections.extras`` keys with one row per detection, as the method packages declare them
    (``PER_DETECTION_EXTRAS`` of their ``model`` modules): :func:`_subset` narrows them with the detections; every
    other key is per image or per anchor and is kept whole."""
    from ..plugins import method_modules

    return frozenset(k for m in method_modules("model") for k in getattr(m, "PER_DETECTION_EXTRAS", ()))


__all__ = [
    "EXTRA_FIELDS",
    "Flip",
    "Cutout",
    "Resize",
    "Rotate",
    "Noise",
    "SaltPepper",
    "View",
    "VIEW_LETTERS",
    "parse_views",
    "noise_views",
    "ViewPredictor",
]

View = Callable[[Tensor, Tensor, torch.Generator], "tuple[Tensor, Tensor]"]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@dataclass(frozen=True)
class Flip:
    """Horizontal mirror."""

    def __call__(self, image: Tensor, boxes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        width = image.shape[-1]
        mapped = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        return image.flip(-1), mapped


@dataclass(frozen=True)
class Cutout:
    """``rectangles`` zero-filled rectangles, each side uniform in ``[min_side, max_side]`` of the image side.

    A placement (uniform position inside the image, corners truncated to whole pixels) is kept only when the
    largest fraction of any reference box that it covers lies in ``[min_cover, max_cover]``; each placement is
    judged alone. At most ``tries`` placements are drawn in all. With no reference box no placement qualifies
    (the largest fraction of nothing is taken as 0), so the image is returned unchanged. Boxes are unchanged.
    """

    rectangles: int = 2
    min_side: float = 0.05
    max_side: float = 0.2
    min_cover: float = 0.1
    max_cover: float = 0.4
    tries: int = 50
    fill: float = 0.0

    def __call__(self, image: Tensor, boxes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        height, width = image.shape[-2:]
        out = image.clone()
        areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp_min(1e-12).cpu()
        placed = 0
        for _ in range(self.tries):
            h = _uniform(generator, self.min_side * height, self.max_side * height)
            w = _uniform(generator, self.min_side * width, self.max_side * width)
            left, top = _uniform(generator, 0, width - w), _uniform(generator, 0, height - h)
            x1, y1, x2, y2 = int(left), int(top), int(left + w), int(top + h)
            if not self.min_cover <= self.largest_cover(boxes.cpu(), areas, (x1, y1, x2, y2)) <= self.max_cover:
                continue
            out[:, y1:y2, x1:x2] = self.fill
            placed += 1
            if placed == self.rectangles:
                break
        return out, boxes.clone()

    @staticmethod
    def largest_cover(boxes: Tensor, areas: Tensor, rect: tuple[int, int, int, int]) -> float:
        """Largest fraction of any box's area inside ``rect`` (0 when there is no box)."""
        if len(boxes) == 0:
            return 0.0
        x1, y1, x2, y2 = rect
        iw = (boxes[:, 2].clamp(max=x2) - boxes[:, 0].clamp(min=x1)).clamp_min(0)
        ih = (boxes[:, 3].clamp(max=y2) - boxes[:, 1].clamp(min=y1)).clamp_min(0)
        return float((iw * ih / areas).max())


@dataclass(frozen=True)
class Resize:
    """Resize by ``factor`` (bilinear, antialiased) to ``round(factor·H) x round(factor·W)``; boxes scaled by the
    exact ratios of the new to the old sides."""

    factor: float = 0.8

    def __call__(self, image: Tensor, boxes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        height, width = image.shape[-2:]
        new_h, new_w = max(1, round(self.factor * height)), max(1, round(self.factor * width))
        resized = F.interpolate(
            image[None].float(), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )[0].clamp(0, 1)
        scale = boxes.new_tensor([new_w / width, new_h / height, new_w / width, new_h / height])
        return resized, boxes * scale


@dataclass(frozen=True)
class Rotate:
    """Rotate by ``degrees`` counter-clockwise about the image centre ``(W/2, H/2)``, same canvas, bilinear,
    uncovered pixels 0. A point maps to ``x' = cx + cos·dx + sin·dy``, ``y' = cy - sin·dx + cos·dy`` (``dx, dy``
    from the centre, y pointing down); each box becomes the enclosing rectangle of its four rotated corners,
    clipped to the image."""

    degrees: float = 5.0

    def __call__(self, image: Tensor, boxes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        height, width = image.shape[-2:]
        rotated = TF.rotate(image, self.degrees, interpolation=TF.InterpolationMode.BILINEAR, expand=False, fill=0.0)
        return rotated, self.map_boxes(boxes, height, width)

    def map_boxes(self, boxes: Tensor, height: int, width: int) -> Tensor:
        theta = math.radians(self.degrees)
        cos, sin = math.cos(theta), math.sin(theta)
        xs = boxes[:, [0, 2, 0, 2]] - width / 2  # [R, 4] corner offsets from the centre
        ys = boxes[:, [1, 1, 3, 3]] - height / 2
        rx = width / 2 + cos * xs + sin * ys
        ry = height / 2 - sin * xs + cos * ys
        mapped = torch.stack([rx.min(1).values, ry.min(1).values, rx.max(1).values, ry.max(1).values], dim=1)
        return torch.stack(
            [
                mapped[:, 0].clamp(0, width),
                mapped[:, 1].clamp(0, height),
                mapped[:, 2].clamp(0, width),
                mapped[:, 3].clamp(0, height),
            ],
            dim=1,
        )


@dataclass(frozen=True)
class Noise:
    """Additive Gaussian noise of standard deviation ``std`` on the 0-255 scale (``std / 255`` on the [0, 1]
    tensor), clamped to [0, 1]; boxes unchanged."""

    std: float = 16.0

    def __call__(self, image: Tensor, boxes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        noise = torch.randn(image.shape, generator=generator).to(image.device, image.dtype)
        return (image + noise * (self.std / 255.0)).clamp(0, 1), boxes.clone()


@dataclass(frozen=True)
class SaltPepper:
    """Each pixel value (per channel) set to 1 with probability ``amount / 2`` and to 0 with ``amount / 2``."""

    amount: float = 0.1

    def __call__(self, image: Tensor, boxes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        draw = torch.rand(image.shape, generator=generator).to(image.device)
        out = image.clone()
        out[draw < self.amount / 2] = 1.0
        out[draw > 1 - self.amount / 2] = 0.0
        return out, boxes.clone()


def noise_views(levels: int = 6, step: float = 8.0) -> list[Noise]:
    """Localization stability's noisy copies: ``Noise(step · n)`` for ``n = 1..levels`` (methods.md §5.2)."""
    check_int("noise_views", "levels", levels, 1)
    check_float("noise_views", "step", step, 0.0, 255.0)
    return [Noise(step * n) for n in range(1, levels + 1)]


#: the letters :func:`parse_views` accepts (the ``-a`` options of §6.1's released code), each with its views
VIEW_LETTERS: dict[str, Callable[[], list[View]]] = {
    "F": lambda: [Flip()],
    "C": lambda: [Cutout()],
    "D": lambda: [Resize(0.8)],
    "R": lambda: [Rotate(5.0)],
    "G": lambda: [Noise(16.0)],
    "N": lambda: list(noise_views(6, 8.0)),
    "S": lambda: [SaltPepper(0.1)],
}


def parse_views(spec: str, owner: str = "parse_views") -> list[View]:
    """Views named by a letter string, in its order (``"FCDR"`` = flip, cutout, down-resize, rotation; see the
    module table). Raises ``ValueError`` naming an unknown or repeated letter (``owner``: the function or
    strategy named in the message)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(
            f"The 'views' parameter of {owner} must be a non-empty string of letters from "
            f"{sorted(VIEW_LETTERS)}. Got {spec!r} instead."
        )
    unknown = sorted(set(spec) - set(VIEW_LETTERS))
    if unknown or len(set(spec)) != len(spec):
        what = f"unknown letter(s) {unknown}" if unknown else "a repeated letter"
        raise ValueError(
            f"The 'views' parameter of {owner} must be letters from {sorted(VIEW_LETTERS)}, each once "
            f"(F flip, C cutout, D down-resize, R rotation, G noise, N six noise levels, S salt and "
            f"pepper). Got {spec!r} instead ({what})."
        )
    return [view for letter in spec for view in VIEW_LETTERS[letter]()]


def _image_seed(base: int, image: Tensor) -> int:
    """A per-image seed from the predictor's base seed and the image's content (CRC-32 of its bytes)."""
    crc = zlib.crc32(image.detach().float().cpu().contiguous().numpy().tobytes())
    return (base * 1_000_003 + crc) % (2**63)


class ViewPredictor:
    """``predict(images, fields)`` like a detector's, also running the detector on views of each image.

    For each image: a reference pass on the original (the requested ``fields`` minus ``"views"``), optionally
    narrowed by ``references`` (``Detections -> int64 indices`` of the detections to keep, e.g. 50
    evenly spaced ranks); then each view of the image is built from the image and the reference boxes and
    predicted with the same fields, view by view in batches of the images of the call. The result is the
    reference :class:`Detections` with ``views`` = one ``Detections`` per view, in that view's pixel frame,
    carrying ``reference_boxes`` = the reference boxes mapped into the view. An image without reference
    detections gets ``views = []`` (no view is predicted: every criterion scores it without them).
    Without ``"views"`` in ``fields`` only the reference pass runs.

    Reproducibility: the randomness of the views (cutout placements, noise) comes from one CPU generator per
    image, seeded from a base seed and the image's content. The base seed is ``seed`` when given (the loop passes
    its scoring seed, so the views of an image do not depend on where a stopped run resumed), else drawn with
    ``torch.randint`` from torch's global generator at the first ``predict`` call (not at construction, so building
    the predictor to check a configuration consumes nothing). The views of an image are therefore the same
    whatever the batching, the order of the images or the number of processes.

    The model runs in eval mode without gradients (its ``predict`` restores every submodule's mode).
    """

    def __init__(
        self,
        model: nn.Module,
        views: Sequence[View],
        references: Callable[[Detections], Tensor] | None = None,
        seed: int | None = None,
    ):
        if len(views) == 0:
            raise ValueError("The 'views' parameter of ViewPredictor must hold at least one view. Got 0 views instead.")
        self.model = unwrap_ddp(model)
        self.views = list(views)
        self.references = references
        self.prob_kind = getattr(self.model, "prob_kind", "sigmoid")
        self.PROVIDES = frozenset(getattr(self.model, "PROVIDES", frozenset()) | {"views"})
        self._base_seed: int | None = None if seed is None else int(seed) % 2**62

    def predict(self, images: Sequence[Tensor], fields: Iterable[str] = ()) -> list[Detections]:
        requested = Detections.check_fields(fields)
        model_fields = requested - {"views"}
        images = list(images)
        if not images:
            return []
        refs = self.model.predict(images, model_fields)
        if self.references is not None:
            refs = [_subset(r, self.references(r)) for r in refs]
        if "views" not in requested:
            return refs
        if self._base_seed is None:
            self._base_seed = int(torch.randint(0, 2**62, ()))
        with torch.no_grad():
            views = self._predict_views(images, refs, model_fields)
        return [ref.with_extras(views=per_image) for ref, per_image in zip(refs, views)]

    def _predict_views(
        self, images: list[Tensor], refs: list[Detections], fields: frozenset[str]
    ) -> list[list[Detections]]:
        active = [i for i, ref in enumerate(refs) if len(ref)]
        generators = {i: torch.Generator().manual_seed(_image_seed(self._base_seed, images[i])) for i in active}
        per_image: list[list[Detections]] = [[] for _ in images]
        for view in self.views:
            built = [view(images[i], refs[i].boxes.to(images[i].device).float(), generators[i]) for i in active]
            if not built:
                break
            predicted = self.model.predict([image for image, _ in built], fields)
            for i, (_, mapped), det in zip(active, built, predicted):
                per_image[i].append(det.with_extras(reference_boxes=mapped.to(det.boxes.device)))
        return per_image


def _subset(det: Detections, keep: Tensor) -> Detections:
    """``det`` restricted to the detections ``keep`` (indices), every per-detection field alike."""
    n = len(det)
    keep = keep.to(det.boxes.device)

    def narrowed(values: dict, names: Sequence[str]) -> dict:
        return {
            name: value[keep]
            for name, value in values.items()
            if name in names and isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == n
        }

    per_detection = narrowed(vars(det), ("boxes", "scores", "labels", "class_probs", "proposals", "features"))
    return replace(det, **per_detection, extras={**det.extras, **narrowed(det.extras, _per_detection_extras())})
