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

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from . import augment
from .classification import read_cifar_image
from .images import read_image_array
from .records import DetectionDataset, ImageRecord

__all__ = ["DetectionTorchDataset", "collate_detection", "load_image"]


def load_image(path, image_index: int | None = None) -> Tensor:
    """``float32[3, H, W]`` in [0, 1] from an image file (converted to RGB, high bit depths scaled to their range:
    :func:`~activedet.data.images.read_image_array`), or with ``image_index`` from record ``image_index`` of the CIFAR
    binary file ``path`` (see :func:`~activedet.data.classification.read_cifar_image`; only that record is read).
    A file that cannot be decoded raises :class:`~activedet.data.images.ImageDecodeError` naming it."""
    array = read_cifar_image(path, image_index) if image_index is not None else read_image_array(path)
    if array.dtype != np.uint8:  # high bit depth: already float in [0, 1]
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _training_target(record: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
    keep = ~(record.difficult | record.iscrowd)
    return record.boxes[keep], record.labels[keep]


class DetectionTorchDataset(torch.utils.data.Dataset):
    """Images and targets of ``dataset.records[i]`` for ``i`` in ``indices``.

    Args:
        dataset: the records.
        indices: pool indices to expose (default: all), e.g. the labelled set of a cycle.
        train: apply the training augmentations below (see :mod:`activedet.data.augment`).
        hflip_prob: probability of a horizontal flip.
        scale_jitter: zoom in/out by up to this fraction with a random translation (0 disables).
        color_jitter: strength of the colour jitter (random channel order, brightness, contrast; 0 disables).
        ssd_augment: SSD's photometric distortion, expansion and random crop first
            (:func:`~activedet.data.augment.ssd_augment`).
        seed: base seed of the augmentation randomness.
    """

    def __init__(
        self,
        dataset: DetectionDataset,
        indices: Sequence[int] | None = None,
        *,
        train: bool = False,
        hflip_prob: float = 0.0,
        scale_jitter: float = 0.0,
        color_jitter: float = 0.0,
        ssd_augment: bool = False,
        seed: int = 0,
    ):
        for name, value, high in (
            ("hflip_prob", hflip_prob, 1.0),
            ("scale_jitter", scale_jitter, 0.9),
            ("color_jitter", color_jitter, 1.0),
        ):
            if not 0.0 <= value <= high:
                raise ValueError(f"The '{name}' parameter must be in [0, {high}]. Got {value} instead.")
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
        self.train = train
        self.hflip_prob, self.scale_jitter, self.color_jitter = hflip_prob, scale_jitter, color_jitter
        self.ssd_augment = bool(ssd_augment)
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
        image = load_image(record.file_name, record.image_index)
        if image.shape[1:] != (record.height, record.width):
            raise ValueError(
                f"{record.file_name}: image is {image.shape[2]}x{image.shape[1]} pixels but its "
                f"annotation says {record.width}x{record.height}; run `activedet validate` and "
                "fix the annotation's size"
            )
        boxes, labels = _training_target(record) if self.train else (record.boxes, record.labels)
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if self.train:
            image, boxes, labels = self._augment(
                image, boxes, labels, np.random.default_rng([self.seed, self.epoch, index])
            )
        return image, {"boxes": boxes, "labels": labels, "index": torch.tensor(index)}

    def _augment(self, image: Tensor, boxes: Tensor, labels: Tensor, rng: np.random.Generator):
        if self.ssd_augment:
            image, boxes, labels = augment.ssd_augment(image, boxes, labels, rng)
        if self.hflip_prob > 0 and rng.random() < self.hflip_prob:
            image, boxes = augment.hflip(image, boxes)
        if self.scale_jitter > 0:
            image, boxes, labels = augment.zoom(image, boxes, labels, rng, jitter=self.scale_jitter)
        if self.color_jitter > 0:
            image = augment.color_jitter(image, rng, strength=self.color_jitter)
        return image, boxes, labels


def collate_detection(batch):
    """Lists instead of stacked tensors: images differ in size and targets in box count."""
    images, targets = zip(*batch)
    return list(images), list(targets)
