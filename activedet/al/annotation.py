"""Labels that arrive from outside the run: imported files, each one committed atomically as one import record.

A query batch (the picks of cycle ``t``, ``cycles/t/selection.json``) is labelled by **imports**: each
``activedet import`` (or an oracle's answer, :mod:`activedet.al.oracle`) that changes anything writes one record
``RUN/imports/NNNN.json`` with the labels of the images it brings, when, from which file and, where the file says,
by whom. That file is the commit point: a run killed during an import has either the record (the import happened)
or not (it did not), never half of one; the ledger, which is derived, is brought up to date from the records when
the run next continues (a batch joins the ledger once no image of it is pending). Importing the same labels again
changes nothing (no record); labels that contradict earlier ones for the same image are refused with the list of
images, unless the import says ``replace``: then its labels take the earlier ones' place (a correction, allowed
while the batch is the run's current one, before the next query trains on it), and the earlier record is kept.

The native label file (``activedet-labels``), the format an oracle's answer is committed in and :func:`read_labels`
reads besides the annotation tools' exports, is JSON::

    {"format": "activedet-labels", "images": {"IMAGE_ID": {"boxes": [[x1, y1, x2, y2], ...], "labels": ["cat", ...],
                                                           "difficult": [false, ...], "annotator": "ann@x"}, ...}}

Boxes are xyxy pixels of the original image; ``labels`` are class names; ``difficult`` is optional; an image with an
empty ``boxes`` list is a valid empty label.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._faults import kill_point
from ..atomic import atomic_write_json
from ..constants import DEFAULT_CLIP_TOLERANCE
from ..data.records import DetectionDataset, ImageRecord, likely_meant
from ..data.validate import check_boxes
from ..interop import EMPTY_AMBIGUOUS, LabelImport
from ..interop import LABEL_FORMATS as TOOL_LABEL_FORMATS
from ..interop import read_labels as read_tool_labels
from ..interop.common import short_repr
from .rundir import RunDir

__all__ = [
    "ImportResult",
    "ImportRefused",
    "read_labels",
    "LABEL_FORMATS",
    "read_native_labels",
    "write_native_labels",
    "import_labels",
    "load_import_records",
    "apply_imports",
    "pending_images",
    "NATIVE_FORMAT",
]

NATIVE_FORMAT = "activedet-labels"


@dataclass
class ImportResult:
    """What an import did: ``record`` (the path written, ``None`` when nothing changed), the images it labelled,
    the images it repeated unchanged, the batch images still pending afterwards, and the images the file lists
    without saying they were labelled (they stay pending)."""

    record: Path | None
    labelled: list[str]
    unchanged: list[str]
    pending: list[str]
    not_labelled: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


class ImportRefused(ValueError):
    """An import that was refused; nothing was merged."""

    @classmethod
    def listing(cls, source: str | Path, problems: Sequence[str]) -> ImportRefused:
        """The refusal of ``source`` with one line per problem, under the header every refused import has."""
        return cls(f"{source}: import refused, nothing merged:\n" + "\n".join(f"  - {p}" for p in problems))


# ----------------------------------------------------------------------------------------------- native files
def write_native_labels(
    path: str | Path, records: Sequence[ImageRecord], class_names: Sequence[str], *, annotator: str | None = None
) -> Path:
    """Write ``records``' annotations as a native label file (how an oracle's answer is handed in)."""
    images = {}
    for r in records:
        images[r.image_id] = {
            "boxes": r.boxes.astype(float).tolist(),
            "labels": [class_names[int(label) - 1] for label in r.labels],
            "difficult": r.difficult.astype(bool).tolist(),
            "annotator": annotator,
        }
    return atomic_write_json(Path(path), {"format": NATIVE_FORMAT, "images": images})


def read_native_labels(path: str | Path, class_names: Sequence[str]) -> LabelImport:
    """Read a native label file (module docstring); raises ``ValueError`` naming the file and the image."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such label file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); export the labels again") from None
    if not isinstance(data, dict) or data.get("format") != NATIVE_FORMAT or not isinstance(data.get("images"), dict):
        raise ValueError(f'{path}: expected an object with "format": "{NATIVE_FORMAT}" and an "images" mapping')
    index = {name: i + 1 for i, name in enumerate(class_names)}
    out = LabelImport({}, {}, [], str(path))
    problems = []
    for image_id, item in data["images"].items():
        where = f"{path}: image {image_id!r}"
        shape = _entry_shape_fault(item)
        if shape:
            problems.append(
                f'{where}: expected {{"boxes": [[x1, y1, x2, y2], ...], "labels": [class name, ...]}} with one '
                f"label per box; {shape}"
            )
            continue
        unknown = sorted({str(name) for name in item["labels"] if name not in index})
        if unknown:
            guesses = {name: likely_meant(name, class_names) for name in unknown}
            problems.append(
                f"{where}: unknown class(es) {unknown}; the run's classes are {list(class_names)}"
                + "".join(f"; did you mean {match!r} for {name!r}?" for name, match in guesses.items() if match)
            )
            continue
        try:
            boxes = np.asarray(item["boxes"], np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            problems.append(f"{where}: boxes must be [x1, y1, x2, y2] numbers")
            continue
        out.labels[image_id] = (
            boxes.astype(np.float32),
            np.asarray([index[name] for name in item["labels"]], np.int64),
        )
        difficult = item.get("difficult") or [False] * len(boxes)
        out.difficult[image_id] = np.asarray(difficult, bool).reshape(-1)
        out.annotators[image_id] = item.get("annotator")
    if problems:
        raise ValueError("\n".join(problems[:20]))
    return out


def _entry_shape_fault(item: Any) -> str:
    """What is wrong with the shape of one image's entry of a native label file ("" when nothing is)."""
    if not isinstance(item, dict):
        return f"found {short_repr(item)}"
    for key in ("boxes", "labels"):
        if key not in item:
            return f"{key!r} is missing (keys found: {sorted(item)})"
        if not isinstance(item[key], list):
            return f"{key!r} is {short_repr(item[key])}, not a list"
    if len(item["boxes"]) != len(item["labels"]):
        return f"found {len(item['boxes'])} boxes and {len(item['labels'])} labels"
    return ""


def read_labels(
    fmt: str,
    path: str | Path,
    class_names: Sequence[str],
    *,
    sizes: dict[str, tuple[int, int]] | None = None,
    empty_means_labelled: bool = False,
) -> LabelImport:
    """Read an annotation file in ``fmt`` (``auto``: told from the file; ``datumaro:<name>``: any of Datumaro's
    dataset formats): the native file here, the annotation tools' exports by
    :func:`activedet.interop.read_labels`.

    ``sizes`` (``image_id -> (width, height)``, the run's images) serves formats with relative coordinates and maps
    the file's image names to image ids (:func:`~activedet.interop.image_id_from_name`).
    ``empty_means_labelled``: in a CVAT XML, COCO or Datumaro file, an image without boxes is a label (nothing to
    box) rather than pending: say so only for a finished job.
    """
    path = Path(path)
    datumaro = isinstance(fmt, str) and fmt.startswith("datumaro:") and len(fmt) > len("datumaro:")
    if fmt not in LABEL_FORMATS and not datumaro:
        raise ValueError(f"label format {fmt!r} is not one of {list(LABEL_FORMATS)} or datumaro:<name>")
    if not path.exists():
        raise ValueError(f"{path}: no such label file or folder")
    if fmt == "auto":
        fmt = _detect_format(path)
    if empty_means_labelled and not (datumaro or fmt in EMPTY_AMBIGUOUS):
        raise ValueError(
            f"empty_means_labelled (--empty-means-labelled) applies to the formats that list images "
            f"nobody may have labelled ({', '.join(EMPTY_AMBIGUOUS)}, datumaro:<name>), not to "
            f"{fmt!r}, whose files say which images were labelled; leave it out"
        )
    if fmt == "activedet":
        return read_native_labels(path, class_names)
    options: dict[str, Any] = {}
    if fmt in EMPTY_AMBIGUOUS or datumaro:
        options["empty_means_labelled"] = empty_means_labelled
    return read_tool_labels(fmt, path, class_names, images=sizes, **options)


#: formats :func:`read_labels` takes: the native file and the annotation tools' exports (and ``datumaro:<name>``)
LABEL_FORMATS = ("auto", "activedet", *TOOL_LABEL_FORMATS)


def _detect_format(path: Path) -> str:
    """The format of ``path`` from its content: native/Label Studio/COCO JSON, CVAT XML, a VOC or YOLO folder."""
    if path.is_dir():
        if (path / "result.json").is_file():
            return _detect_format(path / "result.json")
        if (path / "annotations").is_dir() and any((path / "annotations").glob("*.json")):
            return "coco"  # the folder of a COCO export (CVAT, Datumaro): annotations/*.json next to images/
        xml = sorted(path.rglob("*.xml"))
        if xml and _by_label_studio(xml[0]):
            return "labelstudio_voc"
        if xml and _xml_root(xml[0]) == "annotations":
            raise ValueError(
                f"{path}: a folder holding CVAT XML; import its file "
                f"{xml[0].relative_to(path).as_posix()} (--format cvat_xml)"
            )
        if xml:
            raise ValueError(
                f"{path}: Pascal VOC files come in two coordinate conventions that the files do not "
                "name; pass --format voc (1-based pixel indices: the VOC2007/2012 devkit files and "
                "activedet's voc export) or --format cvat_voc (0-based: CVAT, Datumaro and "
                "activedet's cvat_voc export)"
            )
        if any(path.rglob("*.txt")):
            return "labelstudio_yolo" if _by_label_studio(path / "notes.json") else "yolo"
    elif path.suffix.lower() == ".xml":
        return "cvat_xml"
    elif path.suffix.lower() == ".zip":
        return "cvat_xml"  # CVAT's download: annotations.xml (+ images); read_cvat_xml says if it is not one
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc}); export the labels again") from None
        if isinstance(data, dict) and data.get("format") == NATIVE_FORMAT:
            return "activedet"
        if isinstance(data, list):
            minimal = data and isinstance(data[0], dict) and "annotation_id" in data[0] and "annotations" not in data[0]
            return "labelstudio_min" if minimal else "labelstudio"
        if isinstance(data, dict) and "images" in data and "annotations" in data:
            info = data.get("info")
            by_label_studio = isinstance(info, dict) and info.get("contributor") == "Label Studio"
            return "labelstudio_coco" if by_label_studio else "coco"
    raise ValueError(
        f"{path}: cannot tell the label format from the file; pass --format (one of {list(LABEL_FORMATS[1:])})"
    )


def _by_label_studio(path: Path) -> bool:
    """Whether a VOC XML file or a YOLO ``notes.json`` was written by Label Studio's converter."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return False
    return "<name>Label Studio</name>" in text or '"contributor": "Label Studio"' in text


def _xml_root(path: Path) -> str | None:
    """The tag of the XML file's root element (``None`` when unreadable)."""
    import xml.etree.ElementTree as ET

    try:
        return next(ET.iterparse(path, events=("start",)))[1].tag
    except (ET.ParseError, OSError, StopIteration):
        return None


# ----------------------------------------------------------------------------------------------- imports
def load_import_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every import record of the run, in import order."""
    return [json.loads(p.read_text()) for p in RunDir(run_dir).import_files()]


def _imported(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``image_id -> its labels entry`` over import ``records`` (later records never contradict earlier ones)."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        for image_id, entry in record["images"].items():
            out[image_id] = {**entry, "import": record["number"], "cycle": record["cycle"]}
    return out


def apply_imports(run_dir: str | Path, pool: DetectionDataset) -> dict[str, dict[str, Any]]:
    """Put every imported label into ``pool``'s records (in place) and return the imported entries by image id."""
    imported = _imported(load_import_records(run_dir))
    position = {image_id: i for i, image_id in enumerate(pool.image_ids())} if imported else {}
    index = {name: i + 1 for i, name in enumerate(pool.class_names)}
    for image_id, entry in imported.items():
        i = position[image_id]
        old = pool.records[i]
        labels = np.asarray([index[n] for n in entry["labels"]], np.int64)
        pool.records[i] = ImageRecord(
            old.image_id,
            old.file_name,
            old.width,
            old.height,
            np.asarray(entry["boxes"], np.float32).reshape(-1, 4),
            labels,
            np.asarray(entry.get("difficult") or [False] * len(labels), bool),
            None,
            old.loss_weight,
            image_index=old.image_index,
        )
    return imported


def pending_images(run_dir: str | Path, batch: Sequence[str]) -> list[str]:
    """The image ids of ``batch`` that no import has labelled yet, in batch order."""
    imported = _imported(load_import_records(run_dir))
    return [i for i in batch if i not in imported]


def _same(entry: dict[str, Any], boxes: np.ndarray, names: list[str]) -> bool:
    old = np.asarray(entry["boxes"], np.float64).reshape(-1, 4)
    return entry["labels"] == names and old.shape == boxes.shape and bool(np.allclose(old, boxes, atol=1e-3))


def import_labels(
    run_dir: str | Path,
    labels: LabelImport,
    *,
    cycle: int,
    batch: Sequence[str],
    pool: DetectionDataset,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    annotator: str | None = None,
    replace: bool = False,
) -> ImportResult:
    """Validate ``labels`` against the pending ``batch`` of ``cycle`` and commit them as one import record.

    Refused, with every problem listed and nothing written: images not in the batch, boxes that are not finite, are
    empty or lie outside the image by more than ``clip_tolerance`` pixels (those within it are clipped), and labels
    that contradict an earlier import of the same image (with ``replace``, they take its place instead: each such
    entry records the import it ``replaces``). Images of the batch the file does not mention stay pending.
    ``annotator`` is recorded where the file names none.
    """
    run_dir = Path(run_dir)
    source = Path(labels.source)
    batch_set = set(batch)
    position = {image_id: i for i, image_id in enumerate(pool.image_ids())}
    existing = load_import_records(run_dir)
    imported = _imported(existing)
    problems, conflicts, new, unchanged, replaced = [], [], {}, [], []
    outside = sorted(set(labels.labels) - batch_set)
    if outside:
        problems.append(
            f"{len(outside)} image(s) are not in cycle {cycle}'s query batch: {outside[:10]}"
            + (" ..." if len(outside) > 10 else "")
            + "; import only the images `activedet query` exported"
        )
    for image_id in sorted(set(labels.labels) & batch_set):
        boxes, record = labels.labels[image_id][0].astype(np.float64), pool.records[position[image_id]]
        stated = labels.sizes.get(image_id)
        if stated is not None and tuple(stated) != (record.width, record.height):
            problems.append(
                f"image {image_id!r}: the file gives its size (width, height) as {stated[0]}x{stated[1]} "
                f"but the image is {record.width}x{record.height}, so its boxes are in other pixels; "
                "label the original images, or export from a task that holds them"
            )
            continue
        limit = np.array([record.width, record.height, record.width, record.height], np.float64)
        _, found = check_boxes(
            boxes, record.width, record.height, lambda j: f"box #{j}", box_policy="clip", clip_tolerance=clip_tolerance
        )
        faults = [f"{p.location}: {p.message}" for p in found if p.severity == "error"]
        if faults:  # (a box clipped within the tolerance is no fault)
            problems.append(
                f"image {image_id!r}: "
                + "; ".join(faults[:5])
                + (f"; and {len(faults) - 5} more" if len(faults) > 5 else "")
                + "; fix them in the annotation tool"
            )
            continue
        boxes = np.clip(boxes, 0, limit)
        names = [pool.class_names[int(label) - 1] for label in labels.labels[image_id][1]]
        entry = {
            "boxes": boxes.tolist(),
            "labels": names,
            "difficult": labels.difficult.get(image_id, np.zeros(len(boxes), bool)).tolist(),
            "annotator": labels.annotators.get(image_id) or annotator,
        }
        if image_id in imported:
            if _same(imported[image_id], boxes, names):
                unchanged.append(image_id)
            elif replace:
                new[image_id] = {**entry, "replaces": imported[image_id]["import"]}
                replaced.append(image_id)
            else:
                conflicts.append(image_id)
            continue
        new[image_id] = entry
    if conflicts:
        problems.append(
            f"{len(conflicts)} image(s) already have other imported labels: {conflicts[:20]}; to replace them "
            "with this file's, import it again with --replace (the earlier import stays in RUN/imports), or leave "
            "these images out of the file"
        )
    if problems:
        raise ImportRefused.listing(source, problems)
    path = None
    if new:
        number = len(existing) + 1
        path = RunDir(run_dir).import_file(number)
        kill_point("import_write", number)  # the crash tests: killed before the commit
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16] if source.is_file() else None
        atomic_write_json(
            path,
            {
                "number": number,
                "cycle": cycle,
                "source": str(source),
                "sha256": digest,
                "imported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "skipped": labels.skipped
                + [f"{i}: not labelled in the file (stays pending)" for i in labels.unlabelled],
                "images": new,
            },
        )
        kill_point("import", number)  # ... and right after it
    pending = [i for i in batch if i not in imported and i not in new]
    not_labelled = [i for i in labels.unlabelled if i in pending]
    return ImportResult(path, sorted(set(new) - set(replaced)), unchanged, pending, not_labelled, sorted(replaced))
