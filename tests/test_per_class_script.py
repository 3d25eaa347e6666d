"""benchmarks/per_class.py --boxes: the boxes each folder of runs bought per class, on hand-made runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_retrain import benchmark_script

from activedet.data.records import DetectionDataset, ImageRecord


def _record(i: int, labels: list[int]) -> ImageRecord:
    boxes = np.array([[0.0, 0.0, 4.0, 4.0]] * len(labels), np.float32).reshape(-1, 4)
    return ImageRecord(f"img{i}", f"img{i}.png", 8, 8, boxes, np.array(labels, np.int64).reshape(-1))


def _run(folder: Path, seed: int, labelled: list[list[int]], boxes: list[int]) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"strategy": "random", "strategy_options": {}, "seed": seed}))
    lines = [
        {"cycle": t, "seed": seed, "strategy": "random", "labelled_images": len(x), "labelled_boxes": b, "metrics": {}}
        for t, (x, b) in enumerate(zip(labelled, boxes))
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for t, indices in enumerate(labelled):
        np.save(folder / f"X_L_{t}.npy", np.array(indices, np.int64))


def test_the_boxes_bought_per_class_are_the_mean_over_a_folders_runs(tmp_path):
    # class 2 ("b") has the most pool boxes, then "a"; image 3 has no boxes
    pool = DetectionDataset(
        [_record(0, [1]), _record(1, [2, 2]), _record(2, [1, 2, 3]), _record(3, [])], ["a", "b", "c"]
    )
    _run(tmp_path / "arm/seed0", 0, [[0], [0, 1]], [1, 3])
    _run(tmp_path / "arm/seed1", 1, [[3], [3, 2]], [0, 3])
    table = benchmark_script("per_class").boxes_bought(pool, [tmp_path / "arm"], cycle=1).splitlines()
    assert table[0] == "| runs (seeds) | b | a | c | boxes |"
    # seed 0 bought b 2, a 1; seed 1 bought a 1, b 1, c 1: means 1.5 (rounds to 2), 1, 0.5 (rounds to 0)
    assert table[2] == "| arm (0, 1) | 2 | 1 | 0 | 3 |"
    with pytest.raises(ValueError, match=r"has no X_L_2.npy: the run did not reach cycle 2"):
        benchmark_script("per_class").boxes_bought(pool, [tmp_path / "arm"], cycle=2)
