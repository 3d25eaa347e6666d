"""People as the oracle: a run from a folder of unlabelled images, query -> labels -> import -> query, persisted
between commands; partial, repeated, conflicting and wrong imports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_loop import write_config

from activedet.al.annotation import load_import_records, write_native_labels
from activedet.cli import main
from activedet.config import ConfigError, load_config
from activedet.data.coco import read_coco
from activedet.workflows import import_into_run, run_from_config, run_status


def human_setup(tiny_data, tmp_path, **overrides):
    """A human run's config: the tiny train split is the labelled start, the val split's images (copied without
    any annotation) the unlabelled folder; the val annotations play the annotator's knowledge. Returns ``(config,
    run directory, {image id: true record}, class names)``."""
    folder = tmp_path / "unlabelled"
    truth = read_coco(tiny_data / "annotations/val.json", image_root=tiny_data)
    known = {}
    for record in truth.records:
        target = folder / f"val_{record.image_id}{record.file_name.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.file_name, target)
        record.image_id = target.stem  # the id the run gives the folder's image
        known[record.image_id] = record
    config = write_config(
        tmp_path,
        tiny_data,
        oracle="human",
        unlabelled_data=str(folder),
        strategy="entropy",
        initial_labelled=1,
        **overrides,
    )
    return config, tmp_path / "run", known, truth.class_names


@pytest.fixture
def human_run(tiny_data, tmp_path):
    """:func:`human_setup` with 3 images per cycle, 2 cycles."""
    return human_setup(tiny_data, tmp_path, budget=3, cycles=2)


def labels_file(path: Path, truth, class_names, image_ids, annotator="ann@example.org") -> Path:
    return write_native_labels(path, [truth[i] for i in image_ids], class_names, annotator=annotator)


def test_two_human_cycles_with_partial_repeated_and_wrong_imports(human_run, tmp_path, capsys):
    config, run, truth, class_names = human_run
    assert main(["run", str(config), "--quiet"]) == 0
    assert "awaiting labels for 3 images" in capsys.readouterr().out
    status = run_status(run)
    assert status["state"] == "awaiting labels" and status["cycle"] == 0 and len(status["pending"]) == 3
    batch = json.loads((run / "cycles/0/query/batch.json").read_text())
    assert [b["image_id"] for b in batch["images"]] == status["pending"]
    assert all((run / "cycles/0/query/images" / b["file"]).is_file() for b in batch["images"])
    assert (run / "cycles/0/query/pre_annotations.json").is_file()
    first, rest = status["pending"][:1], status["pending"][1:]
    # a partial batch: the rest stays pending
    part = import_into_run(run, labels_file(tmp_path / "part.json", truth, class_names, first))
    assert part.labelled == first and part.pending == rest and part.record.name == "0001.json"
    # the same file again changes nothing
    again = import_into_run(run, tmp_path / "part.json")
    assert again.record is None and again.unchanged == first and len(load_import_records(run)) == 1
    # conflicting labels for an imported image, and an image not in the batch: refused, nothing merged
    wrong = json.loads((tmp_path / "part.json").read_text())
    wrong["images"][first[0]]["boxes"] = [[1, 1, 20, 20]]
    wrong["images"][first[0]]["labels"] = [class_names[0]]
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=f"already have other imported labels: \\['{first[0]}'\\]; to replace them"):
        import_into_run(run, tmp_path / "wrong.json")
    # ... unless the import replaces them (a correction); the earlier record is kept, and a second correction
    # puts the right labels back
    assert main(["import", str(run), str(tmp_path / "wrong.json"), "--replace"]) == 0
    assert "replaced the labels of 1 images" in capsys.readouterr().out
    records = load_import_records(run)
    assert len(records) == 2 and records[1]["images"][first[0]]["replaces"] == 1
    assert records[0]["images"][first[0]]["boxes"] != [[1, 1, 20, 20]]  # the first import is as it was
    back = import_into_run(run, tmp_path / "part.json", replace=True)
    assert back.replaced == first and back.labelled == [] and back.pending == rest
    assert len(load_import_records(run)) == 3
    stranger = next(i for i in truth if i not in status["pending"])
    with pytest.raises(ValueError, match=f"not in cycle 0's query batch: \\['{stranger}'\\]"):
        import_into_run(run, labels_file(tmp_path / "stranger.json", truth, class_names, [stranger] + rest))
    assert len(load_import_records(run)) == 3 and run_status(run)["pending"] == rest
    # a query while images are pending is refused
    assert main(["query", str(run), "--quiet"]) == 1
    assert main(["import", str(run), str(labels_file(tmp_path / "rest.json", truth, class_names, rest))]) == 0
    assert "the batch is complete" in capsys.readouterr().out
    assert main(["query", str(run), "--quiet"]) == 0  # trains cycle 1 on the imported labels, exports batch 2
    status = run_status(run)
    assert status["cycle"] == 1 and status["state"] == "awaiting labels" and status["labelled_images"] == 24 + 3
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert (
        line["labelled_boxes"]
        == sum(truth[i].num_boxes for i in first + rest)
        + json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["labelled_boxes"]
    )
    records = load_import_records(run)
    assert [r["number"] for r in records] == [1, 2, 3, 4]
    assert records[0]["images"][first[0]]["annotator"] == "ann@example.org"
    # once the next query has trained on a batch, its labels are no longer the pending batch's: no replacing them
    with pytest.raises(ValueError, match=f"not in cycle 1's query batch: \\['{first[0]}'\\]"):
        import_into_run(run, tmp_path / "wrong.json", replace=True)


def test_bad_files_and_boxes_are_refused(human_run, tmp_path):
    config, run, truth, class_names = human_run
    run_from_config(load_config(config), progress=False)
    pending = run_status(run)["pending"]
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        import_into_run(run, tmp_path / "broken.json")
    outside = {
        "format": "activedet-labels",
        "images": {pending[0]: {"boxes": [[0, 0, 5000, 10], [8, 8, 4, 20]], "labels": [class_names[0]] * 2}},
    }
    (tmp_path / "outside.json").write_text(json.dumps(outside))
    # each box's fault is named: which coordinate lies how far outside, or that the box is empty
    with pytest.raises(
        ValueError,
        match=f"image '{pending[0]}': box #0: box xyxy=\\(0, 0, 5000, 10\\) extends \\d+ px beyond the right edge of "
        "the \\d+x\\d+ image, more than clip_tolerance=2 px; box #1: box must have a positive width and height; "
        "found xyxy=\\(8, 8, 4, 20\\) \\(width -4, height 12 px\\)",
    ):
        import_into_run(run, tmp_path / "outside.json")
    unknown = {"format": "activedet-labels", "images": {pending[0]: {"boxes": [[0, 0, 5, 5]], "labels": ["zebra"]}}}
    (tmp_path / "unknown.json").write_text(json.dumps(unknown))
    with pytest.raises(ValueError, match="unknown class\\(es\\) \\['zebra'\\]"):
        import_into_run(run, tmp_path / "unknown.json")
    # a file that cannot be read as labels is refused under the same header as every import, each fault named
    misspelt, shapes = class_names[0].upper(), {"a": {"labels": []}, "b": {"boxes": "0 0 5 5", "labels": ["x"]}}
    odd = {
        pending[0]: {"boxes": [[0, 0, 5, 5]], "labels": [misspelt]},
        pending[1]: shapes["a"],
        pending[2]: shapes["b"],
    }
    (tmp_path / "odd.json").write_text(json.dumps({"format": "activedet-labels", "images": odd}))
    with pytest.raises(ValueError) as refused:
        import_into_run(run, tmp_path / "odd.json")
    lines = str(refused.value).splitlines()
    assert lines[0] == f"{tmp_path / 'odd.json'}: import refused, nothing merged:", lines
    assert (
        f"unknown class(es) ['{misspelt}']" in lines[1]
        and f"did you mean '{class_names[0]}' for '{misspelt}'?" in lines[1]
    )
    assert lines[2].endswith("with one label per box; 'boxes' is missing (keys found: ['labels'])"), lines
    assert lines[3].endswith("'boxes' is string \"0 0 5 5\", not a list"), lines
    empty = {"format": "activedet-labels", "images": {pending[0]: {"boxes": [], "labels": []}}}
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    assert import_into_run(run, tmp_path / "empty.json").labelled == [pending[0]]  # an empty label is a label
    assert load_import_records(run)[0]["images"][pending[0]]["boxes"] == []
    assert not (run / "imports" / "0002.json").exists()


def test_human_config_checks(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="key 'unlabelled_data' must be null with oracle 'simulated'"):
        load_config(write_config(tmp_path, tiny_data, unlabelled_data=str(tmp_path)))
    # people labelling: a budget in boxes or cost spends the costs predicted from the detector's detections
    for unit in ("boxes", "cost"):
        assert load_config(write_config(tmp_path, tiny_data, oracle="human", budget_unit=unit)).budget_unit == unit


def test_simulation_labels_every_batch_through_an_import_record(tiny_data, tmp_path):
    run_from_config(load_config(write_config(tmp_path, tiny_data, strategy="random", cycles=1)), progress=False)
    records = load_import_records(tmp_path / "run")
    assert len(records) == 1 and len(records[0]["images"]) == 4
    assert {e["annotator"] for e in records[0]["images"].values()} == {"simulated oracle"}
    oracle = json.loads((tmp_path / "run/cycles/0/oracle_labels.json").read_text())
    assert sorted(oracle["images"]) == sorted(records[0]["images"])
    assert np.isfinite(run_status(tmp_path / "run")["last_metrics"]["voc/mAP_area"])
    with pytest.raises(ValueError, match="is not awaiting labels \\(state: finished, cycle 1\\)"):
        import_into_run(tmp_path / "run", tmp_path / "run/cycles/0/oracle_labels.json")


@pytest.mark.parametrize("point, committed", [("import_write", False), ("import", True)])
def test_a_kill_during_import_leaves_the_run_before_or_after_it(point, committed, human_run, tmp_path):
    import os
    import subprocess
    import sys

    config, run, truth, class_names = human_run
    run_from_config(load_config(config), progress=False)
    pending = run_status(run)["pending"]
    file = labels_file(tmp_path / "all.json", truth, class_names, pending)
    env = {**os.environ, "ACTIVEDET_KILL_AT": f"{point}:1"}
    done = subprocess.run(
        [sys.executable, "-m", "activedet", "import", str(run), str(file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9  # SIGKILL
    status = run_status(run)
    assert status["pending"] == ([] if committed else pending)
    assert sorted(p.name for p in (run / "imports").glob("*")) == (["0001.json"] if committed else [])
    result = import_into_run(run, file)  # importing again: the same end state either way
    assert result.pending == [] and (result.record is None) == committed
    assert len(load_import_records(run)) == 1


def test_two_human_cycles_through_label_studio_then_cvat(human_run, tmp_path):
    """query -> Label Studio export (percent boxes, completed_by) -> import -> query -> CVAT COCO export (its own
    category order) -> import: the ledger holds the people's labels and who made them."""
    config, run, truth, class_names = human_run
    assert main(["run", str(config), "--set", "export_format=labelstudio", "--quiet"]) == 0
    tasks = json.loads((run / "cycles/0/query/tasks.json").read_text())
    assert len(tasks) == 3 and all(t["predictions"][0]["result"] is not None for t in tasks)
    export = []
    for n, task in enumerate(tasks):  # what Label Studio exports once a person has drawn the true boxes
        record = truth[task["data"]["activedet_image_id"]]
        result = [
            {
                "type": "rectanglelabels",
                "from_name": "label",
                "to_name": "image",
                "original_width": record.width,
                "original_height": record.height,
                "value": {
                    "x": 100 * b[0] / record.width,
                    "y": 100 * b[1] / record.height,
                    "width": 100 * (b[2] - b[0]) / record.width,
                    "height": 100 * (b[3] - b[1]) / record.height,
                    "rotation": 0,
                    "rectanglelabels": [class_names[int(c) - 1]],
                },
            }
            for b, c in zip(record.boxes.tolist(), record.labels)
        ]
        export.append(
            {
                **task,
                "annotations": [
                    {"id": n, "completed_by": {"email": "lena@example.org"}, "was_cancelled": False, "result": result}
                ],
            }
        )
    (tmp_path / "ls_export.json").write_text(json.dumps(export))
    assert main(["import", str(run), str(tmp_path / "ls_export.json")]) == 0
    assert main(["query", str(run), "--format", "cvat_coco", "--quiet"]) == 0
    batch = json.loads((run / "cycles/1/query/batch.json").read_text())["images"]
    assert (run / "cycles/1/query/pre_annotations.json").is_file()
    order = list(reversed(class_names))  # CVAT numbers the categories in its own order
    coco = {"images": [], "annotations": [], "categories": [{"id": k + 1, "name": n} for k, n in enumerate(order)]}
    for k, entry in enumerate(batch):
        record = truth[entry["image_id"]]
        coco["images"].append({"id": k + 1, "file_name": entry["file"], "width": record.width, "height": record.height})
        for b, c in zip(record.boxes.tolist(), record.labels):
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": k + 1,
                    "iscrowd": 0,
                    "category_id": order.index(class_names[int(c) - 1]) + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": 1.0,
                }
            )
    (tmp_path / "cvat.json").write_text(json.dumps(coco))
    # the job is finished: its images without a box are labelled as having nothing to box (else they stay pending)
    assert main(["import", str(run), str(tmp_path / "cvat.json"), "--empty-means-labelled"]) == 0
    records = load_import_records(run)
    assert [r["cycle"] for r in records] == [0, 1]
    assert {e["annotator"] for e in records[0]["images"].values()} == {"lena@example.org"}
    for record in records:
        for image_id, entry in record["images"].items():
            np.testing.assert_allclose(np.asarray(entry["boxes"]).reshape(-1, 4), truth[image_id].boxes, atol=1e-3)
            assert entry["labels"] == [class_names[int(c) - 1] for c in truth[image_id].labels]
    assert main(["query", str(run), "--quiet"]) == 0  # cycle 2: the last one (cycles: 2) is evaluated, no query
    status = run_status(run)
    assert status["state"] == "finished" and status["cycle"] == 2 and status["labelled_images"] == 24 + 6
    from activedet.al.ledger import Ledger

    ledger = Ledger.load(run / "ledger.npz")
    assert sorted(p["image_id"] for p in ledger.picks) == sorted(i for r in records for i in r["images"])
    assert main(["report", str(run), "--out", str(tmp_path / "report"), "--html"]) == 0
    assert "| entropy | 2 | 30 |" in (tmp_path / "report/report.md").read_text()
    page = (tmp_path / "report/index.html").read_text()
    assert page.count('src="thumbs/') == 6 and 'class="placeholder"' not in page  # both batches, images found
