"""People's labels in any dataset format Datumaro reads (``activedet import --format datumaro:<name>``).

Datumaro (``pip install activedet[datumaro]``) is imported only when such a file is read. Its boxes (``Bbox``,
``x, y, w, h`` pixels) become xyxy boxes, matched to the run's classes by name; other annotation types are noted
in ``skipped``. An item's image id is its Datumaro id (the path without suffix, relative to the dataset), mapped
back to the run's images like a Label Studio name (``setB__x`` -> ``setB/x``). As in CVAT's and COCO's files, an
item without any annotation is pending unless ``empty_means_labelled``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

from ..data.records import DatasetError, Problem
from .common import Collector, LabelImport
from .labelstudio import labelstudio_image_id

__all__ = ["INSTALL_HINT", "read_datumaro_labels"]

INSTALL_HINT = "pip install datumaro (or pip install activedet[datumaro])"


def read_datumaro_labels(
    path: str | os.PathLike,
    class_names: Sequence[str],
    name: str,
    *,
    images: Collection[str] | None = None,
    empty_means_labelled: bool = False,
) -> LabelImport:
    """Read the dataset at ``path`` in Datumaro's format ``name`` (e.g. ``cvat``, ``coco_instances``,
    ``voc_detection``, ``yolo``, ``kitti_detection``, ``label_me``) as labels; ``images``: the run's image ids."""
    path = Path(path)
    try:
        import datumaro as dm
        from datumaro.components.annotation import AnnotationType
        from datumaro.components.environment import Environment
    except ImportError:
        raise ImportError(f"reading {path} as 'datumaro:{name}' needs Datumaro: {INSTALL_HINT}") from None
    known = sorted(Environment().importers)
    if name not in known:
        raise ValueError(f"'datumaro:{name}': Datumaro has no dataset format {name!r}; its formats are {known}")
    try:
        dataset = dm.Dataset.import_from(str(path), name)
        items = list(dataset)
    except Exception as exc:  # Datumaro raises many types; report them the same way, with their causes
        causes = [exc]
        while causes[-1].__cause__ is not None and len(causes) < 5:
            causes.append(causes[-1].__cause__)
        found = " <- ".join(f"{type(c).__name__}: {c}" for c in causes)
        raise DatasetError(
            [
                Problem(
                    path.name,
                    f"Datumaro cannot read it as {name!r}: {found}",
                    "check the format name, and that the path is the dataset's root folder "
                    "laid out as that format wants (with its images folder)",
                )
            ],
            f"Datumaro dataset {path}",
        ) from None
    categories = dataset.categories().get(AnnotationType.label)
    label_names = [c.name for c in categories.items] if categories is not None else []
    out = Collector(path, class_names, f"Datumaro {name} dataset")
    for item in items:
        image_id = item.id if images is None or item.id in images else labelstudio_image_id(item.id, images)
        where = f"item {item.id!r}" + (f" ({item.subset})" if item.subset and item.subset != "default" else "")
        out.begin()
        rows, other = [], []
        for k, ann in enumerate(item.annotations, start=1):
            if ann.type != AnnotationType.bbox:
                other.append(ann.type.name)
                continue
            label = None
            if ann.label is None or not 0 <= ann.label < len(label_names):
                out.problems.append(
                    Problem(
                        f"{where}: box {k}",
                        f"has no label (label index {ann.label!r})",
                        "give every box a class in the annotation tool",
                    )
                )
            else:
                label = out.label(label_names[ann.label], f"{where}: box {k}")
            rotation = (ann.attributes or {}).get("rotation", 0)
            if rotation not in (0, 0.0, None, "0"):
                out.problems.append(
                    Problem(
                        f"{where}: box {k}",
                        f"rotated by {rotation} degrees; only axis-aligned boxes can be imported",
                        "set its rotation to 0 in the annotation tool",
                    )
                )
            elif label is not None:
                x, y, w, h = (float(v) for v in ann.get_bbox())
                rows.append((f"{where}: box {k}", [x, y, x + w, y + h], label))
        if other:
            out.skipped.append(
                f"{where}: left out {len(other)} annotation(s) of type {sorted(set(other))}; only boxes are read"
            )
        if not item.annotations and not empty_means_labelled:
            out.unlabelled.append(image_id)
            continue
        out.add(image_id, where, rows)
    return out.result()
