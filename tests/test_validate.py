"""Validation: every problem is reported (not only the first), with file, element/field/line, what was expected,
what was found and a hint; box policy "error" versus "clip"."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from activedet.data.coco import read_coco
from activedet.data.io import format_problems, validate_path
from activedet.data.records import DatasetError, DetectionDataset, ImageRecord, Problem
from activedet.data.validate import DatasetWarning
from activedet.data.voc import read_voc, write_voc
from activedet.data.yolo import read_yolo

CLASSES = ["cat", "dog", "person"]


def make_image(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)
    return path


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# ---------------------------------------------------------------------------------------------------- Pascal VOC


@pytest.fixture
def voc(tmp_path):
    """A valid VOC2007 directory: 000005 (64x48, cat (0,0,64,48) + person), 000007 (96x80, dog), 000009 empty."""
    records = [
        ImageRecord(
            "000005", make_image(tmp_path / "s/a.jpg", (64, 48)), 64, 48, [[0, 0, 64, 48], [5, 5, 9, 9]], [1, 3]
        ),
        ImageRecord("000007", make_image(tmp_path / "s/b.jpg", (96, 80)), 96, 80, [[10, 10, 20, 20]], [2]),
        ImageRecord("000009", make_image(tmp_path / "s/c.jpg", (80, 64)), 80, 64),
    ]
    return write_voc(DetectionDataset(records, CLASSES), tmp_path / "VOC2007")


VOC_CASES = {
    "malformed XML": (
        "Annotations/000007.xml",
        "</annotation>",
        "</annot",
        r"Annotations/000007\.xml:\d+:\d+: malformed XML: .* -> fix the XML syntax",
    ),
    "missing element": (
        "Annotations/000005.xml",
        "<ymax>48</ymax>",
        "",
        r"000005\.xml: object\[1\]/bndbox/ymax: missing required element <ymax>",
    ),
    "missing name": (
        "Annotations/000007.xml",
        "<name>dog</name>",
        "",
        r"000007\.xml: object\[1\]/name: missing required element <name>",
    ),
    "not a number": (
        "Annotations/000005.xml",
        "<xmin>1</xmin>",
        "<xmin>one</xmin>",
        r"000005\.xml: object\[1\]/bndbox/xmin: expected a number \(pixels\); found 'one'",
    ),
    "bad difficult": (
        "Annotations/000007.xml",
        "<difficult>0</difficult>",
        "<difficult>yes</difficult>",
        r"000007\.xml: object\[1\]/difficult: expected 0 or 1; found 'yes'",
    ),
    "box outside": (
        "Annotations/000005.xml",
        "<xmax>64</xmax>",
        "<xmax>70</xmax>",
        r"000005\.xml: object\[1\]/bndbox: box xmin=1, ymin=1, xmax=70, ymax=48 \(xyxy=\(0, 0, 70, 48\) "
        r"in 0-based pixels\) extends 6 px beyond the right edge of the 64x48 image -> fix the "
        r"coordinates, or pass box_policy='clip' \(config key box_policy: clip; CLI --box-policy clip\)",
    ),
    "zero width": (
        "Annotations/000007.xml",
        "<xmax>20</xmax>",
        "<xmax>10</xmax>",
        r"000007\.xml: object\[1\]/bndbox: box must have a positive width and height; found "
        r"xmin=11, ymin=11, xmax=10, ymax=20 \(xyxy=\(10, 10, 10, 20\) in 0-based pixels\) "
        r"\(width 0, height 10 px\) -> fix the coordinates",
    ),
    "inverted box": (
        "Annotations/000007.xml",
        "<xmax>20</xmax>",
        "<xmax>5</xmax>",  # 0-based: x1 = 11 - 1
        r"object\[1\]/bndbox: box must have a positive width and height; found "
        r"xmin=11, ymin=11, xmax=5, ymax=20 \(xyxy=\(10, 10, 5, 20\) in 0-based pixels\) \(width -5",
    ),
    "NaN coordinate": (
        "Annotations/000007.xml",
        "<ymin>11</ymin>",
        "<ymin>nan</ymin>",
        r"object\[1\]/bndbox: box coordinates must be finite numbers; found xmin=11, ymin=nan, "
        r"xmax=20, ymax=20 \(xyxy=\(10, nan, 20, 20\)",
    ),
    "size mismatch": (
        "Annotations/000007.xml",
        "<width>96</width>",
        "<width>97</width>",
        r"000007\.xml: filename: annotation says the image is 97x80 \(width x height\) but "
        r".*000007\.jpg is 96x80 pixels -> fix the size",
    ),
    "bad size": (
        "Annotations/000007.xml",
        "<height>80</height>",
        "<height>8o</height>",
        r"000007\.xml: size/height: expected a non-negative integer \(pixels\); found '8o'",
    ),
    "listed without XML": (
        "ImageSets/Main/trainval.txt",
        "000009\n",
        "000009\n000011\n",
        r"Annotations/000011\.xml: annotation file not found \(image id listed at "
        r"ImageSets/Main/trainval\.txt:4\) -> add the XML file or remove the id",
    ),
    "listed twice": (
        "ImageSets/Main/trainval.txt",
        "000009\n",
        "000009\n000005\n",
        r"trainval\.txt:4: image id '000005' of VOC2007 is listed again \(first at "
        r"ImageSets/Main/trainval\.txt:1\)",
    ),
    "class file as set": (
        "ImageSets/Main/trainval.txt",
        "000009\n",
        "000009  -1\n",
        r"trainval\.txt:3: expected one image id per line; found 2 fields",
    ),
    "shared image": (
        "Annotations/000009.xml",
        "<filename>000009.jpg",
        "<filename>000005.jpg",
        r"000009\.xml: filename: duplicate image file '.*000005\.jpg' \(first seen at "
        r"Annotations/000005\.xml: filename\)",
    ),
}


@pytest.mark.parametrize("case", list(VOC_CASES))
def test_voc_problem_is_reported_with_location_and_hint(voc, case):
    file, old, new, pattern = VOC_CASES[case]
    edit(voc / file, old, new)
    with pytest.raises(DatasetError, match=pattern):
        read_voc(voc, class_names=CLASSES)


def test_voc_unknown_class_name_names_file_object_found_and_valid(voc):
    # the fix is exact: the class list that covers every name found, as config key, CLI flag and Python keyword
    with pytest.raises(
        DatasetError,
        match=re.escape(
            "Annotations/000005.xml: object[2]/name: unknown class name 'person'; valid names are ['cat', 'dog'] "
            "-> fix misspelt names, or list every class in label order: config key class_names: "
            '["cat", "dog", "person"] (CLI: activedet validate voc '
        )
        + ".*"
        + re.escape("VOC2007 --class-names cat dog person; Python: class_names=['cat', 'dog', 'person'])"),
    ):
        read_voc(voc, class_names=["cat", "dog"])
    # a name that differs from a listed one by case or a letter or two is most likely misspelt: said first
    with pytest.raises(DatasetError, match=re.escape("-> did you mean 'Person' for 'person'? fix misspelt names")):
        read_voc(voc, class_names=["cat", "dog", "Person"])
    with pytest.raises(DatasetError, match=re.escape("-> did you mean 'persons' for 'person'? fix misspelt names")):
        read_voc(voc, class_names=["cat", "dog", "persons"])


@pytest.mark.parametrize(
    "damage, pattern",
    [
        ("delete", r"000007\.xml: filename: image file not found: .*JPEGImages/000007\.jpg -> put the image"),
        ("garbage", r"000007\.xml: filename: cannot read image file .*000007\.jpg: .* -> replace it with a valid"),
    ],
)
def test_missing_or_unreadable_image_is_reported(voc, damage, pattern):
    image = voc / "JPEGImages" / "000007.jpg"
    image.unlink()
    if damage == "garbage":
        image.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=pattern):
        read_voc(voc, class_names=CLASSES)
    read_voc(voc, class_names=CLASSES, check_images=False)  # sizes are in the XML: images need not be opened


def test_voc_missing_set_file_and_year_directory(voc, tmp_path):
    with pytest.raises(
        DatasetError,
        match=re.escape("ImageSets/Main/test.txt: image set file not found: ")
        + r".* -> choose one of the existing sets \['trainval'\]",
    ):
        read_voc(voc, sets=("2007", "test"), class_names=CLASSES)
    with pytest.raises(DatasetError, match=r"VOC2012: directory not found: .*VOC2012 -> pass a VOCdevkit"):
        read_voc(tmp_path, sets=(("2007", "trainval"), ("2012", "trainval")), class_names=CLASSES)


def test_every_problem_is_reported_together(voc):
    edit(voc / "Annotations" / "000005.xml", "<xmax>64</xmax>", "<xmax>70</xmax>")
    edit(voc / "Annotations" / "000005.xml", "<name>person</name>", "<name>persn</name>")
    edit(voc / "Annotations" / "000009.xml", "</annotation>", "")
    (voc / "JPEGImages" / "000007.jpg").unlink()
    with pytest.raises(DatasetError, match=r"has 4 problem\(s\)") as raised:
        read_voc(voc, class_names=CLASSES)
    locations = [p.location for p in raised.value.problems]
    assert locations == [
        "Annotations/000005.xml: object[2]/name",
        "Annotations/000005.xml: object[1]/bndbox",
        "Annotations/000007.xml: filename",
        "Annotations/000009.xml:11:0",
    ]
    assert [str(p) for p in validate_path("voc", voc, class_names=CLASSES)] == [str(p) for p in raised.value.problems]
    for problem in raised.value.problems:
        assert str(problem) in str(raised.value) and problem.hint


# ----------------------------------------------------------------------------------------------------------- COCO


@pytest.fixture
def coco(tmp_path):
    """A valid COCO dict (images a.jpg 64x48 and b.jpg 96x80 in tmp_path, categories 1, 3, 90)."""
    make_image(tmp_path / "a.jpg", (64, 48))
    make_image(tmp_path / "b.jpg", (96, 80))
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.jpg", "width": 96, "height": 80},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0, 0, 96, 80], "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 90, "bbox": [5.5, 5, 10, 10]},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 90, "name": "person"}],
    }


def save(tmp_path, data, name="train.json"):
    (tmp_path / name).write_text(json.dumps(data))
    return tmp_path / name


def _set(path, value):
    """A mutator setting data[path...] = value (``None`` deletes)."""

    def mutate(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        if value is None:
            del data[last]
        else:
            data[last] = value

    return mutate


COCO_CASES = {
    "missing field": (
        _set(["images", 0, "width"], None),
        r"train\.json: images\[0\]\.width: missing required field 'width' \(a positive integer",
    ),
    "wrong type": (
        _set(["images", 1, "height"], "80"),
        r"train\.json: images\[1\]\.height: expected a positive integer \(pixels\); found \"80\"",
    ),
    "no annotations": (
        _set(["annotations"], None),
        r"train\.json: missing required top-level field 'annotations' \(a list\) -> add an empty",
    ),
    "not an object": (_set(["annotations", 1], [1, 2]), r"train\.json: annotations\[1\]: expected an object"),
    "missing image id": (
        _set(["annotations", 1, "image_id"], 99),
        r"annotations\[1\]\.image_id: refers to image id 99, which is not in 'images' -> add",
    ),
    "missing category": (
        _set(["annotations", 0, "category_id"], 7),
        r"annotations\[0\]\.category_id: refers to category id 7, which is not in 'categories' "
        r"\(ids: \[1, 3, 90\]\)",
    ),
    "short bbox": (
        _set(["annotations", 2, "bbox"], [1, 2, 3]),
        r"annotations\[2\]\.bbox: expected \[x, y, width, height\] \(4 numbers\); found \[1, 2, 3\]",
    ),
    "text bbox": (_set(["annotations", 2, "bbox"], [1, "2", 3, 4]), r"annotations\[2\]\.bbox: expected \[x, y"),
    "NaN bbox": (
        _set(["annotations", 0, "bbox"], [float("nan"), 1, 2, 3]),
        r"annotations\[0\]\.bbox: box coordinates must be finite numbers; found bbox=\[NaN, 1, 2, 3\] "
        r"\(xyxy=\(nan, 1, nan, 4\)",
    ),
    "zero height": (
        _set(["annotations", 0, "bbox"], [1, 2, 3, 0]),
        r"annotations\[0\]\.bbox: box must have a positive width and height; .*height 0 px",
    ),
    "bad iscrowd": (_set(["annotations", 1, "iscrowd"], 2), r"annotations\[1\]\.iscrowd: expected 0 or 1; found 2"),
    "duplicate image id": (
        _set(["images", 1, "id"], 1),
        r"images\[1\]\.id: duplicate image id 1 \(first seen at train\.json: images\[0\]\.id\)",
    ),
    "duplicate file": (
        _set(["images", 1, "file_name"], "a.jpg"),
        r"images\[1\]\.file_name: duplicate image file '.*a\.jpg' \(first seen at train\.json: "
        r"images\[0\]\.file_name\)",
    ),
    "duplicate category": (_set(["categories", 2, "id"], 3), r"categories\[2\]\.id: duplicate category id '3'"),
    "size mismatch": (
        _set(["images", 0, "height"], 50),
        r"images\[0\]\.file_name: annotation says the image is 64x50 \(width x height\) but .*a\.jpg "
        r"is 64x48 pixels",
    ),
    "missing image": (
        _set(["images", 0, "file_name"], "gone.jpg"),
        r"images\[0\]\.file_name: image file not found: .*gone\.jpg",
    ),
}


@pytest.mark.parametrize("case", list(COCO_CASES))
def test_coco_problem_is_reported_with_field(tmp_path, coco, case):
    mutate, pattern = COCO_CASES[case]
    mutate(coco)
    with pytest.raises(DatasetError, match=pattern):
        read_coco(save(tmp_path, coco))


def test_coco_malformed_json_names_line_and_column(tmp_path):
    (tmp_path / "bad.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError, match=r"bad\.json:2:12: malformed JSON: Expecting property name"):
        read_coco(tmp_path / "bad.json")


# ----------------------------------------------------------------------------------------------------------- YOLO


@pytest.fixture
def yolo(tmp_path):
    make_image(tmp_path / "images" / "a.jpg", (64, 48))
    (tmp_path / "labels").mkdir()
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    return tmp_path


@pytest.mark.parametrize(
    "line, pattern",
    [
        ("0 0.5 0.5 0.2", r"labels/a\.txt:2: expected 5 fields 'class cx cy w h'; found 4 -> each line must be"),
        ("0 0.1 0.1 0.2 0.1 0.2 0.2", r"labels/a\.txt:2: expected 5 fields .*found 7 \(segmentation polygons"),
        ("0 x 0.5 0.2 0.2", r"labels/a\.txt:2: expected numbers; found '0 x 0.5 0.2 0.2'"),
        ("2 0.5 0.5 0.2 0.2", r"labels/a\.txt:2: class index 2 is not an integer in 0\.\.1 \(2 class names\)"),
        ("0.5 0.5 0.5 0.2 0.2", r"labels/a\.txt:2: class index 0\.5 is not a non-negative integer"),
        ("-1 0.5 0.5 0.2 0.2", r"labels/a\.txt:2: class index -1 is not a non-negative integer"),
        (
            "1 0.95 0.5 0.2 0.2",
            r"labels/a\.txt:2: box cx cy w h = 0\.95 0\.5 0\.2 0\.2 \(xyxy=\(54\.4, 19\.2, 67\.2, "
            r"28\.8\) in 0-based pixels\) extends 3\.2 px beyond the right edge",
        ),
        ("1 0.5 0.5 0 0.2", r"labels/a\.txt:2: box must have a positive width and height"),
    ],
)
def test_yolo_label_line_problems_name_file_and_line(yolo, line, pattern):
    (yolo / "labels" / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(DatasetError, match=pattern):
        read_yolo(yolo)


def test_yolo_dataset_level_problems(yolo):
    (yolo / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yolo / "images" / "bad.jpg").write_bytes(b"\x00" * 10)
    make_image(yolo / "images" / "a.png", (64, 48))
    (yolo / "classes.txt").unlink()
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # class 0 is not reported without names
    problems = validate_path("yolo", yolo)
    text = "\n".join(map(str, problems))
    assert "classes.txt: no class names: neither classes.txt nor data.yaml is in" in text
    assert "images/a.png: duplicate image id 'a' (first seen at images/a.jpg)" in text
    assert re.search(r"images/bad\.jpg: cannot read image file .*bad\.jpg", text)
    assert "labels/ghost.txt: label file has no image images/ghost{.jpg," in text
    assert len(problems) == 4 and all(p.severity == "error" for p in problems)


# ------------------------------------------------------------------------------------------------------ box policy


def test_box_policy_error_versus_clip_with_a_warning(tmp_path, coco):
    coco["annotations"][0]["bbox"] = [-1.5, 10, 20, 20]  # 1.5 px left of the image
    path = save(tmp_path, coco)
    with pytest.raises(
        DatasetError,
        match=r"annotations\[0\]\.bbox: box bbox=\[-1\.5, 10, 20, 20\] \(xyxy=\(-1\.5, "
        r"10, 18\.5, 30\) in 0-based pixels\) extends 1\.5 px beyond the left "
        r"edge of the 64x48 image -> fix the coordinates, or pass "
        r"box_policy='clip' .* clip_tolerance=2 px",
    ):
        read_coco(path)
    with pytest.warns(
        DatasetWarning,
        match=r"annotations\[0\]\.bbox: clipped box bbox=\[-1\.5, 10, 20, 20\] "
        r"\(xyxy=\(-1\.5, 10, 18\.5, 30\) in 0-based pixels\) to "
        r"xyxy=\(0, 10, 18\.5, 30\)",
    ):
        dataset = read_coco(path, box_policy="clip")
    np.testing.assert_array_equal(dataset[0].boxes, [[0, 10, 18.5, 30]])
    problems = validate_path("coco", path, box_policy="clip")
    assert [p.severity for p in problems] == ["warning"]
    with pytest.raises(
        DatasetError,
        match=r"extends 1\.5 px beyond the left edge of the 64x48 image, more than "
        r"clip_tolerance=1 px -> fix the coordinates; this is too far",
    ):
        read_coco(path, box_policy="clip", clip_tolerance=1.0)


def test_clip_never_produces_an_empty_box(tmp_path, coco):
    coco["annotations"][0]["bbox"] = [64.5, 10, 1, 20]  # entirely right of the 64 px wide image
    with pytest.raises(
        DatasetError,
        match=r"extends 1\.5 px beyond .*; clipped to the image it is empty: "
        r"xyxy=\(64, 10, 64, 30\)",
    ):
        read_coco(save(tmp_path, coco), box_policy="clip")


def test_reader_options_are_checked(tmp_path, coco):
    path = save(tmp_path, coco)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "The 'box_policy' parameter of read_coco must be one of ('error', 'clip'). Got 'drop' instead."
        ),
    ):
        read_coco(path, box_policy="drop")
    with pytest.raises(ValueError, match="The 'clip_tolerance' parameter of read_coco must be a finite number"):
        read_coco(path, clip_tolerance=-1)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "The 'images' parameter of write_voc must be one of ('copy', 'link', 'none'). Got 'move' instead."
        ),
    ):
        write_voc(read_coco(path), tmp_path / "VOC2007", images="move")


# --------------------------------------------------------------------------------------------------------- reports


def test_format_problems_lists_errors_then_warnings_and_a_summary():
    problems = [
        Problem("labels/a.txt:3", "clipped box", "fix it", severity="warning"),
        Problem("labels/a.txt:1", "expected 5 fields; found 4", "each line ..."),
        Problem("labels/a.txt:2", "expected numbers; found 'x'"),
    ]
    assert format_problems(problems).splitlines() == [
        "errors:",
        "  labels/a.txt:1: expected 5 fields; found 4 -> each line ...",
        "  labels/a.txt:2: expected numbers; found 'x'",
        "warnings:",
        "  labels/a.txt:3: clipped box -> fix it",
        "2 errors, 1 warning in labels/a.txt",
    ]
    assert format_problems([], source="data/voc") == "0 errors, 0 warnings in data/voc"
    assert format_problems([]) == "0 errors, 0 warnings"
    assert format_problems(problems + [Problem("x.json: images[0]", "bad")]).endswith("in 2 files")


def test_an_empty_file_is_said_to_be_empty_and_a_group_title_stops_before_the_details(tmp_path):
    from activedet.al.annotation import read_labels

    (tmp_path / "empty.json").write_text("\n")
    with pytest.raises(DatasetError, match=r"empty.json:2:1: the file is empty \(expected JSON\) -> export or write"):
        read_coco(tmp_path / "empty.json")
    folder = tmp_path / "xml"
    folder.mkdir()
    (folder / "a.xml").write_text("")
    for name in ("b", "c"):  # cut short at different places
        (folder / f"{name}.xml").write_text("<annotation><filename>" + name * (3 if name == "c" else 1))
    with pytest.raises(DatasetError) as raised:
        read_labels("voc", folder, ["Tree"], sizes={i: (10, 10) for i in "abc"})
    lines = str(raised.value).splitlines()
    assert lines[1] == "  a.xml:1:0: the file is empty (expected XML) -> export or write the file again"
    assert lines[2] == "  malformed XML: no element found: 2 in 2 files", lines  # not "...column: 2 in 2 files"
    assert lines[3].startswith("    b.xml:1:23: malformed XML: no element found: line 1, column 23"), lines
