"""Writing a :class:`~activedet.data.records.DetectionDataset` as one ``VOC{year}``-style directory
(:func:`write_voc`): one annotation XML per image, the image-set list, ``labelmap.txt`` and the images.
:func:`activedet.data.voc.read_voc` reads it back exactly (conventions: :mod:`activedet.data.voc`).
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from .records import DetectionDataset, ImageRecord
from .validate import IMAGE_MODES, check_choice, place_image, shortest_float
from .voc_xml import _COORDS, ONE_BASED_OFFSETS, ZERO_BASED_OFFSETS

__all__ = ["write_voc"]


def write_voc(
    dataset: DetectionDataset,
    voc_dir: str | os.PathLike,
    *,
    image_set: str = "trainval",
    images: str = "link",
    one_based: bool = True,
) -> Path:
    """Write ``dataset`` as one ``VOC{year}``-style directory and return ``voc_dir``.

    Writes ``Annotations/{stem}.xml`` (stem = ``image_id`` after any ``"year/"``), ``ImageSets/Main/
    {image_set}.txt`` listing the stems in record order, ``labelmap.txt`` (the class names in label order, in the
    ``name:color:parts:actions`` form CVAT and Datumaro read) and the images as ``JPEGImages/{stem}{suffix}``
    (the original suffix is kept): ``images="link"`` hard-links (copying where that fails), ``"copy"`` copies,
    ``"none"`` writes no images. Coordinates are written 1-based (``xmin = x1 + 1``, ``xmax = x2``: the
    devkit's pixel indices), or with ``one_based=False`` as the 0-based coordinates CVAT and Datumaro write
    (``xmin = x1``). Integers stay integers, other values get the shortest text that reads back to the same
    ``float32``, so ``read_voc`` reproduces sizes, boxes, labels and flags of a 1-based file exactly (ids become
    ``f"{year}/{stem}"``).
    """
    check_choice("write_voc", "images", images, IMAGE_MODES)
    voc_dir = Path(voc_dir)
    stems = [r.image_id.rsplit("/", 1)[-1] for r in dataset]
    _check_writable(dataset, stems)
    offsets = ONE_BASED_OFFSETS if one_based else ZERO_BASED_OFFSETS
    for record, stem in zip(dataset, stems):
        filename = stem + record.file_name.suffix
        xml = _record_xml(record, filename, dataset.class_names, voc_dir.name, offsets)
        atomic_write_text(voc_dir / "Annotations" / f"{stem}.xml", xml)
        place_image(record.file_name, voc_dir / "JPEGImages" / filename, images)
    atomic_write_text(voc_dir / "ImageSets" / "Main" / f"{image_set}.txt", "".join(f"{s}\n" for s in stems))
    if any(":" in name or "\n" in name for name in dataset.class_names):
        warnings.warn(
            f"{voc_dir}: no labelmap.txt written: a class name holds ':' or a line break, which that "
            f"file cannot hold ({dataset.class_names})",
            stacklevel=2,
        )
    else:
        atomic_write_text(
            voc_dir / "labelmap.txt",
            "# label:color_rgb:parts:actions\n" + "".join(f"{name}:::\n" for name in dataset.class_names),
        )
    return voc_dir


def _check_writable(dataset: DetectionDataset, stems: list[str]) -> None:
    bad = [s for s in stems if not s or s in (".", "..") or "\\" in s or any(c.isspace() for c in s)]
    if bad:
        raise ValueError(
            f"cannot use image ids ending in {bad[:5]} as VOC file names; give the records "
            "image ids like '2007/000005' or '000005'"
        )
    seen: dict[str, str] = {}
    for record, stem in zip(dataset, stems):
        if stem in seen:
            raise ValueError(
                f"image ids {seen[stem]!r} and {record.image_id!r} would both be written as "
                f"Annotations/{stem}.xml; write them to different VOC directories"
            )
        seen[stem] = record.image_id
        if record.num_boxes and not (1 <= record.labels.min() and record.labels.max() <= dataset.num_classes):
            raise ValueError(
                f"image {record.image_id!r}: labels must be in 1..{dataset.num_classes}; "
                f"found {sorted(set(record.labels.tolist()))}"
            )


def _record_xml(
    record: ImageRecord,
    filename: str,
    class_names: list[str],
    folder: str,
    offsets: tuple[float, ...] = ONE_BASED_OFFSETS,
) -> str:
    root = ET.Element("annotation")
    _sub(root, "folder", folder)
    _sub(root, "filename", filename)
    size = _sub(root, "size")
    for tag, value in (("width", record.width), ("height", record.height), ("depth", 3)):
        _sub(size, tag, str(int(value)))
    _sub(root, "segmented", "0")
    for box, label, difficult, crowd in zip(record.boxes, record.labels, record.difficult, record.iscrowd):
        obj = _sub(root, "object")
        _sub(obj, "name", class_names[label - 1])
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", "0")
        _sub(obj, "difficult", str(int(difficult)))
        if crowd:
            _sub(obj, "iscrowd", "1")
        bndbox = _sub(obj, "bndbox")
        for tag, value, offset in zip(_COORDS, box, offsets):
            _sub(bndbox, tag, _coordinate_text(value, offset))
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _coordinate_text(value: np.float32, offset: float) -> str:
    """Shortest text ``t`` with ``float32(float(t) - offset) == value`` (the reader's arithmetic); an integral
    value is written without a decimal point."""
    number = shortest_float(value, float(value) + offset, lambda v: v - offset)
    return str(int(number)) if number.is_integer() else repr(number)
