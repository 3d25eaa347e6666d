"""Conventions of the annotation tools' formats: exported file names back to image ids in every reader, YOLO class
lists matched by name (Darknet, Ultralytics and plain layouts), the two Pascal VOC coordinate conventions, and the
layouts of the COCO, VOC and YOLO exports. Tiny files in ``tmp_path``."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from activedet.al.annotation import read_labels as read_run_labels
from activedet.al.export import export_batch
from activedet.data.records import DatasetError, DetectionDataset, ImageRecord
from activedet.data.voc import write_voc
from activedet.interop import export_file_name, image_id_from_name, read_labels
from activedet.models.outputs import Detections

CLASSES = ["cat", "dog", "person"]
IDS = {"setB/x": (200, 100), "x": (64, 48), "a__b": (10, 10), "img.v2": (10, 10)}


@pytest.mark.parametrize(
    "name, image_id",
    [
        ("setB__x.jpg", "setB/x"),  # the exported name of a sub-folder image
        ("images/setB__x.jpg", "setB/x"),
        ("obj_train_data/setB__x.txt", "setB/x"),
        ("labels/train/setB/x.txt", "setB/x"),  # folders kept
        ("/data/local-files/?d=unlabelled/setB/x.jpg", "setB/x"),
        ("http://host/x.jpg", "x"),
        ("a__b.png", "a__b"),  # an id that holds "__" itself
        ("img.v2.jpg", "img.v2"),
        ("other.jpg", "other"),  # no such image: the stem (the import then names it)
    ],
)
def test_image_id_from_name(name, image_id):
    assert image_id_from_name(name, IDS) == image_id


def test_export_file_name_and_no_ids():
    assert export_file_name("setB/x", ".jpg") == "setB__x.jpg"
    assert image_id_from_name("setB__x.jpg") == "setB__x"


def sub_folder_exports(tmp_path):
    """One file per format naming the exported ``setB__x.jpg`` (200 x 100) with one dog box (20, 10, 80, 60)."""
    (tmp_path / "cvat.xml").write_text(
        '<annotations><image id="0" name="setB__x.jpg" width="200" height="100">'
        '<box label="dog" xtl="20" ytl="10" xbr="80" ybr="60"/></image></annotations>'
    )
    coco = {
        "images": [{"id": 1, "file_name": "setB__x.jpg", "width": 200, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 10, 60, 50]}],
        "categories": [{"id": 1, "name": "dog"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    for name, (x1, y1) in (("voc", (21, 11)), ("cvat_voc", (20, 10))):
        (tmp_path / name / "Annotations").mkdir(parents=True)
        (tmp_path / name / "Annotations" / "setB__x.xml").write_text(
            f"<annotation><object><name>dog</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>80</xmax>"
            "<ymax>60</ymax></bndbox></object></annotation>"
        )
    (tmp_path / "yolo" / "obj_train_data").mkdir(parents=True)
    (tmp_path / "yolo" / "obj.names").write_text("dog\n")
    (tmp_path / "yolo" / "obj_train_data" / "setB__x.txt").write_text("0 0.25 0.35 0.3 0.5\n")
    task = {
        "id": 1,
        "data": {"image": "/data/local-files/?d=query/images/setB__x.jpg"},
        "annotations": [
            {
                "id": 1,
                "result": [
                    {
                        "type": "rectanglelabels",
                        "original_width": 200,
                        "original_height": 100,
                        "value": {"x": 10, "y": 10, "width": 30, "height": 50, "rectanglelabels": ["dog"]},
                    }
                ],
            }
        ],
    }
    (tmp_path / "ls.json").write_text(json.dumps([task]))
    return {
        "cvat_xml": "cvat.xml",
        "coco": "coco.json",
        "voc": "voc",
        "cvat_voc": "cvat_voc",
        "yolo": "yolo",
        "labelstudio": "ls.json",
    }


def test_every_reader_maps_exported_sub_folder_names(tmp_path):
    for fmt, path in sub_folder_exports(tmp_path).items():
        result = read_labels(fmt, tmp_path / path, CLASSES, images=IDS)
        assert list(result.labels) == ["setB/x"], fmt
        np.testing.assert_allclose(result.labels["setB/x"][0], [[20, 10, 80, 60]], atol=1e-4, err_msg=fmt)
        assert result.labels["setB/x"][1].tolist() == [2], fmt


def test_two_names_of_one_image_with_different_labels_are_an_error(tmp_path):
    coco = {
        "images": [
            {"id": 1, "file_name": "setB__x.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "setB/x.jpg", "width": 200, "height": 100},
        ],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [20, 10, 60, 50]}],
        "categories": [{"id": 1, "name": "dog"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    with pytest.raises(
        DatasetError,
        match=r"1 image id\(s\) labelled more than once with different boxes: 'setB/x' "
        r"\(image 'setB__x.jpg', image 'setB/x.jpg'\)",
    ):
        read_labels("coco", tmp_path / "coco.json", CLASSES, images=IDS, empty_means_labelled=True)
    box = {
        "type": "rectanglelabels",
        "original_width": 200,
        "original_height": 100,
        "value": {"x": 10, "y": 10, "width": 30, "height": 40, "rectanglelabels": ["dog"]},
    }
    tasks = [
        {"id": 1, "data": {"image": "a.jpg", "activedet_image_id": "setB/x"}, "annotations": [{"result": []}]},
        {"id": 2, "data": {"image": "images/setB__x.jpg"}, "annotations": [{"result": [box]}]},
    ]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    with pytest.raises(DatasetError, match=r"1 image id\(s\) labelled more than once with different boxes: 'setB/x'"):
        read_labels("labelstudio", tmp_path / "ls.json", CLASSES, images=IDS)


# ------------------------------------------------------------------------------------------------------- YOLO


def darknet(root, names, lines, *, labels_dir="obj_train_data"):
    """A Darknet export as CVAT and Datumaro write it: obj.names, obj.data, train.txt and the label files."""
    (root / labels_dir).mkdir(parents=True)
    (root / "obj.names").write_text("".join(f"{n}\n" for n in names))
    (root / "obj.data").write_text(
        f"classes = {len(names)}\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n"
    )
    (root / "train.txt").write_text("".join(f"data/{labels_dir}/{n}.jpg\n" for n in lines))
    for name, text in lines.items():
        (root / labels_dir / f"{name}.txt").write_text(text)
    return root


def test_yolo_shuffled_obj_names_import_the_right_classes(tmp_path):
    root = darknet(
        tmp_path / "export",
        ["person", "dog", "cat"],
        {"x": "0 0.5 0.5 0.5 0.5\n2 0.25 0.25 0.5 0.5\n", "setB__x": "1 0.5 0.5 1 1\n"},
    )
    result = read_labels("yolo", root, CLASSES, images=IDS)
    assert result.labels["x"][1].tolist() == [3, 1]  # person, cat: by name, not by index
    np.testing.assert_allclose(result.labels["x"][0], [[16, 12, 48, 36], [0, 0, 32, 24]])
    assert result.labels["setB/x"][1].tolist() == [2]
    only_labels = read_labels("yolo", root / "obj_train_data", CLASSES, images=IDS)  # the label folder itself
    assert only_labels.labels["x"][1].tolist() == [3, 1]


def test_yolo_ultralytics_layout_with_a_names_mapping(tmp_path):
    root = tmp_path / "export"
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "train.txt", "names": {0: "dog", 1: "cat"}}))
    (root / "train.txt").write_text("./images/train/x.jpg\n")
    (root / "labels" / "train" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    assert read_labels("yolo", root, CLASSES, images=IDS).labels["x"][1].tolist() == [1]
    assert read_labels("yolo", root / "data.yaml", CLASSES, images=IDS).labels["x"][1].tolist() == [1]


def test_yolo_without_a_class_list_is_refused_naming_the_file_and_the_class(tmp_path):
    root = tmp_path / "export"
    (root / "obj_train_data").mkdir(parents=True)
    (root / "obj_train_data" / "setB__x.txt").write_text("")  # an empty file needs no class list
    result = read_labels("yolo", root, CLASSES, images=IDS, empty_means_labelled=True)
    assert result.labels["setB/x"][0].shape == (0, 4)
    (root / "obj_train_data" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n2 0.5 0.5 0.5 0.5\n")
    with pytest.raises(
        DatasetError,
        match=r"obj_train_data/x\.txt:1: class\(es\) \[0, 2\] have no name: no obj\.names"
        r", data\.yaml, classes\.txt in .*add classes\.txt",
    ):
        read_labels("yolo", root, CLASSES, images=IDS)


def test_yolo_unknown_or_missing_or_disagreeing_class_names(tmp_path):
    root = darknet(tmp_path / "a", ["horse", "dog"], {"x": "1 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.5 0.5\n"})
    with pytest.raises(DatasetError, match=r"obj_train_data/x\.txt:2: class 0 of obj\.names: unknown label 'horse'"):
        read_labels("yolo", root, CLASSES, images=IDS)
    root = darknet(tmp_path / "b", ["dog"], {"x": "1 0.5 0.5 0.5 0.5\n"})
    with pytest.raises(DatasetError, match=r"obj_train_data/x\.txt:1: class index 1 is not an integer in 0\.\.0"):
        read_labels("yolo", root, CLASSES, images=IDS)
    (root / "classes.txt").write_text("cat\n")
    with pytest.raises(DatasetError, match=r"obj\.names and classes\.txt: the class lists disagree"):
        read_labels("yolo", root, CLASSES, images=IDS)


def test_yolo_label_file_of_no_image_names_the_file(tmp_path):
    root = darknet(tmp_path / "a", ["dog"], {"zebra": "0 0.5 0.5 0.5 0.5\n"})
    with pytest.raises(
        DatasetError,
        match=r"obj_train_data/zebra\.txt: no image of the run is named like this label "
        r"file \(image id 'zebra'\)",
    ) as raised:
        read_labels("yolo", root, CLASSES, images=IDS)
    assert "images=" not in str(raised.value)


# -------------------------------------------------------------------------------------------------------- VOC


def test_voc_conventions_are_explicit(tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (64, 48)).save(image)
    boxes = np.array([[0, 0, 64, 48], [3.5, 4.25, 20.75, 30]], np.float32)
    dataset = DetectionDataset([ImageRecord("x", image, 64, 48, boxes, [3, 1])], CLASSES)
    write_voc(dataset, tmp_path / "devkit", images="none")
    write_voc(dataset, tmp_path / "zero", images="none", one_based=False)
    assert "<xmin>1</xmin>" in (tmp_path / "devkit/Annotations/x.xml").read_text()
    assert "<xmin>0</xmin>" in (tmp_path / "zero/Annotations/x.xml").read_text()
    labelmap = (tmp_path / "zero/labelmap.txt").read_text()
    assert labelmap == "# label:color_rgb:parts:actions\ncat:::\ndog:::\nperson:::\n"
    for fmt, folder in (("voc", "devkit"), ("cvat_voc", "zero")):
        result = read_labels(fmt, tmp_path / folder, CLASSES)
        np.testing.assert_array_equal(result.labels["x"][0], boxes)  # exact in its own convention
    with pytest.raises(
        DatasetError,
        match=r"x\.xml: object\[1\]/bndbox: xmin, ymin = 0, 0: below 1, which 1-based "
        r"pixel indices cannot be.* -> import it as cvat_voc \(--format cvat_voc\)",
    ):
        read_labels("voc", tmp_path / "zero", CLASSES)  # a box on the border gives the convention away
    wrong = read_labels("cvat_voc", tmp_path / "devkit", CLASSES).labels["x"][0]  # the other convention: 1 px off
    np.testing.assert_array_equal(wrong - boxes, [[1, 1, 0, 0]] * 2)
    import datumaro as dm

    for folder, mode in (("zero", "dm-zero-based"), ("devkit", "voc-one-based")):  # Datumaro's own reader
        item = next(iter(dm.Dataset.import_from(str(tmp_path / folder), "voc", coordinate_mode=mode)))
        seen = sorted([b.x, b.y, b.x + b.w, b.y + b.h] for b in item.annotations)
        assert seen == sorted(boxes.tolist())  # 0 px: Datumaro sees the boxes written, in either convention


def test_auto_format_refuses_a_voc_folder_and_names_the_file_of_a_cvat_folder(tmp_path):
    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    (tmp_path / "voc" / "Annotations" / "x.xml").write_text("<annotation/>")
    with pytest.raises(
        ValueError,
        match=r"two coordinate conventions .* pass --format voc \(1-based .* or --format "
        r"cvat_voc \(0-based",
    ):
        read_run_labels("auto", tmp_path / "voc", CLASSES)
    (tmp_path / "cvat").mkdir()
    (tmp_path / "cvat" / "default.xml").write_text("<annotations><version>1.1</version></annotations>")
    with pytest.raises(
        ValueError,
        match=r"cvat: a folder holding CVAT XML; import its file default\.xml "
        r"\(--format cvat_xml\)",
    ):
        read_run_labels("auto", tmp_path / "cvat", CLASSES)


def test_voc_image_listed_without_annotation_file_is_pending_or_an_empty_label(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "Annotations" / "x.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>"
    )
    (tmp_path / "ImageSets" / "Main" / "default.txt").write_text("x\nsetB__x\n")
    (tmp_path / "ImageSets" / "Main" / "dog_default.txt").write_text("x 1\nzebra -1\n")  # a per-class list
    result = read_labels("cvat_voc", tmp_path, CLASSES, images=IDS)  # maybe an image of an unfinished job
    assert sorted(result.labels) == ["x"] and result.unlabelled == ["setB/x"]
    result = read_labels("cvat_voc", tmp_path, CLASSES, images=IDS, empty_means_labelled=True)
    assert sorted(result.labels) == ["setB/x", "x"] and result.labels["setB/x"][0].shape == (0, 4)
    assert "1 image(s) listed in ImageSets/Main without an annotation file" in result.skipped[0]


# ----------------------------------------------------------------------------------------------------- exports


@pytest.fixture
def small_batch(tmp_path):
    """A pool of two images (one in a sub-folder), both picked; the second has no detection."""
    records = []
    for image_id in ("setB/x", "y"):
        path = tmp_path / "pool" / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 20)).save(path)
        records.append(ImageRecord(image_id, path, 40, 20))
    pool = DetectionDataset(records, ["person", "cat", "dog"])
    picks = [{"index": i, "rank": i, "score": 1.0, "cycle": 0, "image_id": r.image_id} for i, r in enumerate(records)]
    predictions = [
        Detections(
            boxes=torch.tensor([[2.0, 4.0, 10.0, 12.0]]),
            scores=torch.tensor([0.9]),
            labels=torch.tensor([3]),
            prob_kind="sigmoid",
        ),
        Detections(
            boxes=torch.zeros(0, 4),
            scores=torch.zeros(0),
            labels=torch.zeros(0, dtype=torch.int64),
            prob_kind="sigmoid",
        ),
    ]
    return pool, picks, predictions


def test_coco_export_is_the_layout_cvat_imports(small_batch, tmp_path):
    folder = export_batch(tmp_path / "q", *small_batch, fmt="coco")
    data = json.loads((folder / "annotations/instances_default.json").read_text())
    assert [i["file_name"] for i in data["images"]] == ["setB__x.png", "y.png"]
    assert all((folder / "images" / i["file_name"]).is_file() for i in data["images"])
    assert data["annotations"][0] | {"id": 0} == {
        "id": 0,
        "image_id": data["images"][0]["id"],
        "category_id": 3,
        "bbox": [2, 4, 8, 8],
        "area": 64,
        "iscrowd": 0,
        "segmentation": [],
    }
    sizes = {r.image_id: (40, 20) for r in small_batch[0]}
    result = read_labels(
        "coco",
        folder / "annotations/instances_default.json",
        ["dog", "cat", "person"],
        images=sizes,
        empty_means_labelled=True,
    )  # a finished job: 'y' has nothing to box
    assert result.labels["setB/x"][1].tolist() == [1] and result.labels["y"][0].shape == (0, 4)


def test_yolo_export_is_the_darknet_layout_and_reads_back(small_batch, tmp_path):
    folder = export_batch(tmp_path / "q", *small_batch, fmt="yolo")
    files = sorted(p.relative_to(folder / "yolo").as_posix() for p in (folder / "yolo").rglob("*") if p.is_file())
    assert files == [
        "data.yaml",
        "obj.data",
        "obj.names",
        "obj_train_data/setB__x.png",
        "obj_train_data/setB__x.txt",
        "obj_train_data/y.png",
        "obj_train_data/y.txt",
        "train.txt",
    ]
    assert (folder / "yolo/obj.names").read_text() == "person\ncat\ndog\n"
    assert yaml.safe_load((folder / "yolo/data.yaml").read_text()) == {"names": ["person", "cat", "dog"], "nc": 3}
    assert (folder / "yolo/train.txt").read_text() == "data/obj_train_data/setB__x.png\ndata/obj_train_data/y.png\n"
    sizes = {r.image_id: (40, 20) for r in small_batch[0]}
    result = read_labels("yolo", folder / "yolo", ["dog", "cat", "person"], images=sizes, empty_means_labelled=True)
    np.testing.assert_array_equal(result.labels["setB/x"][0], [[2, 4, 10, 12]])
    assert result.labels["setB/x"][1].tolist() == [1] and result.labels["y"][0].shape == (0, 4)


def test_voc_exports_write_a_labelmap_in_either_convention(small_batch, tmp_path):
    for fmt, xmin in (("voc", 3), ("cvat_voc", 2)):
        folder = export_batch(tmp_path / fmt, *small_batch, fmt=fmt)
        assert (folder / "voc/labelmap.txt").read_text().splitlines()[1:] == ["person:::", "cat:::", "dog:::"]
        assert f"<xmin>{xmin}</xmin>" in (folder / "voc/Annotations/setB__x.xml").read_text()
        assert "<filename>setB__x.png</filename>" in (folder / "voc/Annotations/setB__x.xml").read_text()


def test_two_images_exported_under_one_name_are_refused(small_batch, tmp_path):
    pool, picks, predictions = small_batch
    pool.records[1].image_id = "setB__x"
    picks[1]["image_id"] = "setB__x"
    with pytest.raises(ValueError, match=r"images 'setB/x' and 'setB__x' would both be exported as 'setB__x.png'"):
        export_batch(tmp_path / "q", pool, picks, predictions, fmt="coco")


def test_an_unlabelled_folder_with_two_images_of_one_exported_name_is_refused_before_the_run(tmp_path):
    from activedet.workflows import with_unlabelled_images

    for name in ("setB/x.png", "setB__x.png"):
        (tmp_path / "pool" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "pool" / name)
    with pytest.raises(
        ValueError,
        match=r"setB__x\.png: would be exported for labelling under the same name as "
        r".*setB/x\.png \('setB__x'",
    ):
        with_unlabelled_images(DetectionDataset([], CLASSES), str(tmp_path / "pool"))
    (tmp_path / "pool" / "setB__x.png").unlink()
    (tmp_path / "pool" / "broken.png").write_bytes(b"")  # an unlabelled image has no annotations to remove it from
    with pytest.raises(
        ValueError,
        match=r"broken\.png: cannot read image file .* -> replace it with a valid image "
        r"file, or move it out of the folder",
    ):
        with_unlabelled_images(DetectionDataset([], CLASSES), str(tmp_path / "pool"))


def test_a_coco_export_folder_reads_its_one_annotation_file(small_batch, tmp_path):
    folder = export_batch(tmp_path / "q", *small_batch, fmt="coco")
    sizes = {r.image_id: (40, 20) for r in small_batch[0]}
    labels = read_run_labels("auto", folder, ["dog", "cat", "person"], sizes=sizes, empty_means_labelled=True).labels
    assert sorted(labels) == ["setB/x", "y"]
    (folder / "annotations/instances_val.json").write_text("{}")
    with pytest.raises(
        DatasetError,
        match=r"expected one annotations/\*\.json file in .*; found "
        r"\['instances_default\.json', 'instances_val\.json'\] -> give the COCO",
    ):
        read_labels("coco", folder, CLASSES)
