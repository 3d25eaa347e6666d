"""One Pascal VOC annotation file, element by element: the 20 VOC classes, the coordinate conventions and the
reading of ``<size>`` and ``<object>`` (shared by :mod:`activedet.data.voc` and the folder importers of
:mod:`activedet.interop.folders`).

``read_object`` converts ``xyxy = (xmin, ymin, xmax, ymax) - offsets``: :data:`ONE_BASED_OFFSETS` for the
devkit's 1-based pixel indices, :data:`ZERO_BASED_OFFSETS` for the 0-based files CVAT and Datumaro write.
Problems are appended to the caller's list, located with XPath's 1-based indices (``object[2]``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from .records import Problem

__all__ = ["VOC_CLASSES", "ONE_BASED_OFFSETS", "ZERO_BASED_OFFSETS", "read_size", "read_object"]

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

_COORDS = ("xmin", "ymin", "xmax", "ymax")
ONE_BASED_OFFSETS = (1.0, 1.0, 0.0, 0.0)  # xyxy = (xmin, ymin, xmax, ymax) - offsets
ZERO_BASED_OFFSETS = (0.0, 0.0, 0.0, 0.0)  # the 0-based convention (CVAT, Datumaro): xyxy = (xmin, ymin, xmax, ymax)


def _describe_classes(class_names: Sequence[str]) -> str:
    if tuple(class_names) == VOC_CLASSES:
        return "the class names are the 20 Pascal VOC classes (the default when no class names are given)"
    names = list(class_names)
    return (
        f"valid names are {names}" if len(names) <= 12 else f"valid names are {names[:12]} and {len(names) - 12} more"
    )


def _text(element: ET.Element, path: str) -> str | None:
    found = element.find(path)
    return None if found is None or found.text is None or not found.text.strip() else found.text.strip()


def read_size(xml: ET.Element, where: str, problems: list[Problem]) -> tuple[int, int] | None:
    """``(width, height)`` from ``<size>``; ``None`` when missing or zero (the caller reads the image)."""
    values = []
    for tag in ("width", "height"):
        text = _text(xml, f"size/{tag}")
        try:
            value = float(text) if text is not None else 0.0
        except ValueError:
            value = None
        if value is None or not value.is_integer() or value < 0:
            problems.append(
                Problem(
                    f"{where}: size/{tag}",
                    f"expected a non-negative integer (pixels); found {text!r}",
                    "fix the image size in the XML",
                )
            )
            value = 0.0
        values.append(int(value))
    return (values[0], values[1]) if min(values) > 0 else None


def read_object(
    obj: ET.Element,
    where: str,
    class_index: dict[str, int],
    problems: list[Problem],
    offsets: tuple[float, ...] = ONE_BASED_OFFSETS,
    unknown_hint: str = "fix the name or give every class name",
    *,
    known: str | None = None,
) -> tuple[str, list[float], int, bool, bool, str] | None:
    """``(location, xyxy, label, difficult, iscrowd, the box as written)`` of one ``<object>``, or ``None``
    (problems appended). ``xyxy = (xmin, ymin, xmax, ymax) - offsets`` (the devkit's 1-based indices by default).
    ``known`` describes the valid class names (default: lists them); ``unknown_hint`` is the advice for a class
    name not in ``class_index`` (a reader gives it its exact fix once the whole dataset is read:
    :func:`_with_class_fix`)."""
    count = len(problems)
    name = _text(obj, "name")
    if name is None:
        problems.append(Problem(f"{where}/name", "missing required element <name>", "add the class name"))
    elif name not in class_index:
        problems.append(
            Problem(
                f"{where}/name",
                f"unknown class name {name!r}; {known or _describe_classes(list(class_index))}",
                unknown_hint,
                kind="unknown class name",
                value=name,
            )
        )
    xyxy, written = [], []
    for tag, offset in zip(_COORDS, offsets):
        text = _text(obj, f"bndbox/{tag}")
        if text is None:
            problems.append(
                Problem(
                    f"{where}/bndbox/{tag}",
                    f"missing required element <{tag}>",
                    "every <bndbox> needs <xmin>, <ymin>, <xmax> and <ymax> (pixels)",
                )
            )
            continue
        written.append(f"{tag}={text}")
        try:
            xyxy.append(float(text) - offset)
        except ValueError:
            problems.append(
                Problem(f"{where}/bndbox/{tag}", f"expected a number (pixels); found {text!r}", "fix the coordinate")
            )
    difficult = _flag(obj, "difficult", where, problems)
    iscrowd = _flag(obj, "iscrowd", where, problems)
    if len(problems) > count:
        return None
    return where, xyxy, class_index[name], difficult, iscrowd, ", ".join(written)


def _flag(obj: ET.Element, tag: str, where: str, problems: list[Problem]) -> bool:
    text = _text(obj, tag)
    if text not in (None, "0", "1"):
        problems.append(Problem(f"{where}/{tag}", f"expected 0 or 1; found {text!r}", f"fix <{tag}>"))
    return text == "1"
