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

Modules: ``common`` (items, results, name mapping), ``labelstudio``, ``cvat``, ``folders`` (COCO, VOC, YOLO),
``datumaro`` (optional extra), ``labels`` (:func:`read_labels`, one entry point for every format).
"""

from .common import ExportItem, LabelImport, export_file_name, image_id_from_name
from .cvat import read_cvat_xml, write_cvat_coco
from .folders import read_coco_labels, read_voc_labels, read_yolo_labels
from .labels import EMPTY_AMBIGUOUS, LABEL_FORMATS, read_labels
from .labelstudio import (
    labelstudio_image_id,
    read_labelstudio_coco,
    read_labelstudio_export,
    read_labelstudio_min,
    read_labelstudio_voc,
    read_labelstudio_yolo,
    write_labelstudio_tasks,
)

__all__ = [
    "EMPTY_AMBIGUOUS",
    "ExportItem",
    "LABEL_FORMATS",
    "LabelImport",
    "export_file_name",
    "image_id_from_name",
    "labelstudio_image_id",
    "read_coco_labels",
    "read_cvat_xml",
    "read_labels",
    "read_labelstudio_coco",
    "read_labelstudio_export",
    "read_labelstudio_min",
    "read_labelstudio_voc",
    "read_labelstudio_yolo",
    "read_voc_labels",
    "read_yolo_labels",
    "write_cvat_coco",
    "write_labelstudio_tasks",
]
