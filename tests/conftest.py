"""Shared fixtures: a toy detection dataset written to disk (two classes of coloured squares, empty images)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from activedet.data.records import DetectionDataset, ImageRecord

#: torch threads per test process: the cores shared among the pytest-xdist workers (``make test`` runs one per core)
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _threads():
    """Every test starts with the worker's share of the cores, whatever the test before it set."""
    torch.set_num_threads(THREADS)


def make_toy_dataset(
    root: Path, n_images: int = 8, size: tuple[int, int] = (96, 80), seed: int = 0, empty_every: int = 4
) -> DetectionDataset:
    """Images of ``size`` (w, h) with 0-3 filled squares: red = label 1 ("red"), blue = label 2 ("blue").

    Every ``empty_every``-th image has no object. Deterministic from ``seed``.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    width, height = size
    records = []
    for i in range(n_images):
        canvas = np.full((height, width, 3), 200, np.uint8)
        canvas += rng.integers(0, 30, canvas.shape, dtype=np.uint8)
        count = 0 if i % empty_every == empty_every - 1 else int(rng.integers(1, 4))
        boxes, labels = [], []
        for _ in range(count):
            side = int(rng.integers(14, 30))
            x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            label = int(rng.integers(1, 3))
            canvas[y : y + side, x : x + side] = (220, 30, 30) if label == 1 else (30, 30, 220)
            boxes.append([x, y, x + side, y + side])
            labels.append(label)
        path = root / f"img_{i:03d}.png"
        Image.fromarray(canvas).save(path)
        records.append(
            ImageRecord(
                f"img_{i:03d}",
                path,
                width,
                height,
                np.array(boxes, np.float32).reshape(-1, 4),
                np.array(labels, np.int64),
            )
        )
    return DetectionDataset(records, ["red", "blue"], root=root)


def tiny_model(seed: int = 0, detector: str = "retinanet", **kwargs):
    """A two-class ``detector`` on the ``tiny`` backbone at 96 px, its weights drawn with torch seeded by ``seed``."""
    from activedet.models import build_detector

    torch.manual_seed(seed)
    return build_detector(detector, 2, backbone="tiny", min_size=96, max_size=96, **kwargs)


def train_options(**overrides):
    """Two quick epochs of AdamW for the toy data (``overrides`` replace any option): a ``TrainOptions``."""
    from activedet.engine.train import TrainOptions

    base = dict(
        epochs=2,
        batch_size=4,
        optimizer="adamw",
        lr=2e-3,
        warmup_iters=2,
        lr_steps=[100],
        hflip_prob=0.5,
        amp=False,
        seed=0,
        log_every=1,
    )
    return TrainOptions(**{**base, **overrides})


@pytest.fixture
def toy_dataset(tmp_path) -> DetectionDataset:
    return make_toy_dataset(tmp_path / "toy")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The generated ``tiny`` dataset (24-image pool), written once per test session."""
    from activedet.data.synth import generate_dataset

    return generate_dataset("tiny", tmp_path_factory.mktemp("synth") / "tiny", seed=0)


def untrained_checkpoint(cfg: dict, tmp_path: Path) -> tuple[Path, Path]:
    """``(config path, checkpoint path)``: ``cfg`` written as a YAML config and the weights of its model as built
    with torch seeded by 0 (no training), for commands that take a config and a checkpoint."""
    import yaml

    from activedet.config import load_config
    from activedet.workflows import build_model, load_split

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    config = load_config(path)
    torch.save(
        {"model": build_model(config, load_split(config, "train").num_classes).state_dict()}, tmp_path / "model.pt"
    )
    return path, tmp_path / "model.pt"
