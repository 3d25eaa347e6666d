"""Image classification through the same active-learning loop: every classification strategy end to end on an
ImageFolder pool, a CIFAR-binary pool, and the config checks that keep detection and classification keys apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from activedet.config import ConfigError, load_config
from activedet.data.classification import write_cifar, write_imagefolder
from activedet.workflows import run_from_config

COLOURS = {1: (220, 40, 40), 2: (40, 40, 220), 3: (40, 200, 40)}
CLASSES = ["red", "blue", "green"]


def colour_images(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, list[int]]:
    """Noisy single-colour squares, labels cycling 1..3 (so every split holds every class)."""
    rng = np.random.default_rng(seed)
    labels = [i % 3 + 1 for i in range(n)]
    images = np.stack(
        [np.clip(np.array(COLOURS[c]) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8) for c in labels]
    )
    return images, labels


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagefolder")
    for split, n, seed in (("train", 24, 0), ("val", 6, 1), ("test", 9, 2)):
        images, labels = colour_images(n, seed)
        write_imagefolder(images, labels, CLASSES, root / split, stems=[f"{split}{i}" for i in range(n)])
    return root


BASE = {
    "detector": "classifier",
    "backbone": "small",
    "min_size": 16,
    "epochs": 2,
    "batch_size": 8,
    "optimizer": "adamw",
    "lr": 0.003,
    "warmup_iters": 0,
    "lr_schedule": "constant",
    "hflip_prob": 0.0,
    "amp": False,
    "metrics": ["accuracy"],
    "val_metric": "top1",
    "eval_batch_size": 8,
    "device": "cpu",
    "initial_labelled": 6,
    "budget": 4,
    "cycles": 2,
    "log_every": 5,
}


def write_config(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**BASE, "out_dir": str(tmp_path / "run"), **overrides}))
    return path


def imagefolder_keys(root: Path) -> dict:
    return {
        "data_format": "imagefolder",
        "train_data": str(root / "train"),
        "val_data": str(root / "val"),
        "test_data": str(root / "test"),
    }


STRATEGIES = [
    ("random", {}),
    ("least_confidence", {}),
    ("margin", {"use_class_probs": True}),
    ("entropy", {"use_class_probs": True}),
    ("coreset", {}),
    ("influence", {"recursion_images": 4}),
]


@pytest.mark.parametrize("strategy, options", STRATEGIES, ids=[s for s, _ in STRATEGIES])
def test_two_classification_cycles_with_every_classification_strategy(strategy, options, folders, tmp_path):
    config = write_config(tmp_path, strategy=strategy, strategy_options=options, **imagefolder_keys(folders))
    ledger = run_from_config(load_config(config), progress=False)
    assert len(ledger.labelled()) == 6 + 2 * 4
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [x["labelled_images"] for x in lines] == [6, 10, 14]
    assert [x["labelled_boxes"] for x in lines] == [6, 10, 14]  # one label per image is the annotation cost
    assert all(0 <= x["metrics"]["accuracy/top1"] <= 1 and x["metrics"]["accuracy/num_images"] == 9 for x in lines)
    picks = json.loads((tmp_path / "run/cycles/0/selection.json").read_text())["picks"]
    assert len(picks) == 4 and all(p["boxes"] == 1 for p in picks)
    if strategy not in ("random", "coreset"):  # every image has one prediction: every candidate is scored
        assert all(p["score"] is not None for p in picks)
    if strategy == "influence":
        stats = json.loads((tmp_path / "run/cycles/1/influence.json").read_text())
        assert stats["parameters"] == ["fc.weight"] and stats["validation_images"] == 6 and stats["resets"] == 0


def test_a_cifar_binary_pool(tmp_path):
    directory = tmp_path / "cifar-10-batches-bin"
    names = [f"class{i}" for i in range(10)]
    for split, n, seed in (("train", 30, 0), ("test", 10, 1)):
        images, labels = colour_images(n, seed, size=32)
        write_cifar(images, labels, names, directory, split=split)
    config = write_config(
        tmp_path,
        data_format="cifar",
        train_data=str(directory),
        test_data=str(directory),
        strategy="entropy",
        strategy_options={"use_class_probs": True},
        cycles=1,
        min_size=32,
    )
    ledger = run_from_config(load_config(config), progress=False)
    assert len(ledger.labelled()) == 10
    record = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[-1])
    assert record["metrics"]["accuracy/num_images"] == 10


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"detector": "retinanet", "metrics": ["voc"]}, "key 'detector' must be 'classifier' with data_format"),
        ({"metrics": ["voc"]}, r"key 'metrics' must be \[accuracy\] for detector 'classifier'"),
        ({"val_metric": "mAP_area"}, "key 'val_metric' must be 'top1' or 'mean_per_class'"),
        ({"data_format": "cifar"}, "key 'val_data' must be null with data_format 'cifar'"),
    ],
)
def test_classification_config_errors(overrides, pattern, folders, tmp_path):
    with pytest.raises(ConfigError, match=pattern):
        load_config(write_config(tmp_path, **{**imagefolder_keys(folders), **overrides}))


def test_accuracy_is_refused_for_detectors_and_boxes_are_refused_for_classifiers(tiny_data, tmp_path):
    detection = {
        "data_format": "coco",
        "train_data": str(tiny_data / "annotations/train.json"),
        "test_data": str(tiny_data / "annotations/test.json"),
        "image_root": str(tiny_data),
    }
    with pytest.raises(ConfigError, match="key 'metrics' must be a list of .*'accuracy' is for detector 'classifier'"):
        load_config(write_config(tmp_path, **detection, detector="ssd", backbone="tiny"))
    config = write_config(tmp_path, **detection, strategy="random")  # a classifier on multi-box detection data
    with pytest.raises(ValueError, match="without exactly one label .*needs one class label per image"):
        run_from_config(load_config(config), progress=False)
    assert not (tmp_path / "run/ledger.npz").exists()
