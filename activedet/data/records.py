"""The per-image record and the dataset container every reader produces and every writer consumes.

Conventions (the contract shared by readers, writers, training, evaluation and strategies):

* ``boxes`` are ``float32[N, 4]`` in ``(x1, y1, x2, y2)`` **pixel** coordinates of the original image, with
  ``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <= height`` once validated.
* ``labels`` are ``int64[N]`` in ``1..C`` where ``C = len(class_names)``; 0 is reserved for background, as in
  torchvision's detection models.
* ``difficult`` (Pascal VOC) and ``iscrowd`` (COCO) are ``bool[N]``. Difficult objects are ignored by VOC
  evaluation; crowd regions are ignore regions for COCO evaluation. Neither is used as a training target.
* ``area`` is ``float64[N]``: the object's area as the annotation file states it (COCO ``area``, the segment area in
  the official files), ``NaN`` where the file gives none. Only COCO evaluation reads it (its small/medium/large
  buckets); it is not a training target and is not updated when boxes are augmented.
* A record with ``N = 0`` is an image that is known to contain no object (a valid, "empty" label).
* The position of a record in :attr:`DetectionDataset.records` is its **pool index**; active-learning artefacts
  (``X_L_{cycle}.npy`` ...) store these indices.
* ``image_index`` is ``None`` for an ordinary image file; for a file holding many images (a CIFAR binary batch)
  it is the image's position inside ``file_name``.

Image classification uses the same records: a classified image is an ``ImageRecord`` with exactly one box
covering the whole image, ``[0, 0, width, height]``, whose label is the image's class ``c`` in ``1..C``. The
ledger, the oracle (one box = one label), class counts and every dataset tool then work unchanged; see
:mod:`activedet.data.classification` for the ImageFolder and CIFAR readers.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ImageRecord", "DetectionDataset", "Problem", "DatasetError", "group_problem_lines"]


@dataclass
class ImageRecord:
    """One image and its annotations.

    Args:
        image_id: unique id within the dataset (VOC file stem, COCO image id as text, YOLO relative stem).
        file_name: absolute path of the image file.
        width, height: image size in pixels.
        boxes: ``float32[N, 4]`` xyxy pixels.
        labels: ``int64[N]`` in ``1..C``.
        difficult: ``bool[N]`` (VOC ``<difficult>``).
        iscrowd: ``bool[N]`` (COCO ``iscrowd``).
        loss_weight: multiplier of this image's training loss, finite and ``>= 0`` (1: a human label; pseudo-labelled
            images get the pseudo-label weight λ, see :mod:`activedet.engine.pseudo`; 0: left out of training).
        image_index: position of the image inside a multi-image container ``file_name`` (the record number in a
            CIFAR binary batch, an int ``>= 0``); ``None`` (default) for an ordinary image file.
        area: ``float64[N]`` annotated object areas in square pixels (COCO ``area``), ``NaN`` where unknown;
            ``None`` (default): unknown for every box.
    """

    image_id: str
    file_name: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    difficult: np.ndarray | None = None
    iscrowd: np.ndarray | None = None
    loss_weight: float = 1.0
    image_index: int | None = None
    area: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.file_name = Path(self.file_name)
        index = self.image_index
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
                raise ValueError(
                    f"image {self.image_id!r}: image_index must be None or an int >= 0. Got {index!r} instead."
                )
            self.image_index = int(index)
        weight = self.loss_weight
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float, np.number))
            or not (math.isfinite(weight) and weight >= 0)
        ):
            raise ValueError(
                f"image {self.image_id!r}: loss_weight must be a finite float >= 0. Got {weight!r} instead."
            )
        self.loss_weight = float(weight)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        n = len(self.boxes)
        if len(self.labels) != n:
            raise ValueError(
                f"image {self.image_id!r}: {n} boxes but {len(self.labels)} labels; every box needs exactly one label"
            )
        self.difficult = np.zeros(n, bool) if self.difficult is None else np.asarray(self.difficult, bool)
        self.iscrowd = np.zeros(n, bool) if self.iscrowd is None else np.asarray(self.iscrowd, bool)
        if len(self.difficult) != n or len(self.iscrowd) != n:
            raise ValueError(f"image {self.image_id!r}: difficult/iscrowd flags must have one entry per box ({n})")
        self.area = np.full(n, np.nan) if self.area is None else np.asarray(self.area, np.float64).reshape(-1)
        if len(self.area) != n or bool(np.any(self.area < 0)) or bool(np.any(np.isinf(self.area))):
            raise ValueError(
                f"image {self.image_id!r}: area must have one finite value >= 0 (or NaN: unknown) per "
                f"box ({n}). Got {self.area.tolist()[:10]}."
            )

    @property
    def num_boxes(self) -> int:
        return int(len(self.boxes))

    def subset(self, keep: np.ndarray) -> ImageRecord:
        """The same image (loss weight, image index) with only the boxes selected by the boolean or index array
        ``keep``."""
        return ImageRecord(
            self.image_id,
            self.file_name,
            self.width,
            self.height,
            self.boxes[keep],
            self.labels[keep],
            self.difficult[keep],
            self.iscrowd[keep],
            self.loss_weight,
            self.image_index,
            self.area[keep],
        )


@dataclass
class DetectionDataset:
    """An ordered list of :class:`ImageRecord` with class names.

    Args:
        records: the images; a record's position is its pool index.
        class_names: ``C`` names; label ``l`` means ``class_names[l - 1]``.
        category_ids: optional original COCO category id of each contiguous label (``category_ids[l - 1]``);
            writers and COCO evaluation use it to map labels back. ``None`` means ids ``1..C``.
        root: directory the dataset was read from (informational).
    """

    records: list[ImageRecord]
    class_names: list[str]
    category_ids: list[int] | None = None
    root: Path | None = None

    def __post_init__(self) -> None:
        self.class_names = list(self.class_names)
        if self.category_ids is not None:
            self.category_ids = [int(c) for c in self.category_ids]
            if len(self.category_ids) != len(self.class_names):
                raise ValueError(
                    f"category_ids has {len(self.category_ids)} entries but there are "
                    f"{len(self.class_names)} class names; give one id per class"
                )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def label_to_category_id(self, label: int) -> int:
        """Original (e.g. COCO) category id of contiguous label ``label`` in ``1..C``."""
        return self.category_ids[label - 1] if self.category_ids is not None else int(label)

    def subset(self, indices: Sequence[int]) -> DetectionDataset:
        """A dataset holding ``records[i]`` for ``i`` in ``indices`` (same classes); over a pool index, a view of its
        rows (no record is built)."""
        if hasattr(self.records, "subset"):
            records = self.records.subset(indices)
        else:
            records = [self.records[i] for i in indices]
        return DetectionDataset(records, self.class_names, self.category_ids, self.root)

    def image_ids(self) -> list[str]:
        """Every record's ``image_id``, in pool order (read from the columns of a pool index)."""
        if hasattr(self.records, "image_ids"):
            return self.records.image_ids()
        return [r.image_id for r in self.records]

    def box_counts(self) -> np.ndarray:
        """``int64[N]``: boxes per record."""
        if hasattr(self.records, "box_counts"):
            return self.records.box_counts()
        return np.array([r.num_boxes for r in self.records], np.int64)

    def num_boxes(self) -> int:
        return int(self.box_counts().sum())

    def class_counts(self) -> np.ndarray:
        """``int64[C]`` number of boxes per class (index ``l - 1`` for label ``l``)."""
        if hasattr(self.records, "class_counts"):
            return self.records.class_counts(self.num_classes)
        counts = np.zeros(self.num_classes, np.int64)
        for r in self.records:
            np.add.at(counts, r.labels - 1, 1)
        return counts


@dataclass(frozen=True)
class Problem:
    """One problem found while reading or validating a dataset.

    ``location`` names the file and, where known, the line, element or JSON field; ``message`` says what was
    expected and what was found; ``hint`` says what to do. ``severity`` is ``"error"`` or ``"warning"``
    (warnings are fixes applied under an explicit policy, e.g. a clipped box; they are reported, never silent).
    """

    location: str
    message: str
    hint: str = ""
    severity: str = "error"
    #: what kind of problem this is (e.g. ``"unknown class name"``); reports group problems by it
    kind: str = ""
    #: the offending value as found in the file (e.g. the unknown class name); reports list the distinct ones
    value: str | None = None

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} -> {self.hint}" if self.hint else text


def group_problem_lines(problems: Sequence[Problem], *, examples: int = 3, more: str = "") -> list[str]:
    """Problems grouped by kind: a lone problem is one line; a group is a title line (kind, count, files and the
    distinct values found), up to ``examples`` of its problems, how many more there are (``more`` says how to see
    them) and the shared hint once. Groups keep the order of their first problem."""
    groups: dict[str, list[Problem]] = {}
    for p in problems:
        groups.setdefault(p.kind or p.hint or p.message, []).append(p)
    lines = []
    for group in groups.values():
        if len(group) == 1:
            lines.append(f"  {group[0]}")
            continue
        files = len({_file_of(p.location) for p in group})
        title = group[0].kind or _common_words([p.message for p in group]) or "problems"
        values = Counter(p.value for p in group if p.value is not None)
        found = ", ".join(f"{v!r} ({n})" for v, n in values.most_common(10))
        found += f" and {len(values) - 10} more" if len(values) > 10 else ""
        lines.append(
            f"  {title}: {len(group)} in {files} file{'' if files == 1 else 's'}"
            + (f"; found {found}" if found else "")
        )
        hints = {p.hint for p in group}
        shared = len(hints) == 1
        lines.extend(f"    {p.location}: {p.message}" if shared else f"    {p}" for p in group[:examples])
        if len(group) > examples:
            lines.append(f"    ... and {len(group) - examples} more{more}")
        if shared and group[0].hint:
            lines.append(f"    -> {group[0].hint}")
    return lines


def _common_words(messages: Sequence[str]) -> str:
    """The words every message starts with (``"unknown class name"`` ...), without trailing punctuation, and only
    up to the last colon where there is one (``"malformed XML: no element found"`` of ``"... found: line 1, column
    0"`` and ``"... found: line 1, column 27"``): the details after it are the examples'."""
    words = messages[0].split()
    for message in messages[1:]:
        other = message.split()
        n = 0
        while n < min(len(words), len(other)) and words[n] == other[n]:
            n += 1
        words = words[:n]
    clauses = [i for i, word in enumerate(words) if word.endswith(":")]
    if clauses:
        words = words[: clauses[-1] + 1]
    return " ".join(words).rstrip(" ;:,(")


def likely_meant(name: str, choices: Sequence[str]) -> str | None:
    """The one of ``choices`` that ``name`` is most likely a misspelling of (the same but for case, else the closest
    by difflib's ratio, at least 0.6), or None."""
    lowered = {choice.lower(): choice for choice in choices}
    return lowered.get(name.lower()) or next(iter(difflib.get_close_matches(name, list(choices), n=1)), None)


def unparsable(location: str, path: Path, syntax: str, error: str, hint: str) -> Problem:
    """The problem of a file that does not parse as ``syntax`` (``"XML"``, ``"JSON"``): an empty file is said to be
    empty rather than malformed."""
    try:
        empty = not path.read_bytes().strip()
    except OSError:
        empty = False
    if empty:
        return Problem(location, f"the file is empty (expected {syntax})", "export or write the file again")
    return Problem(location, f"malformed {syntax}: {error}", hint)


def _file_of(location: str) -> str:
    """The file part of a location: ``"labels/a.txt:3"`` or ``"a.xml: object[1]"`` -> the file."""
    file = location.split(": ", 1)[0]
    head, _, tail = file.rpartition(":")
    while head and tail.isdigit():
        file = head
        head, _, tail = file.rpartition(":")
    return file


class DatasetError(ValueError):
    """Raised when a dataset has errors; ``problems`` lists every one of them (not only the first)."""

    def __init__(self, problems: Sequence[Problem], what: str = "dataset"):
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        shown = "\n".join(
            group_problem_lines(errors, examples=5, more=" (activedet validate --verbose lists every one)")
        )
        super().__init__(f"{what} has {len(errors)} problem(s):\n{shown}")


def image_identity(record: ImageRecord) -> tuple[str, int | None]:
    """What makes two records the same image: the resolved file path (and the position inside a container
    file such as a CIFAR batch)."""
    return str(Path(record.file_name).resolve()), getattr(record, "image_index", None)


def check_disjoint(pool: DetectionDataset, test: DetectionDataset, val: DetectionDataset | None = None) -> None:
    """Raise ``ValueError`` when two of the splits share an image file (validation or pool images in the test
    split leak the test set into training and selection choices; validation images in the pool can be queried
    and trained on). Names the splits, the number shared and the first few files."""
    splits = [("pool (train)", pool), ("test", test)] + ([("validation", val)] if val is not None else [])
    # the largest split (the pool, possibly millions of images) is resolved only where a file name matches one of
    # the other splits' resolved names: a pool file that is a symbolic link under another name is not followed
    largest = max(range(len(splits)), key=lambda k: len(splits[k][1]))
    seen = [
        (name, {image_identity(r) for r in data.records} if k != largest else set())
        for k, (name, data) in enumerate(splits)
    ]
    names = {os.path.basename(path) for _, found in seen for path, _ in found}
    data = splits[largest][1]
    files = data.records.file_names() if hasattr(data.records, "file_names") else [r.file_name for r in data.records]
    seen[largest][1].update(
        image_identity(data.records[i]) for i, name in enumerate(files) if os.path.basename(name) in names
    )
    for a in range(len(seen)):
        for b in range(a + 1, len(seen)):
            shared = sorted(seen[a][1] & seen[b][1])
            if shared:
                shown = ", ".join(p if i is None else f"{p}[{i}]" for p, i in shared[:3])
                raise ValueError(
                    f"the {seen[a][0]} and {seen[b][0]} splits share {len(shared)} image(s), e.g. "
                    f"{shown}; every split must hold different images (a shared image leaks the "
                    "evaluation into training or selection): point the config's *_data keys at "
                    "disjoint image sets"
                )
