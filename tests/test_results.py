"""The published figures that a committed record holds (benchmarks/results/) are what `activedet report` computes
from it: the README and docs cannot drift from the runs behind them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from activedet.report.runs import load_runs
from activedet.report.summary import summarize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = (ROOT / "README.md").read_text()
BENCHMARKS_MD = (ROOT / "docs" / "benchmarks.md").read_text()
PEOPLE = RESULTS / "bench3-people"
#: the arm that spends 320 boxes per cycle on calibrated predicted counts (the people case, simulated)
PEOPLE_ARM = "compose[criteria=[entropy,class_balance]] +budget[320 boxes, predicted]"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _documented_random_curves() -> dict[int, list[float]]:
    """docs/benchmarks.md's per-seed `random` curve of the three-cycle bench (200, 300, ..., 900 images)."""
    start = BENCHMARKS_MD.index("`random`, VOC mAP@0.5 (area) per cycle (200, 300, ..., 900 images), per seed:")
    paragraph = _flat(BENCHMARKS_MD[start : BENCHMARKS_MD.index("\n\n", start)])
    found = re.findall(r"((?:0\.\d{3}, )+0\.\d{3}) \(seed (\d)\)", paragraph)
    return {int(seed): [float(v) for v in values.split(", ")] for values, seed in found}


@pytest.fixture(scope="module")
def people():
    return summarize(load_runs(PEOPLE), cycles=3)


def test_the_record_reproduces_the_published_random_curves():
    documented = _documented_random_curves()
    assert sorted(documented) == [0, 1, 2, 3, 4]
    random = {run.seed: run for run in load_runs(PEOPLE / "random")}
    assert sorted(random) == [0, 1, 2, 3, 4]
    for seed, run in random.items():
        np.testing.assert_array_equal(run.labelled_images, [200, 300, 400, 500, 600, 700, 800])
        assert np.round(run.metrics["voc/mAP_area"], 3).tolist() == documented[seed][:7], seed


def test_the_people_arms_savings_are_the_readmes(people):
    arm = people.strategies[PEOPLE_ARM]
    assert arm.seeds == [0, 1, 2, 3, 4]
    readme = _flat(README)
    for axis in ("images", "boxes"):
        cell = arm.paired_saved(axis)[3]
        assert not cell.bound
        shown = f"{cell.mean:.1f}% [{cell.low:.1f}, {cell.high:.1f}] of {axis}"
        assert shown in readme, shown
