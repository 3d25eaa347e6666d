"""Faults and bad input: identical runs give identical files, SIGKILL at random moments of a real CLI run resumes to
the same run, and a corpus of malformed inputs each stops with a message naming the file, before anything is
written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activedet.config import load_config
from activedet.workflows import run_from_config

from test_loop import write_config

#: the files a run's result is made of: two runs of one config must write them byte for byte the same
RESULT_FILES = ("ledger.npz", "metrics.jsonl", "cycles/0/model.pt", "cycles/0/metrics.json", "cycles/0/scores.npz",
                "cycles/0/selection.json", "cycles/1/model.pt", "cycles/1/metrics.json")


def test_two_runs_of_one_config_write_identical_result_files(tiny_data, tmp_path):
    for name in ("a", "b"):
        run_from_config(load_config(write_config(tmp_path / name, tiny_data, strategy="entropy", cycles=1)),
                        progress=False)
    a, b = tmp_path / "a/run", tmp_path / "b/run"
    for file in RESULT_FILES:
        assert (a / file).read_bytes() == (b / file).read_bytes(), f"{file} differs"
    picks = json.loads((a / "cycles/0/selection.json").read_text())["picks"]
    assert "seconds" not in json.loads((a / "cycles/0/selection.json").read_text())
    assert all(len(p["checkpoint"]) == 12 for p in picks)
    timing = [json.loads(line) for line in (a / "timing.jsonl").read_text().splitlines()]
    assert [t["cycle"] for t in timing] == [0, 1]
    assert set(timing[0]["seconds"]) == {"train", "evaluate", "scores", "select"}
    assert set(timing[1]["seconds"]) == {"train", "evaluate"} and timing[0]["seconds"]["train"] > 0
