"""Near-duplicate skipping: a filter on any strategy's picks that passes over an image nearly the same as one already
labelled or picked this cycle.

Pools hold near-duplicates: consecutive video frames, bursts, the same scene saved twice with another crop or
exposure. An informative image's near-duplicates are as informative by every score (they show the same objects), so
an uncertainty or class criterion picks them together and the budget pays for nearly the same labels twice. (Whether
that costs labels depends on the data and the detector: on the bench data, skipping them saved none; see
docs/benchmarks.md.) The filter compares pixels, not the detector's embedding (which a small or barely trained
detector spreads too little to tell a shifted copy from another scene).

Each image is reduced to a **thumbnail**: grey levels (the channels' mean), box-averaged to ``32 x 32``, whatever its
size. Two images are near-duplicates when the Pearson correlation of their thumbnails, at the best relative shift of
up to ``2`` thumbnail pixels each way (1/16 of the image: the centre ``28 x 28`` of one against the 25 shifted
``28 x 28`` windows of the other), is at least ``threshold``. The correlation ignores a change of brightness or
contrast (a gain and an offset), and the shift a small translation or re-crop.

The filter takes the strategy's picks in their order and skips each one whose thumbnail is a near-duplicate of a
labelled image's or an earlier kept pick's; a budget then goes on to the next pick, so the batch is as large as
without the filter. Cost: one image read per labelled image and per pick looked at, and ``25 x 784`` multiply-adds
per image compared, per look: 0.55 ms per pick against 1,000 references on the 2-core machine the benchmarks ran on
(``python benchmarks/near_duplicates.py --data data/bench``, which also measures the figures below).

On the ``bench`` data (:mod:`activedet.data.synth`: groups of 3-5 copies of one scene, each shifted by up to 4 px
of 128, brightness changed and fresh noise) at ``threshold`` 0.85, 1,889 of the 1,950 same-group pairs (96.9%) are
found and none of the 8.0 million pairs of different scenes (the most similar of those correlates 0.834; at 0.80,
99.3% and 16).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

__all__ = ["THUMBNAIL_SIDE", "MAX_SHIFT", "thumbnail", "NearDuplicateFilter"]

#: thumbnail side in pixels
THUMBNAIL_SIDE = 32
#: largest relative shift searched, in thumbnail pixels each way
MAX_SHIFT = 2


def thumbnail(pixels: torch.Tensor | np.ndarray) -> np.ndarray:
    """``float32[32, 32]``: grey levels (mean over channels) of ``pixels`` ``[C, H, W]`` (or ``[H, W]``),
    box-averaged to :data:`THUMBNAIL_SIDE` square. Images smaller than that are stretched."""
    image = torch.as_tensor(np.asarray(pixels), dtype=torch.float32)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.numel() == 0:
        raise ValueError(f"thumbnail: expected an image [C, H, W] or [H, W]; got shape {tuple(image.shape)}")
    grey = image.mean(0, keepdim=True)[None]  # [1, 1, H, W]
    side = THUMBNAIL_SIDE
    if grey.shape[-1] < side or grey.shape[-2] < side:
        grey = torch.nn.functional.interpolate(grey, size=(side, side), mode="bilinear", align_corners=False)
    return torch.nn.functional.adaptive_avg_pool2d(grey, side)[0, 0].numpy()


def _standardised(windows: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit length (a flat row stays 0: it correlates with nothing)."""
    windows = windows - windows.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(windows, axis=1, keepdims=True)
    return np.divide(windows, norm, out=np.zeros_like(windows), where=norm > 1e-6)


def _centre(thumb: np.ndarray) -> np.ndarray:
    """``float32[784]``: the standardised centre window of one thumbnail."""
    r, side = MAX_SHIFT, THUMBNAIL_SIDE
    return _standardised(thumb[r : side - r, r : side - r].reshape(1, -1))[0]


def _shifted(thumb: np.ndarray) -> np.ndarray:
    """``float32[25, 784]``: the standardised windows of one thumbnail at every shift."""
    r, side = MAX_SHIFT, THUMBNAIL_SIDE
    windows = [
        thumb[r + dy : side - r + dy, r + dx : side - r + dx].reshape(-1)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
    ]
    return _standardised(np.stack(windows))


class NearDuplicateFilter:
    """Skips picks that are near-duplicates of a labelled image or an earlier kept pick (module docstring).

    Args:
        thumbnail_of: pool index -> its :func:`thumbnail` (called once per labelled image and per pick looked at).
        labelled: pool indices of the labelled images.
        threshold: smallest correlation, in (0, 1], at which two images count as near-duplicates.

    ``skipped`` lists ``(pick, labelled image or kept pick it duplicates, correlation)`` in the order met.
    """

    def __init__(self, thumbnail_of: Callable[[int], np.ndarray], labelled: Iterable[int], threshold: float):
        if not 0 < threshold <= 1:
            raise ValueError(f"near_duplicates: the threshold must be a correlation in (0, 1]; got {threshold!r}")
        self.thumbnail_of, self.threshold = thumbnail_of, float(threshold)
        self._owners = [int(i) for i in labelled]
        centres = [_centre(np.asarray(thumbnail_of(i), np.float32)) for i in self._owners]
        width = (THUMBNAIL_SIDE - 2 * MAX_SHIFT) ** 2
        self._refs = np.zeros((max(16, 2 * len(centres)), width), np.float32)
        if centres:
            self._refs[: len(centres)] = np.stack(centres)
        self.skipped: list[tuple[int, int, float]] = []

    def _add(self, index: int, centre: np.ndarray) -> None:
        if len(self._owners) == len(self._refs):
            self._refs = np.concatenate([self._refs, np.zeros_like(self._refs)])
        self._refs[len(self._owners)] = centre
        self._owners.append(index)

    def __call__(self, picks: Iterable[int]) -> Iterator[int]:
        """The picks, in order, less the near-duplicates (lazily: a budget may stop at any pick)."""
        for pick in picks:
            thumb = np.asarray(self.thumbnail_of(int(pick)), np.float32)
            n = len(self._owners)
            if n:
                best = (_shifted(thumb) @ self._refs[:n].T).max(axis=0)  # [n]: each reference at its best shift
                nearest = int(np.argmax(best))
                if best[nearest] >= self.threshold:
                    self.skipped.append((int(pick), self._owners[nearest], round(float(best[nearest]), 4)))
                    continue
            self._add(int(pick), _centre(thumb))
            yield int(pick)
