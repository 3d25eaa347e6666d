"""`import --format datumaro:<name>`: any dataset format Datumaro reads, boxes matched by class name."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from activedet.al.annotation import read_labels
from activedet.cli import build_parser
from activedet.data.records import DatasetError

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SIZES = {"setB/val_1": (96, 96), "val_3": (96, 96), "val_6": (96, 96)}


@pytest.fixture
def coco_dataset(tmp_path):
    """A Datumaro COCO dataset (annotations/instances_default.json and the images folder it wants): categories
    in their own order, a sub-folder image exported as setB__val_1, a polygon, and an image with nothing drawn."""
    (tmp_path / "images/default").mkdir(parents=True)
    (tmp_path / "annotations").mkdir()
    data = {
        "images": [
            {"id": 1, "file_name": "setB__val_1.png", "width": 96, "height": 96},
            {"id": 2, "file_name": "val_3.png", "width": 96, "height": 96},
        ],
        "categories": [{"id": 1, "name": "nine"}, {"id": 2, "name": "two"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1.5, 2, 28.5, 38],
                "area": 1083,
                "iscrowd": 0,
                "segmentation": [],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [10, 10, 20, 20],
                "area": 400,
                "iscrowd": 0,
                "segmentation": [],
            },
        ],
    }
    (tmp_path / "annotations/instances_default.json").write_text(json.dumps(data))
    return tmp_path


def test_a_datumaro_format_imports_by_class_name_and_leaves_empty_images_pending(coco_dataset):
    result = read_labels("datumaro:coco_instances", coco_dataset, CLASSES, sizes=SIZES)
    assert list(result.labels) == ["setB/val_1"] and result.unlabelled == ["val_3"]
    boxes, labels = result.labels["setB/val_1"]
    order = np.argsort(boxes[:, 0])  # Datumaro may reorder an image's annotations
    np.testing.assert_array_equal(boxes[order], [[1.5, 2, 30, 40], [10, 10, 30, 30]])
    assert [CLASSES[int(label) - 1] for label in labels[order]] == ["nine", "two"]
    done = read_labels("datumaro:coco_instances", coco_dataset, CLASSES, sizes=SIZES, empty_means_labelled=True)
    assert done.labels["val_3"][0].shape == (0, 4) and done.unlabelled == []


def test_datumaro_errors_name_the_format_and_the_fix(coco_dataset, monkeypatch):
    with pytest.raises(ValueError, match="Datumaro has no dataset format 'labelme2'; its formats are"):
        read_labels("datumaro:labelme2", coco_dataset, CLASSES, sizes=SIZES)
    with pytest.raises(DatasetError, match="Datumaro cannot read it as 'voc_detection'"):
        read_labels("datumaro:voc_detection", coco_dataset, CLASSES, sizes=SIZES)
    with pytest.raises(ValueError, match="is not one of .* or datumaro:<name>"):
        read_labels("datumaro:", coco_dataset, CLASSES, sizes=SIZES)
    monkeypatch.setitem(sys.modules, "datumaro", None)  # as if it were not installed
    with pytest.raises(
        ImportError,
        match=r"needs Datumaro: pip install datumaro \(or pip install "
        r"activedet\[datumaro\]\)",
    ):
        read_labels("datumaro:coco_instances", coco_dataset, CLASSES, sizes=SIZES)


def test_import_help_lists_every_format():
    from activedet.al.annotation import LABEL_FORMATS

    parser = build_parser()
    help_text = parser._subparsers._group_actions[0].choices["import"].format_help()
    flat = " ".join(help_text.split())
    assert all(fmt in flat for fmt in LABEL_FORMATS) and "datumaro:NAME" in flat
    assert "--empty-means-labelled" in flat
