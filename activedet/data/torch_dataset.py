"""A ``torch.utils.data.Dataset`` over :class:`~activedet.data.records.DetectionDataset` for training and inference.

Items are ``(image, target)`` with ``image`` a ``float32[3, H, W]`` tensor in [0, 1] at the file's own size
(detectors resize internally) and ``target`` a dict of ``boxes`` ``float32[N, 4]`` xyxy pixels, ``labels``
``int64[N]`` in 1..C and ``index`` (the pool index of the record).

Training targets leave out ``difficult`` and ``iscrowd`` objects (they are ignore regions for evaluation and
should not be taught as positives). Augmentation randomness is drawn from ``(seed, epoch, index)`` only, so an
image gets the same augmentation whatever the process, worker count or batch it lands in: a run is reproducible
and a 2-process run sees exactly the images a 1-process run sees.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .records import DetectionDataset, ImageRecord

__all__ = ["DetectionTorchDataset", "collate_detection", "load_image"]


def load_image(path) -> Tensor:
    """``float32[3, H, W]`` in [0, 1] from an image file (converted to RGB)."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _training_target(record: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
    keep = ~(record.difficult | record.iscrowd)
    return record.boxes[keep], record.labels[keep]


class DetectionTorchDataset(torch.utils.data.Dataset):
    """Images and targets of ``dataset.records[i]`` for ``i`` in ``indices``.

    Args:
        dataset: the records.
        indices: pool indices to expose (default: all), e.g. the labelled set of a cycle.
        train: apply training augmentation (horizontal flip with probability ``hflip_prob``).
        hflip_prob: probability of a horizontal flip when ``train``.
        seed: base seed of the augmentation randomness.
    """

    def __init__(self, dataset: DetectionDataset, indices: Sequence[int] | None = None, *, train: bool = False,
                 hflip_prob: float = 0.0, seed: int = 0):
        if not 0.0 <= hflip_prob <= 1.0:
            raise ValueError(f"The 'hflip_prob' parameter must be in [0, 1]. Got {hflip_prob} instead.")
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
        self.train = train
        self.hflip_prob = hflip_prob
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call before creating the epoch's DataLoader iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[Tensor, dict[str, Tensor]]:
        index = self.indices[position]
        record = self.dataset.records[index]
        image = load_image(record.file_name)
        if image.shape[1:] != (record.height, record.width):
            raise ValueError(f"{record.file_name}: image is {image.shape[2]}x{image.shape[1]} pixels but its "
                             f"annotation says {record.width}x{record.height}; run `activedet validate` and "
                             "fix the annotation's size")
        boxes, labels = _training_target(record) if self.train else (record.boxes, record.labels)
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if self.train and self.hflip_prob > 0:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if rng.random() < self.hflip_prob:
                image = image.flip(-1)
                boxes = torch.stack([record.width - boxes[:, 2], boxes[:, 1],
                                     record.width - boxes[:, 0], boxes[:, 3]], dim=1)
        target = {"boxes": boxes, "labels": torch.as_tensor(labels, dtype=torch.int64),
                  "index": torch.tensor(index)}
        return image, target


def collate_detection(batch):
    """Lists instead of stacked tensors: images differ in size and targets in box count."""
    images, targets = zip(*batch)
    return list(images), list(targets)
