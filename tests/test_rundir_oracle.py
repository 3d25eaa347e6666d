"""The run directory's layout (every path a RunDir names) and the oracle protocol: a custom oracle, written here,
labels a run through the same import records as people's files, with no change to the loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_toy_dataset

from activedet.al.annotation import load_import_records
from activedet.al.ledger import Ledger
from activedet.al.loop import ActiveLearningRun
from activedet.al.oracle import HumanOracle, Labels, Oracle, Pending, SimulatedOracle
from activedet.al.plan import LoopOptions
from activedet.al.rundir import CycleDir, RunDir
from activedet.data.records import DetectionDataset, ImageRecord
from activedet.engine.distributed import resolve_device
from activedet.engine.train import TrainOptions, TrainResult
from activedet.models import build_detector
from activedet.strategies import get_strategy


def test_every_run_dir_path_maps_to_the_documented_layout(tmp_path):
    run = RunDir(tmp_path)
    rel = lambda p: Path(p).relative_to(tmp_path).as_posix()
    assert {
        name: rel(getattr(run, name))
        for name in ("config", "ledger", "metrics_log", "timing_log", "imports", "tensorboard", "cycles_dir")
    } == {
        "config": "config.json",
        "ledger": "ledger.npz",
        "metrics_log": "metrics.jsonl",
        "timing_log": "timing.jsonl",
        "imports": "imports",
        "tensorboard": "tensorboard",
        "cycles_dir": "cycles",
    }
    assert rel(run.import_file(7)) == "imports/0007.json" and rel(run.import_file(1234)) == "imports/1234.json"
    assert rel(run.tensorboard_train(3)) == "tensorboard/train/cycle3"
    assert [rel(run.labelled_indices(2)), rel(run.unlabelled_indices(2)), rel(run.labelled_ids(2))] == [
        "X_L_2.npy",
        "X_U_2.npy",
        "labelled_2.txt",
    ]
    cycle = run.cycle(4)
    assert isinstance(cycle, CycleDir) and rel(cycle.path) == "cycles/4" and cycle.t == 4
    assert {
        name: rel(getattr(cycle, name))
        for name in (
            "model",
            "train_dir",
            "epochs_dir",
            "metrics",
            "pseudo_labels",
            "scores",
            "selection",
            "predictions",
            "query",
            "query_batch",
            "oracle_labels",
            "timing",
            "environment",
        )
    } == {
        "model": "cycles/4/model.pt",
        "train_dir": "cycles/4/train",
        "epochs_dir": "cycles/4/epochs",
        "metrics": "cycles/4/metrics.json",
        "pseudo_labels": "cycles/4/pseudo_labels.json",
        "scores": "cycles/4/scores.npz",
        "selection": "cycles/4/selection.json",
        "predictions": "cycles/4/predictions.json",
        "query": "cycles/4/query",
        "query_batch": "cycles/4/query/batch.json",
        "oracle_labels": "cycles/4/oracle_labels.json",
        "timing": "cycles/4/timing.json",
        "environment": "cycles/4/environment.json",
    }
    assert [rel(cycle.scores_stage(k)) for k in range(3)] == [
        "cycles/4/scores.npz",
        "cycles/4/scores.stage1.npz",
        "cycles/4/scores.stage2.npz",
    ]
    assert [rel(cycle.stats(k, "influence")) for k in range(2)] == [  # a predictor's statistics, per stage
        "cycles/4/influence.json",
        "cycles/4/influence.stage1.json",
    ]
    # path-like, and a RunDir of a RunDir is the same run
    assert os.fspath(run) == str(tmp_path) and os.fspath(cycle) == str(tmp_path / "cycles/4")
    assert RunDir(run) == RunDir(str(tmp_path)) and RunDir(run).root == tmp_path
    assert not any(tmp_path.iterdir())  # naming paths touches no file


def test_run_dir_lists_what_exists_in_numeric_order(tmp_path):
    run = RunDir(tmp_path)
    assert run.cycles() == [] and run.import_files() == [] and run.cycle(0).scored_stages() == []
    for t in ("10", "0", "2"):
        (tmp_path / "cycles" / t).mkdir(parents=True)
    (tmp_path / "cycles/tmp").mkdir()
    (tmp_path / "cycles/3").write_text("a file, not a cycle")
    assert run.cycles() == [0, 2, 10]
    for k in (10, 1, 2):
        run.cycle(0).scores_stage(k).write_bytes(b"")
    run.cycle(0).scores.write_bytes(b"")
    assert run.cycle(0).scored_stages() == [1, 2, 10]
    run.imports.mkdir()
    for name in ("0002.json", "0001.json", "notes.json", ".0003.json.tmp"):
        (run.imports / name).write_text("{}")
    assert [p.name for p in run.import_files()] == ["0001.json", "0002.json"]


# ------------------------------------------------------------------------------------------------ oracles
class OneAtATime(Oracle):
    """An annotator written for the test: it knows the labels (``truth``) but hands in one image per request, so
    each batch of two takes two requests, the run waiting (persisted) in between."""

    def __init__(self, pool: DetectionDataset, truth: dict[str, ImageRecord]):
        super().__init__(pool)
        self.truth, self.requests = truth, []

    def request(self, batch):
        self.requests.append((batch.cycle, batch.image_ids))
        done = {i for r in load_import_records(batch.run) for i in r["images"]}
        first = next(i for i in batch.image_ids if i not in done)
        return Labels([self.truth[first]], annotator="one at a time")


def _without_labels(record: ImageRecord) -> ImageRecord:
    return ImageRecord(
        record.image_id,
        record.file_name,
        record.width,
        record.height,
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
    )


def untrained(model, labelled, **kwargs) -> TrainResult:
    """A training procedure that leaves the initial weights: the oracle's part of the cycle needs no learning."""
    return TrainResult(epochs_completed=0, best_epoch=None, best_metric=None, stopped_early=False)


@pytest.fixture
def toy_run(tmp_path):
    """A pool of 7 toy images whose last 4 hold no labels (the oracle knows them), a 2-image test split, and the
    keyword arguments of a one-cycle run (3 labelled, a batch of 2, random picks, no training)."""
    truth = make_toy_dataset(tmp_path / "pool", n_images=7)
    pool = DetectionDataset(
        [r if i < 3 else _without_labels(r) for i, r in enumerate(truth.records)], truth.class_names, root=truth.root
    )
    test = make_toy_dataset(tmp_path / "test", n_images=2, seed=1)
    kwargs = dict(
        run_dir=tmp_path / "run",
        pool=pool,
        test=test,
        build_model=lambda: build_detector("ssd", 2, backbone="tiny", min_size=96),
        strategy=get_strategy("random"),
        initial=np.arange(3),
        options=LoopOptions(initial_labelled=3, budget=2, cycles=1, seed=0),
        train_options=TrainOptions(epochs=1),
        trainer=untrained,
    )
    return kwargs, {r.image_id: r for r in truth.records}


def test_a_custom_oracle_labels_a_run_through_import_records_with_no_change_to_the_loop(toy_run):
    kwargs, truth = toy_run
    pool, run = kwargs["pool"], RunDir(kwargs["run_dir"])
    oracle = OneAtATime(pool, truth)
    ledger = ActiveLearningRun(**kwargs, oracle=oracle).run()
    # half the batch answered: committed as an import record, the run waits for the rest
    ((t, batch),) = oracle.requests
    assert t == 0 and ledger.cycle == 0 and len(ledger.labelled()) == 3 and len(batch) == 2
    (record,) = load_import_records(run)
    assert record["cycle"] == 0 and list(record["images"]) == batch[:1]
    assert record["images"][batch[0]]["annotator"] == "one at a time"
    assert record["source"] == str(run.cycle(0).oracle_labels)
    assert json.loads(run.cycle(0).oracle_labels.read_text())["format"] == "activedet-labels"
    assert not run.cycle(0).query.exists()  # exporting is an oracle's business: this one does not

    # a resumed run (a new process: a fresh oracle and pool) asks again for what is pending, then goes on
    fresh = DetectionDataset(
        [_without_labels(r) if i >= 3 else r for i, r in enumerate(pool.records)], pool.class_names, root=pool.root
    )
    again = OneAtATime(fresh, truth)
    ledger = ActiveLearningRun(**{**kwargs, "pool": fresh}, oracle=again).run()
    assert again.requests == [(0, batch)]
    assert ledger.cycle == 1 and len(ledger.labelled()) == 5 and Ledger.load(run.ledger).cycle == 1
    assert [list(r["images"]) for r in load_import_records(run)] == [batch[:1], batch[1:]]
    for image_id in batch:  # the imported labels went into the pool the next cycle trains on
        record = fresh.records[[r.image_id for r in fresh.records].index(image_id)]
        assert (
            np.allclose(record.boxes, truth[image_id].boxes)
            and record.labels.tolist() == truth[image_id].labels.tolist()
        )
    lines = [json.loads(x) for x in run.metrics_log.read_text().splitlines()]
    assert [x["labelled_images"] for x in lines] == [3, 5]
    assert lines[1]["labelled_boxes"] == sum(truth[i].num_boxes for i in [*batch, "img_000", "img_001", "img_002"])
    # the picks' cost was unknown before labelling: this oracle does not preview it
    assert all(p["boxes"] is None for p in json.loads(run.cycle(0).selection.read_text())["picks"])
    # every file the run wrote is one the RunDir names
    named = (
        {run.config, run.ledger, run.metrics_log, run.timing_log, *run.import_files()}
        | {p for t in (0, 1) for p in (run.labelled_indices(t), run.unlabelled_indices(t), run.labelled_ids(t))}
        | {
            getattr(run.cycle(t), name)
            for t in (0, 1)
            for name in ("model", "metrics", "timing", "environment", "scores", "selection", "oracle_labels")
        }
    )
    written = {p for p in run.root.rglob("*") if p.is_file()}
    assert written <= named and run.ledger in written


def test_the_device_auto_is_resolved_when_the_run_is_made(toy_run):
    kwargs, _ = toy_run
    run = ActiveLearningRun(**kwargs, device="auto")  # the default, as train_detector's
    assert run.device == resolve_device("auto") and isinstance(run.device, torch.device)
    run.run()  # "auto" reaches no torch call unresolved (the environment record, evaluation, scoring)
    assert json.loads(RunDir(kwargs["run_dir"]).cycle(0).environment.read_text())["device"] == run.device.type


def test_the_oracle_must_label_the_runs_own_pool_and_box_budgets_need_a_previewed_cost(toy_run):
    kwargs, truth = toy_run
    other = DetectionDataset(list(kwargs["pool"].records), kwargs["pool"].class_names)
    with pytest.raises(ValueError, match=r"The 'oracle' parameter of ActiveLearningRun must label the run's pool"):
        ActiveLearningRun(**kwargs, oracle=SimulatedOracle(other))
    boxes = {**kwargs, "options": LoopOptions(initial_labelled=3, budget=4, budget_unit="boxes", cycles=1)}
    with pytest.raises(
        ValueError,
        match=r"budget_unit 'boxes' spends each picked image's boxes before it is "
        r"labelled, which HumanOracle cannot tell; use budget_unit 'images'",
    ):
        ActiveLearningRun(**boxes, oracle=HumanOracle(kwargs["pool"])).run()
    assert not Path(kwargs["run_dir"]).exists()
    simulated = SimulatedOracle(kwargs["pool"])
    assert simulated.preview_boxes(0) == kwargs["pool"].records[0].num_boxes
    assert OneAtATime(kwargs["pool"], truth).preview_boxes(0) is None
    with pytest.raises(NotImplementedError, match=r"Oracle must implement request\(batch\) -> Labels \| Pending"):
        Oracle(kwargs["pool"]).request(None)
    assert Pending(["a"]).folder is None


def test_previewed_classes_need_an_oracle_that_previews_labels(toy_run):
    kwargs, truth = toy_run
    pool = kwargs["pool"]
    previewing = {**kwargs, "strategy": get_strategy("class_balance", classes="previewed")}
    for oracle in (HumanOracle(pool), SimulatedOracle(pool, preview=False)):
        with pytest.raises(
            ValueError,
            match=rf"reads the candidates' labels before they are bought, which "
            rf"{type(oracle).__name__} cannot preview: it is a simulation-only diagnostic",
        ):
            ActiveLearningRun(**previewing, oracle=oracle).run()
        with pytest.raises(ValueError, match="cannot preview labels: an image's classes are known once it is labelled"):
            oracle.preview_class_counts([0])
    assert not Path(kwargs["run_dir"]).exists()
    counts = SimulatedOracle(pool).preview_class_counts([0, 1])
    for row, record in zip(counts, pool.records[:2]):
        assert row.tolist() == np.bincount(record.labels, minlength=len(pool.class_names) + 1)[1:].tolist()


def test_an_oracle_answer_that_is_neither_labels_nor_pending_stops_the_run_naming_the_oracle(toy_run):
    class Forgetful(Oracle):
        def request(self, batch):
            return None

    kwargs, _ = toy_run
    with pytest.raises(
        TypeError,
        match=r"Forgetful.request must return Labels or Pending \(activedet.al.oracle\). "
        r"Got NoneType instead.",
    ):
        ActiveLearningRun(**kwargs, oracle=Forgetful(kwargs["pool"])).run()
    assert not load_import_records(kwargs["run_dir"]) and Ledger.load(RunDir(kwargs["run_dir"]).ledger).cycle == 0
