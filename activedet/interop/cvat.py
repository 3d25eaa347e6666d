"""CVAT: its "CVAT for images 1.1" XML (or the zip it comes in) back in, COCO pre-annotations out."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..atomic import atomic_write_text
from ..data import coco
from ..data.records import Problem
from .common import (
    CVAT_HINT,
    Collector,
    ExportItem,
    LabelImport,
    check_items,
    class_index_of,
    load_xml,
    ref_name,
    ref_stem,
    xml_number,
)


def read_cvat_xml(
    path: str | os.PathLike, class_names: Sequence[str], *, empty_means_labelled: bool = False
) -> LabelImport:
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
    out = Collector(path, class_names, "CVAT XML export")
    root = _load_cvat_zip(path, out.problems) if path.suffix.lower() == ".zip" else load_xml(path, out.problems)
    if root is not None and (root.tag != "annotations" or root.find("track") is not None):
        found = "<track> elements (a video export)" if root.tag == "annotations" else f"root <{root.tag}>"
        out.problems.append(
            Problem(path.name, f"expected <annotations> with <image> elements; found {found}", CVAT_HINT)
        )
        root = None
    for k, image in enumerate([] if root is None else root.findall("image"), start=1):
        name = image.get("name")
        item = f"image {name!r}"
        where = f"{path.name}: image[{k}]"
        if not name or not ref_stem(name):
            out.problems.append(
                Problem(where, f"missing attribute name (the image file name); found {name!r}", CVAT_HINT)
            )
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
            out.unlabelled.append(ref_stem(name))
            continue
        out.add(ref_stem(name), item, rows)
    return out.result()


def _cvat_box(box: ET.Element, where: str, item: str, out: Collector) -> tuple[str, list[float], int] | None:
    count = len(out.problems)
    label = out.label(box.get("label"), f"{where}@label", item)
    xyxy = [xml_number(box.get(key), f"{where}@{key}", out.problems) for key in ("xtl", "ytl", "xbr", "ybr")]
    rotation = xml_number(box.get("rotation", "0"), f"{where}@rotation", out.problems)
    if rotation not in (None, 0):
        out.problems.append(
            Problem(
                f"{where}@rotation",
                f"{item}: box rotated by {rotation:g} degrees; only axis-aligned boxes can be imported",
                "set the box's rotation to 0 in CVAT",
            )
        )
    return None if len(out.problems) > count or label is None else (where, xyxy, label)


def write_cvat_coco(items: Iterable[ExportItem], class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write the items' detections as a COCO 1.0 file that CVAT imports as annotations (Upload annotations ->
    COCO 1.0) and :func:`activedet.data.coco.read_coco` reads.

    ``images[].file_name`` is the last path component of ``image_ref`` (CVAT matches images by file name),
    ids ``1..``; categories ``1..C`` are ``class_names``; each box is an annotation with ``bbox = [x, y, w, h]``
    pixels, ``segmentation: []`` and its ``score`` when known. Written atomically; returns ``path``.
    """
    names = list(class_index_of(class_names))
    items = check_items(items, len(names), "write_cvat_coco")
    file_names = [ref_name(item.image_ref) for item in items]
    repeated = sorted({n for n in file_names if file_names.count(n) > 1})
    if repeated or "" in file_names:
        raise ValueError(
            f"write_cvat_coco needs one distinct file name per image (CVAT matches images by name); "
            f"repeated or empty: {repeated or ['']}"
        )
    images, annotations = [], []
    for image_id, (item, file_name) in enumerate(zip(items, file_names), start=1):
        images.append({"id": image_id, "file_name": file_name, "width": item.width, "height": item.height})
        for k, (box, label) in enumerate(zip(item.boxes, item.labels)):
            x, y, w, h = coco.xyxy_to_xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [coco.json_number(v) for v in (x, y, w, h)],
                    "area": coco.json_number(w * h),
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
            if item.scores is not None:
                annotations[-1]["score"] = float(item.scores[k])
    categories = [{"id": i, "name": n, "supercategory": ""} for i, n in enumerate(names, start=1)]
    data = {
        "info": {"description": "activedet pre-annotations"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    atomic_write_text(path, json.dumps(data, allow_nan=False))
    return Path(path)


def _load_cvat_zip(path: Path, problems: list[Problem]) -> ET.Element | None:
    """The root of ``annotations.xml`` in a CVAT export zip, or ``None`` with a problem."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("annotations.xml")
    except FileNotFoundError:
        problems.append(Problem(path.name, f"file not found: {os.path.abspath(path)}", "check the path"))
    except KeyError:
        problems.append(Problem(path.name, "no annotations.xml at the top of the zip", CVAT_HINT))
    except (zipfile.BadZipFile, OSError) as exc:
        problems.append(Problem(path.name, f"not a readable zip file ({exc})", "download the export again"))
    else:
        try:
            return ET.fromstring(data)
        except ET.ParseError as exc:
            problems.append(
                Problem(
                    f"{path.name}/annotations.xml:{exc.position[0]}:{exc.position[1]}",
                    f"malformed XML: {exc}",
                    "export the task again",
                )
            )
    return None
