"""Label Studio's own exports (tests/fixtures/labelstudio, made by a live Label Studio 1.23.2 from an activedet
query batch) import as Label Studio means them; tasks name images by URLs its local files storage serves; an
unfinished CVAT job then its finished export import like the finished export alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from activedet.al.annotation import ImportRefused, import_labels, load_import_records, read_labels
from activedet.al.export import export_batch
from activedet.data.records import DatasetError, DetectionDataset, ImageRecord
from activedet.interop import labelstudio_image_id
from activedet.models.outputs import Detections

FIXTURES = Path(__file__).parent / "fixtures" / "labelstudio"
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LIVE = json.loads((FIXTURES / "live_run.json").read_text())
SIZES = {image_id: tuple(size) for image_id, size in LIVE["batch"].items()}
# what was drawn in Label Studio, in pixels of the 96x96 images (percent x 0.96); setB/val_7: the newer annotation
VAL_3 = ([[9.6, 12, 38.4, 50.4], [48.48, 4.8, 67.92, 28.8]], ["three", "seven"])
VAL_7_NEWER = ([[19.2, 28.8, 57.6, 62.4], [57.6, 57.6, 86.4, 86.4]], ["two", "four"])
VAL_7_OLDER = ([[4.8, 4.8, 52.8, 52.8]], ["one"])


def read(name: str, fmt: str = "auto", **options):
    return read_labels(fmt, FIXTURES / name, CLASSES, sizes=SIZES, **options)


def check(result, image_id: str, expected, atol: float = 1e-4) -> None:
    boxes, labels = result.labels[image_id]
    np.testing.assert_allclose(boxes, np.asarray(expected[0], np.float32).reshape(-1, 4), atol=atol)
    assert [CLASSES[int(label) - 1] for label in labels] == expected[1]


def test_the_live_run_served_every_task_image():
    assert LIVE["label_studio"] == "1.23.2"
    assert all(served == [200, "image/png", True] for served in LIVE["served"].values())
    tasks = json.loads((FIXTURES / "tasks.json").read_text())
    for task in tasks:
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d=") and not url.startswith("/data/local-files/?d=/")
        name = unquote(url.split("?d=", 1)[1]).rsplit("/", 1)[1]
        assert name == task["data"]["activedet_image_id"].replace("/", "__") + ".png"


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("local_json.json", "labelstudio"),
        ("local_json_min.json", "labelstudio_min"),
        ("local_coco", "labelstudio_coco"),
        ("local_coco/result.json", "labelstudio_coco"),
    ],
)
def test_json_json_min_and_coco_keep_the_newest_annotation(name, fmt):
    result = read(name)
    assert read_labels(fmt, FIXTURES / name, CLASSES, sizes=SIZES).labels.keys() == result.labels.keys()
    assert list(result.labels) == ["val_3", "setB/val_1", "setB/val_7"]
    check(result, "val_3", VAL_3)
    check(result, "setB/val_1", ([], []))  # an annotation with no box: an empty label
    check(result, "setB/val_7", VAL_7_NEWER)
    # val_6 was skipped in Label Studio: the JSON lists it as not labelled, the others leave it out
    assert result.unlabelled == (["val_6"] if fmt == "labelstudio" else [])
    assert any("older" in note or "used annotations[1]" in note for note in result.skipped)


def test_the_exports_that_keep_the_newest_annotation_import_alike_into_a_run(tmp_path):
    records = [ImageRecord(i, tmp_path / f"{i}.png", *SIZES[i]) for i in SIZES]
    pool, batch = DetectionDataset(records, CLASSES), list(SIZES)
    first = import_labels(tmp_path / "run", read("local_json_with_emails.json"), cycle=0, batch=batch, pool=pool)
    assert first.labelled == ["setB/val_1", "setB/val_7", "val_3"] and first.pending == ["val_6"]
    assert {e["annotator"] for e in load_import_records(tmp_path / "run")[0]["images"].values()} == {"ann@example.org"}
    for name in ("local_json.json", "local_json_min.json", "local_coco"):
        again = import_labels(tmp_path / "run", read(name), cycle=0, batch=batch, pool=pool)
        assert again.record is None and sorted(again.unchanged) == first.labelled
    # YOLO keeps the oldest annotation of setB/val_7: it contradicts the newest, and is refused naming the image
    with pytest.raises(ImportRefused, match=r"already have other imported labels: \['setB/val_7'\]"):
        import_labels(tmp_path / "run", read("local_yolo"), cycle=0, batch=batch, pool=pool)
    assert len(load_import_records(tmp_path / "run")) == 1


def test_the_annotator_is_the_email_where_the_export_carries_it():
    assert set(read("local_json_with_emails.json").annotators.values()) == {"ann@example.org"}
    assert set(read("local_json.json").annotators.values()) == {None}  # only the user id: nobody outside LS
    assert set(read("local_json_min.json").annotators.values()) == {None}


def test_json_min_reads_rectangles_of_any_control_name_and_skips_other_regions(tmp_path):
    rows = json.loads((FIXTURES / "local_json_min.json").read_text())
    for row in rows:  # a project whose RectangleLabels control is named "box", with a polygon tool too
        if "label" in row:
            row["box"] = row.pop("label")
    rows[0]["outline"] = [
        {"points": [[1, 1], [5, 5], [1, 5]], "polygonlabels": ["three"], "original_width": 96, "original_height": 96}
    ]
    (tmp_path / "min.json").write_text(json.dumps(rows))
    result = read_labels("labelstudio_min", tmp_path / "min.json", CLASSES, sizes=SIZES)
    check(result, "val_3", VAL_3)
    check(result, "setB/val_7", VAL_7_NEWER)
    assert any("polygonlabels" in note for note in result.skipped)


def test_voc_keeps_the_oldest_annotation_in_truncated_zero_based_pixels():
    result = read("local_voc")
    assert sorted(result.labels) == ["setB/val_7", "val_3"]  # no file for an image without boxes: pending
    check(result, "val_3", ([[9, 12, 37, 50], [48, 4, 67, 28]], ["three", "seven"]), atol=0)
    check(result, "setB/val_7", ([[4, 4, 52, 52]], ["one"]), atol=0)  # the older annotation: documented
    for got, drawn in zip(result.labels["val_3"][0], np.asarray(VAL_3[0])):
        assert np.abs(got - drawn).max() < 2  # Label Studio's integer truncation


def test_yolo_maps_alphabetical_classes_by_name_and_keeps_the_oldest_annotation():
    result = read("local_yolo")
    assert sorted(result.labels) == ["setB/val_1", "setB/val_7", "val_3"]
    check(result, "val_3", VAL_3)
    check(result, "setB/val_1", ([], []))
    check(result, "setB/val_7", VAL_7_OLDER)


@pytest.mark.parametrize("name", ["upload_json.json", "upload_coco", "upload_voc", "upload_yolo"])
def test_uploaded_images_hash_prefixed_names_map_back(name):
    result = read(name)
    assert sorted(result.labels) == ["setB/val_1", "val_3"]
    atol = 2 if "voc" in name else 1e-4  # VOC: Label Studio's integer truncation
    check(result, "val_3", ([VAL_3[0][0]], ["three"]), atol=atol)
    check(result, "setB/val_1", ([VAL_7_NEWER[0][0]], ["two"]), atol=atol)


def test_image_names_map_to_batch_ids():
    known = {"val_3", "setB/val_1", "a__b"}
    assert labelstudio_image_id("/data/local-files/?d=x/images/setB__val_1.png", known) == "setB/val_1"
    assert labelstudio_image_id("../../media/upload/7/710ed051-setB__val_1.png", known) == "setB/val_1"
    assert labelstudio_image_id("90f5494c-val_3.xml", known) == "val_3"
    assert labelstudio_image_id("a__b.png", known) == "a__b"  # a name that is an id as it stands wins
    assert labelstudio_image_id("90f5494c-other.png", known) == "other"


def test_yolo_names_outside_the_run_are_refused(tmp_path):
    shutil.copytree(FIXTURES / "local_yolo", tmp_path / "yolo")
    (tmp_path / "yolo/labels/stranger.txt").write_text("")
    with pytest.raises(DatasetError, match=r"stranger\.txt: image 'stranger' is not one of the run's images"):
        read_labels("labelstudio_yolo", tmp_path / "yolo", CLASSES, sizes=SIZES)


def test_empty_means_labelled_applies_only_where_empty_is_ambiguous():
    with pytest.raises(ValueError, match="applies to the formats .*not to 'labelstudio'"):
        read("local_json.json", empty_means_labelled=True)


# ------------------------------------------------------------------------------------------------- the export


def _pool(tmp_path: Path) -> tuple[DetectionDataset, list[dict], list[Detections]]:
    records = []
    for image_id in ["a", "setB/b"]:
        path = tmp_path / "pool" / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30)).save(path)
        records.append(ImageRecord(image_id, path, 40, 30))
    picks = [{"index": k, "image_id": r.image_id, "rank": k, "score": 1.0, "cycle": 0} for k, r in enumerate(records)]
    det = Detections(
        boxes=torch.tensor([[1.0, 2, 10, 12], [0, 0, 5, 5]]),
        scores=torch.tensor([0.9, 0.2]),
        labels=torch.tensor([2, 1]),
        prob_kind="softmax",
    )
    return DetectionDataset(records, ["cat", "dog"]), picks, [det, det]


def test_labelstudio_export_urls_min_score_and_label_config(tmp_path):
    pool, picks, predictions = _pool(tmp_path)
    folder = export_batch(
        tmp_path / "q",
        pool,
        picks,
        predictions,
        fmt="labelstudio",
        min_score=0.1,
        labelstudio_document_root=str(tmp_path),
    )
    tasks = json.loads((folder / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == [
        "/data/local-files/?d=q/images/a.png",
        "/data/local-files/?d=q/images/setB__b.png",
    ]
    assert [len(t["predictions"][0]["result"]) for t in tasks] == [2, 2]
    interface = (folder / "label_config.xml").read_text()
    assert '<RectangleLabels name="label" toName="image" canRotate="false">' in interface
    again = export_batch(tmp_path / "q2", pool, picks, predictions, fmt="labelstudio", images="none")
    refs = [t["data"]["image"] for t in json.loads((again / "tasks.json").read_text())]
    assert refs == ["/data/local-files/?d=" + str(r.file_name.absolute()).lstrip("/") for r in pool.records]
    plain = export_batch(
        tmp_path / "q3",
        pool,
        picks,
        predictions,
        fmt="labelstudio",
        min_score=0.5,
        labelstudio_url_prefix="",
        labelstudio_document_root=None,
    )
    tasks = json.loads((plain / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == ["images/a.png", "images/setB__b.png"]
    assert [len(t["predictions"][0]["result"]) for t in tasks] == [1, 1]
    with pytest.raises(ValueError, match="is not inside labelstudio_document_root"):
        export_batch(
            tmp_path / "q4",
            pool,
            picks,
            predictions,
            fmt="labelstudio",
            labelstudio_document_root=str(tmp_path / "elsewhere"),
        )
    with pytest.raises(ValueError, match=r"'min_score' parameter of export_batch must be a number in \[0, 1\]"):
        export_batch(tmp_path / "q5", pool, picks, predictions, min_score=1.5)


# ------------------------------------------------------------------------------------ unfinished CVAT jobs


def _cvat(path: Path, images: dict[str, list[tuple[str, list[float]]] | None]) -> Path:
    body = []
    for k, (name, boxes) in enumerate(images.items()):
        shapes = "".join(
            f'<box label="{label}" xtl="{b[0]}" ytl="{b[1]}" xbr="{b[2]}" ybr="{b[3]}" occluded="0"/>'
            for label, b in boxes or []
        )
        body.append(f'<image id="{k}" name="{name}.png" width="96" height="96">{shapes}</image>')
    path.write_text(f"<annotations><version>1.1</version>{''.join(body)}</annotations>")
    return path


def test_an_unfinished_cvat_job_then_its_finished_export_equal_the_finished_export_alone(tmp_path):
    records = [ImageRecord(i, tmp_path / f"{i}.png", 96, 96) for i in ("a", "b", "c", "d")]
    pool, batch = DetectionDataset(records, CLASSES), ["a", "b", "c", "d"]
    box = [1.0, 2.0, 30.0, 40.0]
    unfinished = _cvat(tmp_path / "job_unfinished.xml", {"a": [("one", box)], "b": [], "c": [], "d": []})
    finished = _cvat(
        tmp_path / "job_finished.xml",
        {"a": [("one", box)], "b": [("two", box), ("six", box)], "c": [], "d": [("nine", box)]},
    )

    def run(tmp: Path, files: list[tuple[Path, bool]]) -> dict:
        for file, finished_job in files:
            labels = read_labels("cvat_xml", file, CLASSES, empty_means_labelled=finished_job)
            result = import_labels(tmp, labels, cycle=0, batch=batch, pool=pool)
        return result, {i: (e["boxes"], e["labels"]) for r in load_import_records(tmp) for i, e in r["images"].items()}

    first, _ = run(tmp_path / "two_steps", [(unfinished, False)])
    assert first.labelled == ["a"] and first.pending == first.not_labelled == ["b", "c", "d"]  # not said done
    two_steps, labels_two = run(tmp_path / "two_steps", [(finished, True)])
    one_step, labels_one = run(tmp_path / "one_step", [(finished, True)])
    assert labels_two == labels_one and sorted(labels_one) == batch and two_steps.pending == one_step.pending == []
    assert labels_one["c"] == ([], []) and labels_one["b"][1] == ["two", "six"]
    # the finished export without the flag leaves the image with nothing to box pending
    partial, _ = run(tmp_path / "no_flag", [(finished, False)])
    assert partial.pending == partial.not_labelled == ["c"]


def test_config_checks_the_export_options(tiny_data, tmp_path):
    from test_loop import write_config

    from activedet.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"key 'export_min_score' must be a number in \[0, 1\].*found 1.5"):
        load_config(write_config(tmp_path, tiny_data, export_min_score=1.5))
    with pytest.raises(ConfigError, match="key 'labelstudio_document_root' must be an absolute folder path"):
        load_config(write_config(tmp_path, tiny_data, labelstudio_document_root="data"))
    cfg = load_config(write_config(tmp_path, tiny_data, export_min_score=0.05, labelstudio_document_root=None))
    assert cfg.export_min_score == 0.05 and cfg.labelstudio_document_root is None


def test_a_batch_export_is_checked_when_made_and_people_get_the_images():
    from activedet.al.export import BatchExport
    from activedet.al.oracle import HumanOracle, SimulatedOracle

    with pytest.raises(
        ValueError, match=r"'images' parameter of BatchExport must be one of \['copy', 'link', 'none'\]"
    ):
        BatchExport(images="zip")
    with pytest.raises(ValueError, match=r"'options' parameter of BatchExport takes the keys .*Got \['min_scor'\]"):
        BatchExport(options={"min_scor": 0.3})
    with pytest.raises(ValueError, match=r"'min_score' parameter of BatchExport must be a number in \[0, 1\]"):
        BatchExport(options={"min_score": 2})
    pool = DetectionDataset([], ["cat"])
    assert BatchExport().images == "copy" and HumanOracle(pool).export.images == "copy"  # as export_batch, config
    assert SimulatedOracle(pool).export.images == "none"  # nobody looks at a simulated batch's images
