"""Files exchanged with human annotation tools: pre-annotations out, people's labels back in.

This module knows nothing about runs: it turns model predictions into files that Label Studio or CVAT import as
pre-annotations, and reads what those tools (or any tool writing COCO, Pascal VOC or YOLO) export into plain
per-image labels. Whether an image belongs to the queried batch, and whether its boxes lie inside it, is the
caller's to check.

Conventions:

* An image is identified by a string ``image_id``. Files we wrote carry it (Label Studio:
  ``data.activedet_image_id``); otherwise it is the **file stem** of the image name the tool reports
  (``/data/upload/3/1a2b3c4d-000005.jpg`` -> ``"000005"``: Label Studio's upload prefix is removed), and, given the
  run's image ids (``images=``), the id that name stands for (:func:`image_id_from_name`: an image of a
  sub-folder is exported as ``setB__x.jpg`` by :func:`export_file_name` and read back as ``"setB/x"``).
* Boxes come back as :class:`LabelImport` ``labels[image_id] = (float32[N, 4] xyxy pixels, int64[N] in 1..C)``,
  mapped onto ``class_names`` **by name**; an image with ``N = 0`` is a valid empty label (the person saw
  nothing to box), unlike an image that nobody labelled, which is absent (``LabelImport.unlabelled``).
* Only axis-aligned boxes are read; other shapes (polygons, points, classification choices) are left out and
  noted in ``LabelImport.skipped``. Rotated boxes, unknown labels, non-finite or empty boxes, malformed files
  and one image labelled twice with different boxes are errors: one :class:`DatasetError` lists all of them.

Sections: items and results, Label Studio, CVAT (XML and COCO), COCO / VOC / YOLO folders, dispatch, helpers.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Container, Iterable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from ..atomic import atomic_write_json, atomic_write_text
from . import coco, voc, yolo
from .records import DatasetError, Problem
from .validate import check_choice

__all__ = ["ExportItem", "LabelImport", "LABEL_FORMATS", "write_labelstudio_tasks", "read_labelstudio_export",
           "read_cvat_xml", "write_cvat_coco", "read_coco_labels", "read_voc_labels", "read_yolo_labels",
           "read_labels", "export_file_name", "image_id_from_name"]

LABEL_FORMATS = ("labelstudio", "labelstudio_min", "labelstudio_coco", "labelstudio_voc", "labelstudio_yolo",
                 "cvat_xml", "coco", "voc", "cvat_voc", "yolo")
#: formats whose files list images nobody may have labelled yet (an unfinished job): an image without any shape
#: there is pending unless ``empty_means_labelled`` (Datumaro's formats, ``datumaro:<name>``, too). In VOC, an
#: image listed in ``ImageSets/Main`` without an annotation file; in YOLO, an empty label file.
EMPTY_AMBIGUOUS = ("cvat_xml", "coco", "voc", "cvat_voc", "yolo")

_LS_HINT = "export the project from Label Studio with Export -> JSON (or pass --format for its other exports)"
_CVAT_HINT = "export the task from CVAT as 'CVAT for images 1.1'"


# ------------------------------------------------------------------------------------------- items and results

@dataclass
class ExportItem:
    """One image to pre-annotate: the model's detections of it and how the annotation tool finds the file.

    Args:
        image_id: the caller's id of the image; Label Studio tasks carry it back (``data.activedet_image_id``).
        image_ref: what the tool loads: a URL, a Label Studio ``/data/local-files/?d=...`` path, or a file name
            (CVAT matches images by file name: give the name of the uploaded file).
        width, height: image size in pixels.
        boxes: ``float[N, 4]`` xyxy pixels, finite, ``x2 > x1`` and ``y2 > y1``.
        labels: ``int[N]`` in ``1..C``.
        scores: ``float[N]`` confidence of each box, or ``None`` to write no per-box score.
        image_score: the image's informativeness (written as Label Studio's prediction score), or ``None``.
    """

    image_id: str
    image_ref: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    scores: np.ndarray | None = None
    image_score: float | None = None

    def __post_init__(self) -> None:
        name = f"ExportItem {self.image_id!r}"
        if not isinstance(self.image_id, str) or not self.image_id or not isinstance(self.image_ref, str):
            raise ValueError(f"{name}: image_id must be a non-empty string and image_ref a string. Got "
                             f"{self.image_id!r} and {self.image_ref!r} instead.")
        for key in ("width", "height"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name}: {key} must be a positive int (pixels). Got {value!r} instead.")
            setattr(self, key, int(value))
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels).reshape(-1).astype(np.int64)
        bad = ~np.isfinite(self.boxes).all(axis=1) | (self.boxes[:, 2] <= self.boxes[:, 0]) | (
            self.boxes[:, 3] <= self.boxes[:, 1])
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: box {k} xyxy={self.boxes[k].tolist()} is not finite or has no area; "
                             "leave such detections out of the export")
        if self.scores is not None:
            self.scores = np.asarray(self.scores, np.float64).reshape(-1)
        if len(self.labels) != len(self.boxes) or (self.scores is not None and len(self.scores) != len(self.boxes)):
            raise ValueError(f"{name}: {len(self.boxes)} boxes, {len(self.labels)} labels and "
                             f"{None if self.scores is None else len(self.scores)} scores; give one of each per box")
        if self.scores is not None and not np.isfinite(self.scores).all():
            raise ValueError(f"{name}: scores must be finite. Got {self.scores.tolist()} instead.")
        if self.image_score is not None:
            if not np.isfinite(self.image_score):
                raise ValueError(f"{name}: image_score must be finite or None. Got {self.image_score!r} instead.")
            self.image_score = float(self.image_score)

    @classmethod
    def from_detections(cls, image_id: str, image_ref: str, width: int, height: int, detections,
                        image_score: float | None = None) -> "ExportItem":
        """An item from a :class:`~activedet.models.outputs.Detections` (its ``boxes``, ``labels``, ``scores``)."""
        def array(value):
            return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        return cls(image_id, image_ref, width, height, array(detections.boxes), array(detections.labels),
                   array(detections.scores), image_score)


@dataclass
class LabelImport:
    """People's labels read from one exported file.

    Attributes:
        labels: ``{image_id: (boxes float32[N, 4] xyxy pixels, labels int64[N] in 1..C)}`` in file order;
            ``N = 0`` is an image labelled as containing no object.
        annotators: ``{image_id: who labelled it}`` (the e-mail, else the name, where the export carries it, as
            Label Studio's export snapshots with ``completed_by`` expanded do); ``None`` where the format does not
            say or gives only a user id.
        skipped: human-readable notes on what was left out (other shapes, cancelled or extra annotations,
            crowd/difficult boxes), one per task or image.
        source: the file (or folder) read.
        unlabelled: ids of images present in the file that nobody labelled (no annotation, or all cancelled).
        difficult: ``{image_id: bool[N]}`` VOC-style difficult flags, where the file keeps them (the run's native
            label file, :mod:`activedet.al.annotation`); absent images have none.
        sizes: ``{image_id: (width, height)}`` the image size the file states, where it states one (COCO, VOC): the
            boxes are in pixels of an image of that size.
    """

    labels: dict[str, tuple[np.ndarray, np.ndarray]]
    annotators: dict[str, str | None]
    skipped: list[str]
    source: str
    unlabelled: list[str] = field(default_factory=list)
    difficult: dict[str, np.ndarray] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


class _Collector:
    """Per-image labels gathered from one file; :meth:`result` checks them and raises for every problem."""

    def __init__(self, source: Path, class_names: Sequence[str], what: str):
        self.source, self.name, self.what = source, source.name, what
        self.class_index = _class_index(class_names)
        self.problems: list[Problem] = []
        self.skipped: list[str] = []
        self.unlabelled: list[str] = []
        self.found: dict[str, list[tuple[str, np.ndarray, np.ndarray, str | None]]] = {}
        self.mark = 0
        self.sizes: dict[str, tuple[int, int]] = {}

    def begin(self) -> None:
        """Start reading one image: :meth:`add` leaves it out if a problem is found from here on (an image
        with an error in its boxes is not also reported as an empty label or a conflict)."""
        self.mark = len(self.problems)

    def add(self, image_id: str, item: str, rows: list[tuple[str, Sequence[float], int]],
            annotator: str | None = None) -> None:
        """Record the boxes ``rows = [(location, xyxy pixels, label), ...]`` of ``image_id`` found at ``item``."""
        if len(self.problems) > self.mark:
            return
        boxes = np.array([r[1] for r in rows], np.float64).reshape(-1, 4).astype(np.float32)
        for (where, _, _), box in zip(rows, boxes.astype(np.float64)):
            if not np.isfinite(box).all():
                self.problems.append(Problem(where, f"box coordinates must be finite numbers; found xyxy="
                                             f"{box.tolist()}", "fix or delete this box in the annotation tool"))
            elif box[2] <= box[0] or box[3] <= box[1]:
                self.problems.append(Problem(where, f"box must have a positive width and height; found xyxy="
                                             f"{box.tolist()}", "fix or delete this box in the annotation tool"))
        if len(self.problems) > self.mark:
            return
        self.found.setdefault(image_id, []).append((item, boxes, np.array([r[2] for r in rows], np.int64),
                                                    annotator))

    def result(self) -> LabelImport:
        labels, annotators, conflicts = {}, {}, []
        for image_id, entries in self.found.items():
            _, boxes, classes, annotator = entries[0]
            if any(not _same_labels(boxes, classes, b, c) for _, b, c, _ in entries[1:]):
                conflicts.append(f"{image_id!r} ({', '.join(e[0] for e in entries)})")
            labels[image_id], annotators[image_id] = (boxes, classes), annotator
        if conflicts:
            self.problems.append(Problem(self.name, f"{len(conflicts)} image id(s) labelled more than once with "
                                         f"different boxes: {'; '.join(conflicts)}",
                                         "keep one labelled copy of each image (delete the duplicates in the "
                                         "annotation tool and export again)"))
        if self.problems:
            raise DatasetError(self.problems, f"{self.what} {self.source}")
        unlabelled = [i for i in dict.fromkeys(self.unlabelled) if i not in labels]
        sizes = {i: size for i, size in self.sizes.items() if i in labels}
        return LabelImport(labels, annotators, self.skipped, str(self.source), unlabelled, sizes=sizes)

    def label(self, name: object, where: str, item: str | None = None) -> int | None:
        """The label ``1..C`` of class ``name``, or ``None`` with a problem (naming ``item`` when ``where`` does
        not)."""
        if isinstance(name, str) and name in self.class_index:
            return self.class_index[name]
        self.problems.append(Problem(where, f"{_prefix(item)}unknown label {name!r}; the class names are "
                                     f"{list(self.class_index)}", "rename the label in the annotation tool, or "
                                     "add the class to the run's class names"))
        return None


def _same_labels(boxes_a: np.ndarray, labels_a: np.ndarray, boxes_b: np.ndarray, labels_b: np.ndarray) -> bool:
    """Whether two box sets are equal up to order."""
    def rows(boxes, labels):
        table = np.concatenate([labels[:, None].astype(np.float64), boxes.astype(np.float64)], axis=1)
        return table[np.lexsort(table.T[::-1])]
    return len(boxes_a) == len(boxes_b) and np.array_equal(rows(boxes_a, labels_a), rows(boxes_b, labels_b))


# ------------------------------------------------------------------------------------------------ Label Studio

def write_labelstudio_tasks(items: Iterable[ExportItem], class_names: Sequence[str], path: str | os.PathLike, *,
                            from_name: str = "label", to_name: str = "image", model_version: str = "activedet",
                            image_key: str = "image") -> Path:
    """Write Label Studio tasks (Import -> JSON), one per item, with its detections as pre-annotations.

    Each task is ``{"id": 1.., "data": {image_key: image_ref, "activedet_image_id": image_id}, "predictions":
    [{"model_version", "score": image_score or null, "result": [...]}]}``; each box is a ``rectanglelabels``
    result whose ``value`` holds ``x, y`` (top-left corner), ``width, height`` in **percent** of the image size
    (``original_width``/``original_height``), ``rotation: 0`` and the class name, plus the box ``score``.
    ``from_name``/``to_name``/``image_key`` must match the project's labeling config, e.g. ``<RectangleLabels
    name="label" toName="image">`` and ``<Image name="image" value="$image"/>``. Written atomically; returns
    ``path``.
    """
    names = list(_class_index(class_names))
    items = _check_items(items, len(names), "write_labelstudio_tasks")
    tasks = []
    for i, item in enumerate(items, start=1):
        size = np.array([item.width, item.height] * 2, np.float64)
        result = []
        for k, (box, label) in enumerate(zip(item.boxes.astype(np.float64) / size * 100, item.labels), start=1):
            x1, y1, x2, y2 = box.tolist()
            value = {"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1, "rotation": 0,
                     "rectanglelabels": [names[label - 1]]}
            result.append({"id": f"activedet-{i}-{k}", "type": "rectanglelabels", "from_name": from_name,
                           "to_name": to_name, "original_width": item.width, "original_height": item.height,
                           "image_rotation": 0, "value": value})
            if item.scores is not None:
                result[-1]["score"] = float(item.scores[k - 1])
        prediction = {"model_version": model_version, "score": item.image_score, "result": result}
        tasks.append({"id": i, "data": {image_key: item.image_ref, "activedet_image_id": item.image_id},
                      "predictions": [prediction]})
    return atomic_write_json(path, tasks, allow_nan=False)


def read_labelstudio_export(path: str | os.PathLike, class_names: Sequence[str], *,
                            images: dict[str, tuple[int, int]] | None = None,
                            image_key: str = "image") -> LabelImport:
    """Read Label Studio's JSON export (a list of tasks with ``annotations``) of ``rectanglelabels`` boxes.

    * The image id is ``data.activedet_image_id`` (written by :func:`write_labelstudio_tasks`), else the file
      stem of ``data[image_key]`` without Label Studio's upload prefix, mapped to the ids of ``images`` as
      :func:`activedet.data.labelstudio_exports.labelstudio_image_id` does.
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
    out = _Collector(path, class_names, "Label Studio export")
    tasks = _load_json(path, list, "a JSON list of tasks", _LS_HINT, out.problems)
    return _read_ls_tasks(tasks or [], path, out, images, image_key)


def _read_ls_tasks(tasks: list, path: Path, out: _Collector, images: dict[str, tuple[int, int]] | None,
                   image_key: str) -> LabelImport:
    """The labels of Label Studio ``tasks`` (as in its JSON export) read from ``path``."""
    for i, task in enumerate(tasks):
        where = f"{path.name}: tasks[{i}]"
        if not isinstance(task, dict):
            out.problems.append(Problem(where, f"expected a task object; found {_short(task)}", _LS_HINT))
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
            out.skipped.append(f"{item} ({image_id}): left out {len(other)} result(s) of type "
                               f"{sorted(set(other))}; only rectanglelabels are read")
        out.add(image_id, item, rows, _ls_annotator(annotation.get("completed_by")))
    return out.result()


def _ls_image_id(task: dict, where: str, image_key: str, problems: list[Problem],
                 images: dict | None = None) -> str | None:
    data = task.get("data")
    if not isinstance(data, dict):
        problems.append(Problem(f"{where}.data", f"missing task field 'data' (an object); task keys are "
                                f"{sorted(task)}", _LS_HINT))
        return None
    if "activedet_image_id" in data:
        image_id = data["activedet_image_id"]
        if isinstance(image_id, (str, int)) and not isinstance(image_id, bool) and str(image_id):
            return str(image_id)
        problems.append(Problem(f"{where}.data.activedet_image_id", f"expected an image id string; found "
                                f"{_short(image_id)}", "restore the value written by activedet query"))
        return None
    ref = data.get(image_key)
    if isinstance(ref, str) and images is not None and _ref_stem(ref):
        from .labelstudio_exports import labelstudio_image_id

        return labelstudio_image_id(ref, images)
    stem = _ref_stem(ref) if isinstance(ref, str) else ""
    if not stem:
        problems.append(Problem(f"{where}.data.{image_key}", f"expected the image URL or path; found "
                                f"{_short(ref)} (data keys: {sorted(data)})",
                                "pass image_key= with the data key of the project's <Image value=\"$...\">"))
        return None
    return stem


def _ls_pick_annotation(task: dict, where: str, item: str, out: _Collector) -> tuple[dict | None, int | None]:
    """``(annotation, index)`` of the last non-cancelled annotation; ``(None, None)`` when the task has none,
    ``(None, index)`` when that annotation is malformed (a problem is recorded)."""
    annotations = task.get("annotations", task.get("completions", []))  # "completions": Label Studio < 1.0
    if not isinstance(annotations, list):
        out.problems.append(Problem(f"{where}.annotations", f"expected a list; found {_short(annotations)}",
                                    _LS_HINT))
        return None, -1
    valid = []
    for k, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            out.problems.append(Problem(f"{where}.annotations[{k}]", f"expected an annotation object; found "
                                        f"{_short(annotation)}", _LS_HINT))
            return None, k
        if not annotation.get("was_cancelled", False):
            valid.append(k)
    if not valid:
        return None, None
    k = valid[-1]
    if not isinstance(annotations[k].get("result"), list):
        out.problems.append(Problem(f"{where}.annotations[{k}].result", f"expected a list of regions; found "
                                    f"{_short(annotations[k].get('result'))}", _LS_HINT))
        return None, k
    cancelled = len(annotations) - len(valid)
    if len(valid) > 1 or cancelled:
        out.skipped.append(f"{item}: used annotations[{k}] (the last one not cancelled); left out "
                           f"{len(valid) - 1} earlier and {cancelled} cancelled annotation(s)")
    return annotations[k], k


def _ls_box(result: object, where: str, size: tuple[int, int] | None, out: _Collector,
            other: list[str]) -> tuple[str, list[float], int] | None:
    """``(location, xyxy pixels, label)`` of one ``rectanglelabels`` result; ``None`` for other types/errors."""
    if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
        out.problems.append(Problem(where, f"expected a region object with a 'value' object; found "
                                    f"{_short(result)}", _LS_HINT))
        return None
    if result.get("type") != "rectanglelabels":
        other.append(str(result.get("type")))
        return None
    value, count = result["value"], len(out.problems)
    numbers = [_number(value.get(key), f"{where}.value.{key}", "a number (percent)", out.problems)
               for key in ("x", "y", "width", "height")]
    rotation = _number(value.get("rotation", 0), f"{where}.value.rotation", "a number (degrees)", out.problems)
    if rotation not in (None, 0):
        out.problems.append(Problem(f"{where}.value.rotation", f"rectangle rotated by {rotation:g} "
                                    "degrees; only axis-aligned boxes can be imported",
                                    "set its rotation to 0 in Label Studio (and canRotate=\"false\" on "
                                    "<RectangleLabels>), then export again"))
    names = value.get("rectanglelabels")
    if not (isinstance(names, list) and len(names) == 1):
        out.problems.append(Problem(f"{where}.value.rectanglelabels", f"expected exactly one label; found "
                                    f"{_short(names)}", "give the rectangle one label in Label Studio"))
        label = None
    else:
        label = out.label(names[0], f"{where}.value.rectanglelabels")
    width, height = _ls_size(result, where, size, out.problems)
    if len(out.problems) > count or label is None or width is None:
        return None
    x, y, w, h = (v / 100 for v in numbers)
    return where, [x * width, y * height, (x + w) * width, (y + h) * height], label


def _ls_size(result: dict, where: str, size: tuple[int, int] | None,
             problems: list[Problem]) -> tuple[float | None, float | None]:
    if "original_width" in result or "original_height" in result:
        width = _number(result.get("original_width"), f"{where}.original_width", "a positive number", problems)
        height = _number(result.get("original_height"), f"{where}.original_height", "a positive number", problems)
        if width is not None and height is not None and width > 0 and height > 0:
            return width, height
        if width is not None and height is not None:
            problems.append(Problem(where, f"image size {width}x{height} is not positive",
                                    "export again once Label Studio has loaded the image"))
        return None, None
    if size is not None:
        return float(size[0]), float(size[1])
    problems.append(Problem(where, "no original_width/original_height and no size for this image",
                            "pass images={image_id: (width, height)} to convert its percentages to pixels"))
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


# -------------------------------------------------------------------------------------------------------- CVAT

def read_cvat_xml(path: str | os.PathLike, class_names: Sequence[str], *,
                  empty_means_labelled: bool = False) -> LabelImport:
    """Read a "CVAT for images 1.1" export: every ``<image name=...>`` with its ``<box>`` elements. ``path`` is
    the XML file or the zip CVAT downloads (its ``annotations.xml`` is read; the images in it are not needed).

    The image id is the file stem of ``name``. Coordinates ``xtl, ytl, xbr, ybr`` are pixels. Other shapes
    (``<polygon>``, ``<points>``, ``<tag>`` ...) are noted in ``skipped``; a ``<box>`` with a label not in
    ``class_names`` or a non-zero ``rotation`` is an error.

    CVAT exports every image of a job, finished or not, and its XML says nothing of the job's state: an
    ``<image>`` with no element at all is **not labelled** (``unlabelled``: it stays pending) unless
    ``empty_means_labelled`` (the job is finished: every image in the file was looked at). An image with a
    ``<tag>`` (e.g. a tag label "no objects") or any other shape but no ``<box>`` is an empty label.
    """
    path = Path(path)
    out = _Collector(path, class_names, "CVAT XML export")
    root = _load_cvat_zip(path, out.problems) if path.suffix.lower() == ".zip" else _load_xml(path, out.problems)
    if root is not None and (root.tag != "annotations" or root.find("track") is not None):
        found = "<track> elements (a video export)" if root.tag == "annotations" else f"root <{root.tag}>"
        out.problems.append(Problem(path.name, f"expected <annotations> with <image> elements; found {found}",
                                    _CVAT_HINT))
        root = None
    for k, image in enumerate([] if root is None else root.findall("image"), start=1):
        name = image.get("name")
        item = f"image {name!r}"
        where = f"{path.name}: image[{k}]"
        if not name or not _ref_stem(name):
            out.problems.append(Problem(where, f"missing attribute name (the image file name); found {name!r}",
                                        _CVAT_HINT))
            continue
        rows, other = [], []
        out.begin()
        for j, shape in enumerate(image, start=1):
            if shape.tag == "box":
                row = _cvat_box(shape, f"{where}/{shape.tag}[{j}]", item, out)
                rows += [row] if row is not None else []
            else:
                other.append(shape.tag)
        if other:
            out.skipped.append(f"{item}: left out {len(other)} shape(s) {sorted(set(other))}; only <box> is read")
        if len(image) == 0 and not empty_means_labelled:
            out.unlabelled.append(_ref_stem(name))
            continue
        out.add(_ref_stem(name), item, rows)
    return out.result()


def _cvat_box(box: ET.Element, where: str, item: str, out: _Collector) -> tuple[str, list[float], int] | None:
    count = len(out.problems)
    label = out.label(box.get("label"), f"{where}@label", item)
    xyxy = [_xml_number(box.get(key), f"{where}@{key}", out.problems) for key in ("xtl", "ytl", "xbr", "ybr")]
    rotation = _xml_number(box.get("rotation", "0"), f"{where}@rotation", out.problems)
    if rotation not in (None, 0):
        out.problems.append(Problem(f"{where}@rotation", f"{item}: box rotated by {rotation:g} degrees; only "
                                    "axis-aligned boxes can be imported", "set the box's rotation to 0 in CVAT"))
    return None if len(out.problems) > count or label is None else (where, xyxy, label)


def write_cvat_coco(items: Iterable[ExportItem], class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write the items' detections as a COCO 1.0 file that CVAT imports as annotations (Upload annotations ->
    COCO 1.0) and :func:`activedet.data.coco.read_coco` reads.

    ``images[].file_name`` is the last path component of ``image_ref`` (CVAT matches images by file name),
    ids ``1..``; categories ``1..C`` are ``class_names``; each box is an annotation with ``bbox = [x, y, w, h]``
    pixels, ``segmentation: []`` and its ``score`` when known. Written atomically; returns ``path``.
    """
    names = list(_class_index(class_names))
    items = _check_items(items, len(names), "write_cvat_coco")
    file_names = [_ref_name(item.image_ref) for item in items]
    repeated = sorted({n for n in file_names if file_names.count(n) > 1})
    if repeated or "" in file_names:
        raise ValueError(f"write_cvat_coco needs one distinct file name per image (CVAT matches images by name); "
                         f"repeated or empty: {repeated or ['']}")
    images, annotations = [], []
    for image_id, (item, file_name) in enumerate(zip(items, file_names), start=1):
        images.append({"id": image_id, "file_name": file_name, "width": item.width, "height": item.height})
        for k, (box, label) in enumerate(zip(item.boxes, item.labels)):
            x, y, w, h = coco._xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": [coco._num(v) for v in (x, y, w, h)], "area": coco._num(w * h),
                                "iscrowd": 0, "segmentation": []})
            if item.scores is not None:
                annotations[-1]["score"] = float(item.scores[k])
    categories = [{"id": i, "name": n, "supercategory": ""} for i, n in enumerate(names, start=1)]
    data = {"info": {"description": "activedet pre-annotations"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}
    atomic_write_text(path, json.dumps(data, allow_nan=False))
    return Path(path)


# ------------------------------------------------------------------------------------------ COCO, VOC and YOLO

def read_coco_labels(path: str | os.PathLike, class_names: Sequence[str], *,
                     images: Container[str] | None = None, empty_means_labelled: bool = False) -> LabelImport:
    """Read a COCO detection JSON (CVAT's "COCO 1.0" export, or any tool's) as labels; ``path`` is the file, or
    the export's folder holding one ``annotations/*.json``.

    Categories are matched to ``class_names`` **by name** (CVAT numbers them from 1 in its own order); the
    image id is ``file_name`` mapped by :func:`image_id_from_name` onto ``images`` (the run's image ids; without
    them, the file stem). Each annotation's ``bbox`` is the box (a ``segmentation`` is not read); crowd
    annotations (``iscrowd: 1``) are noted in ``skipped``. An annotation of a category not in ``class_names`` is
    an error; a CVAT ``attributes.rotation`` other than 0 too.

    COCO cannot tell an image nobody has labelled yet from one with nothing to box, and CVAT exports every image
    of a job, finished or not: an image without annotations is **not labelled** (``unlabelled``: it stays
    pending) unless ``empty_means_labelled`` (every image in the file was looked at: the job is finished).
    """
    return _read_coco(_coco_file(Path(path)), class_names, image_id_of=lambda name: image_id_from_name(name, images),
                      empty_means_labelled=empty_means_labelled)


def _read_coco(path: Path, class_names: Sequence[str], *, image_id_of, empty_means_labelled: bool,
               newest_first: bool = False) -> LabelImport:
    """COCO labels; ``image_id_of(file_name)`` names each image; ``newest_first``: several image entries of one
    image are its annotations, newest first (Label Studio), and only the first is read."""
    out = _Collector(path, class_names, "COCO file")
    data = _load_json(path, dict, "a JSON object with 'images', 'annotations' and 'categories'", coco._JSON_HINT,
                      out.problems)
    if data is None:
        return out.result()
    names = {}
    for where, entry in coco._entries(data, "categories", path.name, out.problems):
        cat_id = coco._field(entry, "id", where, (int,), "an integer id", out.problems)
        names[cat_id] = coco._field(entry, "name", where, (str,), "a string", out.problems)
    entries, boxes, crowd = {}, {}, {}
    for where, entry in coco._entries(data, "images", path.name, out.problems):
        image_id = coco._field(entry, "id", where, (int, str), "an integer id", out.problems)
        file_name = coco._field(entry, "file_name", where, (str,), "the image file name", out.problems)
        if image_id in entries:
            out.problems.append(Problem(f"{where}.id", f"duplicate image id {image_id!r}", "export again"))
        elif image_id is not None and file_name is not None and _ref_stem(file_name):
            entries[image_id] = (image_id_of(file_name), f"image {file_name!r}")
            size = (entry.get("width"), entry.get("height"))
            if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
                out.sizes[entries[image_id][0]] = size
            boxes[image_id], crowd[image_id] = [], 0
    for where, entry in coco._entries(data, "annotations", path.name, out.problems):
        image_id = coco._field(entry, "image_id", where, (int, str), "the id of an image in 'images'", out.problems)
        if image_id is not None and image_id not in entries:
            out.problems.append(Problem(f"{where}.image_id", f"refers to image id {image_id!r}, which is not in "
                                        "'images'", "export again, or remove this annotation"))
        elif image_id is not None and entry.get("iscrowd") in (1, True):
            crowd[image_id] += 1
        elif image_id is not None:
            row = _coco_box(entry, where, entries[image_id][1], names, out)
            boxes[image_id] += [row] if row is not None else [None]  # None: an invalid annotation
    used = set()
    for image_id, (stem, item) in entries.items():
        if newest_first and stem in used:
            out.skipped.append(f"{item} (id {image_id}): an older annotation of {stem!r}, left out (the newest one "
                               "comes first)")
            continue
        used.add(stem)
        if None in boxes[image_id]:
            continue
        out.begin()
        if crowd[image_id]:
            out.skipped.append(f"{item}: left out {crowd[image_id]} crowd annotation(s) (iscrowd: 1)")
        elif not boxes[image_id] and not empty_means_labelled:
            out.unlabelled.append(stem)
            continue
        out.add(stem, item, boxes[image_id])
    return out.result()


def _coco_file(path: Path) -> Path:
    """``path``, or for the folder of a COCO export (CVAT's and Datumaro's layout) its one
    ``annotations/*.json`` file."""
    if not path.is_dir():
        return path
    files = sorted((path / "annotations").glob("*.json"))
    if len(files) != 1:
        raise DatasetError([Problem(path.name, f"expected one annotations/*.json file in {os.path.abspath(path)}; "
                                    f"found {[f.name for f in files]}", "give the COCO JSON file to import")],
                           f"COCO export {path}")
    return files[0]


def _coco_box(entry: dict, where: str, item: str, names: dict, out: _Collector) -> tuple | None:
    count = len(out.problems)
    category = coco._field(entry, "category_id", where, (int,), "the id of a category", out.problems)
    bbox = coco._field(entry, "bbox", where, (list,), "[x, y, width, height] in pixels", out.problems)
    label = None
    if category is not None and category not in names:
        out.problems.append(Problem(f"{where}.category_id", f"refers to category id {category}, which is not in "
                                    "'categories'", "export again, or fix the id"))
    elif category is not None and names[category] is not None:
        label = out.label(names[category], f"{where}.category_id", item)
    if bbox is not None and (len(bbox) != 4 or not all(coco._is_number(v) for v in bbox)):
        out.problems.append(Problem(f"{where}.bbox", f"expected [x, y, width, height] (4 numbers); found "
                                    f"{_short(bbox)}", coco._JSON_HINT))
    attributes = entry.get("attributes")
    rotation = attributes.get("rotation", 0) if isinstance(attributes, dict) else 0
    if rotation not in (0, None):
        out.problems.append(Problem(f"{where}.attributes.rotation", f"{item}: box rotated by {rotation} degrees; "
                                    "only axis-aligned boxes can be imported", "set its rotation to 0 in CVAT"))
    if len(out.problems) > count or label is None or bbox is None:
        return None
    x, y, w, h = (float(v) for v in bbox)
    return f"{where}.bbox", [x, y, x + w, y + h], label


def read_voc_labels(path: str | os.PathLike, class_names: Sequence[str], *, one_based: bool = True,
                    images: Container[str] | None = None, empty_means_labelled: bool = False) -> LabelImport:
    """Read a folder of Pascal VOC XML files (or its ``Annotations/`` subfolder, or one ``.xml`` file).

    Pascal VOC coordinates come in two conventions, so the caller says which one the files use:

    * ``one_based=True``: the devkit's 1-based pixel indices (the VOC2007/2012 files, activedet's ``voc``
      export), converted as :mod:`activedet.data.voc` does (``x1 = xmin - 1``, ``x2 = xmax``);
    * ``one_based=False``: the 0-based pixel coordinates CVAT and Datumaro write (``x1 = xmin``, ``x2 = xmax``).

    The image id is the XML file's name (relative to the folder) mapped by :func:`image_id_from_name` onto
    ``images`` (the run's image ids; without them, the file stem). A file without ``<object>`` is an empty
    label. An image listed in ``ImageSets/Main/*.txt`` without a file (CVAT and Datumaro write none for an image
    without objects, and list every image of a job, finished or not) is **not labelled** (it stays pending)
    unless ``empty_means_labelled`` (the job is finished); ``<difficult>1`` and ``<iscrowd>1`` objects are noted in ``skipped`` (they are not
    training targets).
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path / "Annotations" if (path / "Annotations").is_dir() else path
    out = _Collector(path, class_names, "Pascal VOC annotations")
    files = [path] if path.is_file() else sorted(folder.rglob("*.xml"))
    if not files:
        out.problems.append(Problem(path.name, f"no .xml files in {os.path.abspath(folder)}",
                                    "give the folder holding the VOC XML files"))
    offsets = voc._OFFSETS if one_based else voc._ZERO_OFFSETS
    for file in files:
        name = file.relative_to(folder).as_posix()
        root = _load_xml(file, out.problems, name=name)
        if root is None:
            continue
        rows, flagged = [], 0
        out.begin()
        for k, obj in enumerate(root.findall("object"), start=1):
            row = voc._read_object(obj, f"{name}: object[{k}]", out.class_index, out.problems, offsets,
                                   "rename the label in the annotation tool, or add the class to the run's classes")
            if row is not None and one_based and min(row[1][:2]) < 0:  # xmin or ymin below 1: not a 1-based index
                out.problems.append(Problem(f"{name}: object[{k}]/bndbox", f"xmin, ymin = {row[1][0] + 1:g}, "
                                            f"{row[1][1] + 1:g}: below 1, which 1-based pixel indices cannot be; the "
                                            "file uses 0-based coordinates (as CVAT and Datumaro write)",
                                            "import it as cvat_voc (--format cvat_voc)"))
            elif row is not None and (row[3] or row[4]):
                flagged += 1
            elif row is not None:
                rows.append(row[:3])
        if flagged:
            out.skipped.append(f"{name}: left out {flagged} difficult/iscrowd object(s)")
        image_id = image_id_from_name(name, images)
        size = voc._read_size(root, name, [])  # a missing or unreadable size is not checked
        if size is not None:
            out.sizes[image_id] = size
        out.add(image_id, name, rows)
    if not path.is_file():
        _voc_listed_without_file(folder, {f.relative_to(folder).with_suffix("").as_posix() for f in files}, images,
                                 out, empty_means_labelled)
    return out.result()


def _voc_listed_without_file(folder: Path, annotated: set[str], images: Container[str] | None,
                             out: _Collector, empty_means_labelled: bool) -> None:
    """Images listed in ``ImageSets/Main/*.txt`` without an annotation file: CVAT and Datumaro write no XML for an
    image without objects, and list every image of the job: empty labels if ``empty_means_labelled``, else
    pending (``unlabelled``)."""
    lists = folder.parent / "ImageSets" / "Main" if folder.name == "Annotations" else folder / "ImageSets" / "Main"
    empty = {}
    for listing in sorted(lists.glob("*.txt")) if lists.is_dir() else []:
        if "_" in listing.stem:  # a per-class list (aeroplane_trainval.txt), not an image list
            continue
        for number, line in enumerate(listing.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            stem = line.split()[0] if line.split() else ""
            if stem and stem not in annotated and stem not in empty:
                empty[stem] = f"ImageSets/Main/{listing.name}:{number}"
    for stem, where in empty.items():
        image_id = _known_id(stem, images) if images is not None else stem
        if not empty_means_labelled:
            out.unlabelled.append(image_id)
            continue
        out.begin()
        out.add(image_id, where, [])
    if empty and empty_means_labelled:
        out.skipped.append(f"{len(empty)} image(s) listed in ImageSets/Main without an annotation file read as "
                           "labelled with no objects (how CVAT and Datumaro write an image without objects)")


def read_yolo_labels(path: str | os.PathLike, class_names: Sequence[str], *,
                     images: dict[str, tuple[int, int]], empty_means_labelled: bool = False) -> LabelImport:
    """Read YOLO ``.txt`` label files as labels: a Darknet/CVAT/Datumaro export (``obj.names``, ``obj.data``,
    ``obj_<subset>_data/``), an Ultralytics one (``data.yaml``, ``labels/<subset>/``), or a folder of label files
    with ``classes.txt``.

    * Class indices are 0-based into the export's own class list (``obj.names``, the ``names =`` file of
      ``obj.data``, ``data.yaml``'s ``names`` or ``classes.txt``, next to the labels or one level up), matched
      to ``class_names`` **by name**. No class list, lists that disagree, an index past the list's end or a
      name not in ``class_names`` are errors naming the label file, the line and the class.
    * The image of a label file is its path mapped by :func:`image_id_from_name` onto ``images``
      (``{image_id: (width, height)}``, which also gives the sizes the normalised coordinates need).
    * An empty file is **not labelled** (the image stays pending) unless ``empty_means_labelled``: CVAT and
      Datumaro write one for every image of a job, finished or not.
    """
    path = Path(path)
    if path.is_file() and path.name in (*_YOLO_NAME_FILES, "obj.data"):  # the export's class list or config
        path = path.parent
    out = _Collector(path, class_names, "YOLO labels")
    base = _yolo_base(path)
    names, names_file, listed = _yolo_names(base, out.problems)
    files = _yolo_label_files(path, base, listed)
    if not files:
        out.problems.append(Problem(path.name, f"no .txt label files in {os.path.abspath(path)}",
                                    "give the folder of the YOLO export (holding obj.names, data.yaml or "
                                    "classes.txt and the label files)"))
    missing: dict[int, str] = {}  # class index -> first line using it, when the export has no class list
    for file in files:
        where = file.relative_to(path).as_posix()
        out.begin()
        rows = yolo._read_label_file(file, where, None if names is None else len(names), out.problems)
        if names is None and rows:  # (an empty file needs no class list)
            for location, label, *_ in rows:
                missing.setdefault(label - 1, location)
            continue
        image_id = image_id_from_name(where, images)
        if image_id not in images:
            out.problems.append(Problem(where, f"no image of the run is named like this label file (image id "
                                        f"{image_id!r})", "keep each label file named after its image, as the "
                                        "export wrote it (NAME.txt for NAME.jpg)"))
            continue
        if not rows and not empty_means_labelled:
            out.unlabelled.append(image_id)
            continue
        width, height = images[image_id]
        pixels = []
        for location, label, (cx, cy, w, h), _ in rows:
            label = out.label(names[label - 1], location, f"class {label - 1} of {names_file}")
            if label is not None:
                pixels.append((location, [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                                          (cy + h / 2) * height], label))
        out.add(image_id, where, pixels)
    if missing and names_file is None:
        out.problems.append(Problem(next(iter(missing.values())), f"class(es) {sorted(missing)} have no name: "
                                    f"no {', '.join(_YOLO_NAME_FILES)} in {os.path.abspath(base)}",
                                    "export again with the class list (CVAT's and Datumaro's YOLO exports hold "
                                    "obj.names), or add classes.txt with the tool's class names, one per line in "
                                    "class-index order"))
    return out.result()


#: the files a YOLO export keeps its class names in (Darknet/CVAT/Datumaro, Ultralytics, plain folders)
_YOLO_NAME_FILES = ("obj.names", "data.yaml", "classes.txt")


def _yolo_base(path: Path) -> Path:
    """The folder whose class list describes the labels under ``path``: ``path`` itself, or, for a ``labels``,
    ``labels/<subset>`` or ``obj_<subset>_data`` folder without one, the export's root."""
    candidates = [path]
    if path.name == "labels" or re.fullmatch(r"obj_\w+_data", path.name):
        candidates.append(path.parent)
    if path.parent.name == "labels":
        candidates.append(path.parent.parent)
    return next((c for c in candidates if any((c / n).is_file() for n in (*_YOLO_NAME_FILES, "obj.data"))), path)


def _yolo_names(base: Path, problems: list[Problem]) -> tuple[list[str] | None, str | None, set[Path]]:
    """``(names, file, listed)``: the export's class names and the file they came from (``None`` when there is
    none or it is broken), and the image-list files its ``obj.data``/``data.yaml`` name (not label files)."""
    found, listed = [], set()
    config = base / "obj.data"
    if config.is_file():
        for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            value = value.strip()
            if key.strip() not in ("", "classes", "backup") and value:
                target = base / value if (base / value).is_file() else base / PurePosixPath(value).name
                if key.strip() == "names":
                    found.append(target)
                else:
                    listed.add(target)
    found += [base / n for n in _YOLO_NAME_FILES if (base / n).is_file()]
    lists = {}
    for file in dict.fromkeys(p.resolve() for p in found if p.is_file()):
        names, name_problems = yolo._read_names(base, file)
        problems += name_problems
        if file.name == "data.yaml":
            listed.update(_yaml_lists(base, file))
        if not name_problems:
            lists[os.path.relpath(file, base)] = names
    if len({tuple(n) for n in lists.values()}) > 1:
        problems.append(Problem(" and ".join(lists), "the class lists disagree: " + "; ".join(
            f"{k}: {v}" for k, v in lists.items()), "keep the class list the labels were written with"))
        return None, "?", listed
    if not lists:
        return None, ("?" if found else None), listed
    return next(iter(lists.values())), next(iter(lists)), listed


def _yaml_lists(base: Path, file: Path) -> set[Path]:
    import yaml  # a project dependency, imported where needed

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return set()
    values = [data.get(k) for k in ("train", "val", "test")] if isinstance(data, dict) else []
    return {base / v for v in values if isinstance(v, str) and v.endswith(".txt")}


def _yolo_label_files(path: Path, base: Path, listed: set[Path]) -> list[Path]:
    """The label files of a YOLO export: under ``labels/`` (Ultralytics), under ``obj_<subset>_data/`` (Darknet,
    CVAT, Datumaro), else every ``.txt`` file but the class list and the image lists."""
    if (path / "labels").is_dir():
        return sorted((path / "labels").rglob("*.txt"))
    darknet = sorted(d for d in path.glob("obj_*_data") if d.is_dir())
    if darknet:
        return sorted(f for d in darknet for f in d.rglob("*.txt"))
    skip = {p.resolve() for p in listed} | {(base / n).resolve() for n in _YOLO_NAME_FILES}
    return sorted(f for f in path.rglob("*.txt") if f.resolve() not in skip)


# ---------------------------------------------------------------------------------------------------- dispatch

def read_labels(fmt: str, path: str | os.PathLike, class_names: Sequence[str], *,
                images: dict[str, tuple[int, int]] | None = None, **options) -> LabelImport:
    """Read people's labels in format ``fmt`` (one of :data:`LABEL_FORMATS`, or ``datumaro:<name>`` for any of
    Datumaro's dataset formats); ``options`` go to that reader (``image_key=`` for ``labelstudio``,
    ``empty_means_labelled=`` for :data:`EMPTY_AMBIGUOUS` and Datumaro's).

    ``images = {image_id: (width, height)}``, the run's images, serves the formats with relative coordinates
    (``yolo``, Label Studio without ``original_width``) and maps every name the file gives to an image id with
    :func:`image_id_from_name` (an exported ``setB__x.jpg`` is ``setB/x``).
    """
    if isinstance(fmt, str) and fmt.startswith("datumaro:"):
        from .datumaro_io import read_datumaro_labels

        result = read_datumaro_labels(path, class_names, fmt.split(":", 1)[1], images=images, **options)
        return result if images is None else _resolve_ids(result, images)
    check_choice("read_labels", "fmt", fmt, LABEL_FORMATS)
    from . import labelstudio_exports as ls

    readers = {"labelstudio": read_labelstudio_export, "labelstudio_min": ls.read_labelstudio_min,
               "labelstudio_coco": ls.read_labelstudio_coco, "labelstudio_voc": ls.read_labelstudio_voc,
               "labelstudio_yolo": ls.read_labelstudio_yolo, "cvat_xml": read_cvat_xml, "coco": read_coco_labels,
               "voc": read_voc_labels, "cvat_voc": read_voc_labels, "yolo": read_yolo_labels}
    if fmt in ("yolo", "labelstudio_yolo") and images is None:
        raise ValueError(f"read_labels({fmt!r}, ...) needs images={{image_id: (width, height)}}: YOLO coordinates "
                         "are normalised by the image size, which the label files do not store")
    if fmt != "cvat_xml" and images is not None:
        options["images"] = images
    if fmt in ("voc", "cvat_voc"):
        options["one_based"] = fmt == "voc"
    result = readers[fmt](path, class_names, **options)
    return result if images is None else _resolve_ids(result, images)


def _resolve_ids(result: LabelImport, images: Container[str]) -> LabelImport:
    """``result`` with its image names mapped to the ids of ``images`` (:func:`image_id_from_name`); two names of
    one image are an error naming both."""
    ids = {key: _known_id(key, images) for key in result.labels}
    seen: dict[str, str] = {}
    for key, image_id in ids.items():
        if image_id in seen:
            raise DatasetError([Problem(Path(result.source).name, f"{seen[image_id]!r} and {key!r} both name "
                                        f"image {image_id!r}", "keep one of them in the export")],
                               f"labels {result.source}")
        seen[image_id] = key
    result.labels = {ids[k]: v for k, v in result.labels.items()}
    result.annotators = {ids.get(k, k): v for k, v in result.annotators.items()}
    result.difficult = {ids.get(k, k): v for k, v in result.difficult.items()}
    result.unlabelled = [_known_id(k, images) for k in result.unlabelled]
    result.sizes = {ids.get(k, k): v for k, v in result.sizes.items()}
    return result


# ----------------------------------------------------------------------------------------------------- helpers

def _class_index(class_names: Sequence[str]) -> dict[str, int]:
    names = list(class_names)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct non-empty strings (label l is class_names[l - 1]). Got "
                         f"{names!r} instead.")
    return {n: i for i, n in enumerate(names, start=1)}


def _check_items(items: Iterable[ExportItem], num_classes: int, caller: str) -> list[ExportItem]:
    items = list(items)
    seen = set()
    for item in items:
        if not isinstance(item, ExportItem):
            raise TypeError(f"{caller} takes ExportItem objects. Got {type(item).__name__} instead.")
        if item.image_id in seen:
            raise ValueError(f"{caller}: image id {item.image_id!r} is exported twice; give each image once")
        seen.add(item.image_id)
        if len(item.labels) and not (item.labels.min() >= 1 and item.labels.max() <= num_classes):
            raise ValueError(f"{caller}: image {item.image_id!r} has labels {sorted(set(item.labels.tolist()))} "
                             f"outside 1..{num_classes} ({num_classes} class names)")
    return items


def _ref_path(ref: str) -> PurePosixPath:
    """The file path inside an image reference: a URL's path, Label Studio's ``?d=`` local-files path, or a
    plain (POSIX or Windows) path."""
    parts = urlsplit(ref.replace("\\", "/"))
    local = parse_qs(parts.query).get("d")
    return PurePosixPath(unquote(local[0] if local else parts.path))


def _ref_name(ref: str) -> str:
    return _ref_path(ref).name


def _ref_stem(ref: str) -> str:
    """The image id of a reference: its file stem, without the ``1a2b3c4d-`` prefix Label Studio gives uploads
    (``/data/upload/<project>/<hex>-<name>``)."""
    path = _ref_path(ref)
    stem = path.stem
    if "upload" in path.parts[:-1]:
        stem = re.sub(r"^[0-9a-f]{4,32}-", "", stem)
    return stem


#: what an image id's ``/`` becomes in an exported file name (annotation tools keep one flat folder of images)
_FOLDER_SEPARATOR = "__"


def export_file_name(image_id: str, suffix: str) -> str:
    """The file name an image is exported under: its id with each ``/`` (a sub-folder of the unlabelled folder)
    written as ``__``, plus ``suffix`` (``"setB/x"``, ``".jpg"`` -> ``"setB__x.jpg"``).
    :func:`image_id_from_name` maps it back."""
    return image_id.replace("/", _FOLDER_SEPARATOR) + suffix


def image_id_from_name(name: str, image_ids: Container[str] | None = None) -> str:
    """The image id an annotation tool's image (or label file) name stands for; every reader maps names this way.

    ``name`` is a file name, a relative path, a URL or a Label Studio ``?d=`` path, with its suffix. Without
    ``image_ids`` the id is the file stem (Label Studio's upload prefix removed). With the ids of the run's
    images, the first of these that is an id wins: the stem with as many of its parent folders as match
    (``"data/setB/x.jpg"`` -> ``"setB/x"``), the stem alone, then the stem with ``__`` read as ``/`` (the name
    :func:`export_file_name` wrote, ``"setB__x.jpg"`` -> ``"setB/x"``); else the stem (which then names an image
    the run does not have).
    """
    path = _ref_path(name)
    stem = _ref_stem(name)
    if image_ids is None:
        return stem
    return _known_id(PurePosixPath(*path.parts[:-1], stem).as_posix() if stem else "", image_ids)


def _known_id(key: str, image_ids: Container[str]) -> str:
    """The id of ``image_ids`` that the suffix-less path ``key`` names (see :func:`image_id_from_name`)."""
    parts = [p for p in key.split("/") if p and p != "/"]
    for start in range(len(parts)):
        candidate = "/".join(parts[start:])
        if candidate in image_ids:
            return candidate
    stem = parts[-1] if parts else key
    decoded = stem.replace(_FOLDER_SEPARATOR, "/")
    return decoded if decoded in image_ids else stem


def _load_json(path: Path, kind: type, expected: str, hint: str, problems: list[Problem]):
    """The parsed file if it is a ``kind``, else ``None`` with a problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(Problem(path.name, f"file not found: {os.path.abspath(path)}", "check the path"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(path.name, f"cannot read {path}: {exc}", "give a UTF-8 JSON file"))
        return None
    except json.JSONDecodeError as exc:
        problems.append(Problem(f"{path.name}:{exc.lineno}:{exc.colno}", f"malformed JSON: {exc.msg}",
                                "fix the JSON (a truncated file usually means an interrupted download) or " + hint))
        return None
    if not isinstance(data, kind):
        problems.append(Problem(path.name, f"expected {expected}; found {_short(data)}", hint))
        return None
    return data


def _load_cvat_zip(path: Path, problems: list[Problem]) -> ET.Element | None:
    """The root of ``annotations.xml`` in a CVAT export zip, or ``None`` with a problem."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("annotations.xml")
    except FileNotFoundError:
        problems.append(Problem(path.name, f"file not found: {os.path.abspath(path)}", "check the path"))
    except KeyError:
        problems.append(Problem(path.name, "no annotations.xml at the top of the zip", _CVAT_HINT))
    except (zipfile.BadZipFile, OSError) as exc:
        problems.append(Problem(path.name, f"not a readable zip file ({exc})", "download the export again"))
    else:
        try:
            return ET.fromstring(data)
        except ET.ParseError as exc:
            problems.append(Problem(f"{path.name}/annotations.xml:{exc.position[0]}:{exc.position[1]}",
                                    f"malformed XML: {exc}", "export the task again"))
    return None


def _load_xml(path: Path, problems: list[Problem], name: str | None = None) -> ET.Element | None:
    name = name or path.name
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        problems.append(Problem(name, f"file not found: {os.path.abspath(path)}", "check the path"))
    except ET.ParseError as exc:
        problems.append(Problem(f"{name}:{exc.position[0]}:{exc.position[1]}", f"malformed XML: {exc}",
                                "fix the XML syntax, or export the file again"))
    except OSError as exc:
        problems.append(Problem(name, f"cannot read {path}: {exc}", "check the file"))
    return None


def _number(value: object, where: str, expected: str, problems: list[Problem]) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    problems.append(Problem(where, f"expected {expected}; found {_short(value)}", _LS_HINT))
    return None


def _xml_number(text: str | None, where: str, problems: list[Problem]) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        problems.append(Problem(where, f"expected a number (pixels); found {text!r}", _CVAT_HINT))
        return None


def _prefix(item: str | None) -> str:
    return f"{item}: " if item else ""


def _short(value: object) -> str:
    """A JSON value shown in a message: its type and at most 80 characters of it."""
    text = json.dumps(value) if not isinstance(value, float) or np.isfinite(value) else repr(value)
    kind = {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{kind} {text[:80]}" if value is not None else "null (or missing)"
