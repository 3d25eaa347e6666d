"""Faults and bad input: identical runs write identical files, image files are decoded in one place (high bit
depths scaled, undecodable files named), weights files are checked before anything is written, and a corpus of
malformed inputs each stops with a message naming the file and leaves no run directory behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_loop import outcome, write_config

from activedet.cli import main
from activedet.config import load_config
from activedet.data.images import ImageDecodeError
from activedet.data.torch_dataset import load_image

#: the files a run's result is made of: two runs of one config must write them byte for byte the same
RESULT_FILES = (
    "ledger.npz",
    "metrics.jsonl",
    "cycles/0/model.pt",
    "cycles/0/metrics.json",
    "cycles/0/scores.npz",
    "cycles/0/selection.json",
    "cycles/1/model.pt",
    "cycles/1/metrics.json",
)
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture
def data(tiny_data, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may break."""
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def truncate(path: Path) -> bytes:
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])
    return original


def test_the_same_checkpoint_state_saves_to_the_same_bytes(tmp_path):
    import torch

    from activedet.engine.checkpoint import save_checkpoint

    state = {"model": {"w": torch.arange(6.0)}, "cycle": 0, "history": [{"epoch": 1, "train_loss": 0.5}]}
    a, b = save_checkpoint(tmp_path / "a.pt", state), save_checkpoint(tmp_path / "sub/b.pt", state)
    assert a.read_bytes() == b.read_bytes()


# ------------------------------------------------------------------------------------------------ image decoding


def test_sixteen_bit_grayscale_is_scaled_to_its_range_not_clipped(tmp_path):
    values = (np.arange(80 * 96).reshape(80, 96) * 8).astype(np.uint16)  # 0 .. 61432
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    image = load_image(tmp_path / "g16.png")
    assert image.shape == (3, 80, 96) and image.dtype.is_floating_point
    expected = values.astype(np.float32) / 65535
    assert all(np.allclose(image[c].numpy(), expected, atol=1e-6) for c in range(3))
    assert 0.9 < float(image.max()) < 0.95 and float(image.min()) == 0.0  # not every pixel 1.0
    Image.fromarray(expected).save(tmp_path / "f.tif")  # floating point in [0, 1]: as it is
    assert np.allclose(load_image(tmp_path / "f.tif")[0].numpy(), expected)


def test_a_high_bit_depth_image_of_unknown_range_is_refused_naming_it(tmp_path):
    Image.fromarray(np.full((8, 8), 70_000, np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(
        ImageDecodeError,
        match=r"image .*i32.tif cannot be used: 32-bit integer grayscale \(PIL mode "
        r"I\) with values in \[70000, 70000\], whose range is unknown",
    ):
        load_image(tmp_path / "i32.tif")


def test_a_truncated_image_passes_the_header_check_and_fails_validate_decode_naming_it(data, capsys):
    victim = data / "images/train/train_00003.png"
    truncate(victim)
    Image.fromarray((np.arange(96 * 96).reshape(96, 96) * 7).astype(np.uint16)).save(
        data / "images/train/train_00004.png"
    )
    args = ["validate", "coco", str(data / "annotations/train.json"), "--image-root", str(data)]
    assert main(args) == 0  # header only: the 16-bit image is fine, the truncated one is not seen
    capsys.readouterr()
    assert main([*args, "--decode"]) == 1
    out = capsys.readouterr().out
    assert re.search(
        r"images/train/train_00003.png: image .*train_00003.png cannot be decoded: OSError: image file "
        r"is truncated",
        out,
    ), out
    assert "1 error" in out and "train_00004" not in out


def test_validate_voc_decode_reads_every_image_set_in_full(data, tmp_path, capsys):
    from activedet.data.coco import read_coco
    from activedet.data.voc import write_voc

    dataset = read_coco(data / "annotations/train.json", image_root=data).subset(range(4))
    voc = write_voc(dataset, tmp_path / "VOC", images="copy")
    victim = sorted((voc / "JPEGImages").iterdir())[1]
    truncate(victim)
    args = ["validate", "voc", str(voc), "--class-names", *dataset.class_names]
    assert main(args) == 0  # header only
    capsys.readouterr()
    assert main([*args, "--decode"]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"JPEGImages/{victim.name}: image .*{victim.name} cannot be decoded", out), out
    assert "image sets trainval (4 images)" in out


@pytest.mark.parametrize("workers", [0, 1])  # 1: the error comes back from a DataLoader worker process
def test_train_with_a_truncated_image_stops_naming_the_file_without_a_traceback(workers, data, tmp_path, capsys):
    victim = data / "images/train/train_00003.png"
    truncate(victim)
    config = write_config(tmp_path, data, epochs=1, num_workers=workers)
    assert main(["train", str(config), "--quiet", "--no-eval"]) == 2
    err = capsys.readouterr().err
    assert f"image {victim} cannot be used: OSError: image file is truncated" in err
    assert "Traceback" not in err and "activedet validate FORMAT PATH --decode" in err
    assert (
        f"Training stopped with its finished epochs saved in {tmp_path / 'run'}; after fixing the file, "
        "`activedet train CONFIG --resume` continues" in err
    )


def test_bad_images_skip_leaves_undecodable_images_out_with_one_warning(data, tmp_path, capsys):
    victim = data / "images/train/train_00003.png"
    truncate(victim)
    config = write_config(tmp_path, data, epochs=1, bad_images="skip")
    assert main(["train", str(config), "--no-eval"]) == 0  # the CLI prints dataset warnings as plain lines
    out, err = capsys.readouterr()
    assert "trained 1 epoch(s)" in out
    assert re.search(
        r"warning: bad_images: skip: left 1 of the 24 images of the train split out, their files cannot "
        rf"be decoded:\n  image {re.escape(str(victim))}",
        err,
    ), err
    with pytest.raises(Exception, match=r"key 'bad_images' must be 'stop' or 'skip'; found 'ignore'"):
        load_config(write_config(tmp_path / "bad", data, bad_images="ignore"))


def test_a_run_stopped_by_a_truncated_image_keeps_its_state_and_resumes_after_the_fix(data, tmp_path, capsys):
    from activedet.al.plan import initial_indices

    # epoch_checkpoints: all keeps each cycle's epoch weights once its training directory is removed
    config = write_config(tmp_path, data, epochs=1, cycles=1, strategy="entropy", epoch_checkpoints="all")
    unlabelled = sorted(set(range(24)) - set(initial_indices(24, load_config(config).loop_options()).tolist()))
    victim = data / f"images/train/train_{unlabelled[0]:05d}.png"  # read first when the pool is scored
    original = truncate(victim)
    assert main(["run", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    run = tmp_path / "run"
    assert f"image {victim} cannot be used: OSError: image file is truncated" in err and "Traceback" not in err
    assert f"The run stopped with every finished stage saved; after fixing the file, `activedet resume {run}`" in err
    trained = (run / "cycles/0/model.pt").read_bytes()  # cycle 0 trained and evaluated before scoring stopped
    assert (run / "cycles/0/metrics.json").is_file() and not (run / "cycles/0/scores.npz").exists()
    assert [p.name for p in (run / "cycles/0/epochs").iterdir()] == ["epoch_1.pt"]
    assert not (run / "cycles/0/train").exists()
    victim.write_bytes(original)
    assert main(["resume", str(run), "--quiet"]) == 0
    assert (run / "cycles/0/model.pt").read_bytes() == trained
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------------------------------------------- predict


def test_predict_says_how_many_detections_are_shown_and_what_the_image_score_uses(data, tmp_path, capsys):
    from conftest import untrained_checkpoint

    cfg = {
        "train_data": str(data / "annotations/train.json"),
        "image_root": str(data),
        "detector": "ssd",
        "backbone": "tiny",
        "min_size": 96,
        "device": "cpu",
        "strategy": "entropy",
        "score_thresh": 0.0,
    }
    path, checkpoint = untrained_checkpoint(cfg, tmp_path)
    image = data / "images/test/test_00000.png"
    assert (
        main(
            [
                "predict",
                str(path),
                str(image),
                "--checkpoint",
                str(checkpoint),
                "--min-score",
                "0",
                "--json",
                str(tmp_path / "all.json"),
            ]
        )
        == 0
    )
    scores = sorted(b["score"] for b in json.loads((tmp_path / "all.json").read_text())[0]["boxes"])
    total, threshold = len(scores), scores[len(scores) // 2]
    assert f"(96x96; {total} detection(s), all {total} shown); entropy image score: " in capsys.readouterr().out
    assert (
        main(
            [
                "predict",
                str(path),
                str(image),
                "--checkpoint",
                str(checkpoint),
                "--min-score",
                str(threshold),
                "--json",
                str(tmp_path / "some.json"),
            ]
        )
        == 0
    )
    shown = sum(s >= threshold for s in scores)
    assert 0 < shown < total
    out = capsys.readouterr().out
    assert re.search(
        rf"\(96x96; {total} detection\(s\), {shown} shown: those with score >= {threshold:g}\); entropy "
        rf"image score: [0-9.e-]+ \(from all {total} detections\)",
        out,
    ), out
    truncate(image)
    assert main(["predict", str(path), str(image), "--checkpoint", str(checkpoint)]) == 2
    assert f"image {image} cannot be used: OSError" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("key", ["weights", "weights_backbone"])
@pytest.mark.parametrize("command", ["train", "run"])
def test_a_weights_key_naming_a_non_weights_file_fails_before_anything_is_written(key, command, data, tmp_path, capsys):
    bad = tmp_path / "notes.pt"
    bad.write_text("these are notes, not weights\n")
    config = write_config(tmp_path, data, **{key: str(bad)})
    assert main([command, str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.search(
        rf"The '{key}' parameter of \w+ names the file '{re.escape(str(bad))}', which is not a weights "
        r"file that torch.load\(weights_only=True\) can read \(\w+Error: ",
        err,
    ), err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_a_rejected_set_writes_nothing(data, tmp_path, capsys):
    config = write_config(tmp_path, data)
    for command in ("train", "run"):
        assert main([command, str(config), "--set", "epochs=0", "--quiet"]) == 2
        assert "key 'epochs' must be an int >= 1; found 0" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------- bad-input corpus


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _voc(root: Path) -> dict:
    return {
        "data_format": "voc",
        "train_data": str(root / "voc"),
        "test_data": str(root / "voc"),
        "voc_train_sets": ["2007/train"],
        "voc_test_sets": ["2007/test"],
        "class_names": CLASSES,
    }


def _yolo(root: Path) -> dict:
    from activedet.data.io import read_dataset, write_dataset

    for split in ("train", "test"):
        pool = read_dataset("coco", root / f"annotations/{split}.json", image_root=root)
        write_dataset("yolo", pool, root / f"yolo_{split}", images="copy")
    return {"data_format": "yolo", "train_data": str(root / "yolo_train"), "test_data": str(root / "yolo_test")}


#: (name, breaks the data and returns config overrides, the file the error must name, what it must say)
CORPUS = [
    ("coco: not JSON", lambda r: (r / "annotations/train.json").write_text('{"images": ['), "train.json", "JSON"),
    (
        "coco: images not a list",
        lambda r: _edit_json(r / "annotations/train.json", lambda d: d.update(images={})),
        "train.json",
        "images",
    ),
    (
        "coco: bbox of 3 numbers",
        lambda r: _edit_json(r / "annotations/train.json", lambda d: d["annotations"][0].update(bbox=[1, 2, 3])),
        "train.json",
        r"annotations\[0\]\.bbox",
    ),
    (
        "coco: unknown image id",
        lambda r: _edit_json(r / "annotations/train.json", lambda d: d["annotations"][0].update(image_id=9999)),
        "train.json",
        r"annotations\[0\]\.image_id",
    ),
    (
        "coco: unknown category",
        lambda r: _edit_json(r / "annotations/train.json", lambda d: d["annotations"][0].update(category_id=99)),
        "train.json",
        r"annotations\[0\]\.category_id",
    ),
    (
        "coco: negative box width",
        lambda r: _edit_json(r / "annotations/train.json", lambda d: d["annotations"][0].update(bbox=[5, 5, -3, 4])),
        "train.json",
        r"annotations\[0\]\.bbox",
    ),
    (
        "coco: missing image file",
        lambda r: (r / "images/train/train_00002.png").unlink(),
        "train_00002.png",
        "not found",
    ),
    (
        "image: not an image",
        lambda r: (r / "images/train/train_00002.png").write_text("hello"),
        "train_00002.png",
        "cannot read image file",
    ),
    (
        "image: empty file",
        lambda r: (r / "images/train/train_00002.png").write_bytes(b""),
        "train_00002.png",
        "cannot read image file",
    ),
    (
        "image: size differs from the annotation",
        lambda r: Image.new("RGB", (50, 40)).save(r / "images/train/train_00002.png"),
        "train_00002.png",
        "50x40",
    ),
    (
        "voc: truncated XML",
        lambda r: (_voc(r), truncate(r / "voc/Annotations/train_00002.xml"))[0],
        "train_00002.xml",
        "XML",
    ),
    (
        "voc: width not a number",
        lambda r: (
            _voc(r),
            _edit_text(r / "voc/Annotations/train_00002.xml", "<width>96</width>", "<width>wide</width>"),
        )[0],
        "train_00002.xml",
        "width",
    ),
    (
        "voc: xmax below xmin",
        lambda r: (_voc(r), _edit_text(r / "voc/Annotations/train_00002.xml", "<xmax>", "<xmax>-"))[0],
        "train_00002.xml",
        "xmax|width",
    ),
    (
        "voc: unknown class",
        lambda r: (_voc(r), _edit_text(r / "voc/Annotations/train_00002.xml", "<name>", "<name>Tree"))[0],
        "train_00002.xml",
        "class",
    ),
    (
        "voc: listed image without annotation",
        lambda r: (_voc(r), (r / "voc/Annotations/train_00002.xml").unlink())[0],
        "train_00002",
        "not found|does not exist|missing",
    ),
    (
        "yolo: 4 fields",
        lambda r: (_yolo(r), (r / "yolo_train/labels/3.txt").write_text("1 0.5 0.5 0.2\n"))[0],
        "labels/3.txt",
        "5",
    ),
    (
        "yolo: class out of range",
        lambda r: (_yolo(r), (r / "yolo_train/labels/3.txt").write_text("42 0.5 0.5 0.2 0.2\n"))[0],
        "labels/3.txt",
        "42",
    ),
    (
        "yolo: coordinates above 1",
        lambda r: (_yolo(r), (r / "yolo_train/labels/3.txt").write_text("1 1.5 0.5 0.2 0.2\n"))[0],
        "labels/3.txt",
        r"1\.5|beyond the 96x96 image",
    ),
    (
        "yolo: not numbers",
        lambda r: (_yolo(r), (r / "yolo_train/labels/3.txt").write_text("1 a b c d\n"))[0],
        "labels/3.txt",
        "number|float",
    ),
]


@pytest.mark.parametrize("name, breaks, file, says", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_corpus_each_names_the_file_and_leaves_no_run_behind(
    name, breaks, file, says, data, tmp_path, capsys
):
    overrides = breaks(data)
    overrides = overrides if isinstance(overrides, dict) else {}
    config = write_config(tmp_path, data, **overrides)
    assert main(["run", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert file in err and re.search(says, err), err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ SIGKILL at random moments


def _cli(args: list[str], marks: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACTIVEDET_MARK_FILE": str(marks)}
    env.pop("ACTIVEDET_KILL_AT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "activedet", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cpu_seconds(pid: int) -> float:
    """CPU seconds a live process has used (Linux ``/proc``): a clock that load on the machine does not stretch."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _marks(path: Path, pid: int) -> dict[str, float]:
    """The fault points process ``pid`` has reached, each with the CPU seconds it had used there."""
    lines = path.read_text().splitlines() if path.is_file() else []
    return {point: float(cpu) for p, point, cpu in (line.split() for line in lines) if int(p) == pid}


def _run_until(proc: subprocess.Popen, marks: Path, work: float = float("inf")) -> tuple[bool, dict[str, float]]:
    """Let ``proc`` run until it has used ``work`` CPU seconds after the start of its loop (then SIGKILL it) or
    ends. The start is the process's own ``start:T`` point, not a fixed CPU time: importing and reading the data
    costs each process a different time, varying by up to half the loop's whole work on the tiny data. Returns
    whether the kill ended it, and the fault points it reached with their CPU seconds."""
    started = None  # the CPU seconds at this process's start:T point, once it has reached it
    while proc.poll() is None:
        if started is None:
            started = next((cpu for point, cpu in _marks(marks, proc.pid).items() if point.startswith("start:")), None)
        try:
            used = _cpu_seconds(proc.pid)
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):  # exiting
            continue
        if started is not None and used >= started + work:
            proc.send_signal(signal.SIGKILL)
            if proc.wait(timeout=60) == -signal.SIGKILL:
                return True, _marks(marks, proc.pid)
            break  # it ended on its own just before the signal
        time.sleep(0.02)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    return False, _marks(marks, proc.pid)


def test_runs_of_one_config_killed_at_random_moments_or_not_write_identical_files(tiny_data, tmp_path):
    """Two runs of one config write the same result files, byte for byte (wall-clock times are kept in timing
    files), also when one of them is SIGKILLed, not only at the named fault points but at moments drawn from a
    seeded generator over the loop's work in the uninterrupted run (wherever they land: training, evaluation,
    scoring, selection, a write), and resumed until it finishes. Moments are measured in CPU time from each
    process's own start of the loop, which neither a busy machine nor the cost of importing stretches."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("reads the CPU time of the run from /proc (Linux)")
    extra = {"strategy": "entropy", "cycles": 1, "epochs": 2}
    straight = write_config(tmp_path / "straight", tiny_data, **extra)
    _, reached = _run_until(
        _cli(["run", str(straight), "--quiet"], tmp_path / "straight.marks"), tmp_path / "straight.marks"
    )
    work = reached["evaluate:1"] - reached["start:0"]  # from the loop's start to its last output
    assert work > 0, reached
    killed = write_config(tmp_path / "killed", tiny_data, **extra)
    run_dir = tmp_path / "killed/run"
    marks = tmp_path / "killed.marks"

    def start() -> subprocess.Popen:
        args = ["resume", str(run_dir)] if (run_dir / "config.json").is_file() else ["run", str(killed)]
        return _cli([*args, "--quiet"], marks)

    # cumulative fractions of the work, each process killed that much further on than the last one
    moments = np.sort(np.random.default_rng(1).uniform(0.05, 0.95, size=3))
    hits = 0
    for gap in np.diff(moments, prepend=0.0):
        hit, _ = _run_until(start(), marks, gap * work)
        hits += hit
        if not hit:  # finished first: the later starts have nothing left to do
            break
    assert hits >= 1
    _run_until(start(), marks)
    a, b = tmp_path / "straight/run", run_dir
    assert np.array_equal(outcome(a)[0], outcome(b)[0])
    for file in RESULT_FILES:
        assert (a / file).read_bytes() == (b / file).read_bytes(), f"{file} differs"
    selection = json.loads((a / "cycles/0/selection.json").read_text())
    assert "seconds" not in selection and all(len(p["checkpoint"]) == 12 for p in selection["picks"])
    timing = [json.loads(line) for line in (a / "timing.jsonl").read_text().splitlines()]
    assert [t["cycle"] for t in timing] == [0, 1] and timing[0]["seconds"]["train"] > 0
    assert set(timing[0]["seconds"]) == {"train", "evaluate", "scores", "select"}
    assert set(timing[1]["seconds"]) == {"train", "evaluate"}
    for t in timing:  # where each cycle's model was trained, beside its seconds (no result file holds it)
        assert t["environment"]["torch"] == torch.__version__ and t["environment"]["device"] == "cpu"
        assert t["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
