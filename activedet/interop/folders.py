"""People's labels as COCO files, Pascal VOC XML folders and YOLO label folders (any tool that writes them)."""

from __future__ import annotations

import os
import re
from collections.abc import Container, Sequence
from pathlib import Path, PurePosixPath

from ..data import coco, voc, yolo
from ..data.records import DatasetError, Problem
from .common import Collector, LabelImport, image_id_from_name, known_id, load_json, load_xml, ref_stem, short_repr


def read_coco_labels(
    path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    images: Container[str] | None = None,
    empty_means_labelled: bool = False,
) -> LabelImport:
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
    return read_coco_file(
        _coco_file(Path(path)),
        class_names,
        image_id_of=lambda name: image_id_from_name(name, images),
        empty_means_labelled=empty_means_labelled,
    )


def read_coco_file(
    path: Path, class_names: Sequence[str], *, image_id_of, empty_means_labelled: bool, newest_first: bool = False
) -> LabelImport:
    """COCO labels; ``image_id_of(file_name)`` names each image; ``newest_first``: several image entries of one
    image are its annotations, newest first (Label Studio), and only the first is read."""
    out = Collector(path, class_names, "COCO file")
    data = load_json(
        path, dict, "a JSON object with 'images', 'annotations' and 'categories'", coco.JSON_HINT, out.problems
    )
    if data is None:
        return out.result()
    names = {}
    for where, entry in coco.json_entries(data, "categories", path.name, out.problems):
        cat_id = coco.json_field(entry, "id", where, (int,), "an integer id", out.problems)
        names[cat_id] = coco.json_field(entry, "name", where, (str,), "a string", out.problems)
    entries, boxes, crowd = {}, {}, {}
    for where, entry in coco.json_entries(data, "images", path.name, out.problems):
        image_id = coco.json_field(entry, "id", where, (int, str), "an integer id", out.problems)
        file_name = coco.json_field(entry, "file_name", where, (str,), "the image file name", out.problems)
        if image_id in entries:
            out.problems.append(Problem(f"{where}.id", f"duplicate image id {image_id!r}", "export again"))
        elif image_id is not None and file_name is not None and ref_stem(file_name):
            entries[image_id] = (image_id_of(file_name), f"image {file_name!r}")
            size = (entry.get("width"), entry.get("height"))
            if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
                out.sizes[entries[image_id][0]] = size
            boxes[image_id], crowd[image_id] = [], 0
    for where, entry in coco.json_entries(data, "annotations", path.name, out.problems):
        image_id = coco.json_field(entry, "image_id", where, (int, str), "the id of an image in 'images'", out.problems)
        if image_id is not None and image_id not in entries:
            out.problems.append(
                Problem(
                    f"{where}.image_id",
                    f"refers to image id {image_id!r}, which is not in 'images'",
                    "export again, or remove this annotation",
                )
            )
        elif image_id is not None and entry.get("iscrowd") in (1, True):
            crowd[image_id] += 1
        elif image_id is not None:
            row = _coco_box(entry, where, entries[image_id][1], names, out)
            boxes[image_id] += [row] if row is not None else [None]  # None: an invalid annotation
    used = set()
    for image_id, (stem, item) in entries.items():
        if newest_first and stem in used:
            out.skipped.append(
                f"{item} (id {image_id}): an older annotation of {stem!r}, left out (the newest one comes first)"
            )
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
        raise DatasetError(
            [
                Problem(
                    path.name,
                    f"expected one annotations/*.json file in {os.path.abspath(path)}; found {[f.name for f in files]}",
                    "give the COCO JSON file to import",
                )
            ],
            f"COCO export {path}",
        )
    return files[0]


def _coco_box(entry: dict, where: str, item: str, names: dict, out: Collector) -> tuple | None:
    count = len(out.problems)
    category = coco.json_field(entry, "category_id", where, (int,), "the id of a category", out.problems)
    bbox = coco.json_field(entry, "bbox", where, (list,), "[x, y, width, height] in pixels", out.problems)
    label = None
    if category is not None and category not in names:
        out.problems.append(
            Problem(
                f"{where}.category_id",
                f"refers to category id {category}, which is not in 'categories'",
                "export again, or fix the id",
            )
        )
    elif category is not None and names[category] is not None:
        label = out.label(names[category], f"{where}.category_id", item)
    if bbox is not None and (len(bbox) != 4 or not all(coco.is_number(v) for v in bbox)):
        out.problems.append(
            Problem(
                f"{where}.bbox", f"expected [x, y, width, height] (4 numbers); found {short_repr(bbox)}", coco.JSON_HINT
            )
        )
    attributes = entry.get("attributes")
    rotation = attributes.get("rotation", 0) if isinstance(attributes, dict) else 0
    if rotation not in (0, None):
        out.problems.append(
            Problem(
                f"{where}.attributes.rotation",
                f"{item}: box rotated by {rotation} degrees; only axis-aligned boxes can be imported",
                "set its rotation to 0 in CVAT",
            )
        )
    if len(out.problems) > count or label is None or bbox is None:
        return None
    x, y, w, h = (float(v) for v in bbox)
    return f"{where}.bbox", [x, y, x + w, y + h], label


def read_voc_labels(
    path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    one_based: bool = True,
    images: Container[str] | None = None,
    empty_means_labelled: bool = False,
) -> LabelImport:
    """Read a folder of Pascal VOC XML files (or its ``Annotations/`` subfolder, or one ``.xml`` file).

    Pascal VOC coordinates come in two conventions, so the caller says which one the files use:

    * ``one_based=True``: the devkit's 1-based pixel indices (the VOC2007/2012 files, activedet's ``voc``
      export), converted as :mod:`activedet.data.voc` does (``x1 = xmin - 1``, ``x2 = xmax``);
    * ``one_based=False``: the 0-based pixel coordinates CVAT and Datumaro write (``x1 = xmin``, ``x2 = xmax``).

    The image id is the XML file's name (relative to the folder) mapped by :func:`image_id_from_name` onto
    ``images`` (the run's image ids; without them, the file stem). A file without ``<object>`` is an empty
    label. An image listed in ``ImageSets/Main/*.txt`` without a file (CVAT and Datumaro write none for an image
    without objects, and list every image of a job, finished or not) is **not labelled** (it stays pending)
    unless ``empty_means_labelled`` (the job is finished); ``<difficult>1`` and ``<iscrowd>1`` objects are noted in
    ``skipped`` (they are not training targets).
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path / "Annotations" if (path / "Annotations").is_dir() else path
    out = Collector(path, class_names, "Pascal VOC annotations")
    files = [path] if path.is_file() else sorted(folder.rglob("*.xml"))
    if not files:
        out.problems.append(
            Problem(
                path.name, f"no .xml files in {os.path.abspath(folder)}", "give the folder holding the VOC XML files"
            )
        )
    offsets = voc.ONE_BASED_OFFSETS if one_based else voc.ZERO_BASED_OFFSETS
    for file in files:
        name = file.relative_to(folder).as_posix()
        root = load_xml(file, out.problems, name=name)
        if root is None:
            continue
        rows, flagged = [], 0
        out.begin()
        for k, obj in enumerate(root.findall("object"), start=1):
            row = voc.read_object(
                obj,
                f"{name}: object[{k}]",
                out.class_index,
                out.problems,
                offsets,
                "rename the label in the annotation tool, or add the class to the run's classes",
            )
            if row is not None and one_based and min(row[1][:2]) < 0:  # xmin or ymin below 1: not a 1-based index
                out.problems.append(
                    Problem(
                        f"{name}: object[{k}]/bndbox",
                        f"xmin, ymin = {row[1][0] + 1:g}, "
                        f"{row[1][1] + 1:g}: below 1, which 1-based pixel indices cannot be; the "
                        "file uses 0-based coordinates (as CVAT and Datumaro write)",
                        "import it as cvat_voc (--format cvat_voc)",
                    )
                )
            elif row is not None and (row[3] or row[4]):
                flagged += 1
            elif row is not None:
                rows.append(row[:3])
        if flagged:
            out.skipped.append(f"{name}: left out {flagged} difficult/iscrowd object(s)")
        image_id = image_id_from_name(name, images)
        size = voc.read_size(root, name, [])  # a missing or unreadable size is not checked
        if size is not None:
            out.sizes[image_id] = size
        out.add(image_id, name, rows)
    if not path.is_file():
        _voc_listed_without_file(
            folder, {f.relative_to(folder).with_suffix("").as_posix() for f in files}, images, out, empty_means_labelled
        )
    return out.result()


def _voc_listed_without_file(
    folder: Path, annotated: set[str], images: Container[str] | None, out: Collector, empty_means_labelled: bool
) -> None:
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
        image_id = known_id(stem, images) if images is not None else stem
        if not empty_means_labelled:
            out.unlabelled.append(image_id)
            continue
        out.begin()
        out.add(image_id, where, [])
    if empty and empty_means_labelled:
        out.skipped.append(
            f"{len(empty)} image(s) listed in ImageSets/Main without an annotation file read as "
            "labelled with no objects (how CVAT and Datumaro write an image without objects)"
        )


def read_yolo_labels(
    path: str | os.PathLike,
    class_names: Sequence[str],
    *,
    images: dict[str, tuple[int, int]],
    empty_means_labelled: bool = False,
) -> LabelImport:
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
    out = Collector(path, class_names, "YOLO labels")
    base = _yolo_base(path)
    names, names_file, listed = _yolo_names(base, out.problems)
    files = _yolo_label_files(path, base, listed)
    if not files:
        out.problems.append(
            Problem(
                path.name,
                f"no .txt label files in {os.path.abspath(path)}",
                "give the folder of the YOLO export (holding obj.names, data.yaml or classes.txt and the label files)",
            )
        )
    missing: dict[int, str] = {}  # class index -> first line using it, when the export has no class list
    for file in files:
        where = file.relative_to(path).as_posix()
        out.begin()
        rows = yolo.read_label_file(file, where, None if names is None else len(names), out.problems)
        if names is None and rows:  # (an empty file needs no class list)
            for location, label, *_ in rows:
                missing.setdefault(label - 1, location)
            continue
        image_id = image_id_from_name(where, images)
        if image_id not in images:
            out.problems.append(
                Problem(
                    where,
                    f"no image of the run is named like this label file (image id {image_id!r})",
                    "keep each label file named after its image, as the export wrote it (NAME.txt for NAME.jpg)",
                )
            )
            continue
        if not rows and not empty_means_labelled:
            out.unlabelled.append(image_id)
            continue
        width, height = images[image_id]
        pixels = []
        for location, label, (cx, cy, w, h), _ in rows:
            label = out.label(names[label - 1], location, f"class {label - 1} of {names_file}")
            if label is not None:
                pixels.append(
                    (
                        location,
                        [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height],
                        label,
                    )
                )
        out.add(image_id, where, pixels)
    if missing and names_file is None:
        out.problems.append(
            Problem(
                next(iter(missing.values())),
                f"class(es) {sorted(missing)} have no name: "
                f"no {', '.join(_YOLO_NAME_FILES)} in {os.path.abspath(base)}",
                "export again with the class list (CVAT's and Datumaro's YOLO exports hold "
                "obj.names), or add classes.txt with the tool's class names, one per line in "
                "class-index order",
            )
        )
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
        names, name_problems = yolo.read_names(base, file)
        problems += name_problems
        if file.name == "data.yaml":
            listed.update(_yaml_lists(base, file))
        if not name_problems:
            lists[os.path.relpath(file, base)] = names
    if len({tuple(n) for n in lists.values()}) > 1:
        problems.append(
            Problem(
                " and ".join(lists),
                "the class lists disagree: " + "; ".join(f"{k}: {v}" for k, v in lists.items()),
                "keep the class list the labels were written with",
            )
        )
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
