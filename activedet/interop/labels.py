"""One entry point for every label format: :func:`read_labels`."""

from __future__ import annotations

import os
from collections.abc import Container, Sequence
from pathlib import Path

from ..data.records import DatasetError, Problem
from ..data.validate import check_choice
from .common import LabelImport, known_id
from .cvat import read_cvat_xml
from .folders import read_coco_labels, read_voc_labels, read_yolo_labels
from .labelstudio import (
    read_labelstudio_coco,
    read_labelstudio_export,
    read_labelstudio_min,
    read_labelstudio_voc,
    read_labelstudio_yolo,
)

LABEL_FORMATS = (
    "labelstudio",
    "labelstudio_min",
    "labelstudio_coco",
    "labelstudio_voc",
    "labelstudio_yolo",
    "cvat_xml",
    "coco",
    "voc",
    "cvat_voc",
    "yolo",
)
#: formats whose files list images nobody may have labelled yet (an unfinished job): an image without any shape
#: there is pending unless ``empty_means_labelled`` (Datumaro's formats, ``datumaro:<name>``, too). In VOC, an
#: image listed in ``ImageSets/Main`` without an annotation file; in YOLO, an empty label file.
EMPTY_AMBIGUOUS = ("cvat_xml", "coco", "voc", "cvat_voc", "yolo")


def read_labels(
    fmt: str,
    path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    images: dict[str, tuple[int, int]] | None = None,
    **options,
) -> LabelImport:
    """Read people's labels in format ``fmt`` (one of :data:`LABEL_FORMATS`, or ``datumaro:<name>`` for any of
    Datumaro's dataset formats); ``options`` go to that reader (``image_key=`` for ``labelstudio``,
    ``empty_means_labelled=`` for :data:`EMPTY_AMBIGUOUS` and Datumaro's).

    ``images = {image_id: (width, height)}``, the run's images, serves the formats with relative coordinates
    (``yolo``, Label Studio without ``original_width``) and maps every name the file gives to an image id with
    :func:`image_id_from_name` (an exported ``setB__x.jpg`` is ``setB/x``).
    """
    if isinstance(fmt, str) and fmt.startswith("datumaro:"):
        from .datumaro import read_datumaro_labels

        result = read_datumaro_labels(path, class_names, fmt.split(":", 1)[1], images=images, **options)
        return result if images is None else _resolve_ids(result, images)
    check_choice("read_labels", "fmt", fmt, LABEL_FORMATS)
    readers = {
        "labelstudio": read_labelstudio_export,
        "labelstudio_min": read_labelstudio_min,
        "labelstudio_coco": read_labelstudio_coco,
        "labelstudio_voc": read_labelstudio_voc,
        "labelstudio_yolo": read_labelstudio_yolo,
        "cvat_xml": read_cvat_xml,
        "coco": read_coco_labels,
        "voc": read_voc_labels,
        "cvat_voc": read_voc_labels,
        "yolo": read_yolo_labels,
    }
    if fmt in ("yolo", "labelstudio_yolo") and images is None:
        raise ValueError(
            f"read_labels({fmt!r}, ...) needs images={{image_id: (width, height)}}: YOLO coordinates "
            "are normalised by the image size, which the label files do not store"
        )
    if fmt != "cvat_xml" and images is not None:
        options["images"] = images
    if fmt in ("voc", "cvat_voc"):
        options["one_based"] = fmt == "voc"
    result = readers[fmt](path, class_names, **options)
    return result if images is None else _resolve_ids(result, images)


def _resolve_ids(result: LabelImport, images: Container[str]) -> LabelImport:
    """``result`` with its image names mapped to the ids of ``images`` (:func:`image_id_from_name`); two names of
    one image are an error naming both."""
    ids = {key: known_id(key, images) for key in result.labels}
    seen: dict[str, str] = {}
    for key, image_id in ids.items():
        if image_id in seen:
            raise DatasetError(
                [
                    Problem(
                        Path(result.source).name,
                        f"{seen[image_id]!r} and {key!r} both name image {image_id!r}",
                        "keep one of them in the export",
                    )
                ],
                f"labels {result.source}",
            )
        seen[image_id] = key
    result.labels = {ids[k]: v for k, v in result.labels.items()}
    result.annotators = {ids.get(k, k): v for k, v in result.annotators.items()}
    result.difficult = {ids.get(k, k): v for k, v in result.difficult.items()}
    result.unlabelled = [known_id(k, images) for k in result.unlabelled]
    result.sizes = {ids.get(k, k): v for k, v in result.sizes.items()}
    return result
