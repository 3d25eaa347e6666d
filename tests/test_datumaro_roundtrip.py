"""Round trips through Datumaro, the converter CVAT uses: a query batch exported by activedet (images in a sub-folder
of the unlabelled folder, an image with no boxes, classes in a non-alphabetical order) is read by Datumaro's own
readers (which must see exactly the boxes activedet meant), written again by Datumaro's writers with the class list
shuffled and first without two images, and imported back into the run: the same boxes to the pixel, the same
classes, the missing images pending until the complete export arrives, and nothing else in the run changes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import datumaro as dm
import numpy as np
import pytest
import torch
from test_loop import write_config

from activedet.al.annotation import load_import_records
from activedet.al.export import export_batch
from activedet.config import load_config
from activedet.data.coco import read_coco
from activedet.interop import export_file_name
from activedet.models.outputs import Detections
from activedet.workflows import import_into_run, run_from_config, run_pool, run_status

#: per image of the batch, in pick order (cycled): boxes on multiples of 3 px, so that every format's text (YOLO's
#: 6 decimals of a fraction of the 96 px side, CVAT's 2 decimals) holds them exactly; labels 10, 1, 5, 3 are "nine",
#: "zero", "four", "two"; the first image has none
BOXES = [[], [[3, 6, 33, 36]], [[0, 0, 96, 96], [45, 12, 93, 27]], [[12, 48, 30, 90], [3, 3, 96, 93], [6, 9, 12, 15]]]
LABELS = [[], [10], [1, 5], [3, 10, 1]]


@pytest.fixture(scope="module")
def pending_run(tiny_data, tmp_path_factory):
    """A human run awaiting labels for 6 of the 8 unlabelled images, half of them in the folder's ``setB/``."""
    tmp = tmp_path_factory.mktemp("dm_run")
    truth = read_coco(tiny_data / "annotations/val.json", image_root=tiny_data)
    for k, record in enumerate(truth.records):
        target = tmp / "unlabelled" / ("setB" if k % 2 else "") / f"v_{record.image_id}{record.file_name.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.file_name, target)
    config = write_config(
        tmp,
        tiny_data,
        oracle="human",
        unlabelled_data=str(tmp / "unlabelled"),
        strategy="random",
        initial_labelled=2,
        budget=6,
        cycles=1,
        epochs=1,
        batch_size=2,
    )
    run_from_config(load_config(config), progress=False)
    assert run_status(tmp / "run")["state"] == "awaiting labels"
    return tmp / "run"


def batch_labels(run: Path) -> tuple[list[dict], dict[str, tuple[np.ndarray, list[str]]]]:
    """The batch's picks and the labels the test hands in: ``{image_id: (boxes float32, class names)}``."""
    picks = json.loads((run / "cycles/0/selection.json").read_text())["picks"]
    names = load_config(run / "config.json")
    class_names = run_pool(names).class_names
    labels = {}
    for k, pick in enumerate(picks):
        boxes, classes = BOXES[k % 4], LABELS[k % 4]
        labels[pick["image_id"]] = (np.array(boxes, np.float32).reshape(-1, 4), [class_names[c - 1] for c in classes])
    return picks, labels


def export_for_people(run: Path, folder: Path, fmt: str) -> dict:
    """``activedet``'s export of the pending batch in ``fmt`` with the test's labels as its boxes."""
    cfg = load_config(run / "config.json")
    pool = run_pool(cfg)
    picks, labels = batch_labels(run)
    index = {n: i + 1 for i, n in enumerate(pool.class_names)}
    predictions = [
        Detections(
            boxes=torch.tensor(labels[p["image_id"]][0]).reshape(-1, 4),
            scores=torch.full((len(labels[p["image_id"]][1]),), 0.9),
            labels=torch.tensor([index[n] for n in labels[p["image_id"]][1]], dtype=torch.int64),
            prob_kind="sigmoid",
        )
        for p in picks
    ]
    export_batch(folder, pool, picks, predictions, fmt=fmt, images="copy")
    return labels


def snapshot(run: Path) -> dict[str, str]:
    return {
        p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def check_datumaro_sees(dataset: dm.Dataset, labels: dict) -> None:
    """Datumaro's reader gives exactly the boxes and classes activedet wrote, for every exported image."""
    categories = dataset.categories()[dm.AnnotationType.label]
    seen = {}
    for item in dataset:
        boxes = [a for a in item.annotations if a.type == dm.AnnotationType.bbox]
        seen[item.id] = ([[b.x, b.y, b.x + b.w, b.y + b.h] for b in boxes], [categories[b.label].name for b in boxes])
    expected = {export_file_name(i, ""): (b.tolist(), n) for i, (b, n) in labels.items()}
    assert {k: (sorted(zip(n, b))) for k, (b, n) in seen.items()} == {
        k: sorted(zip(n, b)) for k, (b, n) in expected.items()
    }


#: (activedet export format, the folder Datumaro reads in the export, Datumaro's reader and writer with their
#: options, the file or folder of Datumaro's output that is imported, activedet's import format)
CASES = {
    "coco": ("coco", ".", "coco_instances", {}, ".", "auto"),  # the export folder, its format told from the files
    "cvat_xml": ("coco", ".", "coco_instances", {}, None, "cvat_xml"),  # Datumaro writes CVAT for images 1.1
    "voc": ("voc", "voc", "voc", {"coordinate_mode": "voc-one-based"}, ".", "voc"),
    "cvat_voc": ("cvat_voc", "voc", "voc", {}, ".", "cvat_voc"),
    "yolo": ("yolo", "yolo", "yolo", {}, ".", "yolo"),
    "yolo_ultralytics": ("yolo", "yolo", "yolo", {}, ".", "yolo"),  # Datumaro writes data.yaml, labels/<subset>/
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_batch_round_trips_through_datumaro(case, pending_run, tmp_path):
    export_fmt, read_at, dm_format, options, imported_at, import_fmt = CASES[case]
    run = tmp_path / "run"
    shutil.copytree(pending_run, run)
    labels = export_for_people(run, tmp_path / "query", export_fmt)
    dataset = dm.Dataset.import_from(str(tmp_path / "query" / read_at), dm_format, **options)
    check_datumaro_sees(dataset, labels)
    names = [c.name for c in dataset.categories()[dm.AnnotationType.label]]
    shuffled = names[3:] + names[:3][::-1]  # the tool's own class order
    dataset = dataset.transform("project_labels", dst_labels=shuffled)
    writer = {"cvat_xml": "cvat", "yolo_ultralytics": "yolo_ultralytics"}.get(case, dm_format)
    if case == "yolo_ultralytics":  # Ultralytics wants a train and a val subset
        dataset = dataset.transform("random_split", splits=[("train", 0.5), ("val", 0.5)], seed=0)
    before = snapshot(run)
    pending = run_status(run)["pending"]
    later = [pending[0], pending[3]]  # the empty image and one with boxes: not in the first export
    partial = dm.Dataset.from_extractors(dataset)
    subset = {item.id: item.subset for item in dataset}
    for image_id in later:
        partial.remove(export_file_name(image_id, ""), subset[export_file_name(image_id, "")])
    # CVAT/Datumaro exports list every image of a job, labelled or not: an image without boxes stays pending until the
    # finished job's export says, by --empty-means-labelled, that it was looked at
    ambiguous = True  # every one of these formats lists the images of the job
    waiting = sorted(set(later) | ({i for i in pending if not labels[i][1]} if ambiguous else set()))
    results = []
    for name, part in (("partial", partial), ("complete", dataset)):
        out = tmp_path / f"datumaro_{name}"
        part.export(str(out), writer, save_media=True, **options)
        target = out / (imported_at or next(p.name for p in out.glob("*.xml")))
        results.append(
            import_into_run(run, target, fmt=import_fmt, empty_means_labelled=ambiguous and name == "complete")
        )
        if name == "partial":
            assert sorted(results[0].pending) == waiting
            assert sorted(results[0].labelled) == sorted(set(pending) - set(waiting))
    assert results[1].labelled == waiting and results[1].pending == []
    assert sorted(results[1].unchanged) == sorted(set(pending) - set(waiting))
    imported = {}
    for record in load_import_records(run):
        imported.update(record["images"])
    assert sorted(imported) == sorted(labels)
    for image_id, (boxes, classes) in labels.items():  # 0 px: the float32 boxes are equal
        order = np.lexsort(np.asarray(imported[image_id]["boxes"], np.float64).reshape(-1, 4).T[::-1])
        expected = np.lexsort(boxes.astype(np.float64).T[::-1])
        np.testing.assert_array_equal(
            np.asarray(imported[image_id]["boxes"], np.float32).reshape(-1, 4)[order], boxes[expected]
        )
        assert [imported[image_id]["labels"][i] for i in order] == [classes[i] for i in expected]
    after = snapshot(run)
    assert {k: v for k, v in after.items() if not k.startswith("imports/")} == before
    assert sorted(k for k in after if k.startswith("imports/")) == ["imports/0001.json", "imports/0002.json"]
    assert run_status(run)["state"] == "labelled, ready for the next query"


def test_the_command_line_imports_a_darknet_export_with_its_own_class_order(pending_run, tmp_path, capsys):
    """A YOLO export whose obj.names lists the classes in another order imports the right classes; a stale second
    class list, and a label file of an image the run does not have, are refused naming the file, with the run
    untouched and no Python-only advice."""
    from activedet.cli import main

    run = tmp_path / "run"
    shutil.copytree(pending_run, run)
    labels = export_for_people(run, tmp_path / "query", "yolo")
    root = tmp_path / "query" / "yolo"
    names = (root / "obj.names").read_text().split()
    order = names[::-1]  # the tool's own class order: every class index changes
    for file in (root / "obj_train_data").glob("*.txt"):
        lines = [line.split() for line in file.read_text().splitlines()]
        file.write_text("".join(f"{order.index(names[int(c)])} {' '.join(rest)}\n" for c, *rest in lines))
    (root / "obj.names").write_text("".join(f"{n}\n" for n in order))
    before = snapshot(run)
    assert main(["import", str(run), str(root)]) == 2  # data.yaml still holds the old order
    assert "obj.names and data.yaml: the class lists disagree" in capsys.readouterr().err
    (root / "data.yaml").unlink()
    (root / "obj_train_data" / "zebra.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    assert main(["import", str(run), str(root)]) == 2
    err = capsys.readouterr().err
    assert "obj_train_data/zebra.txt: no image of the run is named like this label file" in err
    assert "images=" not in err and snapshot(run) == before
    (root / "obj_train_data" / "zebra.txt").unlink()
    # the Darknet root folder, format told from the files; a finished job, so empty label files are empty labels
    assert main(["import", str(run), str(root), "--empty-means-labelled"]) == 0
    assert "the batch is complete" in capsys.readouterr().out
    imported = load_import_records(run)[0]["images"]
    for image_id, (boxes, classes) in labels.items():
        np.testing.assert_array_equal(np.asarray(imported[image_id]["boxes"], np.float32).reshape(-1, 4), boxes)
        assert imported[image_id]["labels"] == classes


def test_label_studio_tasks_of_sub_folder_images_import_back_by_their_image_name(pending_run, tmp_path):
    """A Label Studio export whose tasks kept only the image URL (not the image id activedet wrote) still names
    the sub-folder images: the exported file name maps back to the image."""
    run = tmp_path / "run"
    shutil.copytree(pending_run, run)
    labels = export_for_people(run, tmp_path / "query", "labelstudio")
    tasks = json.loads((tmp_path / "query/tasks.json").read_text())
    for task in tasks:  # a person accepted the pre-annotations; the export lost the image id
        task["annotations"] = [{"id": task["id"], "result": task.pop("predictions")[0]["result"]}]
        del task["data"]["activedet_image_id"]
    assert any("setB__" in task["data"]["image"] for task in tasks)
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    assert import_into_run(run, tmp_path / "export.json").pending == []
    imported = load_import_records(run)[0]["images"]
    for image_id, (boxes, classes) in labels.items():
        np.testing.assert_allclose(np.asarray(imported[image_id]["boxes"]).reshape(-1, 4), boxes, atol=1e-4)
        assert imported[image_id]["labels"] == classes


@pytest.mark.parametrize("fmt", ["coco", "cvat_voc"])
def test_labels_of_a_resized_image_are_refused(fmt, pending_run, tmp_path):
    """Boxes drawn on a resized copy of an image (the file states another size) would land in the wrong place."""
    run = tmp_path / "run"
    shutil.copytree(pending_run, run)
    labels = export_for_people(run, tmp_path / "query", fmt)
    first = next(i for i in run_status(run)["pending"] if labels[i][1])  # an image with boxes: labelled in any case
    if fmt == "coco":
        path = tmp_path / "query/annotations/instances_default.json"
        data = json.loads(path.read_text())
        entry = next(
            e for e in data["images"] if e["file_name"] == export_file_name(first, Path(e["file_name"]).suffix)
        )
        entry["width"] = 48
        path.write_text(json.dumps(data))
    else:
        path = tmp_path / "query/voc"
        xml = path / "Annotations" / f"{export_file_name(first, '.xml')}"
        xml.write_text(xml.read_text().replace("<width>96</width>", "<width>48</width>"))
    before = snapshot(run)
    with pytest.raises(
        ValueError,
        match=f"image '{first}': the file gives its size \\(width, height\\) as 48x96 but the image is 96x96",
    ):
        import_into_run(run, path, fmt=fmt)
    assert snapshot(run) == before
