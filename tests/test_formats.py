"""Readers and writers for Pascal VOC, COCO JSON and YOLO txt: round trips and format conventions.

Tiny datasets are written into ``tmp_path``: 64-96 px images made with PIL, including an image with no boxes.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from activedet.data.coco import read_coco, write_coco
from activedet.data.io import FORMATS, read_dataset, validate_path, write_dataset
from activedet.data.records import DetectionDataset, ImageRecord
from activedet.data.validate import DatasetWarning
from activedet.data.voc import VOC_CLASSES, read_voc, write_voc
from activedet.data.yolo import read_yolo, write_yolo

CLASSES = ["cat", "dog", "person"]


def make_image(path, size, colour=(90, 120, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def make_dataset(folder, ids=("000005", "000007", "000009"), category_ids=None):
    """Three images (jpg, png, jpg) with integer, fractional and full-image boxes, flags, and one empty image."""
    sizes = [(64, 48), (96, 80), (80, 64)]
    boxes = [
        [[0, 0, 64, 48], [1.5, 2.25, 30.1, 40.7], [10, 12, 20, 22]],
        [[5, 6, 95.5, 79], [0.1, 0.2, 0.3, 0.4]],
        [],
    ]
    labels = [[1, 3, 2], [3, 3], []]
    difficult = [[False, True, False], [False, False], []]
    iscrowd = [[False, False, True], [True, False], []]
    records = []
    for i, image_id in enumerate(ids):
        suffix = ".png" if i == 1 else ".jpg"
        path = make_image(folder / f"src_{i}{suffix}", sizes[i], (40 * i, 80, 120))
        records.append(ImageRecord(image_id, path, *sizes[i], boxes[i], labels[i], difficult[i], iscrowd[i]))
    return DetectionDataset(records, CLASSES, category_ids)


def assert_same(expected, actual, *, ids=True):
    assert actual.class_names == expected.class_names
    if ids:
        assert [r.image_id for r in actual] == [r.image_id for r in expected]
    for a, b in zip(expected, actual):
        assert (b.width, b.height) == (a.width, a.height)
        assert b.boxes.dtype == np.float32 and b.labels.dtype == np.int64
        np.testing.assert_array_equal(b.boxes, a.boxes)
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_array_equal(b.difficult, a.difficult)
        np.testing.assert_array_equal(b.iscrowd, a.iscrowd)
    assert len(actual) == len(expected)


# ---------------------------------------------------------------------------------------------------- Pascal VOC


def test_voc_round_trip_is_exact(tmp_path):
    dataset = make_dataset(tmp_path, ids=("2007/000005", "2007/000007", "2007/000009"))
    write_voc(dataset, tmp_path / "VOC2007", image_set="trainval", images="link")
    back = read_voc(tmp_path / "VOC2007", sets=(("2007", "trainval"),), class_names=CLASSES)
    assert_same(dataset, back)
    assert back[1].file_name == tmp_path / "VOC2007" / "JPEGImages" / "000007.png"  # original suffix kept
    again = tmp_path / "again" / "VOC2007"
    write_voc(back, again, images="copy")
    assert (again / "Annotations" / "000005.xml").read_text() == (
        tmp_path / "VOC2007" / "Annotations" / "000005.xml"
    ).read_text()
    assert_same(dataset, read_voc(again, class_names=CLASSES))


def test_voc_coordinates_are_one_based_and_written_short(tmp_path):
    dataset = make_dataset(tmp_path, ids=("2007/a", "2007/b", "2007/c"))
    write_voc(dataset, tmp_path / "VOC2007", images="none")
    xml = (tmp_path / "VOC2007" / "Annotations" / "a.xml").read_text()
    # (0, 0, 64, 48) covers the image: 1-based inclusive 1..64; (1.5, 2.25, 30.1, 40.7) -> xmin = 2.5 ...
    assert "<xmin>1</xmin>" in xml and "<xmax>64</xmax>" in xml and "<ymax>48</ymax>" in xml
    assert "<xmin>2.5</xmin>" in xml and "<ymin>3.25</ymin>" in xml and "<xmax>30.1</xmax>" in xml
    assert (tmp_path / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text() == "a\nb\nc\n"
    assert not (tmp_path / "VOC2007" / "JPEGImages").exists()
    back = read_voc(tmp_path / "VOC2007", class_names=CLASSES, check_images=False)
    np.testing.assert_array_equal(back[0].boxes[0], [0, 0, 64, 48])


def test_the_library_validates_every_voc_image_set_as_the_command_does(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    write_voc(make_dataset(tmp_path, ids=("000009", "000005")), devkit / "VOC2007")
    write_voc(make_dataset(tmp_path / "b", ids=("2008_000002", "2008_000001")), devkit / "VOC2012")
    xml = devkit / "VOC2012" / "Annotations" / "2008_000002.xml"
    xml.write_text(xml.read_text().replace("<name>dog</name>", "<name>zebra</name>", 1))
    problems = validate_path("voc", devkit, class_names=CLASSES)  # no sets named: every set found, not 2007's alone
    assert [(p.location.split(":")[0], p.value) for p in problems] == [("VOC2012/Annotations/2008_000002.xml", "zebra")]
    assert validate_path("voc", devkit, class_names=CLASSES, sets=(("2007", "trainval"),)) == []


def test_voc_sets_are_combined_in_the_stated_order(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    write_voc(make_dataset(tmp_path, ids=("000009", "000005", "000007")), devkit / "VOC2007")
    write_voc(make_dataset(tmp_path / "b", ids=("2008_000002", "2008_000001", "2008_000003")), devkit / "VOC2012")
    both = read_voc(devkit, sets=(("2007", "trainval"), ("2012", "trainval")), class_names=CLASSES)
    assert [r.image_id for r in both] == [
        "2007/000009",
        "2007/000005",
        "2007/000007",
        "2012/2008_000002",
        "2012/2008_000001",
        "2012/2008_000003",
    ]
    reverse = read_voc(devkit, sets=(("2012", "trainval"), ("2007", "trainval")), class_names=CLASSES)
    assert [r.image_id for r in reverse] == [r.image_id for r in both[3:]] + [r.image_id for r in both[:3]]
    single = read_voc(devkit / "VOC2012", sets=("2012", "trainval"), class_names=CLASSES)
    assert [r.image_id for r in single] == [r.image_id for r in both[3:]]
    with pytest.raises(ValueError, match=r"single VOC directory but 'sets' asks for years \['2007'\]"):
        read_voc(devkit / "VOC2012", sets=(("2007", "trainval"),), class_names=CLASSES)


def test_voc_missing_size_is_read_from_the_image_with_a_warning(tmp_path):
    write_voc(make_dataset(tmp_path), tmp_path / "VOC2007")
    xml_path = tmp_path / "VOC2007" / "Annotations" / "000007.xml"
    xml_path.write_text(xml_path.read_text().replace("<width>96</width>", "<width>0</width>"))
    with pytest.warns(DatasetWarning, match=r"000007.xml: size: <size> is missing or zero; used 96x80"):
        dataset = read_voc(tmp_path / "VOC2007", class_names=CLASSES)
    assert (dataset[1].width, dataset[1].height) == (96, 80)


def test_voc_default_classes_are_the_20_standard_names():
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"


# ----------------------------------------------------------------------------------------------------------- COCO


def test_coco_round_trip_is_exact_with_non_contiguous_category_ids(tmp_path):
    dataset = make_dataset(tmp_path, ids=("5", "7", "9"), category_ids=[1, 3, 90])
    json_path = write_coco(dataset, tmp_path / "ann" / "train.json")
    data = json.loads(json_path.read_text())
    assert [c["id"] for c in data["categories"]] == [1, 3, 90]
    assert [a["category_id"] for a in data["annotations"]] == [1, 90, 3, 90, 90]
    assert data["annotations"][1]["bbox"] == [1.5, 2.25, 28.6, 38.45]  # short text, exact float32 on reading
    back = read_coco(json_path)
    assert_same(dataset, back)
    assert back.category_ids == [1, 3, 90]
    assert [r.file_name for r in back] == [r.file_name for r in dataset]  # absolute file names kept
    assert [p.name for p in json_path.parent.iterdir()] == ["train.json"]  # no temporary file left behind


def test_coco_categories_map_to_contiguous_labels_in_ascending_id_order(tmp_path):
    make_image(tmp_path / "a.jpg", (64, 48))
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": c, "bbox": [1, 2, 3, 4]} for c in (90, 1, 3)],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(data))
    dataset = read_coco(tmp_path / "a.json")
    assert dataset.class_names == ["person", "car", "toothbrush"] and dataset.category_ids == [1, 3, 90]
    assert dataset[0].labels.tolist() == [3, 1, 2]
    assert [dataset.label_to_category_id(int(label)) for label in dataset[0].labels] == [90, 1, 3]
    np.testing.assert_array_equal(dataset[0].boxes, [[1, 2, 4, 6]] * 3)  # xywh -> xyxy


def test_coco_file_names_relative_and_absolute(tmp_path):
    images = tmp_path / "images"
    make_image(images / "rel.jpg", (64, 48))
    absolute = make_image(tmp_path / "elsewhere" / "abs.png", (80, 64))
    data = {
        "images": [
            {"id": 1, "file_name": "rel.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": str(absolute), "width": 80, "height": 64},
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    dataset = read_coco(tmp_path / "ann.json", image_root=images)
    assert [r.file_name for r in dataset] == [images / "rel.jpg", absolute]
    assert [r.num_boxes for r in dataset] == [0, 0]  # images without annotations are empty images
    written = json.loads(write_coco(dataset, tmp_path / "out.json", image_root=images).read_text())
    assert [i["file_name"] for i in written["images"]] == ["rel.jpg", str(absolute)]
    assert read_coco(tmp_path / "out.json", image_root=images)[0].file_name == images / "rel.jpg"


def test_write_coco_keeps_int_like_image_ids_and_numbers_the_others(tmp_path):
    dataset = make_dataset(tmp_path, ids=("12", "2007/000005", "3"))
    data = json.loads(write_coco(dataset, tmp_path / "a.json").read_text())
    assert [i["id"] for i in data["images"]] == [12, 13, 3]
    assert [r.image_id for r in read_coco(tmp_path / "a.json")] == ["12", "13", "3"]
    with pytest.raises(ValueError, match=r"image ids must be unique to write COCO; repeated: \['7'\]"):
        write_coco(make_dataset(tmp_path, ids=("7", "7", "8")), tmp_path / "b.json")


# ----------------------------------------------------------------------------------------------------------- YOLO


def test_yolo_round_trip(tmp_path):
    dataset = make_dataset(tmp_path, ids=("train/a", "train/b", "val/c"))
    with pytest.raises(ValueError, match="difficult/iscrowd box.*flagged='keep'"):
        write_yolo(dataset, tmp_path / "yolo")
    write_yolo(dataset, tmp_path / "yolo", flagged="keep")
    assert (tmp_path / "yolo" / "classes.txt").read_text() == "cat\ndog\nperson\n"
    assert (tmp_path / "yolo" / "labels" / "train" / "a.txt").read_text().startswith("0 0.5 0.5 1.0 1.0\n")
    assert (tmp_path / "yolo" / "labels" / "val" / "c.txt").read_text() == ""
    back = read_yolo(tmp_path / "yolo")
    plain = DetectionDataset(
        [ImageRecord(r.image_id, r.file_name, r.width, r.height, r.boxes, r.labels) for r in dataset], CLASSES
    )  # YOLO stores no difficult/iscrowd flags
    # documented tolerance: float32 rounding of the float64 normalisation; equal in practice
    assert_same(plain, back)
    omitted = read_yolo(write_yolo(dataset, tmp_path / "omit", flagged="omit"))
    assert [r.num_boxes for r in omitted] == [1, 1, 0]


def test_yolo_missing_or_empty_label_file_is_an_empty_image(tmp_path):
    make_image(tmp_path / "images" / "no_labels.jpg", (64, 48))
    make_image(tmp_path / "images" / "empty.png", (96, 80))
    make_image(tmp_path / "images" / "one.jpg", (80, 64))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "empty.txt").write_text("")
    (tmp_path / "labels" / "one.txt").write_text("1 0.5 0.5 0.25 0.5\n\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    dataset = read_yolo(tmp_path)
    assert [r.image_id for r in dataset] == ["empty", "no_labels", "one"]  # sorted by image path
    assert [r.num_boxes for r in dataset] == [0, 0, 1]
    assert [(r.width, r.height) for r in dataset] == [(96, 80), (64, 48), (80, 64)]  # from the image headers
    np.testing.assert_array_equal(dataset[2].boxes, [[30, 16, 50, 48]])
    assert dataset[2].labels.tolist() == [2]


@pytest.mark.parametrize(
    "file_name, text",
    [
        ("data.yaml", "path: .\nnames: [cat, dog]\n"),
        ("data.yaml", "names:\n  0: cat\n  1: dog\n"),
        ("classes.txt", "cat\ndog\n"),
        ("names/custom.yml", "names:\n  - cat\n  - dog\n"),
    ],
)
def test_yolo_class_names_from_classes_txt_or_data_yaml(tmp_path, file_name, text):
    make_image(tmp_path / "images" / "a.jpg", (64, 48))
    (tmp_path / file_name).parent.mkdir(exist_ok=True)
    (tmp_path / file_name).write_text(text)
    names_file = file_name if file_name.startswith("names/") else None
    assert read_yolo(tmp_path, names_file=names_file).class_names == ["cat", "dog"]


# ------------------------------------------------------------------------------------------------------ dispatcher


def test_io_dispatches_every_format_and_converts_between_them(tmp_path):
    voc = make_dataset(tmp_path, ids=("2007/000005", "2007/000007", "2007/000009"))
    write_dataset("voc", voc, tmp_path / "VOC2007")
    read = read_dataset("voc", tmp_path / "VOC2007", class_names=CLASSES)
    write_dataset("coco", read, tmp_path / "c.json", image_root=tmp_path / "VOC2007")
    coco = read_dataset("coco", tmp_path / "c.json", image_root=tmp_path / "VOC2007")
    assert [r.image_id for r in coco] == ["1", "2", "3"]
    assert_same(read, coco, ids=False)
    write_dataset("yolo", read, tmp_path / "yolo", flagged="keep")
    assert [r.image_id for r in read_dataset("yolo", tmp_path / "yolo")] == [r.image_id for r in read]
    assert validate_path("voc", tmp_path / "VOC2007", class_names=CLASSES) == []
    assert validate_path("coco", tmp_path / "c.json", image_root=tmp_path / "VOC2007") == []
    assert validate_path("yolo", tmp_path / "yolo") == []
    for fmt in FORMATS:
        assert "path does not exist" in validate_path(fmt, tmp_path / "missing")[0].message
    with pytest.raises(
        ValueError,
        match=r"The 'fmt' parameter of read_dataset must be one of "
        r"\('coco', 'voc', 'yolo', 'imagefolder', 'cifar'\). "
        r"Got 'kitti' instead.",
    ):
        read_dataset("kitti", tmp_path)


def test_link_falls_back_to_a_copy_and_keeps_content(tmp_path, monkeypatch):
    dataset = make_dataset(tmp_path)

    def no_links(src, dst):
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    write_voc(dataset, tmp_path / "VOC2007", images="link")
    copied = tmp_path / "VOC2007" / "JPEGImages" / "000005.jpg"
    assert copied.read_bytes() == dataset[0].file_name.read_bytes()
