"""Export a query batch for annotation: the images, and the model's predictions as pre-annotations.

``cycles/t/query/`` holds ``batch.json`` (written last: the export's commit point) with one entry per image of the
batch (image id, file, size, rank, strategy score), ``images/`` (copied, hard-linked, or absent with
``images="none"``) and the pre-annotations in one format:

* ``activedet``: the native label file (:mod:`activedet.al.annotation`) of the predictions, with their scores;
* ``labelstudio``: Label Studio tasks (``tasks.json``: rectangle labels in percent, each prediction with its score,
  the task with the strategy's score) and the project's labeling interface (``label_config.xml``: a
  ``RectangleLabels`` control named ``label`` on an image named ``image``, one ``Label`` per class). Each task's
  ``data.image`` is ``labelstudio_url_prefix`` + the image's path relative to ``labelstudio_document_root``
  (by default ``/data/local-files/?d=`` + the absolute path without its leading ``/``: what Label Studio's local
  files storage serves); with ``labelstudio_document_root=None`` it is ``images/FILE``, relative to the folder;
* ``cvat_coco``: a COCO 1.0 file CVAT imports as annotations (``pre_annotations.json``, boxes with a score);
* ``coco``: ``annotations/instances_default.json`` next to ``images/`` (the layout of CVAT's and Datumaro's COCO),
  ``file_name`` relative to ``images/``, each box with ``area``, ``iscrowd: 0`` and an empty ``segmentation``;
* ``voc`` / ``cvat_voc``: ``voc/`` (``Annotations/``, ``ImageSets/Main/``, ``labelmap.txt``) with the devkit's
  1-based pixel indices (``voc``) or the 0-based coordinates CVAT and Datumaro use (``cvat_voc``);
* ``yolo``: ``yolo/`` in the Darknet layout CVAT ("YOLO 1.1") and Datumaro read: ``obj.names``, ``obj.data``,
  ``train.txt``, ``data.yaml`` and ``obj_train_data/`` with each image (unless ``images="none"``) next to its label
  file of the same name.

Every image is exported as one flat file name: its id with ``/`` (a sub-folder of the unlabelled folder) written as
``__`` (:func:`~activedet.interop.export_file_name`); the importers map such names back.

Predictions whose score is below ``min_score`` are left out of the pre-annotations (they are kept, all of them, in
``cycles/t/predictions.json`` for reports).
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..atomic import atomic_write_json, atomic_write_text
from ..constants import EXPORT_FORMATS, IMAGE_MODES
from ..data.records import DetectionDataset, ImageRecord
from ..data.validate import place_image
from ..models.outputs import Detections
from .rundir import BATCH_FILE

__all__ = [
    "EXPORT_FORMATS",
    "IMAGE_MODES",
    "LABELSTUDIO_URL_PREFIX",
    "BatchExport",
    "export_batch",
    "labelstudio_config",
    "check_export_options",
]

#: Label Studio's URL of a file served by its local files storage (``?d=`` a path relative to its document root)
LABELSTUDIO_URL_PREFIX = "/data/local-files/?d="


@dataclass(frozen=True)
class BatchExport:
    """How each query batch of a run is exported: ``fmt`` (:data:`EXPORT_FORMATS`), ``images``
    (:data:`IMAGE_MODES`; ``copy`` by default, as :func:`export_batch` and the config) and ``options``, the keyword
    options of :func:`export_batch` (``min_score``, ``labelstudio_url_prefix``, ``labelstudio_document_root``).
    Checked when made, so that a wrong value is refused before the run trains, not at its first export."""

    fmt: str = "activedet"
    images: str = "copy"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value, allowed in (("fmt", self.fmt, EXPORT_FORMATS), ("images", self.images, IMAGE_MODES)):
            if value not in allowed:
                raise ValueError(
                    f"The {name!r} parameter of BatchExport must be one of {list(allowed)}. Got {value!r} instead."
                )
        known = [name for name in inspect.signature(check_export_options).parameters if name != "caller"]
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ValueError(
                f"The 'options' parameter of BatchExport takes the keys {known} (export_batch's options). "
                f"Got {unknown} instead."
            )
        check_export_options("BatchExport", **self.options)


def check_export_options(
    caller: str,
    *,
    min_score: object = 0.3,
    labelstudio_url_prefix: object = "",
    labelstudio_document_root: object = None,
) -> None:
    """Raise ``ValueError`` (naming ``caller``'s parameter) for an invalid pre-annotation score cut-off or Label
    Studio URL setting."""
    if (
        isinstance(min_score, bool)
        or not isinstance(min_score, (int, float))
        or not (math.isfinite(min_score) and 0 <= min_score <= 1)
    ):
        raise ValueError(
            f"The 'min_score' parameter of {caller} must be a number in [0, 1] (the lowest detection "
            f"score written as a pre-annotation). Got {min_score!r} instead."
        )
    if not isinstance(labelstudio_url_prefix, str):
        raise ValueError(
            f"The 'labelstudio_url_prefix' parameter of {caller} must be a string (e.g. "
            f"{LABELSTUDIO_URL_PREFIX!r}). Got {labelstudio_url_prefix!r} instead."
        )
    root = labelstudio_document_root
    if root is not None and not (isinstance(root, (str, os.PathLike)) and os.path.isabs(root)):
        raise ValueError(
            f"The 'labelstudio_document_root' parameter of {caller} must be an absolute folder path "
            f"(Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, '/' by default) or None. Got "
            f"{root!r} instead."
        )


def labelstudio_config(class_names: Sequence[str]) -> str:
    """The labeling interface (Settings -> Labeling Interface -> Code) that reads activedet's tasks: an image
    ``image`` (``$image``) with a ``RectangleLabels`` control ``label`` of one ``Label`` per class."""
    from xml.sax.saxutils import quoteattr

    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for name in class_names)
    return (
        f'<View>\n  <Image name="image" value="$image"/>\n  <RectangleLabels name="label" toName="image" '
        f'canRotate="false">{labels}\n  </RectangleLabels>\n</View>\n'
    )


def _labelstudio_ref(image: Path, folder: Path, prefix: str, root: str | None) -> str:
    """The URL Label Studio loads ``image`` from: ``prefix`` + its path relative to ``root`` (URL-quoted), or
    ``images/FILE`` relative to the export ``folder`` when ``root`` is None."""
    if root is None:
        return prefix + quote(Path(os.path.relpath(os.path.abspath(image), os.path.abspath(folder))).as_posix())
    path, root = os.path.abspath(image), os.path.abspath(root)
    if os.path.commonpath([path, root]) != root:
        raise ValueError(
            f"image {path} is not inside labelstudio_document_root {root!r}, so Label Studio cannot "
            "serve it; set labelstudio_document_root to a folder above the run directory (and "
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT to the same folder)"
        )
    return prefix + quote(Path(os.path.relpath(path, root)).as_posix())


def _kept(det: Detections, min_score: float):
    """The detections written as pre-annotations: score at least ``min_score`` and a box with an area."""
    boxes = det.boxes.numpy()
    return (det.scores >= min_score).numpy() & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _prediction_records(
    pool: DetectionDataset, picks: Sequence[dict], predictions: Sequence[Detections], min_score: float
) -> list[ImageRecord]:
    out = []
    for pick, det in zip(picks, predictions):
        record = pool.records[pick["index"]]
        boxes, keep = det.boxes.numpy(), _kept(det, min_score)
        out.append(
            ImageRecord(
                record.image_id,
                record.file_name,
                record.width,
                record.height,
                boxes[keep],
                det.labels.numpy()[keep],
                image_index=record.image_index,
            )
        )
    return out


def _file_names(records: Sequence[ImageRecord]) -> dict[str, str]:
    """``image_id -> exported file name``; two images of the batch that would share a name are an error."""
    from ..interop import export_file_name

    files, owner = {}, {}
    for record in records:
        name = export_file_name(record.image_id, Path(record.file_name).suffix or ".png")
        if name in owner:
            raise ValueError(
                f"images {owner[name]!r} and {record.image_id!r} would both be exported as {name!r}; "
                "rename one of them in the unlabelled folder (a '/' is exported as '__')"
            )
        files[record.image_id], owner[name] = name, record.image_id
    return files


def _write_dataset_format(
    fmt: str, folder: Path, records: list[ImageRecord], files: dict[str, str], pool: DetectionDataset, images: str
) -> None:
    """The predictions as a COCO, VOC or YOLO export whose image names are the exported files' names."""
    from ..data.coco import write_coco
    from ..data.voc import write_voc
    from ..data.yolo import write_darknet

    named = []
    for r in records:  # each record named and placed as its exported file
        name = files[r.image_id]
        named.append(ImageRecord(Path(name).stem, folder / "images" / name, r.width, r.height, r.boxes, r.labels))
    dataset = DetectionDataset(named, pool.class_names, pool.category_ids)
    if fmt == "coco":
        write_coco(dataset, folder / "annotations" / "instances_default.json", image_root=folder / "images")
    elif fmt in ("voc", "cvat_voc"):
        write_voc(dataset, folder / "voc", image_set="default", images="none", one_based=fmt == "voc")
    else:
        exported = images != "none" and all(r.image_index is None for r in records)
        write_darknet(dataset, folder / "yolo", images="link" if exported else "none")


def export_batch(
    folder: str | Path,
    pool: DetectionDataset,
    picks: Sequence[dict],
    predictions: Sequence[Detections],
    *,
    fmt: str = "activedet",
    images: str = "copy",
    min_score: float = 0.3,
    predictions_file: str | Path | None = None,
    labelstudio_url_prefix: str = LABELSTUDIO_URL_PREFIX,
    labelstudio_document_root: str | None = "/",
) -> Path:
    """Write the batch ``picks`` (selection records) with ``predictions`` (one per pick) into ``folder``.

    ``min_score``: the lowest detection score written as a pre-annotation. ``labelstudio_url_prefix`` and
    ``labelstudio_document_root``: how ``labelstudio`` tasks name their images (module docstring)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(
            f"The 'fmt' parameter of export_batch must be one of {list(EXPORT_FORMATS)}. Got {fmt!r} instead."
        )
    if images not in IMAGE_MODES:
        raise ValueError(
            f"The 'images' parameter of export_batch must be one of {list(IMAGE_MODES)}. Got {images!r} instead."
        )
    check_export_options(
        "export_batch",
        min_score=min_score,
        labelstudio_url_prefix=labelstudio_url_prefix,
        labelstudio_document_root=labelstudio_document_root,
    )
    folder = Path(folder)
    records = _prediction_records(pool, picks, predictions, min_score)
    files = _file_names(records)
    for record in records:
        if images != "none" and record.image_index is None:
            place_image(record.file_name, folder / "images" / files[record.image_id], images)
    scores = {r.image_id: d.scores.numpy()[_kept(d, min_score)] for r, d in zip(records, predictions)}
    if fmt == "activedet":
        entries = {
            r.image_id: {
                "boxes": r.boxes.astype(float).tolist(),
                "labels": [pool.class_names[int(label) - 1] for label in r.labels],
                "scores": scores[r.image_id].astype(float).tolist(),
                "annotator": None,
            }
            for r in records
        }
        atomic_write_json(folder / "pre_annotations.json", {"format": "activedet-labels", "images": entries})
    elif fmt in ("labelstudio", "cvat_coco"):
        from ..interop import ExportItem, write_cvat_coco, write_labelstudio_tasks

        refs = {r.image_id: f"images/{files[r.image_id]}" for r in records}
        if fmt == "labelstudio":
            refs = {
                r.image_id: _labelstudio_ref(
                    folder / "images" / files[r.image_id] if images != "none" else Path(r.file_name),
                    folder,
                    labelstudio_url_prefix,
                    labelstudio_document_root,
                )
                for r in records
            }
        items = [
            ExportItem(
                r.image_id, refs[r.image_id], r.width, r.height, r.boxes, r.labels, scores[r.image_id], p["score"]
            )
            for r, p in zip(records, picks)
        ]
        if fmt == "labelstudio":
            write_labelstudio_tasks(items, pool.class_names, folder / "tasks.json")
            atomic_write_text(folder / "label_config.xml", labelstudio_config(pool.class_names))
        else:
            write_cvat_coco(items, pool.class_names, folder / "pre_annotations.json")
    else:
        _write_dataset_format(fmt, folder, records, files, pool, images)
    if predictions_file is not None:
        atomic_write_json(
            Path(predictions_file),
            {
                pick["image_id"]: {
                    "boxes": det.boxes.numpy().astype(float).tolist(),
                    "scores": det.scores.numpy().astype(float).tolist(),
                    "labels": det.labels.numpy().astype(int).tolist(),
                }
                for pick, det in zip(picks, predictions)
            },
        )
    batch: list[dict[str, Any]] = [
        {
            "image_id": r.image_id,
            "file": files[r.image_id],
            "source": str(r.file_name),
            "width": r.width,
            "height": r.height,
            "rank": p["rank"],
            "score": p["score"],
        }
        for r, p in zip(records, picks)
    ]
    atomic_write_json(
        folder / BATCH_FILE,
        {
            "cycle": int(picks[0]["cycle"]) if picks else None,
            "format": fmt,
            "images": batch,
            "class_names": list(pool.class_names),
        },
    )
    return folder
