"""Oracles reveal the labels of selected images. In simulation the oracle is the pool's ground truth."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.records import DetectionDataset

__all__ = ["SimulatedOracle"]


class SimulatedOracle:
    """Reveals the ground truth already held by ``pool`` (the simulation used by every published AL paper).

    ``num_boxes(i)`` is the annotation cost of image ``i`` in boxes (all its boxes, difficult ones included: an
    annotator draws them too).
    """

    def __init__(self, pool: DetectionDataset):
        self.pool = pool

    def num_boxes(self, index: int) -> int:
        return self.pool.records[index].num_boxes

    def class_counts(self, indices: Sequence[int]) -> np.ndarray:
        """``float64[C]`` revealed boxes per class (index ``l - 1`` for label ``l``) over ``indices``."""
        return self.pool.subset(indices).class_counts().astype(np.float64)

    def reveal(self, indices: Sequence[int]) -> None:
        """Nothing to do: the labels are already in ``pool``; a human oracle would import them here."""
