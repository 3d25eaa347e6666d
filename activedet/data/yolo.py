"""YOLO txt annotations: reader, writer and validation.

Layout: ``root/images/**/<name>.<ext>`` with labels at the same relative stem ``root/labels/**/<name>.txt``;
class names in ``root/classes.txt`` (one per line) or a ``data.yaml``-style file with a ``names:`` list (or an
``{index: name}`` mapping).

Conventions:

* A label line is ``class cx cy w h``: ``class`` is 0-based (record label = ``class + 1``); the box centre and
  size are normalised by the image width and height to ``[0, 1]``. Records hold pixels
  ``x1 = (cx - w / 2) * width`` ... computed in float64 and stored as float32.
* Image sizes come from the image headers (YOLO stores none), so every image is opened (header only).
* ``image_id`` is the image path relative to ``images/`` without its suffix, e.g. ``"train/000005"``.
* An image without a label file, or with an empty one, is an empty image (``N = 0``).
* ``difficult`` and ``iscrowd`` cannot be stored; see ``flagged`` in :func:`write_yolo`.
* Round trip tolerance: :func:`write_yolo` writes the normalised values with Python's shortest exact float
  repr, so reading back repeats the float64 arithmetic exactly; the float32 boxes can differ only where that
  arithmetic rounds across a float32 boundary (one float32 ulp). None did in 800,000 random boxes on images up
  to 5000 px, and integer or quarter-pixel boxes come back identical.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..constants import DEFAULT_BOX_POLICY, DEFAULT_CLIP_TOLERANCE
from .records import DetectionDataset, ImageRecord, Problem
from .validate import (
    IMAGE_MODES,
    check_boxes,
    check_choice,
    check_options,
    find_duplicates,
    place_image,
    raise_for_problems,
    read_image_size,
)

__all__ = ["IMAGE_EXTENSIONS", "read_yolo", "scan_yolo", "write_yolo", "write_darknet"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_NAME_FILES = ("classes.txt", "data.yaml")
_LINE_HINT = "each line must be 'class cx cy w h': a 0-based class index and 4 numbers normalised to [0, 1]"


def read_yolo(
    root: str | os.PathLike,
    *,
    names_file: str | os.PathLike | None = None,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    check_images: bool = True,
) -> DetectionDataset:
    """Read a YOLO txt dataset into a :class:`DetectionDataset` (records sorted by image path).

    Args:
        root: directory holding ``images/`` and ``labels/``.
        names_file: class names file, ``classes.txt``-style (one per line) or ``.yaml``/``.yml`` with ``names:``;
            relative paths are resolved against ``root``. Default: ``root/classes.txt``, else ``root/data.yaml``.
        box_policy, clip_tolerance: what to do with boxes outside the image (see :mod:`activedet.data.validate`);
            ``clip_tolerance`` is in pixels.
        check_images: accepted for a signature shared with the other readers; YOLO images are always opened
            (header only) because their sizes are needed, so missing or unreadable images are always reported.

    Raises:
        DatasetError: listing every error found (warnings are issued as one ``DatasetWarning``).
    """
    dataset, problems = scan_yolo(
        root, names_file=names_file, box_policy=box_policy, clip_tolerance=clip_tolerance, check_images=check_images
    )
    raise_for_problems(problems, f"YOLO dataset {root}")
    return dataset


def scan_yolo(
    root: str | os.PathLike,
    *,
    names_file: str | os.PathLike | None = None,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    check_images: bool = True,
) -> tuple[DetectionDataset, list[Problem]]:
    """Like :func:`read_yolo` but never raises for dataset problems: returns ``(dataset, problems)``.

    The dataset is only trustworthy when no problem has ``severity == "error"``.
    """
    del check_images  # see read_yolo: image headers are always read
    check_options("read_yolo", box_policy=box_policy, clip_tolerance=clip_tolerance)
    root = Path(os.path.abspath(root))
    class_names, problems = read_names(root, names_file)
    num_classes = None if problems else len(class_names)  # unknown: do not report every class index as well
    images = _image_files(root, problems)
    problems += find_duplicates(
        ((image_id, f"images/{p.relative_to(root / 'images').as_posix()}") for image_id, p in images),
        "image id",
        "images may not differ only by suffix: they would share one label file",
    )
    records = []
    for image_id, path in images:
        size, problem = read_image_size(path, f"images/{path.relative_to(root / 'images').as_posix()}")
        if problem is not None:
            problems.append(problem)
            continue
        label_path = root / "labels" / f"{image_id}.txt"
        rows = read_label_file(label_path, f"labels/{image_id}.txt", num_classes, problems)
        cx, cy, w, h = np.array([r[2] for r in rows], np.float64).reshape(-1, 4).T
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) * np.tile(size, 2)
        boxes, box_problems = check_boxes(
            boxes,
            size[0],
            size[1],
            lambda i, rows=rows: rows[i][0],
            box_policy=box_policy,
            clip_tolerance=clip_tolerance,
            quote=lambda i, rows=rows: "cx cy w h = " + " ".join(rows[i][3]),
        )
        problems += box_problems
        records.append(ImageRecord(image_id, path, size[0], size[1], boxes, [r[1] for r in rows]))
    problems += _orphan_labels(root, {image_id for image_id, _ in images})
    return DetectionDataset(records, class_names, root=root), problems


def _image_files(root: Path, problems: list[Problem]) -> list[tuple[str, Path]]:
    """``(image_id, path)`` of every image under ``root/images``, sorted by relative path."""
    image_dir = root / "images"
    if not image_dir.is_dir():
        problems.append(
            Problem(
                "images",
                f"image directory not found: {image_dir}",
                "put the images in root/images/ and their labels in root/labels/",
            )
        )
        return []
    paths = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return [(p.relative_to(image_dir).with_suffix("").as_posix(), p) for p in paths]


def _orphan_labels(root: Path, image_ids: set[str]) -> list[Problem]:
    """Label files without an image (their boxes would otherwise be lost silently)."""
    label_dir = root / "labels"
    if not label_dir.is_dir():
        return []
    problems = []
    for path in sorted(label_dir.rglob("*.txt")):
        image_id = path.relative_to(label_dir).with_suffix("").as_posix()
        if image_id not in image_ids and image_id != "classes":
            problems.append(
                Problem(
                    f"labels/{image_id}.txt",
                    f"label file has no image images/{image_id}{{{','.join(IMAGE_EXTENSIONS)}}}",
                    "add the image or delete the label file",
                )
            )
    return problems


def read_names(root: Path, names_file: str | os.PathLike | None) -> tuple[list[str], list[Problem]]:
    """Class names (index = YOLO class) from ``names_file`` or the default files."""
    if names_file is None:
        found = [root / n for n in _NAME_FILES if (root / n).is_file()]
        if not found:
            return [], [
                Problem(
                    "classes.txt",
                    f"no class names: neither {' nor '.join(_NAME_FILES)} is in {root}",
                    "create classes.txt with one class name per line (line 1 = class 0), or pass names_file=",
                )
            ]
        path = found[0]
    else:
        path = root / names_file  # an absolute names_file stays absolute
    where = os.path.relpath(path, root) if path.is_relative_to(root) else str(path)
    if not path.is_file():
        return [], [Problem(where, f"class names file not found: {path}", "check names_file")]
    if path.suffix.lower() in (".yaml", ".yml"):
        return _yaml_names(path, where)
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    problems = [
        Problem(f"{where}:{i}", "empty class name", "remove the blank line (line n names class n - 1)")
        for i, line in enumerate(lines, start=1)
        if not line.strip()
    ]
    return [line.strip() for line in lines], problems


def _yaml_names(path: Path, where: str) -> tuple[list[str], list[Problem]]:
    import yaml  # a project dependency; imported here so that importing activedet stays light

    hint = "give 'names:' as a list of strings, or a mapping {0: name, 1: name, ...}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        return [], [Problem(f"{where}{line}", f"malformed YAML: {exc}", "fix the YAML syntax")]
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        return [], [Problem(f"{where}: names", f"expected a list of class names; found {str(names)[:80]}", hint)]
    return [n.strip() for n in names], []


def read_label_file(
    path: Path, where: str, num_classes: int | None, problems: list[Problem]
) -> list[tuple[str, int, list[float], list[str]]]:
    """``(location, label, [cx, cy, w, h])`` per valid line; a missing file means an empty image."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(where, f"cannot read label file: {exc}", "check that it is a UTF-8 text file"))
        return []
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            row = _parse_line(fields, f"{where}:{number}", num_classes, problems)
            if row is not None:
                rows.append(row)
    return rows


def _parse_line(
    fields: list[str], where: str, num_classes: int | None, problems: list[Problem]
) -> tuple[str, int, list[float], list[str]] | None:
    if len(fields) != 5:
        extra = " (segmentation polygons are not supported; convert them to boxes)" if len(fields) > 5 else ""
        problems.append(Problem(where, f"expected 5 fields 'class cx cy w h'; found {len(fields)}{extra}", _LINE_HINT))
        return None
    try:
        values = [float(v) for v in fields]
    except ValueError:
        problems.append(Problem(where, f"expected numbers; found {' '.join(fields)!r}", _LINE_HINT))
        return None
    cls = values[0]
    if not cls.is_integer() or cls < 0:
        problems.append(Problem(where, f"class index {fields[0]} is not a non-negative integer", _LINE_HINT))
        return None
    if num_classes is not None and cls >= num_classes:
        problems.append(
            Problem(
                where,
                f"class index {fields[0]} is not an integer in 0..{num_classes - 1} ({num_classes} class names)",
                "fix the class index or add the class name",
            )
        )
        return None
    return where, int(cls) + 1, values[1:], fields[1:]


def write_yolo(
    dataset: DetectionDataset, root: str | os.PathLike, *, images: str = "link", flagged: str = "error"
) -> Path:
    """Write ``dataset`` as a YOLO txt dataset under ``root`` and return ``root``.

    Writes ``classes.txt``, ``labels/{image_id}.txt`` (an empty file for an empty image) and the images as
    ``images/{image_id}{suffix}``: ``images="link"`` hard-links (copying where that fails), ``"copy"`` copies,
    ``"none"`` writes no images (reading back then needs the images put there by other means).

    YOLO cannot store ``difficult``/``iscrowd``; ``flagged`` says what to do with such boxes: ``"error"``
    (default) raises ``ValueError``, ``"keep"`` writes them as ordinary boxes, ``"omit"`` leaves them out.
    """
    check_choice("write_yolo", "images", images, IMAGE_MODES)
    check_choice("write_yolo", "flagged", flagged, ("error", "keep", "omit"))
    root = Path(root)
    _check_writable(dataset, flagged)
    atomic_write_text(root / "classes.txt", "".join(f"{n}\n" for n in dataset.class_names))
    for record in dataset:
        keep = ~(record.difficult | record.iscrowd) if flagged == "omit" else slice(None)
        atomic_write_text(root / "labels" / f"{record.image_id}.txt", _label_text(record.subset(keep)))
        place_image(record.file_name, root / "images" / f"{record.image_id}{record.file_name.suffix}", images)
    return root


def write_darknet(
    dataset: DetectionDataset, root: str | os.PathLike, *, images: str = "link", flagged: str = "error"
) -> Path:
    """Write ``dataset`` in the Darknet layout that CVAT ("YOLO 1.1") and Datumaro ("yolo") import and export; returns
    ``root``.

    Writes ``obj.names`` (one class per line, line 1 = class 0), ``obj.data`` (``classes``, ``train``, ``names``
    with Darknet's ``data/`` prefix), ``train.txt`` (the images), ``data.yaml`` (``names`` and ``nc``, for tools
    that read the class list from there) and, in ``obj_train_data/``, each image as ``{image_id}{suffix}`` with
    its labels in ``{image_id}.txt`` (the same name). ``images`` and ``flagged`` as :func:`write_yolo`.
    """
    import yaml  # a project dependency; imported here so that importing activedet stays light

    check_choice("write_darknet", "images", images, IMAGE_MODES)
    check_choice("write_darknet", "flagged", flagged, ("error", "keep", "omit"))
    root = Path(root)
    _check_writable(dataset, flagged)
    names = "".join(f"{n}\n" for n in dataset.class_names)
    atomic_write_text(root / "obj.names", names)
    atomic_write_text(
        root / "obj.data",
        f"classes = {dataset.num_classes}\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n",
    )
    atomic_write_text(
        root / "data.yaml",
        yaml.safe_dump({"names": list(dataset.class_names), "nc": dataset.num_classes}, sort_keys=False),
    )
    listed = []
    for record in dataset:
        keep = ~(record.difficult | record.iscrowd) if flagged == "omit" else slice(None)
        atomic_write_text(root / "obj_train_data" / f"{record.image_id}.txt", _label_text(record.subset(keep)))
        name = f"{record.image_id}{record.file_name.suffix}"
        place_image(record.file_name, root / "obj_train_data" / name, images)
        listed.append(f"data/obj_train_data/{name}\n")
    atomic_write_text(root / "train.txt", "".join(listed))
    return root


def _check_writable(dataset: DetectionDataset, flagged: str) -> None:
    for name in dataset.class_names:
        if not name.strip() or "\n" in name or name != name.strip():
            raise ValueError(
                f"class name {name!r} cannot be written as one line of a class list (classes.txt, obj.names)"
            )
    problems = find_duplicates(((r.image_id, r.image_id) for r in dataset), "image id", "")
    if problems:
        raise ValueError(f"image ids must be unique to write YOLO; {problems[0].message}")
    for record in dataset:
        parts = record.image_id.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\\" in record.image_id:
            raise ValueError(f"image id {record.image_id!r} cannot be used as a relative path under images/")
        if record.num_boxes and not (1 <= record.labels.min() and record.labels.max() <= dataset.num_classes):
            raise ValueError(
                f"image {record.image_id!r}: labels must be in 1..{dataset.num_classes}; "
                f"found {sorted(set(record.labels.tolist()))}"
            )
        flags = int((record.difficult | record.iscrowd).sum())
        if flags and flagged == "error":
            raise ValueError(
                f"image {record.image_id!r} has {flags} difficult/iscrowd box(es), which YOLO cannot "
                "mark; pass flagged='keep' to write them as ordinary boxes or flagged='omit' to "
                "leave them out"
            )


def _label_text(record: ImageRecord) -> str:
    """One ``class cx cy w h`` line per box; floats as Python's shortest exact repr."""
    boxes = record.boxes.astype(np.float64)
    size = np.array([record.width, record.height], np.float64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / size
    extent = (boxes[:, 2:] - boxes[:, :2]) / size
    return "".join(
        f"{label - 1} {c[0]!r} {c[1]!r} {e[0]!r} {e[1]!r}\n"
        for label, c, e in zip(record.labels, centre.tolist(), extent.tolist())
    )
