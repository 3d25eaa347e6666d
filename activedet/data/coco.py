"""COCO JSON detection annotations: reader, writer and validation.

Conventions:

* ``bbox`` in the file is ``[x, y, width, height]`` in pixels (0-based, continuous); records hold
  ``(x, y, x + width, y + height)``.
* Category ids (ints, e.g. ``1, 3, 90``) become contiguous labels ``1..C`` in ascending id order;
  ``dataset.category_ids[label - 1]`` maps a label back to its id. Label 0 is the background, so a category that
  is the background is not a class: one named ``background`` (any case) or with id 0, when no annotation uses it
  (kwcoco writes ``{"id": 0, "name": "background"}``), is left out with a warning. A ``background`` category that
  annotations use is an error; a category with id 0 and another name that annotations use is an ordinary class
  (files with 0-based ids).
* ``ImageRecord.image_id`` is ``str(image["id"])``; ``file_name`` is resolved against ``image_root`` (default: the
  JSON file's directory) unless it is absolute.
* Images without annotations are kept as empty images (``N = 0``). ``iscrowd`` is kept, and so is ``difficult``
  (not standard COCO: optional, 0 or 1; written only for difficult boxes, ignored by pycocotools). ``area``
  (optional, a number ``>= 0``; the segment area in the official files) is kept in ``ImageRecord.area`` (``NaN``
  where absent): COCO evaluation sorts objects into its small/medium/large buckets by it, as pycocotools does.
  Other annotation fields (``segmentation``, annotation ids) are not read (:func:`write_coco` writes them).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..constants import DEFAULT_BOX_POLICY, DEFAULT_CLIP_TOLERANCE
from .records import DetectionDataset, ImageRecord, Problem, unparsable
from .validate import check_boxes, check_image_file, check_options, find_duplicates, raise_for_problems, shortest_float

__all__ = ["read_coco", "scan_coco", "write_coco"]

JSON_HINT = "see https://cocodataset.org/#format-data for the object detection format"


def read_coco(
    json_path: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    check_images: bool = True,
) -> DetectionDataset:
    """Read a COCO detection JSON file into a :class:`DetectionDataset`.

    Args:
        json_path: the annotation file (``instances_train2017.json`` ...).
        image_root: directory relative ``file_name`` entries are resolved against; default: the JSON's directory.
        box_policy, clip_tolerance: what to do with boxes outside the image (see :mod:`activedet.data.validate`);
            ``clip_tolerance`` is in pixels.
        check_images: open every image header to check that it exists, is readable, and has the annotated size.

    Raises:
        DatasetError: listing every error found (warnings are issued as one ``DatasetWarning``).
    """
    dataset, problems = scan_coco(
        json_path,
        image_root=image_root,
        box_policy=box_policy,
        clip_tolerance=clip_tolerance,
        check_images=check_images,
    )
    raise_for_problems(problems, f"COCO file {json_path}")
    return dataset


def scan_coco(
    json_path: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    check_images: bool = True,
) -> tuple[DetectionDataset, list[Problem]]:
    """Like :func:`read_coco` but never raises for dataset problems: returns ``(dataset, problems)``.

    The dataset is only trustworthy when no problem has ``severity == "error"``.
    """
    check_options("read_coco", box_policy=box_policy, clip_tolerance=clip_tolerance)
    json_path = Path(json_path)
    image_root = Path(os.path.abspath(json_path.parent if image_root is None else image_root))
    name = json_path.name
    data, problems = _load_json(json_path)
    if data is None:
        return DetectionDataset([], [], root=image_root), problems
    category_ids, class_names = _parse_categories(data, name, problems)
    category_ids, class_names = _without_background(data, name, category_ids, class_names, problems)
    images = _parse_images(data, name, image_root, problems)
    objects = _parse_annotations(data, name, images, {c: i + 1 for i, c in enumerate(category_ids)}, problems)
    records = []
    for image_id, image in images.items():
        if image is None:
            continue
        where, path, width, height = image
        rows = objects.get(image_id, [])
        if check_images:
            hint = (
                f"put the image at that path, fix the path in the annotations, or set image_root (config key "
                f"'image_root', CLI --image-root) to the directory file_name is relative to (now {image_root})"
            )
            problems += check_image_file(path, width, height, f"{where}.file_name", hint=hint)
        boxes, box_problems = check_boxes(
            [r[1] for r in rows],
            width,
            height,
            lambda i, rows=rows: rows[i][0],
            box_policy=box_policy,
            clip_tolerance=clip_tolerance,
            quote=lambda i, rows=rows: f"bbox={json.dumps(rows[i][6])}",
        )
        problems += box_problems
        records.append(
            ImageRecord(
                str(image_id),
                path,
                width,
                height,
                boxes,
                [r[2] for r in rows],
                iscrowd=[r[3] for r in rows],
                difficult=[r[4] for r in rows],
                area=[r[5] for r in rows],
            )
        )
    return DetectionDataset(records, class_names, category_ids, root=image_root), problems


def _load_json(json_path: Path) -> tuple[dict | None, list[Problem]]:
    name = json_path.name
    try:
        text = json_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(name, f"annotation file not found: {json_path}", "check the path")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(name, f"cannot read {json_path}: {exc}", "check that it is a UTF-8 JSON file")]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [
            unparsable(
                f"{name}:{exc.lineno}:{exc.colno}",
                json_path,
                "JSON",
                exc.msg,
                "fix the JSON syntax (a truncated file usually means an interrupted download)",
            )
        ]
    if not isinstance(data, dict):
        return None, [
            Problem(
                name,
                f"expected a JSON object with 'images', 'annotations' and 'categories'; found {type(data).__name__}",
                JSON_HINT,
            )
        ]
    return data, []


def json_field(
    entry: dict, key: str, where: str, kinds: tuple, expected: str, problems: list[Problem], required: bool = True
):
    """``entry[key]`` if present and of one of ``kinds`` (never ``bool`` unless asked), else ``None`` + problem."""
    if key not in entry:
        if required:
            problems.append(Problem(f"{where}.{key}", f"missing required field {key!r} ({expected})", JSON_HINT))
        return None
    value = entry[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        problems.append(Problem(f"{where}.{key}", f"expected {expected}; found {json.dumps(value)[:80]}", JSON_HINT))
        return None
    return value


def json_entries(data: dict, key: str, name: str, problems: list[Problem]) -> list[tuple[str, dict]]:
    """``(location, entry)`` for each object in the top-level list ``data[key]``."""
    hint = "add an empty list if there are none" if key == "annotations" else JSON_HINT
    if key not in data:
        problems.append(Problem(name, f"missing required top-level field {key!r} (a list)", hint))
        return []
    if not isinstance(data[key], list):
        problems.append(Problem(f"{name}: {key}", f"expected a list; found {type(data[key]).__name__}", JSON_HINT))
        return []
    out = []
    for i, entry in enumerate(data[key]):
        if isinstance(entry, dict):
            out.append((f"{name}: {key}[{i}]", entry))
        else:
            problems.append(
                Problem(f"{name}: {key}[{i}]", f"expected an object; found {json.dumps(entry)[:80]}", JSON_HINT)
            )
    return out


def _parse_categories(data: dict, name: str, problems: list[Problem]) -> tuple[list[int], list[str]]:
    """Category ids in ascending order and their names."""
    found = []
    for where, entry in json_entries(data, "categories", name, problems):
        cat_id = json_field(entry, "id", where, (int,), "an integer id", problems)
        cat_name = json_field(entry, "name", where, (str,), "a string", problems)
        if cat_id is not None and cat_name is not None:
            found.append((cat_id, cat_name, where))
    problems += find_duplicates(((c, f"{w}.id") for c, _, w in found), "category id", "give every category its own id")
    problems += find_duplicates(
        ((n, f"{w}.name") for _, n, w in found), "category name", "give every category its own name"
    )
    unique = sorted({c: n for c, n, _ in reversed(found)}.items())
    return [c for c, _ in unique], [n for _, n in unique]


def _without_background(
    data: dict, name: str, category_ids: list[int], class_names: list[str], problems: list[Problem]
) -> tuple[list[int], list[str]]:
    """Leave out the category that is the background (see the module notes), saying so once."""
    annotations = data.get("annotations") if isinstance(data.get("annotations"), list) else []
    used = Counter(a.get("category_id") for a in annotations if isinstance(a, dict))
    where = {
        c.get("id"): f"{name}: categories[{i}]"
        for i, c in enumerate(data.get("categories") or [])
        if isinstance(c, dict)
    }
    keep = []
    for cat_id, cat_name in zip(category_ids, class_names):
        named = cat_name.strip().lower() == "background"
        if named and used[cat_id]:
            problems.append(
                Problem(
                    where[cat_id],
                    f"category {cat_id} {cat_name!r} is the background, but "
                    f"{used[cat_id]} annotation(s) use it (label 0 means no object)",
                    "remove those annotations, or rename the category if it is a real class",
                    kind="annotations of the background category",
                )
            )
        elif named or (cat_id == 0 and not used[cat_id]):
            problems.append(
                Problem(
                    where[cat_id],
                    f"category {cat_id} {cat_name!r} has no annotations and is taken "
                    "as the background (label 0), not as a class",
                    "nothing to do; remove the category from the file to silence this",
                    severity="warning",
                    kind="background category",
                )
            )
            continue
        keep.append((cat_id, cat_name))
    return [c for c, _ in keep], [n for _, n in keep]


def _parse_images(data: dict, name: str, image_root: Path, problems: list[Problem]) -> dict:
    """``{coco image id: (location, absolute path, width, height) or None if invalid}`` in file order."""
    images, paths, seen = {}, [], {}
    for where, entry in json_entries(data, "images", name, problems):
        image_id = json_field(entry, "id", where, (int, str), "an integer id", problems)
        file_name = json_field(entry, "file_name", where, (str,), "a relative or absolute path", problems)
        width = json_field(entry, "width", where, (int,), "a positive integer (pixels)", problems)
        height = json_field(entry, "height", where, (int,), "a positive integer (pixels)", problems)
        for key, value in (("width", width), ("height", height)):
            if value is not None and value <= 0:
                problems.append(
                    Problem(
                        f"{where}.{key}", f"expected a positive integer (pixels); found {value}", "fix the image size"
                    )
                )
        if image_id is None:
            continue
        if str(image_id) in seen:
            problems.append(
                Problem(
                    f"{where}.id",
                    f"duplicate image id {image_id!r} (first seen at {seen[str(image_id)]})",
                    "give every image its own id",
                )
            )
            continue
        seen[str(image_id)] = f"{where}.id"
        images[image_id] = None  # known, but unusable until proven valid: its annotations are not reported again
        if None in (file_name, width, height) or width <= 0 or height <= 0:
            continue
        path = Path(os.path.abspath(image_root / file_name))
        paths.append((str(path), f"{where}.file_name"))
        images[image_id] = (where, path, width, height)
    problems += find_duplicates(paths, "image file", "list every image file once")
    return images


def _parse_annotations(data: dict, name: str, images: dict, labels: dict[int, int], problems: list[Problem]) -> dict:
    """``{coco image id: [(location of bbox, xyxy, label, iscrowd, difficult, area or NaN), ...]}`` in file
    order."""
    objects: dict = {}
    for where, entry in json_entries(data, "annotations", name, problems):
        image_id = json_field(entry, "image_id", where, (int, str), "the id of an image in 'images'", problems)
        row = _parse_annotation(entry, where, labels, problems)
        if image_id is not None and image_id not in images:
            problems.append(
                Problem(
                    f"{where}.image_id",
                    f"refers to image id {image_id!r}, which is not in 'images'",
                    "add the image to 'images' or remove this annotation",
                )
            )
        elif row is not None and images.get(image_id) is not None:  # an invalid image has its own problem
            objects.setdefault(image_id, []).append(row)
    return objects


def _parse_annotation(
    entry: dict, where: str, labels: dict[int, int], problems: list[Problem]
) -> tuple[str, tuple, int, bool, bool, float, list] | None:
    category_id = json_field(entry, "category_id", where, (int,), "the id of a category", problems)
    bbox = json_field(entry, "bbox", where, (list,), "[x, y, width, height] in pixels", problems)
    iscrowd = json_field(entry, "iscrowd", where, (int, bool), "0 or 1", problems, required=False) or 0
    difficult = json_field(entry, "difficult", where, (int, bool), "0 or 1", problems, required=False) or 0
    count = len(problems)
    area = json_field(entry, "area", where, (int, float), "a number >= 0 (square pixels)", problems, required=False)
    if area is not None and not (math.isfinite(area) and area >= 0):
        problems.append(
            Problem(
                f"{where}.area",
                f"expected a number >= 0 (square pixels); found {area!r}",
                "fix the area or remove the field (the box area is used then)",
            )
        )
    if category_id is not None and category_id not in labels:
        problems.append(
            Problem(
                f"{where}.category_id",
                f"refers to category id {category_id}, which is not in 'categories' (ids: {sorted(labels)})",
                "add the category to 'categories' or fix the id",
            )
        )
    if bbox is not None and (len(bbox) != 4 or not all(is_number(v) for v in bbox)):
        problems.append(
            Problem(
                f"{where}.bbox", f"expected [x, y, width, height] (4 numbers); found {json.dumps(bbox)[:80]}", JSON_HINT
            )
        )
    for key, flag in (("iscrowd", iscrowd), ("difficult", difficult)):
        if flag not in (0, 1):
            problems.append(Problem(f"{where}.{key}", f"expected 0 or 1; found {flag!r}", JSON_HINT))
    if len(problems) > count or None in (category_id, bbox):
        return None
    x, y, w, h = (float(v) for v in bbox)
    return (
        f"{where}.bbox",
        (x, y, x + w, y + h),
        labels[category_id],
        bool(iscrowd),
        bool(difficult),
        float("nan") if area is None else float(area),
        bbox,
    )


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_coco(
    dataset: DetectionDataset, json_path: str | os.PathLike, *, image_root: str | os.PathLike | None = None
) -> Path:
    """Write ``dataset`` as a COCO detection JSON file, atomically (temporary file + ``os.replace``).

    ``file_name`` is written relative to ``image_root`` when given and the image is under it, else absolute.
    Image ids: a record whose ``image_id`` is an int-like string (``"42"``) keeps it; any other record gets the
    next unused int, in record order (deterministic). Category ids come from ``dataset.category_ids`` (default
    ``1..C``); ``bbox`` is ``[x, y, w, h]`` pixels with the fewest digits that read back to the same float32,
    ``area`` the record's ``area`` where known, else ``w * h``, ``segmentation: []`` (a box, as CVAT writes one);
    difficult boxes get ``"difficult": 1``. Reading the file back with :func:`read_coco` reproduces ids, sizes,
    boxes, labels, flags, known areas, class names and
    category ids exactly.
    Returns ``json_path``.
    """
    json_path = Path(json_path)
    category_ids = dataset.category_ids or list(range(1, dataset.num_classes + 1))
    image_ids = _coco_image_ids([r.image_id for r in dataset])
    images, annotations = [], []
    for record, image_id in zip(dataset, image_ids):
        images.append(
            {
                "id": image_id,
                "file_name": _file_name(record.file_name, image_root),
                "width": int(record.width),
                "height": int(record.height),
            }
        )
        for box, label, crowd, difficult, area in zip(
            record.boxes, record.labels, record.iscrowd, record.difficult, record.area
        ):
            if not 1 <= label <= len(category_ids):
                raise ValueError(
                    f"image {record.image_id!r}: label {label} is outside 1..{len(category_ids)} "
                    f"(there are {len(category_ids)} class names)"
                )
            x, y, w, h = xyxy_to_xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[label - 1],
                    "bbox": [json_number(v) for v in (x, y, w, h)],
                    "area": json_number(w * h if math.isnan(area) else area),
                    "iscrowd": int(crowd),
                    "segmentation": [],
                }
            )
            if difficult:
                annotations[-1]["difficult"] = 1
    categories = [{"id": c, "name": n, "supercategory": ""} for c, n in zip(category_ids, dataset.class_names)]
    data = {
        "info": {"description": "written by activedet"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    atomic_write_text(json_path, json.dumps(data, allow_nan=False))
    return json_path


def _coco_image_ids(ids: list[str]) -> list[int]:
    duplicated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicated:
        raise ValueError(f"image ids must be unique to write COCO; repeated: {duplicated[:10]}")
    int_like = {i: int(i) for i in ids if _is_int_like(i)}
    next_id = max(int_like.values(), default=0) + 1
    out = []
    for image_id in ids:
        if image_id in int_like:
            out.append(int_like[image_id])
        else:
            out.append(next_id)
            next_id += 1
    return out


def _is_int_like(text: str) -> bool:
    try:
        return str(int(text)) == text
    except ValueError:
        return False


def _file_name(path: Path, image_root: str | os.PathLike | None) -> str:
    path = Path(os.path.abspath(path))
    if image_root is not None:
        try:
            return path.relative_to(os.path.abspath(image_root)).as_posix()
        except ValueError:  # not under image_root: keep it absolute rather than writing "../.."
            pass
    return str(path)


def xyxy_to_xywh(box: np.ndarray) -> tuple[float, float, float, float]:
    """``[x, y, w, h]`` with the fewest digits such that :func:`read_coco` (``x2 = x + w`` in float64, then
    float32) gives back exactly the float32 ``box``."""
    x = shortest_float(box[0], float(box[0]), lambda v: v)
    y = shortest_float(box[1], float(box[1]), lambda v: v)
    w = shortest_float(box[2], float(box[2]) - x, lambda v: x + v)
    h = shortest_float(box[3], float(box[3]) - y, lambda v: y + v)
    return x, y, w, h


def json_number(value: float) -> int | float:
    """JSON-friendly number: integers without ``.0``; other floats written exactly (shortest repr)."""
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value
