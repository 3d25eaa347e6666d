"""Reading Label Studio tasks into labels: the tasks of its JSON export (and JSON-MIN's rows, made into tasks by
:func:`~activedet.interop.labelstudio_exports.read_labelstudio_min`), and the mapping of the image names in its
exports back to image ids (:func:`labelstudio_image_id`). The rules (which annotation of a task is read, how
percentages become pixels): :func:`activedet.interop.labelstudio.read_labelstudio_export`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from ..data.records import Problem
from .common import LS_HINT, Collector, LabelImport, image_id_from_name, read_number, ref_path, ref_stem, short_repr

__all__ = ["read_ls_tasks", "labelstudio_image_id"]


def read_ls_tasks(
    tasks: list, path: Path, out: Collector, images: dict[str, tuple[int, int]] | None, image_key: str
) -> LabelImport:
    """The labels of Label Studio ``tasks`` (as in its JSON export) read from ``path``."""
    for i, task in enumerate(tasks):
        where = f"{path.name}: tasks[{i}]"
        if not isinstance(task, dict):
            out.problems.append(Problem(where, f"expected a task object; found {short_repr(task)}", LS_HINT))
            continue
        item = f"task {task.get('id', i)!s}"
        out.begin()
        where = f"{path.name}: {item} (tasks[{i}])"
        image_id = _ls_image_id(task, where, image_key, out.problems, images)
        annotation, k = _ls_pick_annotation(task, where, item, out)
        if image_id is None or annotation is None:
            if image_id is not None and k is None:
                out.unlabelled.append(image_id)
            continue
        size = (images or {}).get(image_id)
        where = f"{where}.annotations[{k}]"
        rows, other = [], []
        for j, result in enumerate(annotation["result"]):
            row = _ls_box(result, f"{where}.result[{j}]", size, out, other)
            if row is not None:
                rows.append(row)
        if other:
            out.skipped.append(
                f"{item} ({image_id}): left out {len(other)} result(s) of type "
                f"{sorted(set(other))}; only rectanglelabels are read"
            )
        out.add(image_id, item, rows, _ls_annotator(annotation.get("completed_by")))
    return out.result()


def _ls_image_id(
    task: dict, where: str, image_key: str, problems: list[Problem], images: dict | None = None
) -> str | None:
    data = task.get("data")
    if not isinstance(data, dict):
        problems.append(
            Problem(f"{where}.data", f"missing task field 'data' (an object); task keys are {sorted(task)}", LS_HINT)
        )
        return None
    if "activedet_image_id" in data:
        image_id = data["activedet_image_id"]
        if isinstance(image_id, (str, int)) and not isinstance(image_id, bool) and str(image_id):
            return str(image_id)
        problems.append(
            Problem(
                f"{where}.data.activedet_image_id",
                f"expected an image id string; found {short_repr(image_id)}",
                "restore the value written by activedet query",
            )
        )
        return None
    ref = data.get(image_key)
    if isinstance(ref, str) and images is not None and ref_stem(ref):
        return labelstudio_image_id(ref, images)
    stem = ref_stem(ref) if isinstance(ref, str) else ""
    if not stem:
        problems.append(
            Problem(
                f"{where}.data.{image_key}",
                f"expected the image URL or path; found {short_repr(ref)} (data keys: {sorted(data)})",
                'pass image_key= with the data key of the project\'s <Image value="$...">',
            )
        )
        return None
    return stem


def _ls_pick_annotation(task: dict, where: str, item: str, out: Collector) -> tuple[dict | None, int | None]:
    """``(annotation, index)`` of the last non-cancelled annotation; ``(None, None)`` when the task has none,
    ``(None, index)`` when that annotation is malformed (a problem is recorded)."""
    annotations = task.get("annotations", task.get("completions", []))  # "completions": Label Studio < 1.0
    if not isinstance(annotations, list):
        out.problems.append(
            Problem(f"{where}.annotations", f"expected a list; found {short_repr(annotations)}", LS_HINT)
        )
        return None, -1
    valid = []
    for k, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            out.problems.append(
                Problem(
                    f"{where}.annotations[{k}]",
                    f"expected an annotation object; found {short_repr(annotation)}",
                    LS_HINT,
                )
            )
            return None, k
        if not annotation.get("was_cancelled", False):
            valid.append(k)
    if not valid:
        return None, None
    k = valid[-1]
    if not isinstance(annotations[k].get("result"), list):
        out.problems.append(
            Problem(
                f"{where}.annotations[{k}].result",
                f"expected a list of regions; found {short_repr(annotations[k].get('result'))}",
                LS_HINT,
            )
        )
        return None, k
    cancelled = len(annotations) - len(valid)
    if len(valid) > 1 or cancelled:
        out.skipped.append(
            f"{item}: used annotations[{k}] (the last one not cancelled); left out "
            f"{len(valid) - 1} earlier and {cancelled} cancelled annotation(s)"
        )
    return annotations[k], k


def _ls_box(
    result: object, where: str, size: tuple[int, int] | None, out: Collector, other: list[str]
) -> tuple[str, list[float], int] | None:
    """``(location, xyxy pixels, label)`` of one ``rectanglelabels`` result; ``None`` for other types/errors."""
    if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
        out.problems.append(
            Problem(where, f"expected a region object with a 'value' object; found {short_repr(result)}", LS_HINT)
        )
        return None
    if result.get("type") != "rectanglelabels":
        other.append(str(result.get("type")))
        return None
    value, count = result["value"], len(out.problems)
    numbers = [
        read_number(value.get(key), f"{where}.value.{key}", "a number (percent)", out.problems)
        for key in ("x", "y", "width", "height")
    ]
    rotation = read_number(value.get("rotation", 0), f"{where}.value.rotation", "a number (degrees)", out.problems)
    if rotation not in (None, 0):
        out.problems.append(
            Problem(
                f"{where}.value.rotation",
                f"rectangle rotated by {rotation:g} degrees; only axis-aligned boxes can be imported",
                'set its rotation to 0 in Label Studio (and canRotate="false" on <RectangleLabels>), then export again',
            )
        )
    names = value.get("rectanglelabels")
    if not (isinstance(names, list) and len(names) == 1):
        out.problems.append(
            Problem(
                f"{where}.value.rectanglelabels",
                f"expected exactly one label; found {short_repr(names)}",
                "give the rectangle one label in Label Studio",
            )
        )
        label = None
    else:
        label = out.label(names[0], f"{where}.value.rectanglelabels")
    width, height = _ls_size(result, where, size, out.problems)
    if len(out.problems) > count or label is None or width is None:
        return None
    x, y, w, h = (v / 100 for v in numbers)
    return where, [x * width, y * height, (x + w) * width, (y + h) * height], label


def _ls_size(
    result: dict, where: str, size: tuple[int, int] | None, problems: list[Problem]
) -> tuple[float | None, float | None]:
    if "original_width" in result or "original_height" in result:
        width = read_number(result.get("original_width"), f"{where}.original_width", "a positive number", problems)
        height = read_number(result.get("original_height"), f"{where}.original_height", "a positive number", problems)
        if width is not None and height is not None and width > 0 and height > 0:
            return width, height
        if width is not None and height is not None:
            problems.append(
                Problem(
                    where,
                    f"image size {width}x{height} is not positive",
                    "export again once Label Studio has loaded the image",
                )
            )
        return None, None
    if size is not None:
        return float(size[0]), float(size[1])
    problems.append(
        Problem(
            where,
            "no original_width/original_height and no size for this image",
            "pass images={image_id: (width, height)} to convert its percentages to pixels",
        )
    )
    return None, None


def _ls_annotator(completed_by: object) -> str | None:
    """The e-mail, else the full name, of a ``completed_by`` user object; ``None`` for a bare user id (Label
    Studio's plain JSON export), which names nobody outside that server."""
    if isinstance(completed_by, dict):
        name = " ".join(str(completed_by.get(k) or "") for k in ("first_name", "last_name")).strip()
        value = completed_by.get("email") or name
        return str(value) if value else None
    if isinstance(completed_by, str) and completed_by and not completed_by.isdigit():
        return completed_by
    return None


_UPLOAD = re.compile(r"^[0-9a-f]{8}-")


def labelstudio_image_id(name: str, known: Collection[str] | None = None) -> str:
    """The image id of an image name in a Label Studio export (a URL, a path or a file name).

    Names map as every reader maps them (:func:`~activedet.interop.image_id_from_name`: sub-folders,
    ``setB__x`` -> ``setB/x``); a name that is not one of ``known`` is tried again without the ``<8 hex>-``
    prefix Label Studio gives uploaded files (its VOC, COCO and YOLO exports keep it in file names). Without
    ``known``: the stem without that prefix.
    """
    image_id = image_id_from_name(name, known)
    if known is not None and image_id in known:
        return image_id
    path = ref_path(name)
    return image_id_from_name(str(path.with_name(_UPLOAD.sub("", path.name))), known)
