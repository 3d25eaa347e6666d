"""Repeat-factor sampling: training images of rare classes come round more often (LVIS, Gupta et al. 2019).

With ``f_c`` the fraction of the training images that hold at least one box of class ``c`` and a threshold ``t``,
class ``c`` has the repeat factor ``r_c = max(1, sqrt(t / f_c))`` and an image the largest factor of its classes,
``r(I) = max_{c in I} r_c`` (1 for an image with no box). A class in at least a fraction ``t`` of the images is not
repeated; one in ``t / 4`` of them is repeated twice as often.

LVIS trains for a fixed number of iterations, so repeating images changes what the iterations see, not how many
there are. Here an epoch keeps its length, the number of training images ``N``, so that ``epochs``, ``lr_steps``
and the warm-up mean what they mean without it and a comparison with and without it trains for the same number
of steps: each epoch expands the images into ``floor(r(I))`` copies plus one more with probability
``r(I) - floor(r(I))`` (stochastic rounding, as LVIS does), shuffles the copies and takes the first ``N``. Every
epoch draws afresh from ``(seed, epoch)``, identically in every process; each process then takes its share, as
:class:`torch.utils.data.DistributedSampler` does (padded by the first indices to a multiple of the processes).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["image_repeat_factors", "RepeatFactorSampler"]


def image_repeat_factors(image_classes: Sequence[Sequence[int]], threshold: float) -> np.ndarray:
    """``float64[N]``: each image's repeat factor ``r(I)`` (module docstring) from the classes of its boxes.

    ``image_classes``: per image, the class labels of its boxes (any order, repeats allowed, empty for none).
    ``threshold``: ``t``, a fraction in (0, 1].
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"repeat_factor_threshold must be a fraction in (0, 1]; got {threshold!r}")
    present = [set(int(c) for c in classes) for classes in image_classes]
    if not present:
        return np.ones(0)
    images_with = Counter(c for classes in present for c in classes)
    class_factor = {c: max(1.0, math.sqrt(threshold / (n / len(present)))) for c, n in images_with.items()}
    return np.array([max((class_factor[c] for c in classes), default=1.0) for classes in present])


class RepeatFactorSampler(torch.utils.data.Sampler[int]):
    """This process's share of each epoch's ``len(factors)`` indices drawn by repeat factor (module docstring).

    Args:
        factors: one repeat factor ``>= 1`` per dataset index (:func:`image_repeat_factors`).
        num_replicas, rank: the processes and this one's rank.
        seed: with the epoch (:meth:`set_epoch`), what every draw comes from.
    """

    def __init__(self, factors: np.ndarray, *, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        factors = np.asarray(factors, np.float64).reshape(-1)
        if len(factors) == 0 or not (np.isfinite(factors).all() and (factors >= 1).all()):
            raise ValueError(f"repeat factors must be one finite value >= 1 per image; got {factors!r}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in [0, {num_replicas}); got {rank}")
        self.factors, self.num_replicas, self.rank, self.seed = factors, num_replicas, rank, seed
        self.epoch = 0
        self.num_samples = math.ceil(len(factors) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> torch.Tensor:
        """The whole epoch's ``len(factors)`` indices, in order, before they are shared out."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        factors = torch.from_numpy(self.factors)
        whole = torch.floor(factors)
        copies = (whole + (torch.rand(len(factors), generator=g, dtype=torch.float64) < factors - whole)).long()
        expanded = torch.repeat_interleave(torch.arange(len(factors)), copies)
        return expanded[torch.randperm(len(expanded), generator=g)][: len(factors)]

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices()
        total = self.num_samples * self.num_replicas
        if total > len(indices):  # pad with the epoch's first indices, again if fewer than the processes
            indices = indices.repeat(math.ceil(total / len(indices)))[:total]
        return iter(indices[self.rank : total : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
