"""Label Studio: pre-annotation tasks out; its JSON export and its other exports back in.

Label Studio's other exports (JSON-MIN, COCO, Pascal VOC, YOLO), read the way Label Studio writes them.

Label Studio's JSON export (:func:`activedet.interop.read_labelstudio_export`) keeps every annotation of
a task and is the one to prefer. Its converters (checked against Label Studio 1.23.2) write the others from one
row per annotation, newest first, and name images after their URL:

* image names: a local-files or URL path (``/data/local-files/?d=.../images/setB__x.png``), or an uploaded file
  renamed ``<8 hex digits>-<name>``; both are mapped back to the batch's image ids (``images``), sub-folder images
  included (activedet exports ``setB/x`` as ``setB__x.png``);
* JSON-MIN and COCO hold one entry per annotation, newest first: the first one of an image is read (newest wins),
  the others are noted in ``skipped``; a task whose only annotation was skipped (cancelled) is left out, one with
  an empty annotation is an image with no box (COCO gives it ``null`` width and height);
* VOC and YOLO write one file per image name, so a task with several annotations keeps only one of them there
  (the **oldest**, as Label Studio writes them newest first): use the JSON export when tasks have several;
* VOC writes no file for an image without boxes (it stays pending) and truncates pixels to integers,
  ``xmin = int(x)``, ``xmax = int(x) + int(width)``: 0-based coordinates, read as ``x1 = xmin``, ``x2 = xmax``
  (up to 2 px off the drawn box);
* YOLO's ``classes.txt`` lists the classes alphabetically; they are matched to the run's classes by name.

Only annotated tasks are in an export made with the export API's defaults; one of *all* tasks would list
unannotated tasks as images without boxes in COCO and YOLO, indistinguishable from empty ones: do not import one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_json
from ..data.records import DatasetError, Problem
from .common import (
    LS_HINT,
    Collector,
    ExportItem,
    LabelImport,
    check_items,
    class_index_of,
    image_id_from_name,
    load_json,
    read_number,
    ref_path,
    ref_stem,
    short_repr,
)
from .folders import read_coco_file, read_voc_labels, read_yolo_labels


def write_labelstudio_tasks(
    items: Iterable[ExportItem],
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    from_name: str = "label",
    to_name: str = "image",
    model_version: str = "activedet",
    image_key: str = "image",
) -> Path:
    """Write Label Studio tasks (Import -> JSON), one per item, with its detections as pre-annotations.

    Each task is ``{"id": 1.., "data": {image_key: image_ref, "activedet_image_id": image_id}, "predictions":
    [{"model_version", "score": image_score or null, "result": [...]}]}``; each box is a ``rectanglelabels``
    result whose ``value`` holds ``x, y`` (top-left corner), ``width, height`` in **percent** of the image size
    (``original_width``/``original_height``), ``rotation: 0`` and the class name, plus the box ``score``.
    ``from_name``/``to_name``/``image_key`` must match the project's labeling config, e.g. ``<RectangleLabels
    name="label" toName="image">`` and ``<Image name="image" value="$image"/>``. Written atomically; returns
    ``path``.
    """
    names = list(class_index_of(class_names))
    items = check_items(items, len(names), "write_labelstudio_tasks")
    tasks = []
    for i, item in enumerate(items, start=1):
        size = np.array([item.width, item.height] * 2, np.float64)
        result = []
        for k, (box, label) in enumerate(zip(item.boxes.astype(np.float64) / size * 100, item.labels), start=1):
            x1, y1, x2, y2 = box.tolist()
            value = {
                "x": x1,
                "y": y1,
                "width": x2 - x1,
                "height": y2 - y1,
                "rotation": 0,
                "rectanglelabels": [names[label - 1]],
            }
            result.append(
                {
                    "id": f"activedet-{i}-{k}",
                    "type": "rectanglelabels",
                    "from_name": from_name,
                    "to_name": to_name,
                    "original_width": item.width,
                    "original_height": item.height,
                    "image_rotation": 0,
                    "value": value,
                }
            )
            if item.scores is not None:
                result[-1]["score"] = float(item.scores[k - 1])
        prediction = {"model_version": model_version, "score": item.image_score, "result": result}
        tasks.append(
            {
                "id": i,
                "data": {image_key: item.image_ref, "activedet_image_id": item.image_id},
                "predictions": [prediction],
            }
        )
    return atomic_write_json(path, tasks, allow_nan=False)


def read_labelstudio_export(
    path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    images: dict[str, tuple[int, int]] | None = None,
    image_key: str = "image",
) -> LabelImport:
    """Read Label Studio's JSON export (a list of tasks with ``annotations``) of ``rectanglelabels`` boxes.

    * The image id is ``data.activedet_image_id`` (written by :func:`write_labelstudio_tasks`), else the file
      stem of ``data[image_key]`` without Label Studio's upload prefix, mapped to the ids of ``images`` as
      :func:`labelstudio_image_id` does.
    * Of a task's annotations, the **last non-cancelled one in the file's order** is used (Label Studio lists
      them in creation order); the others are noted in ``skipped``. A task whose annotations are all cancelled,
      or that has none, is not labelled (``unlabelled``); a non-cancelled annotation with an empty ``result``
      is an empty label.
    * Percentages become pixels with the result's ``original_width``/``original_height``, else
      ``images[image_id] = (width, height)``. Results of other types (``choices``, ``polygonlabels`` ...) are
      noted in ``skipped``; rotated rectangles and labels not in ``class_names`` are errors.
    * ``predictions`` are ignored: only people's annotations are labels.

    Raises:
        DatasetError: listing every problem, each naming the task id and the annotation/result index.
    """
    path = Path(path)
    out = Collector(path, class_names, "Label Studio export")
    tasks = load_json(path, list, "a JSON list of tasks", LS_HINT, out.problems)
    return read_ls_tasks(tasks or [], path, out, images, image_key)


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


# ----------------------------------------------------------------------------- Label Studio's other exports

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


def read_labelstudio_coco(
    path: str | os.PathLike, class_names: Sequence[str], *, images: Collection[str] | None = None
) -> LabelImport:
    """Read Label Studio's COCO export (``result.json``, or the folder holding it): module docstring.

    ``images``: the batch's image ids (a mapping's keys will do), to map exported names back to them.
    """
    path = Path(path)
    path = path / "result.json" if path.is_dir() else path
    return read_coco_file(
        path,
        class_names,
        image_id_of=lambda name: labelstudio_image_id(name, images),
        empty_means_labelled=True,
        newest_first=True,
    )


def read_labelstudio_min(
    path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    images: dict[str, tuple[int, int]] | None = None,
    image_key: str = "image",
) -> LabelImport:
    """Read Label Studio's JSON-MIN export: one row per annotation, newest first; a control's regions are a
    list of objects under its name (``"label": [{"x": ..., "rectanglelabels": [...]}, ...]``).

    Each task's first (newest) row is read as a task with one annotation, as
    :func:`~activedet.interop.read_labelstudio_export` reads them; older rows are noted in ``skipped``.
    A row without regions is an empty label. ``annotator`` is recorded where it is not a bare user id.
    """
    path = Path(path)
    out = Collector(path, class_names, "Label Studio JSON-MIN export")
    rows = load_json(path, list, "a JSON list of annotation rows", LS_HINT, out.problems)
    tasks, seen = [], set()
    for k, row in enumerate(rows or []):
        if not isinstance(row, dict):
            tasks.append(row)  # reported by the task reader
            continue
        task_id = row.get("id", f"row {k}")
        if task_id in seen:
            out.skipped.append(
                f"task {task_id}: an older annotation ({row.get('annotation_id')}) left out (the "
                "newest one comes first)"
            )
            continue
        seen.add(task_id)
        regions = {key: value for key, value in row.items() if _is_regions(value)}
        data = {
            key: value for key, value in row.items() if key not in regions and key not in ("annotator", "annotation_id")
        }
        if "activedet_image_id" not in data and isinstance(data.get(image_key), str):
            data["activedet_image_id"] = labelstudio_image_id(data[image_key], images)
        result = [_min_region(region) for value in regions.values() for region in value]
        tasks.append(
            {
                "id": task_id,
                "data": data,
                "annotations": [{"completed_by": row.get("annotator"), "was_cancelled": False, "result": result}],
            }
        )
    return read_ls_tasks(tasks, path, out, images, image_key)


def _is_regions(value: object) -> bool:
    """Whether a JSON-MIN field holds a control's regions (objects with a position, e.g. ``x``/``y``)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and ("x" in v or "points" in v) for v in value)
    )


def _min_region(region: dict) -> dict:
    """A JSON-MIN region (``x, y, width, height, rotation, rectanglelabels, original_width/height``) as a JSON
    export result; regions without ``rectanglelabels`` (polygons, keypoints ...) keep their first ``*labels`` key
    as their type, to be noted in ``skipped``."""
    value = {k: v for k, v in region.items() if k not in ("original_width", "original_height")}
    size = {k: region[k] for k in ("original_width", "original_height") if k in region}
    kind = next((k for k in region if k.endswith("labels")), "unknown")
    return {"type": kind, "value": value, **size}


def read_labelstudio_voc(
    path: str | os.PathLike, class_names: Sequence[str], *, images: Collection[str] | None = None
) -> LabelImport:
    """Read Label Studio's Pascal VOC export (the folder, its ``Annotations/``, or one file): module docstring."""
    devkit = read_voc_labels(
        path, class_names, one_based=False, empty_means_labelled=True
    )  # Label Studio writes 0-based coordinates
    out = Collector(Path(path), class_names, "Label Studio VOC export")
    for name, (boxes, labels) in devkit.labels.items():
        boxes = boxes.astype(np.float64)
        out.begin()
        out.add(
            labelstudio_image_id(name, images),
            f"{name}.xml",
            [
                (f"{name}.xml: object[{k}]", box.tolist(), int(label))
                for k, (box, label) in enumerate(zip(boxes, labels), start=1)
            ],
        )
    result = out.result()
    result.skipped = devkit.skipped + result.skipped
    return result


def read_labelstudio_yolo(
    path: str | os.PathLike, class_names: Sequence[str], *, images: dict[str, tuple[int, int]]
) -> LabelImport:
    """Read Label Studio's YOLO export (the folder with ``classes.txt`` and ``labels/``): module docstring.

    ``images``: ``{image_id: (width, height)}`` of the batch (YOLO coordinates are normalised).
    """
    path = Path(path)
    folder = path / "labels" if (path / "labels").is_dir() else path
    names = {
        f.relative_to(folder).with_suffix("").as_posix(): labelstudio_image_id(f.name, images)
        for f in folder.rglob("*.txt")
        if f.name != "classes.txt"
    }
    missing = sorted(name for name, image_id in names.items() if image_id not in images)
    if missing:
        raise DatasetError(
            [
                Problem(
                    f"{name}.txt",
                    f"image {names[name]!r} is not one of the run's images, so its "
                    "normalised boxes cannot be converted",
                    "import only the exported batch's labels",
                )
                for name in missing
            ],
            f"Label Studio YOLO export {path}",
        )
    sizes = {name: images[image_id] for name, image_id in names.items()}
    tool = read_yolo_labels(path, class_names, images=sizes, empty_means_labelled=True)  # annotated tasks only
    out = Collector(path, class_names, "Label Studio YOLO export")
    for name, (boxes, labels) in tool.labels.items():
        out.begin()
        out.add(
            names[name],
            f"{name}.txt",
            [
                (f"{name}.txt: line {k}", box.tolist(), int(label))
                for k, (box, label) in enumerate(zip(boxes, labels), start=1)
            ],
        )
    result = out.result()
    result.skipped = tool.skipped + result.skipped
    return result
