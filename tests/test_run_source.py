"""A run and its source data: ``activedet status`` reads a run without torch, and a train split whose images
changed after the run started (pool.json's fingerprint) stops every command that reads the pool, naming the file,
its config key, what changed and what to do; fixed labels on the same images do not."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_human_loop import human_run  # noqa: F401 (a fixture)
from test_loop import write_config

from activedet.al.fingerprint import PoolChanged, check_pool, part_fingerprint
from activedet.al.status import run_status
from activedet.cli import main
from activedet.config import load_config
from activedet.data.records import DetectionDataset, ImageRecord
from activedet.workflows import resume_run, run_from_config


@pytest.fixture
def started(tiny_data, tmp_path):
    """A finished one-cycle run (cycle 0 only) on a private copy of the tiny data: ``(run dir, train.json)``."""
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    run_from_config(load_config(write_config(tmp_path, data, cycles=0, epochs=1)), progress=False)
    return tmp_path / "run", data / "annotations/train.json"


def edit(path: Path, change) -> None:
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


def remove_last_image(coco: dict, _) -> None:
    gone = coco["images"].pop()["id"]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != gone]


def rename_image_17(coco: dict, train: Path) -> None:
    """Image 17 now names a copy of its file: the same image id, another file name."""
    data = train.parent.parent
    old = coco["images"][17]["file_name"]
    shutil.copy(data / old, data / "images/copy_of_17.png")
    coco["images"][17]["file_name"] = "images/copy_of_17.png"


def test_status_reads_a_run_without_importing_torch(started):
    run, train = started
    code = f"import sys; from activedet.cli import main; main(['status', {str(run)!r}]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].split() == ["cycle", "0"] and "state            finished" in out
    assert out.splitlines()[-1] == "False", out
    saved = json.loads((run / "pool.json").read_text())
    assert [(p["key"], p["images"], p["format"]) for p in saved["parts"]] == [("train_data", 24, "coco")]
    edit(train, lambda coco: coco["annotations"].pop())  # a changed file: status reads the pool again, still no torch
    cached = len(list((run / "cache").iterdir()))
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert again == out and len(list((run / "cache").iterdir())) == cached + 1  # the changed file's index


def test_status_of_a_folder_of_runs_is_a_line_each_and_a_run_that_goes_on_is_in_progress(started, capsys):
    run, _ = started
    other = run.parent / "more" / "run"
    shutil.copytree(run, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "cycles": 2}))  # evaluated cycle 0 of 0..2: not done
    assert run_status(other)["state"] == "in progress" and run_status(run)["state"] == "finished"
    code = (
        f"import sys; from activedet.cli import main; main(['status', {str(run.parent)!r}]); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[-1] == "False", out
    assert re.fullmatch(
        rf"{re.escape(str(other))}: cycle 0, in progress, 6 labelled images, 13 boxes, voc/mAP_area [\d.]+ \(cycle 0\)",
        lines[0],
    ), out
    assert lines[1].startswith(f"{run}: cycle 0, finished, 6 labelled images") and len(lines) == 3  # path order
    assert main(["status", str(run), str(other), "--json"]) == 0
    assert [s["state"] for s in json.loads(capsys.readouterr().out)] == ["finished", "in progress"]
    assert main(["status", str(other)]) == 0  # running or stopped: the files cannot tell, so it says both
    assert f"in progress (running, or stopped: if no command is working on it, `activedet resume {other}`" in (
        capsys.readouterr().out
    )
    (other / "config.json").unlink()  # a run made through the library has none: its stopping rule is unknown
    assert run_status(other)["state"] == "finished"
    assert main(["status", str(run.parent / "nowhere")]) == 2
    assert "nowhere: no such run directory" in capsys.readouterr().err
    assert main(["status", str(run.parent / "data")]) == 2
    assert "data: no run below it (a run directory holds ledger.npz)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, what",
    [
        (
            remove_last_image,
            r"the pool had 24 images, now 23; image 23 \('24'\) and those after it are gone",
        ),
        (lambda c, _: c["images"].reverse(), r"image 0 was '1', now '24'"),
        (rename_image_17, r"the file name of image 17 changed \(the image ids are the same\)"),
    ],
    ids=["removed", "reordered", "renamed"],
)
def test_a_changed_train_file_stops_resume_status_and_import_naming_it(started, change, what, capsys):
    run, train = started
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    edit(train, lambda coco: change(coco, train))
    message = rf"{train} \(key 'train_data' of {run / 'config.json'}\) changed since the run in {run} started: {what}"
    fix = r"Restore the file as it was when the run started, or start a new run \(a new out_dir\)"
    with pytest.raises(PoolChanged, match=rf"{message}\. .*{fix}"):
        resume_run(run, progress=False)
    with pytest.raises(PoolChanged, match=message):
        run_status(run)
    assert main(["import", str(run), str(train)]) == 2
    assert "activedet import: error: " in (err := capsys.readouterr().err) and "changed since the run in" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing written


def test_an_unchanged_or_relabelled_train_file_resumes(started, tiny_data):
    run, train = started
    resume_run(run, progress=False)  # unchanged
    stat = json.loads((run / "pool.json").read_text())["parts"][0]["stat"]

    def move_boxes(coco):
        for a in coco["annotations"]:
            a["bbox"] = [a["bbox"][0] + 1, *a["bbox"][1:]]

    edit(train, move_boxes)  # people fixing labels: the same images, in the same order
    assert run_status(run)["state"] == "finished"
    resume_run(run, progress=False)
    assert json.loads((run / "pool.json").read_text())["parts"][0]["stat"] != stat  # refreshed: status is a stat


def test_a_run_without_pool_json_is_checked_against_its_ledger_then_gets_one(started):
    run, train = started
    (run / "pool.json").unlink()
    assert run_status(run)["cycle"] == 0  # nothing to compare with: not an error
    original = train.read_bytes()
    edit(train, lambda c: c["images"].insert(0, c["images"].pop(5)))
    with pytest.raises(PoolChanged, match=r"key 'train_data' .*: image 0 was '1', now '6'"):
        resume_run(run, progress=False)
    assert not (run / "pool.json").exists()
    train.write_bytes(original)
    resume_run(run, progress=False)
    assert json.loads((run / "pool.json").read_text())["parts"][0]["images"] == 24


def test_an_image_added_to_the_unlabelled_folder_stops_a_human_run(human_run):  # noqa: F811
    config, run, _, _ = human_run
    assert main(["run", str(config), "--quiet"]) == 0
    saved = json.loads((run / "pool.json").read_text())
    assert [(p["key"], p["images"]) for p in saved["parts"]] == [("train_data", 24), ("unlabelled_data", 8)]
    folder = Path(load_config(config).unlabelled_data)
    shutil.copy(next(folder.iterdir()), folder / "zzz_new.png")
    with pytest.raises(PoolChanged, match=r"unlabelled_data' of .*the pool had 8 images, now 9; image 32 \('zzz_new'"):
        resume_run(run, progress=False)


def test_a_file_name_change_in_a_large_pool_is_located_to_a_block(tmp_path):
    def pool(names):
        return DetectionDataset([ImageRecord(str(i), Path(n), 8, 8) for i, n in enumerate(names)], ["a"])

    names = [f"img{i}.png" for i in range(5000)]
    before = part_fingerprint("train_data", tmp_path / "train", "yolo", pool(names))
    assert before["block"] == 5 and len(before["blocks"]) == 1000 and before["stat"] is None
    check_pool(tmp_path, {"version": 1, "parts": [before]}, [before], config="c.yaml")
    names[1234] = "other.png"
    after = part_fingerprint("train_data", tmp_path / "train", "yolo", pool(names))
    with pytest.raises(PoolChanged, match=r"the file name of an image among 1230\.\.1234 changed .*Restore the data"):
        check_pool(tmp_path, {"version": 1, "parts": [before]}, [after], config="c.yaml")
    ids = [str(i) for i in range(5000)]
    with pytest.raises(PoolChanged, match=r"the pool had 5000 images, now 4999; image 4999 \('4999'\) and those"):
        check_pool(
            tmp_path,
            {"version": 1, "parts": [before]},
            [part_fingerprint("train_data", tmp_path / "train", "yolo", pool(names[:-1]))],
            config="c.yaml",
            pool_ids=lambda: ids[:-1],
            ledger_ids=lambda: np.array(ids).tolist(),
        )


def test_a_voc_image_set_that_lost_an_image_stops_resume(tiny_data, tmp_path):
    from activedet.data.synth import SYNTH_CLASSES

    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    voc = {"train_data": str(data / "voc"), "test_data": str(data / "voc"), "image_root": None}
    sets = {"voc_train_sets": ["2007/train"], "voc_test_sets": ["2007/test"], "class_names": list(SYNTH_CLASSES)}
    config = write_config(tmp_path, data, data_format="voc", **voc, **sets, cycles=0, epochs=1)
    run_from_config(load_config(config), progress=False)
    assert json.loads((tmp_path / "run/pool.json").read_text())["parts"][0]["stat"] is None  # a folder
    image_set = data / "voc/ImageSets/Main/train.txt"
    image_set.write_text("".join(image_set.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(
        PoolChanged,
        match=rf"voc \(key 'train_data' with 'voc_train_sets' \['2007/train'\] of {tmp_path / 'run/config.json'}\) "
        r"changed .*now 23; image 0 was '2007/train_00000', now '2007/train_00001'\. .*Restore the data",
    ):
        resume_run(tmp_path / "run", progress=False)
    assert run_status(tmp_path / "run")["cycle"] == 0  # status checks source files only (a COCO file)
