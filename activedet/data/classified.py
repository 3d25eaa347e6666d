"""A classified image as a detection record, and the argument checks every classification reader and writer shares.

:func:`classification_record` is the convention of :mod:`activedet.data.classification`: one box covering the
whole image, ``[0, 0, width, height]``, labelled with the class ``c`` in ``1..C``. The checks raise
``ValueError`` naming the caller, the parameter, what was expected and what was found.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .records import ImageRecord

__all__ = ["classification_record"]


def classification_record(
    image_id: str, file_name: str | os.PathLike, width: int, height: int, label: int, *, image_index: int | None = None
) -> ImageRecord:
    """The record of an image of class ``label`` (``1..C``): one box ``[0, 0, width, height]`` with that label."""
    return ImageRecord(image_id, file_name, width, height, [[0, 0, width, height]], [label], image_index=image_index)


def _check_class_names(caller: str, class_names: Sequence[str] | None) -> list[str] | None:
    if class_names is None:
        return None
    names = list(class_names) if not isinstance(class_names, str) else None
    if (
        not names
        or not all(isinstance(n, str) and n.strip() and n == n.strip() and "\n" not in n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(
            f"The 'class_names' parameter of {caller} must be a non-empty list of distinct, non-blank "
            f"strings without surrounding spaces. Got {class_names!r} instead."
        )
    return names


def _check_image(image, index: int, caller: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or (shape and image.shape[:2] != shape):
        want = f"{shape[0]}x{shape[1]}x3" if shape else "HxWx3"
        raise ValueError(
            f"{caller}: image {index} must be a uint8 {want} RGB array. Got {image.dtype} of shape "
            f"{image.shape} instead."
        )
    return image


def _check_labels(caller: str, labels: Sequence[int], count: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if (
        labels.shape != (count,)
        or not np.issubdtype(labels.dtype, np.integer)
        or (count and not (labels.min() >= 1 and labels.max() <= num_classes))
    ):
        raise ValueError(
            f"The 'labels' parameter of {caller} must be {count} ints in 1..{num_classes} (one per "
            f"image). Got {labels.dtype} of shape {labels.shape} with values "
            f"{sorted(set(labels.ravel().tolist()))[:10]} instead."
        )
    return labels.astype(np.int64)
