"""activedet retrain (a run's labelled sets trained again under another draw, as run directories the report reads),
activedet draws (each seed's saving averaged over such draws) and benchmarks/keep_runs.py (a run's record, small
enough to commit, that the report, retrain and draws read as the run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from test_loop import NEEDS_DETECTOR, write_config

from activedet.cli import main
from activedet.config import load_config
from activedet.report.draws import draw_savings, over_draws
from activedet.report.runs import load_runs
from activedet.report.summary import summarize
from activedet.retrain import Retrainer, retrain_run
from activedet.workflows import run_from_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RESULTS = BENCHMARKS / "results"


def benchmark_script(name: str):
    """``benchmarks/<name>.py`` as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """Two arms of seed 0 (same initial set), one cycle each, in ARM/seed0 folders as a bench writes them."""
    root = tmp_path_factory.mktemp("retrain")
    dirs = []
    for strategy in ("random", "entropy"):
        run_dir = root / "runs" / strategy / "seed0"
        cfg = write_config(root / strategy, tiny_data, strategy=strategy, cycles=1, out_dir=str(run_dir))
        run_from_config(load_config(cfg), progress=False)
        dirs.append(run_dir)
    return cfg, dirs


def test_the_runs_own_draw_reproduces_its_metrics_and_the_report_reads_the_copy(runs, tmp_path):
    cfg, dirs = runs
    retrain = Retrainer(cfg, salt="train")
    written = [retrain_run(retrain, run_dir, tmp_path / "out") for run_dir in dirs]
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == ["random/seed0", "entropy/seed0"]
    for run_dir, copy in zip(dirs, written, strict=True):
        original, again = _lines(run_dir / "metrics.jsonl"), _lines(copy / "metrics.jsonl")
        assert [r["cycle"] for r in again] == [0, 1]
        for before, after in zip(original, again, strict=True):
            assert after["labelled_images"] == before["labelled_images"]
            assert after["labelled_boxes"] == before["labelled_boxes"]
            assert after["metrics"]["voc/mAP_area"] == pytest.approx(before["metrics"]["voc/mAP_area"], abs=1e-9)
            assert after["retrained"]["salt"] == "train"
    # the arms share their cycle-0 set and seed: trained once, and where is recorded with the training
    assert len(retrain._done) == 3
    first, second = _lines(written[0] / "metrics.jsonl"), _lines(written[1] / "metrics.jsonl")
    assert all(r["retrained"]["environment"]["device"] == "cpu" for r in [*first, second[1]])
    assert "environment" not in second[0]["retrained"]  # random's cycle-0 model, taken from the first record
    runs_read = {run.strategy: run for run in load_runs(tmp_path / "out")}
    assert sorted(runs_read) == ["entropy", "random"]
    assert runs_read["random"].environments == runs_read["entropy"].environments == load_runs(dirs[0])[0].environments
    assert len(runs_read["random"].environments) == 1
    np.testing.assert_array_equal(runs_read["random"].labelled_images, [6, 10])


@pytest.mark.parametrize("strategy", ["almdn", "mc_dropout", "ensemble"])
def test_each_runs_own_config_and_draw_reproduce_its_metrics_on_other_detectors(strategy, tiny_data, tmp_path):
    """What bench --draws relies on: a run retrained with its own config.json under its own salt is the run (the
    mixture-density SSD of AL-MDN, a detector with dropout, an ensemble arm, whose cycle metric is member 0's)."""
    run_dir = tmp_path / "runs" / strategy / "seed0"
    settings = NEEDS_DETECTOR[strategy]
    cfg = write_config(tmp_path, tiny_data, strategy=strategy, cycles=1, out_dir=str(run_dir), **settings)
    run_from_config(load_config(cfg), progress=False)
    again = retrain_run(Retrainer(run_dir / "config.json"), run_dir, tmp_path / "again")
    for before, after in zip(_lines(run_dir / "metrics.jsonl"), _lines(again / "metrics.jsonl"), strict=True):
        assert after["metrics"] == pytest.approx(before["metrics"], abs=1e-9, nan_ok=True)


def test_another_draw_differs_and_a_stopped_retrain_continues(runs, tmp_path, monkeypatch):
    cfg, dirs = runs
    retrain = Retrainer(cfg, salt="again")
    out = retrain_run(retrain, dirs[0], tmp_path / "out")
    again = _lines(out / "metrics.jsonl")
    original = _lines(dirs[0] / "metrics.jsonl")
    assert [r["metrics"]["voc/mAP_area"] for r in again] != [r["metrics"]["voc/mAP_area"] for r in original]
    # stopped after cycle 0: the next call trains cycle 1 only and keeps cycle 0's record as it was
    (out / "metrics.jsonl").write_text(json.dumps(again[0]) + "\n")
    trained = []
    fresh = Retrainer(cfg, salt="again")
    monkeypatch.setattr(
        fresh, "_train", lambda labelled, seed, cycle: trained.append(cycle) or ({"voc/mAP_area": 0.5}, 1)
    )
    retrain_run(fresh, dirs[0], tmp_path / "out")
    assert trained == [1]
    assert [r["metrics"]["voc/mAP_area"] for r in _lines(out / "metrics.jsonl")] == [
        again[0]["metrics"]["voc/mAP_area"],
        0.5,
    ]


def test_last_cycle_stops_each_run_there(runs, tmp_path, monkeypatch):
    cfg, dirs = runs
    retrain = Retrainer(cfg, salt="again")
    trained = []
    monkeypatch.setattr(
        retrain, "_train", lambda labelled, seed, cycle: trained.append(cycle) or ({"voc/mAP_area": 0.5}, 1)
    )
    out = retrain_run(retrain, dirs[0], tmp_path / "out", last_cycle=0)
    assert trained == [0]
    assert [r["cycle"] for r in _lines(out / "metrics.jsonl")] == [0]
    # without the bound, the run goes on from where it stopped
    retrain_run(retrain, dirs[0], tmp_path / "out")
    assert trained == [0, 1]


def test_a_set_kept_from_an_earlier_retrain_is_not_trained_again_for_another_run(runs, tmp_path, monkeypatch):
    cfg, dirs = runs
    first = Retrainer(cfg, salt="again")
    retrain_run(first, dirs[0], tmp_path / "out")
    kept = _lines(tmp_path / "out" / "random" / "seed0" / "metrics.jsonl")
    trained = []
    later = Retrainer(cfg, salt="again")
    monkeypatch.setattr(
        later, "_train", lambda labelled, seed, cycle: trained.append(cycle) or ({"voc/mAP_area": 0.5}, 1)
    )
    lines = []
    for run_dir in dirs:  # the kept random run first: the entropy run's cycle 0 is its set
        retrain_run(later, run_dir, tmp_path / "out", log=lines.append)
    assert trained == [1]
    assert lines[0].endswith("retrained before: the same set as an earlier run's"), lines
    assert lines[1].endswith("0.5000 retrained (1 s)"), lines
    entropy = _lines(tmp_path / "out" / "entropy" / "seed0" / "metrics.jsonl")
    assert entropy[0]["metrics"] == kept[0]["metrics"] and entropy[1]["metrics"] == {"voc/mAP_area": 0.5}
    # a set kept under another salt is not this draw's: trained again
    other = Retrainer(cfg, salt="third")
    monkeypatch.setattr(
        other, "_train", lambda labelled, seed, cycle: trained.append(cycle) or ({"voc/mAP_area": 0.5}, 1)
    )
    retrain_run(other, dirs[0], tmp_path / "out")
    retrain_run(other, dirs[1], tmp_path / "out3")
    assert trained == [1, 0, 1]


def test_a_set_another_runs_config_trained_alike_is_taken_from_its_record(runs, tmp_path, monkeypatch):
    """As ``bench --draws`` retrains: each run with its own config.json, one Retrainer each (or one process
    each). The arms' configs differ in the strategy only, so the entropy run's cycle 0, random's set, is read from
    random's record; under another recipe it is trained."""
    cfg, dirs = runs
    trained = []

    def retrainer(run_dir, *overrides):
        retrain = Retrainer(run_dir / "config.json", salt="draw2", overrides=list(overrides))
        monkeypatch.setattr(
            retrain, "_train", lambda labelled, seed, cycle: trained.append(cycle) or ({"voc/mAP_area": cycle}, 1)
        )
        return retrain

    for run_dir in dirs:
        retrain_run(retrainer(run_dir), run_dir, tmp_path / "out")
    assert trained == [0, 1, 1]
    entropy = _lines(tmp_path / "out" / "entropy" / "seed0" / "metrics.jsonl")
    random = _lines(tmp_path / "out" / "random" / "seed0" / "metrics.jsonl")
    assert entropy[0]["retrained"]["digest"] == random[0]["retrained"]["digest"]
    assert entropy[1]["retrained"]["digest"] != random[1]["retrained"]["digest"]
    # random's sets trained with another learning rate are another training: nothing shared
    retrain_run(retrainer(dirs[0], "lr=0.5"), dirs[0], tmp_path / "out2")
    retrain_run(retrainer(dirs[1]), dirs[1], tmp_path / "out2")
    assert trained == [0, 1, 1, 0, 1, 0, 1]


def test_the_command_writes_runs_with_its_recipe_and_needs_one_of_cycle_or_out(runs, tmp_path, capsys):
    cfg, dirs = runs
    assert main(["retrain", str(cfg), str(dirs[0]), "--out", str(tmp_path / "again"), "--set", "epochs=2"]) == 0
    records = _lines(tmp_path / "again" / "random" / "seed0" / "metrics.jsonl")
    assert [r["retrained"]["salt"] for r in records] == ["again", "again"]  # the command's default: another draw
    assert records[0]["retrained"]["set"] == ["epochs=2"] and records[0]["retrained"]["config"] == str(cfg)
    assert "retrained (" in capsys.readouterr().out


def test_the_command_needs_one_of_cycle_or_out_and_prints_a_cycle(runs, capsys):
    cfg, dirs = runs
    assert main(["retrain", str(cfg), str(dirs[0])]) == 2
    assert "pass --out DIR (every cycle, as run directories) or --cycle T (print one cycle)" in capsys.readouterr().err
    assert main(["retrain", str(cfg), str(dirs[0]), "--cycle", "1", "--salt", "train"]) == 0
    (record,) = [r for r in _lines(dirs[0] / "metrics.jsonl") if r["cycle"] == 1]
    shown = f"{dirs[0]} cycle 1: {record['labelled_images']} images, {record['labelled_boxes']} boxes, trained in "
    assert shown in capsys.readouterr().out


def test_a_recipe_retrain_cannot_replay_is_refused_naming_its_keys(runs):
    cfg, _ = runs
    with pytest.raises(ValueError, match=r"sets warm_start and pseudo_labels, which the loop applies between cycles"):
        Retrainer(cfg, overrides=["warm_start=true", "pseudo_labels={}"])
    with pytest.raises(ValueError, match=r"sets pseudo_labels, which .* --set pseudo_labels=null"):
        Retrainer(cfg, overrides=["pseudo_labels={}"])


def test_a_run_without_a_cycle_is_refused_with_its_file(runs, tmp_path):
    cfg, dirs = runs
    empty = tmp_path / "runs" / "random" / "seed0"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text((dirs[0] / "config.json").read_text())
    with pytest.raises(ValueError, match=r"metrics.jsonl: no cycle recorded; pass a run directory that finished"):
        retrain_run(Retrainer(cfg), empty, tmp_path / "out")


def test_a_kept_record_reports_as_the_run_and_holds_no_machine_path(runs, tmp_path):
    _, dirs = runs
    keep = benchmark_script("keep_runs")
    root = dirs[0].parents[2]
    kept = keep.keep_run(dirs[1], tmp_path / "kept" / "entropy" / "seed0", [root], selections=True)
    config = json.loads((kept / "config.json").read_text())
    assert config["out_dir"] == "runs/entropy/seed0"
    assert not any(isinstance(v, str) and v.startswith(str(root)) for v in config.values())
    assert (kept / "metrics.jsonl").read_bytes() == (dirs[1] / "metrics.jsonl").read_bytes()
    assert (kept / "timing.jsonl").read_bytes() == (dirs[1] / "timing.jsonl").read_bytes()  # where it was trained
    for t in (0, 1):
        np.testing.assert_array_equal(np.load(kept / f"X_L_{t}.npy"), np.load(dirs[1] / f"X_L_{t}.npy"))
    selection = json.loads((kept / "cycles" / "0" / "selection.json").read_text())
    assert selection == json.loads((dirs[1] / "cycles" / "0" / "selection.json").read_text())
    assert not (kept / "ledger.npz").exists() and not (kept / "cycles" / "0" / "model.pt").exists()
    (original,) = load_runs(dirs[1])
    (record,) = load_runs(kept)
    assert record.strategy == original.strategy and record.seed == original.seed
    np.testing.assert_array_equal(record.metrics["voc/mAP_area"], original.metrics["voc/mAP_area"])
    without = keep.keep_run(dirs[1], tmp_path / "bare", [root])
    assert not (without / "cycles").exists()


def test_draws_average_each_seed_over_the_draws_then_take_the_interval_over_seeds():
    saved = np.array([[[0.0, 30.0], [0.0, 40.0], [0.0, 50.0]], [[0.0, 40.0], [0.0, 40.0], [0.0, 30.0]]])
    arm = {"images": saved, "images_bound": np.zeros_like(saved, bool)}
    interval = over_draws(arm, "images", 1)
    assert interval.mean == pytest.approx(38.333333) and interval.n == 3  # seeds 35, 40, 40: three values, not six
    arm["images_bound"][1, 2, 1] = True  # one draw's bound makes the seed's mean a bound
    assert over_draws(arm, "images", 1).bound


def test_draws_of_one_record_are_its_report_and_an_unmatched_draw_is_named(runs):
    record = RESULTS / "bench3-people"
    arms = draw_savings([record, record], cycles=3)
    (label,) = arms
    report = summarize(load_runs(record), cycles=3).strategies[label]
    for axis in ("images", "boxes"):
        assert over_draws(arms[label], axis, 3) == report.paired_saved(axis)[3]
    with pytest.raises(
        ValueError, match=r"runs: expected the arm .* with seeds \[0, 1, 2, 3, 4\], as in the first draw"
    ):
        draw_savings([record, runs[1][0].parents[1]], cycles=1)
    with pytest.raises(ValueError, match=r"draws: expected two or more draws of the same runs, got 1"):
        draw_savings([record], cycles=1)


def test_a_draw_of_several_folders_pairs_each_arm_with_the_random_runs_among_them(capsys):
    results = RESULTS
    draw = [results / "bench3-people" / "random", results / "bench3-box"]
    arms = draw_savings([draw, draw], cycles=3)
    (label,) = arms
    report = summarize(load_runs(draw), cycles=3).strategies[label]
    assert over_draws(arms[label], "boxes", 3) == report.paired_saved("boxes")[3]
    assert main(["draws", "--draw", *map(str, draw), "--draw", *map(str, draw), "--cycles", "1"]) == 0
    out = capsys.readouterr().out
    assert f"draw 2: {draw[0]} + {draw[1]}" in out
    assert f"{label} (seeds 0, 1, 2, 3, 4)" in out and "cycle 1 boxes saved: draw 1 " in out
