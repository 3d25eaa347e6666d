"""One entry point for the dataset formats: read, write and validate by format name.

``fmt`` is one of :data:`FORMATS`; ``path`` is what the format's reader takes (VOCdevkit or ``VOC{year}``
directory, COCO JSON file, YOLO root directory, ImageFolder root, CIFAR binary directory) and ``**options`` are
that reader's or writer's keyword arguments (see :func:`~activedet.data.voc.read_voc`,
:func:`~activedet.data.coco.read_coco`, :func:`~activedet.data.yolo.read_yolo`,
:func:`~activedet.data.classification.read_imagefolder`, :func:`~activedet.data.classification.read_cifar` and
their writers).

The classification formats ``imagefolder`` and ``cifar`` have no dataset writer here: their writers
(:func:`~activedet.data.classification.write_imagefolder`, :func:`~activedet.data.classification.write_cifar`)
take pixel arrays and labels, not a :class:`DetectionDataset`, so :func:`write_dataset` accepts only
:data:`WRITABLE_FORMATS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..constants import DATA_FORMATS
from . import classification, coco, voc, yolo
from .records import DetectionDataset, Problem
from .validate import check_choice, format_problems

__all__ = ["FORMATS", "WRITABLE_FORMATS", "read_dataset", "write_dataset", "validate_path", "format_problems"]

FORMATS = DATA_FORMATS
WRITABLE_FORMATS = ("voc", "coco", "yolo")

_READERS: dict[str, Callable[..., DetectionDataset]] = {
    "voc": voc.read_voc,
    "coco": coco.read_coco,
    "yolo": yolo.read_yolo,
    "imagefolder": classification.read_imagefolder,
    "cifar": classification.read_cifar,
}
_SCANNERS: dict[str, Callable[..., tuple[DetectionDataset, list[Problem]]]] = {
    "voc": voc.scan_voc,
    "coco": coco.scan_coco,
    "yolo": yolo.scan_yolo,
    "imagefolder": classification.scan_imagefolder,
    "cifar": classification.scan_cifar,
}
_WRITERS: dict[str, Callable[..., Path]] = {"voc": voc.write_voc, "coco": coco.write_coco, "yolo": yolo.write_yolo}


def read_dataset(fmt: str, path: str | os.PathLike, **options) -> DetectionDataset:
    """Read the dataset at ``path`` in format ``fmt``; raises ``DatasetError`` listing every error."""
    check_choice("read_dataset", "fmt", fmt, FORMATS)
    return _READERS[fmt](path, **options)


def write_dataset(fmt: str, dataset: DetectionDataset, path: str | os.PathLike, **options) -> Path:
    """Write ``dataset`` to ``path`` in format ``fmt`` (one of :data:`WRITABLE_FORMATS`) and return the path."""
    check_choice("write_dataset", "fmt", fmt, WRITABLE_FORMATS)
    return _WRITERS[fmt](dataset, path, **options)


def validate_path(fmt: str, path: str | os.PathLike, **options) -> list[Problem]:
    """Every problem (errors and warnings) of the dataset at ``path``, without raising for them.

    This backs ``activedet validate FORMAT PATH``; render the list with :func:`format_problems`. ``decode=True``
    (``--decode``) also decodes every image file in full, in parallel (a truncated file passes the header check).
    As the command, VOC without ``sets`` checks every image set found, one at a time
    (:func:`~activedet.data.voc.validate_voc`), and CIFAR without ``split`` both splits, each problem once.
    Invalid ``options`` (e.g. an unknown ``box_policy``) still raise ``ValueError``/``TypeError``.
    """
    check_choice("validate_path", "fmt", fmt, FORMATS)
    decode = options.pop("decode", False)
    if not Path(path).exists():
        return [
            Problem(
                str(path),
                f"path does not exist: {os.path.abspath(path)}",
                "give the VOCdevkit directory (voc), the JSON file (coco), the dataset root (yolo, "
                "imagefolder) or the cifar-10-batches-bin / cifar-100-binary directory (cifar)",
            )
        ]
    if fmt == "voc" and options.get("sets") is None:
        from .voc import validate_voc

        options.pop("sets", None)
        return validate_voc(path, decode=decode, **options)[2]
    if fmt == "cifar" and options.get("split") is None:
        options.pop("split", None)
        both = (
            p for split in ("train", "test") for p in validate_path(fmt, path, split=split, decode=decode, **options)
        )
        return list(dict.fromkeys(both))
    dataset, problems = _SCANNERS[fmt](path, **options)
    if decode:  # the whole of every image file, not only its header (those already reported are left out)
        from .images import decode_problems

        reported = "\n".join(p.message for p in problems)  # e.g. an unreadable header: listed once
        base = Path(path) if Path(path).is_dir() else Path(path).parent
        files = [
            (r.file_name, os.path.relpath(r.file_name, base))
            for r in dataset.records
            if r.image_index is None and str(r.file_name) not in reported and Path(r.file_name).is_file()
        ]
        problems = problems + decode_problems(files)
    return problems
