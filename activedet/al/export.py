"""Export a query batch for annotation: the images, and the model's predictions as pre-annotations.

``cycles/t/query/`` holds ``batch.json`` (written last: the export's commit point) with one entry per image of the
batch (image id, file, size, rank, strategy score), ``images/`` (copied, hard-linked, or absent with
``images="none"``) and the pre-annotations in one format:

* ``activedet``: the native label file (:mod:`activedet.al.annotation`) of the predictions, with their scores;
* ``labelstudio``: Label Studio tasks (``tasks.json``: rectangle labels in percent, each prediction with its score,
  the task with the strategy's score; ``data.image`` = ``images/FILE``, to be served by Label Studio's local
  storage or replaced by your URLs), importable into a project with a ``RectangleLabels`` control named
  ``label`` on an image named ``image``;
* ``cvat_coco``: a COCO 1.0 file CVAT imports as annotations (``pre_annotations.json``, boxes with a score);
* ``coco``: ``annotations/instances_default.json`` next to ``images/`` (the layout of CVAT's and Datumaro's COCO),
  ``file_name`` relative to ``images/``, each box with ``area``, ``iscrowd: 0`` and an empty ``segmentation``;
* ``voc`` / ``cvat_voc``: ``voc/`` (``Annotations/``, ``ImageSets/Main/``, ``labelmap.txt``) with the devkit's
  1-based pixel indices (``voc``) or the 0-based coordinates CVAT and Datumaro use (``cvat_voc``);
* ``yolo``: ``yolo/`` in the Darknet layout CVAT ("YOLO 1.1") and Datumaro read: ``obj.names``, ``obj.data``,
  ``train.txt``, ``data.yaml`` and ``obj_train_data/`` with each image (unless ``images="none"``) next to its label
  file of the same name.

Every image is exported as one flat file name: its id with ``/`` (a sub-folder of the unlabelled folder) written as
``__`` (:func:`~activedet.data.annotation_io.export_file_name`); the importers map such names back.

Predictions whose score is below ``min_score`` are left out of the pre-annotations (they are kept, all of them, in
``cycles/t/predictions.json`` for reports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..atomic import atomic_write_json
from ..data.records import DetectionDataset, ImageRecord
from ..data.validate import place_image
from ..models.outputs import Detections

__all__ = ["EXPORT_FORMATS", "IMAGE_MODES", "export_batch"]

EXPORT_FORMATS = ("activedet", "labelstudio", "cvat_coco", "coco", "voc", "cvat_voc", "yolo")
IMAGE_MODES = ("copy", "link", "none")


def _kept(det: Detections, min_score: float):
    """The detections written as pre-annotations: score at least ``min_score`` and a box with an area."""
    boxes = det.boxes.numpy()
    return (det.scores >= min_score).numpy() & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _prediction_records(pool: DetectionDataset, picks: Sequence[dict], predictions: Sequence[Detections],
                        min_score: float) -> list[ImageRecord]:
    out = []
    for pick, det in zip(picks, predictions):
        record = pool.records[pick["index"]]
        boxes, keep = det.boxes.numpy(), _kept(det, min_score)
        out.append(ImageRecord(record.image_id, record.file_name, record.width, record.height,
                               boxes[keep], det.labels.numpy()[keep], image_index=record.image_index))
    return out


def _file_names(records: Sequence[ImageRecord]) -> dict[str, str]:
    """``image_id -> exported file name``; two images of the batch that would share a name are an error."""
    from ..data.annotation_io import export_file_name

    files, owner = {}, {}
    for record in records:
        name = export_file_name(record.image_id, Path(record.file_name).suffix or ".png")
        if name in owner:
            raise ValueError(f"images {owner[name]!r} and {record.image_id!r} would both be exported as {name!r}; "
                             "rename one of them in the unlabelled folder (a '/' is exported as '__')")
        files[record.image_id], owner[name] = name, record.image_id
    return files


def _write_dataset_format(fmt: str, folder: Path, records: list[ImageRecord], files: dict[str, str],
                          pool: DetectionDataset, images: str) -> None:
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


def export_batch(folder: str | Path, pool: DetectionDataset, picks: Sequence[dict], predictions: Sequence[Detections],
                 *, fmt: str = "activedet", images: str = "copy", min_score: float = 0.3,
                 predictions_file: str | Path | None = None) -> Path:
    """Write the batch ``picks`` (selection records) with ``predictions`` (one per pick) into ``folder``."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"The 'fmt' parameter of export_batch must be one of {list(EXPORT_FORMATS)}. Got {fmt!r} "
                         "instead.")
    if images not in IMAGE_MODES:
        raise ValueError(f"The 'images' parameter of export_batch must be one of {list(IMAGE_MODES)}. Got "
                         f"{images!r} instead.")
    folder = Path(folder)
    records = _prediction_records(pool, picks, predictions, min_score)
    files = _file_names(records)
    for record in records:
        if images != "none" and record.image_index is None:
            place_image(record.file_name, folder / "images" / files[record.image_id], images)
    scores = {r.image_id: d.scores.numpy()[_kept(d, min_score)] for r, d in zip(records, predictions)}
    if fmt == "activedet":
        entries = {r.image_id: {"boxes": r.boxes.astype(float).tolist(),
                                "labels": [pool.class_names[int(label) - 1] for label in r.labels],
                                "scores": scores[r.image_id].astype(float).tolist(), "annotator": None}
                   for r in records}
        atomic_write_json(folder / "pre_annotations.json", {"format": "activedet-labels", "images": entries})
    elif fmt in ("labelstudio", "cvat_coco"):
        from ..data.annotation_io import ExportItem, write_cvat_coco, write_labelstudio_tasks

        items = [ExportItem(r.image_id, f"images/{files[r.image_id]}", r.width, r.height, r.boxes, r.labels,
                            scores[r.image_id], p["score"]) for r, p in zip(records, picks)]
        if fmt == "labelstudio":
            write_labelstudio_tasks(items, pool.class_names, folder / "tasks.json")
        else:
            write_cvat_coco(items, pool.class_names, folder / "pre_annotations.json")
    else:
        _write_dataset_format(fmt, folder, records, files, pool, images)
    if predictions_file is not None:
        atomic_write_json(Path(predictions_file), {
            pick["image_id"]: {"boxes": det.boxes.numpy().astype(float).tolist(),
                               "scores": det.scores.numpy().astype(float).tolist(),
                               "labels": det.labels.numpy().astype(int).tolist()}
            for pick, det in zip(picks, predictions)})
    batch: list[dict[str, Any]] = [
        {"image_id": r.image_id, "file": files[r.image_id], "source": str(r.file_name), "width": r.width,
         "height": r.height, "rank": p["rank"], "score": p["score"]} for r, p in zip(records, picks)]
    atomic_write_json(folder / "batch.json", {"cycle": int(picks[0]["cycle"]) if picks else None, "format": fmt,
                                              "images": batch, "class_names": list(pool.class_names)})
    return folder
