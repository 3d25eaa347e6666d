"""Files exchanged with annotation tools: Label Studio tasks and exports, CVAT XML and COCO, VOC and YOLO folders.

Every file is a tiny hand-written one in ``tmp_path``; no tool, image or network is needed.
"""

import json

import numpy as np
import pytest

from activedet.data.coco import read_coco
from activedet.data.records import DatasetError
from activedet.interop import (
    LABEL_FORMATS,
    ExportItem,
    LabelImport,
    read_coco_labels,
    read_cvat_xml,
    read_labels,
    read_labelstudio_export,
    write_cvat_coco,
    write_labelstudio_tasks,
)

CLASSES = ["cat", "dog", "person"]


def items():
    return [
        ExportItem(
            "000005",
            "/data/local-files/?d=batch/000005.jpg",
            200,
            100,
            [[20, 10, 80, 60], [0.5, 1.25, 199.5, 99.75]],
            [1, 3],
            [0.9, 0.4],
            image_score=2.5,
        ),
        ExportItem("000007", "http://host/img/000007.png", 64, 48, [[1, 2, 30.1, 40.7]], [2], [0.75]),
        ExportItem("000009", "000009.jpg", 80, 64),  # no detection: an empty prediction
    ]


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def rect(label, x, y, w, h, size=(200, 100), rotation=0):
    return {
        "id": "r",
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": size[0],
        "original_height": size[1],
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]},
    }


def task(task_id, image, *annotations, data=None):
    return {"id": task_id, "data": data or {"image": image}, "annotations": list(annotations)}


def annotation(*results, cancelled=False, by=1):
    return {
        "id": 100,
        "completed_by": by,
        "was_cancelled": cancelled,
        "created_at": "2024-01-01T00:00:00Z",
        "result": list(results),
    }


# ------------------------------------------------------------------------------------------------ Label Studio


def test_labelstudio_tasks_round_trip_through_a_human_export(tmp_path):
    path = write_labelstudio_tasks(items(), CLASSES, tmp_path / "tasks.json")
    tasks = json.loads(path.read_text())
    assert [t["data"]["activedet_image_id"] for t in tasks] == ["000005", "000007", "000009"]
    first = tasks[0]["predictions"][0]
    assert first["model_version"] == "activedet" and first["score"] == 2.5
    assert tasks[1]["predictions"][0]["score"] is None
    region = first["result"][0]
    assert region["type"] == "rectanglelabels" and region["value"]["rectanglelabels"] == ["cat"]
    assert (region["original_width"], region["original_height"], region["score"]) == (200, 100, 0.9)
    assert tasks[2]["predictions"][0]["result"] == []
    for t in tasks:  # a person accepts the pre-annotations as they are
        t["annotations"] = [
            {
                "id": 1,
                "completed_by": {"id": 3, "email": "ann@example.org"},
                "was_cancelled": False,
                "result": t["predictions"][0]["result"],
            }
        ]
    result = read_labelstudio_export(write_json(tmp_path / "export.json", tasks), CLASSES)
    assert isinstance(result, LabelImport) and result.unlabelled == [] and result.skipped == []
    for item in items():
        boxes, labels = result.labels[item.image_id]
        assert boxes.dtype == np.float32 and labels.dtype == np.int64
        np.testing.assert_allclose(boxes, item.boxes, atol=1e-3)
        np.testing.assert_array_equal(labels, item.labels)
    assert result.annotators == dict.fromkeys(["000005", "000007", "000009"], "ann@example.org")
    assert result.source == str(tmp_path / "export.json")


def test_labelstudio_percent_conversion_is_exact(tmp_path):
    path = write_json(tmp_path / "e.json", [task(1, "a.jpg", annotation(rect("dog", 10, 10, 30, 50)))])
    boxes, labels = read_labelstudio_export(path, CLASSES).labels["a"]
    np.testing.assert_array_equal(boxes, [[20, 10, 80, 60]])
    np.testing.assert_array_equal(labels, [2])


def test_labelstudio_image_size_falls_back_to_images(tmp_path):
    region = rect("cat", 50, 25, 50, 50)
    del region["original_width"], region["original_height"]
    path = write_json(tmp_path / "e.json", [task(4, "x/b.jpg", annotation(region))])
    with pytest.raises(DatasetError, match=r"task 4 .*no original_width.*pass images="):
        read_labelstudio_export(path, CLASSES)
    boxes, _ = read_labelstudio_export(path, CLASSES, images={"b": (40, 20)}).labels["b"]
    np.testing.assert_array_equal(boxes, [[20, 5, 40, 15]])


@pytest.mark.parametrize(
    "ref, image_id",
    [
        ("/data/upload/3/1a2b3c4d-000005.jpg", "000005"),
        ("/data/upload/12/abc123-my-photo.v2.png", "my-photo.v2"),
        ("/data/local-files/?d=batch/cafe-01.jpg", "cafe-01"),
        ("s3://bucket/images/deadbeef-7.jpg", "deadbeef-7"),  # not an upload: no prefix to strip
        ("C:\\images\\img%201.jpg", "img 1"),
    ],
)
def test_labelstudio_image_id_from_the_image_reference(tmp_path, ref, image_id):
    path = write_json(tmp_path / "e.json", [task(1, ref, annotation())])
    assert list(read_labelstudio_export(path, CLASSES).labels) == [image_id]


def test_labelstudio_prefers_the_written_image_id(tmp_path):
    data = {"image": "/data/upload/1/aaaa1111-other.jpg", "activedet_image_id": "2007/000005"}
    path = write_json(tmp_path / "e.json", [task(1, None, annotation(), data=data)])
    assert list(read_labelstudio_export(path, CLASSES).labels) == ["2007/000005"]


def test_labelstudio_last_non_cancelled_annotation_wins(tmp_path):
    path = write_json(
        tmp_path / "e.json",
        [
            task(
                7,
                "a.jpg",
                annotation(rect("cat", 0, 0, 10, 10), by=1),
                annotation(rect("dog", 10, 10, 20, 20), by=2),
                annotation(rect("person", 0, 0, 50, 50), cancelled=True, by=3),
            )
        ],
    )
    result = read_labelstudio_export(path, CLASSES)
    boxes, labels = result.labels["a"]
    np.testing.assert_array_equal(boxes, [[20, 10, 60, 30]])
    np.testing.assert_array_equal(labels, [2])
    assert result.annotators == {"a": None}  # a bare user id names nobody outside that server
    assert len(result.skipped) == 1 and "task 7: used annotations[1]" in result.skipped[0]


@pytest.mark.parametrize(
    "by, who",
    [
        ({"id": 3, "email": "ann@example.org", "first_name": "Ann"}, "ann@example.org"),
        ({"id": 3, "email": "", "first_name": "Ann", "last_name": "Lee"}, "Ann Lee"),
        ({"id": 3}, None),
        (3, None),
        ("ann@example.org", "ann@example.org"),
    ],
)
def test_labelstudio_annotator_is_an_email_or_a_name_never_a_user_id(tmp_path, by, who):
    path = write_json(tmp_path / "e.json", [task(7, "a.jpg", annotation(rect("cat", 0, 0, 10, 10), by=by))])
    assert read_labelstudio_export(path, CLASSES).annotators == {"a": who}


def test_labelstudio_cancelled_only_is_not_labelled_but_empty_result_is_an_empty_label(tmp_path):
    path = write_json(
        tmp_path / "e.json",
        [
            task(1, "skipped.jpg", annotation(rect("cat", 0, 0, 10, 10), cancelled=True)),
            task(2, "untouched.jpg"),
            task(3, "empty.jpg", annotation()),
        ],
    )
    result = read_labelstudio_export(path, CLASSES)
    assert list(result.labels) == ["empty"] and result.unlabelled == ["skipped", "untouched"]
    boxes, labels = result.labels["empty"]
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32 and labels.shape == (0,)


def test_labelstudio_other_result_types_are_skipped_and_counted(tmp_path):
    choice = {"type": "choices", "from_name": "q", "to_name": "image", "value": {"choices": ["blurry"]}}
    polygon = {"type": "polygonlabels", "value": {"points": [[0, 0], [1, 1], [0, 1]], "polygonlabels": ["cat"]}}
    path = write_json(tmp_path / "e.json", [task(5, "a.jpg", annotation(choice, rect("cat", 0, 0, 10, 10), polygon))])
    result = read_labelstudio_export(path, CLASSES)
    assert len(result.labels["a"][0]) == 1
    assert result.skipped == [
        "task 5 (a): left out 2 result(s) of type ['choices', 'polygonlabels']; only rectanglelabels are read"
    ]


def test_labelstudio_unknown_label_and_rotation_name_the_task(tmp_path):
    path = write_json(
        tmp_path / "e.json",
        [
            task(11, "a.jpg", annotation(rect("horse", 0, 0, 10, 10))),
            task(12, "b.jpg", annotation(rect("cat", 0, 0, 10, 10, rotation=15))),
        ],
    )
    with pytest.raises(DatasetError, match="2 problem") as info:
        read_labelstudio_export(path, CLASSES)
    message = str(info.value)
    assert "e.json: task 11 (tasks[0]).annotations[0].result[0].value.rectanglelabels: unknown label 'horse'" in message
    assert "task 12 (tasks[1]).annotations[0].result[0].value.rotation: rectangle rotated by 15 degrees" in message


def test_a_task_with_an_error_is_not_also_a_conflict(tmp_path):
    path = write_json(
        tmp_path / "e.json",
        [
            task(1, "a.jpg", annotation(rect("horse", 0, 0, 10, 10))),
            task(2, "a.jpg", annotation(rect("cat", 0, 0, 10, 10))),
        ],
    )
    with pytest.raises(DatasetError, match=r"has 1 problem\(s\):\n  e\.json: task 1 .*unknown label 'horse'"):
        read_labelstudio_export(path, CLASSES)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{"id": 1,', r"e\.json:1:11: malformed JSON"),
        ('{"tasks": []}', r"expected a JSON list of tasks; found object"),
        ("[3]", r"tasks\[0\]: expected a task object; found int 3"),
        ('[{"id": 8, "annotations": []}]', r"task 8 \(tasks\[0\]\)\.data: missing task field 'data'"),
        ('[{"id": 9, "data": {"image": "a.jpg"}, "annotations": {}}]', r"task 9 .*annotations: expected a list"),
        (
            '[{"id": 9, "data": {"image": "a.jpg"}, "annotations": [{"id": 1}]}]',
            r"task 9 .*annotations\[0\]\.result: expected a list of regions; found null",
        ),
        ('[{"id": 10, "data": {"img": "a.jpg"}, "annotations": []}]', r"task 10 .*data keys: \['img'\]"),
        (
            '[{"id": 6, "data": {"image": "a.jpg"}, "annotations": [{"result": [{"type": "rectanglelabels", '
            '"value": {"x": "1", "y": 0, "width": 1, "height": 1, "rectanglelabels": ["cat"]}}]}]}]',
            r"task 6 .*result\[0\]\.value\.x: expected a number \(percent\); found string",
        ),
    ],
)
def test_labelstudio_malformed_files_give_located_errors(tmp_path, text, message):
    (tmp_path / "e.json").write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_labelstudio_export(tmp_path / "e.json", CLASSES)


def test_labelstudio_bad_boxes_are_errors(tmp_path):
    path = write_json(
        tmp_path / "e.json",
        [
            task(1, "a.jpg", annotation(rect("cat", 10, 10, 0, 5))),
            task(2, "b.jpg", annotation(rect("cat", float("nan"), 10, 5, 5))),
        ],
    )
    with pytest.raises(DatasetError) as info:
        read_labelstudio_export(path, CLASSES)
    assert "task 1 (tasks[0]).annotations[0].result[0]: box must have a positive width and height" in str(info.value)
    assert "task 2 (tasks[1]).annotations[0].result[0]: box coordinates must be finite" in str(info.value)


def test_conflicting_labels_within_one_file_are_listed(tmp_path):
    path = write_json(
        tmp_path / "e.json",
        [
            task(1, "a.jpg", annotation(rect("cat", 0, 0, 10, 10))),
            task(2, "a.jpg", annotation(rect("dog", 0, 0, 10, 10))),
            task(3, "b.jpg", annotation()),
            task(4, "b.jpg", annotation(rect("cat", 0, 0, 10, 10))),
            task(5, "c.jpg", annotation(rect("cat", 0, 0, 10, 10), rect("dog", 5, 5, 5, 5))),
            task(6, "c.jpg", annotation(rect("dog", 5, 5, 5, 5), rect("cat", 0, 0, 10, 10))),  # same boxes: no conflict
            task(7, "d.jpg"),  # unlabelled here, labelled below
            task(8, "d.jpg", annotation()),
        ],
    )
    with pytest.raises(
        DatasetError,
        match=r"2 image id\(s\) labelled more than once with different boxes: "
        r"'a' \(task 1, task 2\); 'b' \(task 3, task 4\)",
    ):
        read_labelstudio_export(path, CLASSES)
    tasks = json.loads(path.read_text())
    result = read_labelstudio_export(write_json(path, tasks[4:]), CLASSES)
    assert list(result.labels) == ["c", "d"] and result.unlabelled == []


def test_export_items_are_checked():
    with pytest.raises(ValueError, match="ExportItem 'a': box 0 .* has no area"):
        ExportItem("a", "a.jpg", 10, 10, [[5, 5, 5, 8]], [1])
    with pytest.raises(ValueError, match="1 boxes, 2 labels"):
        ExportItem("a", "a.jpg", 10, 10, [[1, 1, 5, 8]], [1, 2])
    with pytest.raises(ValueError, match="labels \\[4\\] outside 1..3"):
        write_labelstudio_tasks([ExportItem("a", "a.jpg", 10, 10, [[1, 1, 5, 8]], [4])], CLASSES, "unused.json")


# -------------------------------------------------------------------------------------------------------- CVAT

CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>batch 3</name></task></meta>
  <image id="0" name="images/000005.jpg" width="200" height="100">
    <box label="cat" source="manual" occluded="0" xtl="20.5" ytl="10" xbr="80" ybr="60.25" z_order="0"/>
    <box label="person" source="manual" occluded="1" xtl="0" ytl="0" xbr="200" ybr="100" rotation="0.0">
      <attribute name="truncated">no</attribute>
    </box>
    <polygon label="dog" points="1,1;10,1;10,10" z_order="0"/>
  </image>
  <image id="1" name="000007.png" width="64" height="48"></image>
</annotations>
"""


def test_cvat_xml_boxes_empty_image_and_skipped_shapes(tmp_path):
    (tmp_path / "annotations.xml").write_text(CVAT_XML)
    # CVAT exports every image of a job, finished or not: an image without any shape stays pending ...
    result = read_cvat_xml(tmp_path / "annotations.xml", CLASSES)
    assert list(result.labels) == ["000005"] and result.unlabelled == ["000007"]
    # ... unless the job is finished
    result = read_cvat_xml(tmp_path / "annotations.xml", CLASSES, empty_means_labelled=True)
    assert list(result.labels) == ["000005", "000007"] and result.unlabelled == []
    boxes, labels = result.labels["000005"]
    np.testing.assert_array_equal(boxes, [[20.5, 10, 80, 60.25], [0, 0, 200, 100]])
    np.testing.assert_array_equal(labels, [1, 3])
    assert result.labels["000007"][0].shape == (0, 4)
    assert result.annotators == {"000005": None, "000007": None}
    assert result.skipped == ["image 'images/000005.jpg': left out 1 shape(s) ['polygon']; only <box> is read"]


def test_cvat_zip_export_reads_as_its_annotations_xml(tmp_path):
    """CVAT downloads "CVAT for images 1.1" as a zip: annotations.xml (and the images when asked)."""
    import zipfile

    from activedet.al.annotation import read_labels as read_run_labels

    (tmp_path / "annotations.xml").write_text(CVAT_XML)
    with zipfile.ZipFile(tmp_path / "task.zip", "w") as archive:
        archive.writestr("annotations.xml", CVAT_XML)
        archive.writestr("images/a.png", b"not read")
    from_xml = read_cvat_xml(tmp_path / "annotations.xml", CLASSES)
    for result in (
        read_cvat_xml(tmp_path / "task.zip", CLASSES),
        read_run_labels("auto", tmp_path / "task.zip", CLASSES),
    ):
        assert result.labels.keys() == from_xml.labels.keys() and result.unlabelled == from_xml.unlabelled
        for image_id, (boxes, labels) in from_xml.labels.items():
            np.testing.assert_array_equal(result.labels[image_id][0], boxes)
            np.testing.assert_array_equal(result.labels[image_id][1], labels)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("labels/a.txt", "0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"other.zip: no annotations.xml at the top of the zip"):
        read_cvat_xml(tmp_path / "other.zip", CLASSES)
    (tmp_path / "broken.zip").write_bytes(b"PK not a zip")
    with pytest.raises(DatasetError, match=r"broken.zip: not a readable zip file"):
        read_cvat_xml(tmp_path / "broken.zip", CLASSES)


def test_cvat_xml_errors_name_image_and_label(tmp_path):
    text = CVAT_XML.replace('label="cat"', 'label="horse"').replace('rotation="0.0"', 'rotation="30"')
    (tmp_path / "annotations.xml").write_text(text)
    with pytest.raises(DatasetError, match="2 problem") as info:
        read_cvat_xml(tmp_path / "annotations.xml", CLASSES)
    message = str(info.value)
    assert "annotations.xml: image[1]/box[1]@label: image 'images/000005.jpg': unknown label 'horse'" in message
    assert "image[1]/box[2]@rotation: image 'images/000005.jpg': box rotated by 30 degrees" in message
    (tmp_path / "bad.xml").write_text("<annotations><image name='a.jpg'>")
    with pytest.raises(DatasetError, match=r"bad\.xml:1:\d+: malformed XML"):
        read_cvat_xml(tmp_path / "bad.xml", CLASSES)
    (tmp_path / "video.xml").write_text("<annotations><track id='0' label='cat'/></annotations>")
    with pytest.raises(DatasetError, match="a video export.*CVAT for images 1.1"):
        read_cvat_xml(tmp_path / "video.xml", CLASSES)


def test_cvat_coco_maps_categories_by_name(tmp_path):
    data = {
        "images": [
            {"id": 1, "file_name": "000005.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "sub/000007.png", "width": 64, "height": 48},
        ],
        "categories": [
            {"id": 1, "name": "person"},
            {"id": 2, "name": "cat"},
            {"id": 3, "name": "dog"},
            {"id": 4, "name": "unused"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 20, 30, 40],
                "segmentation": [],
                "attributes": {"occluded": False, "rotation": 0.0},
            },
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0.5, 0, 1, 1]},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
    }
    result = read_coco_labels(write_json(tmp_path / "instances_default.json", data), CLASSES)
    assert list(result.labels) == ["000005"] and result.unlabelled == ["000007"]  # COCO cannot say: pending
    result = read_coco_labels(tmp_path / "instances_default.json", CLASSES, empty_means_labelled=True)
    assert list(result.labels) == ["000005", "000007"] and result.unlabelled == []
    boxes, labels = result.labels["000005"]
    np.testing.assert_array_equal(boxes, [[10, 20, 40, 60], [0.5, 0, 1.5, 1]])
    np.testing.assert_array_equal(labels, [3, 2])
    assert result.labels["000007"][0].shape == (0, 4)
    assert result.skipped == ["image '000005.jpg': left out 1 crowd annotation(s) (iscrowd: 1)"]
    data["annotations"].append({"id": 4, "image_id": 2, "category_id": 4, "bbox": [0, 0, 1, 1]})
    with pytest.raises(
        DatasetError,
        match=r"annotations\[3\]\.category_id: image 'sub/000007.png': unknown label "
        r"'unused'",
    ):
        read_coco_labels(write_json(tmp_path / "instances_default.json", data), CLASSES)


def test_write_cvat_coco_is_plain_coco(tmp_path):
    path = write_cvat_coco(items(), CLASSES, tmp_path / "pre.json")
    dataset = read_coco(path, check_images=False)
    assert dataset.class_names == CLASSES
    assert [r.file_name.name for r in dataset] == ["000005.jpg", "000007.png", "000009.jpg"]
    for record, item in zip(dataset, items()):
        np.testing.assert_array_equal(record.boxes, item.boxes)
        np.testing.assert_array_equal(record.labels, item.labels)
        assert (record.width, record.height) == (item.width, item.height)
    assert json.loads(path.read_text())["annotations"][0]["score"] == 0.9
    result = read_labels("coco", path, CLASSES)
    np.testing.assert_array_equal(result.labels["000007"][0], items()[1].boxes)
    with pytest.raises(ValueError, match="distinct file name.*'a.jpg'"):
        write_cvat_coco([ExportItem("1", "x/a.jpg", 5, 5), ExportItem("2", "y/a.jpg", 5, 5)], CLASSES, path)


# ----------------------------------------------------------------------------------------- VOC, YOLO, dispatch


def test_read_labels_voc_and_yolo_folders(tmp_path):
    voc = tmp_path / "voc" / "Annotations"
    voc.mkdir(parents=True)
    (voc / "a.xml").write_text(
        "<annotation><size><width>64</width><height>48</height></size>"
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax>"
        "<ymax>40</ymax></bndbox></object><object><name>cat</name><difficult>1</difficult>"
        "<bndbox><xmin>5</xmin><ymin>5</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
        "</annotation>"
    )
    (voc / "b.xml").write_text("<annotation><filename>b.jpg</filename></annotation>")
    result = read_labels("voc", tmp_path / "voc", CLASSES)
    np.testing.assert_array_equal(result.labels["a"][0], [[0, 1, 30, 40]])
    assert result.labels["b"][0].shape == (0, 4) and result.skipped == ["a.xml: left out 1 difficult/iscrowd object(s)"]
    (voc / "c.xml").write_text(
        "<annotation><object><name>horse</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(
        DatasetError,
        match=r"c\.xml: object\[1\]/name: unknown class name 'horse'.* -> rename the "
        r"label in the annotation tool, or add the class to the run's classes",
    ):
        read_labels("voc", tmp_path / "voc", CLASSES)

    labels = tmp_path / "yolo" / "labels"
    labels.mkdir(parents=True)
    (tmp_path / "yolo" / "classes.txt").write_text("person\ncat\n")  # the tool's own order
    (labels / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.5 0.5\n")
    (labels / "b.txt").write_text("")
    with pytest.raises(ValueError, match="needs images="):
        read_labels("yolo", tmp_path / "yolo", CLASSES)
    result = read_labels("yolo", tmp_path / "yolo", CLASSES, images={"a": (200, 100), "b": (10, 10)})
    np.testing.assert_allclose(result.labels["a"][0], [[50, 25, 150, 75], [0, 0, 100, 50]])
    np.testing.assert_array_equal(result.labels["a"][1], [1, 3])
    assert "b" not in result.labels and result.unlabelled == ["b"]  # an empty file: maybe nobody labelled it yet
    result = read_labels(
        "yolo", tmp_path / "yolo", CLASSES, images={"a": (200, 100), "b": (10, 10)}, empty_means_labelled=True
    )
    assert result.labels["b"][0].shape == (0, 4)
    with pytest.raises(
        DatasetError, match="labels/b.txt: no image of the run is named like this label file \\(image id 'b'\\)"
    ):
        read_labels("yolo", tmp_path / "yolo", CLASSES, images={"a": (200, 100)})
    with pytest.raises(ValueError, match=r"'fmt' parameter of read_labels must be one of \('labelstudio'"):
        read_labels("labelme", tmp_path, CLASSES)
    assert LABEL_FORMATS == (
        "labelstudio",
        "labelstudio_min",
        "labelstudio_coco",
        "labelstudio_voc",
        "labelstudio_yolo",
        "cvat_xml",
        "coco",
        "voc",
        "cvat_voc",
        "yolo",
    )


def test_export_item_from_detections():
    import torch

    from activedet.models.outputs import Detections

    detections = Detections(
        boxes=torch.tensor([[1.0, 2.0, 5.0, 6.0]]),
        scores=torch.tensor([0.5]),
        labels=torch.tensor([2]),
        prob_kind="sigmoid",
    )
    item = ExportItem.from_detections("a", "a.jpg", 10, 8, detections, image_score=1.5)
    assert item.boxes.dtype == np.float32 and item.labels.tolist() == [2] and item.scores.tolist() == [0.5]
    assert item.image_score == 1.5
