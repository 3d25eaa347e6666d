"""COCO files straight into a :class:`~activedet.data.index.PoolIndex`, fast and in bounded memory.

The file is decoded by msgspec into typed rows holding only the fields the reader uses (no dictionary per
object), then turned into columns and checked with array operations. The result is the dataset
:func:`activedet.data.coco.read_coco` returns, record for record. Whenever the fast pass meets anything that is
not plainly valid — a wrong type, a missing field, a duplicate id, a box outside its image, a background
category, string image ids, an unreadable image — it hands the file to :func:`~activedet.data.coco.scan_coco`,
which reports every problem with its location (and applies ``box_policy``), so messages and results are the
reader's own. A clean million-image file takes the fast pass only.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from pathlib import Path

import msgspec
import numpy as np

from ..constants import DEFAULT_BOX_POLICY, DEFAULT_CLIP_TOLERANCE
from .coco import scan_coco
from .index import DIFFICULT, ISCROWD, PoolIndex, StringColumn
from .records import Problem
from .validate import check_image_file, check_options, raise_for_problems

__all__ = ["build_coco_index", "scan_coco_index"]


class _Image(msgspec.Struct, gc=False):
    id: int
    file_name: str
    width: int
    height: int


class _Annotation(msgspec.Struct, gc=False):
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: float = math.nan  # absent: unknown (null is an error, as in the reader)
    iscrowd: int | bool = 0
    difficult: int | bool = 0


class _Category(msgspec.Struct, gc=False):
    id: int
    name: str


class _Sections(msgspec.Struct, gc=False):
    images: msgspec.Raw
    annotations: msgspec.Raw
    categories: list[_Category]


class _NotPlain(Exception):
    """The fast pass cannot vouch for the file; the detailed reader takes over."""


def build_coco_index(
    json_path: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    check_images: bool = True,
) -> PoolIndex:
    """The :class:`PoolIndex` of a COCO file (arguments as :func:`~activedet.data.coco.read_coco`).

    Raises:
        DatasetError: listing every error found, exactly as ``read_coco`` does.
    """
    index, problems = scan_coco_index(
        json_path,
        image_root=image_root,
        box_policy=box_policy,
        clip_tolerance=clip_tolerance,
        check_images=check_images,
    )
    raise_for_problems(problems, f"COCO file {json_path}")
    return index


def scan_coco_index(
    json_path: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    check_images: bool = True,
) -> tuple[PoolIndex, list[Problem]]:
    """Like :func:`build_coco_index` but returns ``(index, problems)`` instead of raising (as ``scan_coco``)."""
    check_options("read_coco", box_policy=box_policy, clip_tolerance=clip_tolerance)
    root = Path(os.path.abspath(Path(json_path).parent if image_root is None else image_root))
    try:
        return _fast(Path(json_path), root, check_images), []
    except (_NotPlain, msgspec.DecodeError, msgspec.ValidationError, OSError):
        dataset, problems = scan_coco(
            json_path,
            image_root=image_root,
            box_policy=box_policy,
            clip_tolerance=clip_tolerance,
            check_images=check_images,
        )
        return PoolIndex.from_dataset(dataset), problems


def _fast(json_path: Path, root: Path, check_images: bool) -> PoolIndex:
    with open(json_path, "rb") as f:
        data = f.read()
    sections = msgspec.json.decode(data, type=_Sections)
    categories = sorted((c.id, c.name) for c in sections.categories)
    category_ids = np.array([c for c, _ in categories], np.int64)
    names = [n for _, n in categories]
    if (
        len(set(category_ids.tolist())) != len(categories)
        or len(set(names)) != len(names)
        or any(n.strip().lower() == "background" for n in names)
        or 0 in category_ids
    ):
        raise _NotPlain("categories need the detailed reader")

    images = msgspec.json.decode(sections.images, type=list[_Image])
    image_ids, width, height = (
        _column(images, name, dtype) for name, dtype in (("id", np.int64), ("width", np.int32), ("height", np.int32))
    )
    file_names = list(map(attrgetter("file_name"), images))
    del images
    order = np.argsort(image_ids, kind="stable")
    if (
        np.any(width <= 0)
        or np.any(height <= 0)
        or np.any(np.diff(image_ids[order]) == 0)
        or _distinct_files(root, file_names) < len(file_names)
    ):
        raise _NotPlain("image entries need the detailed reader")

    annotations = msgspec.json.decode(sections.annotations, type=list[_Annotation])
    del sections, data
    n = len(annotations)
    owner_ids, cats, crowd, difficult = (
        _column(annotations, name, np.int64) for name in ("image_id", "category_id", "iscrowd", "difficult")
    )
    area = _column(annotations, "area", np.float64)
    xywh = np.array(list(map(attrgetter("bbox"), annotations)), np.float64).reshape(-1, 4)
    del annotations

    position = np.searchsorted(image_ids[order], owner_ids)
    position[position == len(order)] = 0
    rows = order[position] if len(order) else position
    label_pos = np.searchsorted(category_ids, cats)
    label_pos[label_pos == len(category_ids)] = 0
    known = ((image_ids[rows] == owner_ids) if len(order) else np.zeros(n, bool)) & (category_ids[label_pos] == cats)
    flags_ok = np.isin(crowd, (0, 1)) & np.isin(difficult, (0, 1))
    area_ok = np.isnan(area) | (np.isfinite(area) & (area >= 0))
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
    values = boxes.astype(np.float64)
    valid = (
        np.isfinite(values).all(axis=1)
        & (values[:, 2] > values[:, 0])
        & (values[:, 3] > values[:, 1])
        & (values[:, :2] >= 0).all(axis=1)
        & (values[:, 2] <= width[rows])
        & (values[:, 3] <= height[rows])
    )
    if not np.all(known & flags_ok & area_ok & valid):
        raise _NotPlain("annotations need the detailed reader")
    if check_images:
        _check_headers(root, file_names, width, height, json_path.name)

    by_image = np.argsort(rows, kind="stable")  # boxes grouped by image row, file order kept within an image
    box_start = np.zeros(len(width) + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=len(width)), out=box_start[1:])
    flags = (difficult[by_image] * DIFFICULT + crowd[by_image] * ISCROWD).astype(np.uint8)
    return PoolIndex(
        StringColumn.from_strings([str(i) for i in image_ids.tolist()]),
        StringColumn.from_strings(file_names),
        width,
        height,
        box_start,
        boxes[by_image],
        (label_pos[by_image] + 1).astype(np.int32),
        flags,
        area[by_image],
        names,
        category_ids.tolist(),
        root,
    )


def _column(rows: list, name: str, dtype) -> np.ndarray:
    return np.fromiter(map(attrgetter(name), rows), dtype, len(rows))


def _distinct_files(root: Path, file_names: list[str]) -> int:
    """How many different files the names point at once resolved against ``root`` (as the reader resolves them)."""
    text = "\n".join(file_names)
    # a name that is absolute, holds a "." or ".." segment, "//", "\\" or a trailing "/" may name the same file as
    # another name; without any (each checked with a fast substring search), names and files correspond one to one
    marks = ("//", "\\", "/\n", "\n/", "/.", "\n.")
    if not (any(m in text for m in marks) or text.startswith(("/", ".")) or text.endswith("/")):
        return len(set(file_names))
    return len({os.path.abspath(os.path.join(root, n)) for n in file_names})


def _check_headers(root: Path, file_names: list[str], width: np.ndarray, height: np.ndarray, name: str) -> None:
    """Every image header read in parallel threads (I/O bound); any problem hands over to the detailed reader."""

    def check(i: int) -> bool:
        path = Path(os.path.abspath(root / file_names[i]))
        return not check_image_file(path, int(width[i]), int(height[i]), f"{name}: images[{i}].file_name")

    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 4)) as pool:
        if not all(pool.map(check, range(len(file_names)), chunksize=256)):
            raise _NotPlain("an image file needs the detailed reader")
