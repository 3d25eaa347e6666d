"""Shared pieces of the annotation-tool readers and writers: the exchanged items and results, the collector that
gathers one file's labels and problems, image-name mapping and small parsing helpers.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from ..data.records import DatasetError, Problem, unparsable

LS_HINT = "export the project from Label Studio with Export -> JSON (or pass --format for its other exports)"
CVAT_HINT = "export the task from CVAT as 'CVAT for images 1.1'"


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
            raise ValueError(
                f"{name}: image_id must be a non-empty string and image_ref a string. Got "
                f"{self.image_id!r} and {self.image_ref!r} instead."
            )
        for key in ("width", "height"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name}: {key} must be a positive int (pixels). Got {value!r} instead.")
            setattr(self, key, int(value))
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels).reshape(-1).astype(np.int64)
        bad = (
            ~np.isfinite(self.boxes).all(axis=1)
            | (self.boxes[:, 2] <= self.boxes[:, 0])
            | (self.boxes[:, 3] <= self.boxes[:, 1])
        )
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}: box {k} xyxy={self.boxes[k].tolist()} is not finite or has no area; "
                "leave such detections out of the export"
            )
        if self.scores is not None:
            self.scores = np.asarray(self.scores, np.float64).reshape(-1)
        if len(self.labels) != len(self.boxes) or (self.scores is not None and len(self.scores) != len(self.boxes)):
            raise ValueError(
                f"{name}: {len(self.boxes)} boxes, {len(self.labels)} labels and "
                f"{None if self.scores is None else len(self.scores)} scores; give one of each per box"
            )
        if self.scores is not None and not np.isfinite(self.scores).all():
            raise ValueError(f"{name}: scores must be finite. Got {self.scores.tolist()} instead.")
        if self.image_score is not None:
            if not np.isfinite(self.image_score):
                raise ValueError(f"{name}: image_score must be finite or None. Got {self.image_score!r} instead.")
            self.image_score = float(self.image_score)

    @classmethod
    def from_detections(
        cls, image_id: str, image_ref: str, width: int, height: int, detections, image_score: float | None = None
    ) -> ExportItem:
        """An item from a :class:`~activedet.models.outputs.Detections` (its ``boxes``, ``labels``, ``scores``)."""

        def array(value):
            return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)

        return cls(
            image_id,
            image_ref,
            width,
            height,
            array(detections.boxes),
            array(detections.labels),
            array(detections.scores),
            image_score,
        )


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


class Collector:
    """Per-image labels gathered from one file; :meth:`result` checks them and raises for every problem."""

    def __init__(self, source: Path, class_names: Sequence[str], what: str):
        self.source, self.name, self.what = source, source.name, what
        self.class_index = class_index_of(class_names)
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

    def add(
        self, image_id: str, item: str, rows: list[tuple[str, Sequence[float], int]], annotator: str | None = None
    ) -> None:
        """Record the boxes ``rows = [(location, xyxy pixels, label), ...]`` of ``image_id`` found at ``item``."""
        if len(self.problems) > self.mark:
            return
        boxes = np.array([r[1] for r in rows], np.float64).reshape(-1, 4).astype(np.float32)
        for (where, _, _), box in zip(rows, boxes.astype(np.float64)):
            if not np.isfinite(box).all():
                self.problems.append(
                    Problem(
                        where,
                        f"box coordinates must be finite numbers; found xyxy={box.tolist()}",
                        "fix or delete this box in the annotation tool",
                    )
                )
            elif box[2] <= box[0] or box[3] <= box[1]:
                self.problems.append(
                    Problem(
                        where,
                        f"box must have a positive width and height; found xyxy={box.tolist()}",
                        "fix or delete this box in the annotation tool",
                    )
                )
        if len(self.problems) > self.mark:
            return
        self.found.setdefault(image_id, []).append((item, boxes, np.array([r[2] for r in rows], np.int64), annotator))

    def result(self) -> LabelImport:
        labels, annotators, conflicts = {}, {}, []
        for image_id, entries in self.found.items():
            _, boxes, classes, annotator = entries[0]
            if any(not same_labels(boxes, classes, b, c) for _, b, c, _ in entries[1:]):
                conflicts.append(f"{image_id!r} ({', '.join(e[0] for e in entries)})")
            labels[image_id], annotators[image_id] = (boxes, classes), annotator
        if conflicts:
            self.problems.append(
                Problem(
                    self.name,
                    f"{len(conflicts)} image id(s) labelled more than once with "
                    f"different boxes: {'; '.join(conflicts)}",
                    "keep one labelled copy of each image (delete the duplicates in the "
                    "annotation tool and export again)",
                )
            )
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
        self.problems.append(
            Problem(
                where,
                f"{item_prefix(item)}unknown label {name!r}; the class names are {list(self.class_index)}",
                "rename the label in the annotation tool, or add the class to the run's class names",
            )
        )
        return None


def same_labels(boxes_a: np.ndarray, labels_a: np.ndarray, boxes_b: np.ndarray, labels_b: np.ndarray) -> bool:
    """Whether two box sets are equal up to order."""

    def rows(boxes, labels):
        table = np.concatenate([labels[:, None].astype(np.float64), boxes.astype(np.float64)], axis=1)
        return table[np.lexsort(table.T[::-1])]

    return len(boxes_a) == len(boxes_b) and np.array_equal(rows(boxes_a, labels_a), rows(boxes_b, labels_b))


def class_index_of(class_names: Sequence[str]) -> dict[str, int]:
    names = list(class_names)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(
            f"class_names must be distinct non-empty strings (label l is class_names[l - 1]). Got {names!r} instead."
        )
    return {n: i for i, n in enumerate(names, start=1)}


def check_items(items: Iterable[ExportItem], num_classes: int, caller: str) -> list[ExportItem]:
    items = list(items)
    seen = set()
    for item in items:
        if not isinstance(item, ExportItem):
            raise TypeError(f"{caller} takes ExportItem objects. Got {type(item).__name__} instead.")
        if item.image_id in seen:
            raise ValueError(f"{caller}: image id {item.image_id!r} is exported twice; give each image once")
        seen.add(item.image_id)
        if len(item.labels) and not (item.labels.min() >= 1 and item.labels.max() <= num_classes):
            raise ValueError(
                f"{caller}: image {item.image_id!r} has labels {sorted(set(item.labels.tolist()))} "
                f"outside 1..{num_classes} ({num_classes} class names)"
            )
    return items


def ref_path(ref: str) -> PurePosixPath:
    """The file path inside an image reference: a URL's path, Label Studio's ``?d=`` local-files path, or a
    plain (POSIX or Windows) path."""
    parts = urlsplit(ref.replace("\\", "/"))
    local = parse_qs(parts.query).get("d")
    return PurePosixPath(unquote(local[0] if local else parts.path))


def ref_name(ref: str) -> str:
    return ref_path(ref).name


def ref_stem(ref: str) -> str:
    """The image id of a reference: its file stem, without the ``1a2b3c4d-`` prefix Label Studio gives uploads
    (``/data/upload/<project>/<hex>-<name>``)."""
    path = ref_path(ref)
    stem = path.stem
    if "upload" in path.parts[:-1]:
        stem = re.sub(r"^[0-9a-f]{4,32}-", "", stem)
    return stem


#: what an image id's ``/`` becomes in an exported file name (annotation tools keep one flat folder of images)
FOLDER_SEPARATOR = "__"


def export_file_name(image_id: str, suffix: str) -> str:
    """The file name an image is exported under: its id with each ``/`` (a sub-folder of the unlabelled folder)
    written as ``__``, plus ``suffix`` (``"setB/x"``, ``".jpg"`` -> ``"setB__x.jpg"``).
    :func:`image_id_from_name` maps it back."""
    return image_id.replace("/", FOLDER_SEPARATOR) + suffix


def image_id_from_name(name: str, image_ids: Container[str] | None = None) -> str:
    """The image id an annotation tool's image (or label file) name stands for; every reader maps names this way.

    ``name`` is a file name, a relative path, a URL or a Label Studio ``?d=`` path, with its suffix. Without
    ``image_ids`` the id is the file stem (Label Studio's upload prefix removed). With the ids of the run's
    images, the first of these that is an id wins: the stem with as many of its parent folders as match
    (``"data/setB/x.jpg"`` -> ``"setB/x"``), the stem alone, then the stem with ``__`` read as ``/`` (the name
    :func:`export_file_name` wrote, ``"setB__x.jpg"`` -> ``"setB/x"``); else the stem (which then names an image
    the run does not have).
    """
    path = ref_path(name)
    stem = ref_stem(name)
    if image_ids is None:
        return stem
    return known_id(PurePosixPath(*path.parts[:-1], stem).as_posix() if stem else "", image_ids)


def known_id(key: str, image_ids: Container[str]) -> str:
    """The id of ``image_ids`` that the suffix-less path ``key`` names (see :func:`image_id_from_name`)."""
    parts = [p for p in key.split("/") if p and p != "/"]
    for start in range(len(parts)):
        candidate = "/".join(parts[start:])
        if candidate in image_ids:
            return candidate
    stem = parts[-1] if parts else key
    decoded = stem.replace(FOLDER_SEPARATOR, "/")
    return decoded if decoded in image_ids else stem


def load_json(path: Path, kind: type, expected: str, hint: str, problems: list[Problem]):
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
        problems.append(
            unparsable(
                f"{path.name}:{exc.lineno}:{exc.colno}",
                path,
                "JSON",
                exc.msg,
                "fix the JSON (a truncated file usually means an interrupted download) or " + hint,
            )
        )
        return None
    if not isinstance(data, kind):
        problems.append(Problem(path.name, f"expected {expected}; found {short_repr(data)}", hint))
        return None
    return data


def load_xml(path: Path, problems: list[Problem], name: str | None = None) -> ET.Element | None:
    name = name or path.name
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        problems.append(Problem(name, f"file not found: {os.path.abspath(path)}", "check the path"))
    except ET.ParseError as exc:
        problems.append(
            unparsable(
                f"{name}:{exc.position[0]}:{exc.position[1]}",
                path,
                "XML",
                str(exc),
                "fix the XML syntax, or export the file again",
            )
        )
    except OSError as exc:
        problems.append(Problem(name, f"cannot read {path}: {exc}", "check the file"))
    return None


def read_number(value: object, where: str, expected: str, problems: list[Problem]) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    problems.append(Problem(where, f"expected {expected}; found {short_repr(value)}", LS_HINT))
    return None


def xml_number(text: str | None, where: str, problems: list[Problem]) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        problems.append(Problem(where, f"expected a number (pixels); found {text!r}", CVAT_HINT))
        return None


def item_prefix(item: str | None) -> str:
    return f"{item}: " if item else ""


def short_repr(value: object) -> str:
    """A JSON value shown in a message: its type and at most 80 characters of it."""
    text = json.dumps(value) if not isinstance(value, float) or np.isfinite(value) else repr(value)
    kind = {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{kind} {text[:80]}" if value is not None else "null (or missing)"
