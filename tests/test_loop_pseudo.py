"""Pseudo-labelled semi-supervision in the loop, fine-tuning from the previous cycle, and TensorBoard logs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_loop import kill_then_resume, outcome, run_cli, write_config

from activedet.al.ledger import Ledger
from activedet.config import ConfigError, load_config
from activedet.workflows import run_from_config

PSEUDO = {
    "pseudo_labels": {"score_threshold": 0.0, "top1_only": False, "max_boxes": 3, "loss_weight": 0.5},
    "strategy": "entropy",
}


def test_pseudo_labels_train_but_never_count_and_stay_queryable(tiny_data, tmp_path):
    config = write_config(tmp_path, tiny_data, **PSEUDO)
    ledger = run_from_config(load_config(config), progress=False)
    run = tmp_path / "run"
    assert not (run / "cycles/0/pseudo_labels.json").exists()  # cycle 0 trains on the initial set alone
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    gt = json.loads((tiny_data / "annotations/train.json").read_text())
    boxes_per_image = {str(im["id"]): 0 for im in gt["images"]}
    for ann in gt["annotations"]:
        boxes_per_image[str(ann["image_id"])] += 1
    ids = (run / "labelled_2.txt").read_text().split()
    assert lines[-1]["labelled_boxes"] == sum(boxes_per_image[i] for i in ids)  # annotation cost: true labels only
    for t in (1, 2):
        pseudo = json.loads((run / f"cycles/{t}/pseudo_labels.json").read_text())["images"]
        labelled = set(Ledger.load(run / "ledger.npz").labelled(upto=t).tolist())
        assert pseudo and all(p["index"] not in labelled for p in pseudo)  # only unlabelled images
        assert all(len(p["boxes"]) <= 3 and p["loss_weight"] == 0.5 for p in pseudo)
        assert lines[t]["labelled_images"] == 6 + 4 * t  # pseudo images never count as labelled
        assert lines[t]["pseudo_labels"]["images"] == len(pseudo)
    assert lines[0]["pseudo_labels"] is None
    # pseudo-labelled images stay in the pool that cycle 1 scores and selects from
    scored = set(np.load(run / "cycles/1/scores.npz")["pool_indices"].tolist())
    pseudo_1 = {p["index"] for p in json.loads((run / "cycles/1/pseudo_labels.json").read_text())["images"]}
    assert pseudo_1 <= scored
    assert len(ledger.labelled()) == 14
    # a pseudo-label file lost after its cycle trained is made again, the same, when the run goes on
    saved = (run / "cycles/2/pseudo_labels.json").read_text()
    (run / "cycles/2/pseudo_labels.json").unlink()
    run_from_config(load_config(config), progress=False)
    assert (run / "cycles/2/pseudo_labels.json").read_text() == saved
    again = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert again["pseudo_labels"] == lines[-1]["pseudo_labels"]


def test_sigkill_around_the_pseudo_label_stage_then_resume_gives_the_same_run(tiny_data, tmp_path):
    straight = write_config(tmp_path / "straight", tiny_data, cycles=1, **PSEUDO)
    assert run_cli(["run", str(straight), "--quiet"]).returncode == 0
    killed = write_config(tmp_path / "killed", tiny_data, cycles=1, **PSEUDO)
    run_dir = tmp_path / "killed" / "run"
    kill_then_resume(killed, run_dir, ["label:0", "pseudo:1", "train_epoch:1"])
    a, b = outcome(tmp_path / "straight" / "run"), outcome(run_dir)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    files = [(d / "cycles/1/pseudo_labels.json").read_text() for d in (tmp_path / "straight/run", run_dir)]
    assert files[0] == files[1]


def test_fine_tuning_with_pseudo_labels_and_tensorboard_logs(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = write_config(
        tmp_path, tiny_data, warm_start=True, tensorboard=True, cycles=1, pseudo_label_subset=5, **PSEUDO
    )
    run_from_config(load_config(config), progress=False)
    run = tmp_path / "run"
    assert len(json.loads((run / "cycles/1/pseudo_labels.json").read_text())["images"]) <= 5
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"metrics/voc/mAP_area", "selection/images", "selection/boxes", "pseudo/images"} <= tags
    assert [e.step for e in events.Scalars("metrics/voc/mAP_area")] == [0, 1]
    assert events.Scalars("selection/images")[0].value == 4
    for t in (0, 1):  # each cycle's training curves survive the deletion of its train/ directory
        training = EventAccumulator(str(run / f"tensorboard/train/cycle{t}"))
        training.Reload()
        assert any(tag.startswith("train/") for tag in training.Tags()["scalars"]), training.Tags()["scalars"]


@pytest.mark.parametrize(
    "value, pattern",
    [
        ({"score_threshold": 2}, r"pseudo_labels.score_threshold' must be a float in \[0, 1\]"),
        ({"top_one": True}, "pseudo_labels.top_one"),
    ],
)
def test_bad_pseudo_label_options_are_config_errors(value, pattern, tiny_data, tmp_path):
    config = write_config(tmp_path, tiny_data, pseudo_labels=value)
    with pytest.raises(ConfigError, match=pattern):
        load_config(config)


def test_pseudo_labels_with_miaod_training_are_a_config_error(tiny_data, tmp_path):
    config = write_config(tmp_path, tiny_data, detector="miaod", pseudo_labels={})
    with pytest.raises(ConfigError, match="key 'pseudo_labels' must be null with training 'miaod'"):
        load_config(config)


def test_unknown_class_in_pseudo_thresholds_fails_before_any_training(tiny_data, tmp_path):
    config = write_config(tmp_path, tiny_data, pseudo_labels={"class_thresholds": {"unicorn": 0.5}})
    with pytest.raises(ValueError, match="class_thresholds.*unicorn"):
        run_from_config(load_config(config), progress=False)
    assert not (tmp_path / "run" / "cycles" / "0" / "model.pt").exists()


def test_weighted_pseudo_labels_are_refused_under_torchrun(toy_dataset, monkeypatch):
    """One forward per weight group would desynchronise DDP's collectives across processes (a hang)."""
    from dataclasses import replace

    from activedet.engine import train
    from activedet.engine.train import TrainOptions

    monkeypatch.setattr(train.dist_utils, "world_size", lambda: 2)
    weighted = replace(toy_dataset, records=[replace(r, loss_weight=0.5) for r in toy_dataset.records])
    with pytest.raises(ValueError, match="loss weights other than 0 and 1.*under torchrun"):
        train.train_loader(weighted, TrainOptions(batch_size=2))
    train.train_loader(toy_dataset, TrainOptions(batch_size=2))  # weight 1: fine
