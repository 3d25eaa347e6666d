"""The active-learning loop end to end: every strategy, artefacts, bad input, determinism, kill-and-resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from activedet.al.ledger import Ledger, LedgerError
from activedet.config import ConfigError, load_config
from activedet.strategies import STRATEGIES, get_strategy
from activedet.workflows import resume_run, run_from_config

BASE = {
    "data_format": "coco",
    "detector": "ssd",
    "backbone": "tiny",
    "min_size": 96,
    "epochs": 2,
    "batch_size": 4,
    "optimizer": "adamw",
    "lr": 0.003,
    "warmup_iters": 2,
    "lr_schedule": "constant",
    "hflip_prob": 0.0,
    "amp": False,
    "metrics": ["voc"],
    "eval_batch_size": 8,
    "device": "cpu",
    "initial_labelled": 6,
    "budget": 4,
    "cycles": 2,
    "log_every": 5,
}


def write_config(tmp_path: Path, data: Path, **overrides) -> Path:
    cfg = {
        **BASE,
        "train_data": str(data / "annotations/train.json"),
        "test_data": str(data / "annotations/test.json"),
        "image_root": str(data),
        "out_dir": str(tmp_path / "run"),
        **overrides,
    }
    path = tmp_path / "config.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def outcome(run_dir: Path) -> tuple[np.ndarray, list]:
    ledger = Ledger.load(run_dir / "ledger.npz")
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return ledger.labelled_at, [(x["cycle"], x["labelled_images"], x["labelled_boxes"], x["metrics"]) for x in lines]


#: strategies that need a particular detector, and the cheapest settings of its own training
NEEDS_DETECTOR = {
    "miaod": {"detector": "miaod", "training_options": {"label_epochs": 1, "outer_loops": 1, "repeat_labelled": 1}},
    "almdn": {"detector": "almdn_ssd", "strategy_options": {"score_threshold": 0.05}},
    "mc_dropout": {"detector_options": {"dropout": 0.25}, "strategy_options": {"passes": 3}},
    "ensemble": {"ensemble_size": 2},
    "localization_tightness": {"detector": "faster_rcnn"},  # proposals: two-stage only
    "localization_stability": {"strategy_options": {"noise_levels": 2}},
    "cald": {"strategy_options": {"views": "FD"}},
    "ppal": {"detector": "faster_rcnn", "detector_options": {"difficulty_ema": True}},
    # the medical framework's list: localization tightness narrows, k-means diversity picks
    # ISAL: pseudo labels need detections >= 0.1, which the tiny Faster R-CNN gives after 2 epochs
    "influence": {"detector": "faster_rcnn", "strategy_options": {"recursion_images": 4}},
    "compose": {
        "detector": "faster_rcnn",
        "strategy_options": {"criteria": ["localization_tightness", "kmeans"], "kmeans": {"n_clusters": 3}},
    },
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_two_cycles_with_every_strategy(strategy, tiny_data, tmp_path):
    val = {"val_data": str(tiny_data / "annotations/val.json")} if get_strategy(strategy).needs_val else {}
    config = write_config(tmp_path, tiny_data, strategy=strategy, **NEEDS_DETECTOR.get(strategy, {}), **val)
    ledger = run_from_config(load_config(config), progress=False)
    run = tmp_path / "run"
    assert ledger.cycle == 2 and len(ledger.labelled()) == 6 + 2 * 4
    for t in range(3):
        labelled, unlabelled = np.load(run / f"X_L_{t}.npy"), np.load(run / f"X_U_{t}.npy")
        assert len(labelled) == 6 + 4 * t and len(labelled) + len(unlabelled) == 24
        assert not set(labelled) & set(unlabelled)
        assert len((run / f"labelled_{t}.txt").read_text().split()) == len(labelled)
    for t in range(2):
        picks = json.loads((run / "cycles" / str(t) / "selection.json").read_text())["picks"]
        # compose is named after its criteria
        name = get_strategy(strategy, **NEEDS_DETECTOR.get(strategy, {}).get("strategy_options", {})).name
        assert len(picks) == 4 and all(p["strategy"] == name and len(p["checkpoint"]) == 12 for p in picks)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "voc/mAP_area" in json.loads(lines[-1])["metrics"]


@pytest.mark.parametrize("strategy", ["mc_dropout", "ensemble"])
def test_box_matched_stochastic_scores_with_faster_rcnn(strategy, tiny_data, tmp_path):
    extra = (
        {
            "detector_options": {"dropout": 0.25},
            "strategy_options": {"passes": 3, "formulation": "matched", "detection_threshold": 0.05},
        }
        if strategy == "mc_dropout"
        else {"ensemble_size": 2, "strategy_options": {"formulation": "matched", "detection_threshold": 0.05}}
    )
    config = write_config(tmp_path, tiny_data, detector="faster_rcnn", strategy=strategy, cycles=1, **extra)
    ledger = run_from_config(load_config(config), progress=False)
    assert len(ledger.labelled()) == 10
    picks = json.loads((tmp_path / "run/cycles/0/selection.json").read_text())["picks"]
    assert any(p["score"] is not None for p in picks)  # clusters were formed and scored
    dense = write_config(
        tmp_path / "dense", tiny_data, detector="faster_rcnn", strategy=strategy, **{**extra, "strategy_options": {}}
    )
    with pytest.raises(ValueError, match="formulation: matched"):
        run_from_config(load_config(dense), progress=False)


def test_box_budget_and_warm_start(tiny_data, tmp_path):
    run_from_config(
        load_config(
            write_config(
                tmp_path, tiny_data, strategy="entropy", budget=10, budget_unit="boxes", warm_start=True, cycles=1
            )
        ),
        progress=False,
    )
    picks = json.loads((tmp_path / "run/cycles/0/selection.json").read_text())["picks"]
    boxes = [p["boxes"] for p in picks]
    assert sum(boxes) >= 10 and sum(boxes[:-1]) < 10  # the image that crosses the budget is the last one


def test_same_seed_same_initial_set_for_every_strategy(tiny_data, tmp_path):
    sets = []
    for strategy in ("random", "entropy"):
        cfg = load_config(write_config(tmp_path / strategy, tiny_data, strategy=strategy, cycles=0))
        sets.append(run_from_config(cfg, progress=False).labelled().tolist())
    assert sets[0] == sets[1]


@pytest.mark.parametrize(
    "overrides, error, pattern",
    [
        (
            {"budget": 30},
            ValueError,
            r"budget \(30 -> 30 images per cycle\) is larger than the unlabelled pool "
            r"\(18 images",
        ),
        ({"initial_labelled": 1.5}, ConfigError, r"key 'initial_labelled' must be a fraction in \(0, 1\]"),
        ({"strategy": "entropi"}, ConfigError, r"Unknown strategy 'entropi'; did you mean 'entropy'"),
    ],
)
def test_bad_plans_fail_before_any_work(overrides, error, pattern, tiny_data, tmp_path):
    with pytest.raises(error, match=pattern):
        run_from_config(load_config(write_config(tmp_path, tiny_data, **overrides)), progress=False)
    assert not (tmp_path / "run" / "ledger.npz").exists()


def test_empty_test_split_is_rejected(tiny_data, tmp_path):
    empty = tmp_path / "empty.json"
    data = json.loads((tiny_data / "annotations/test.json").read_text())
    empty.write_text(json.dumps({**data, "images": [], "annotations": []}))
    with pytest.raises(ValueError, match="needs a non-empty test split"):
        run_from_config(load_config(write_config(tmp_path, tiny_data, test_data=str(empty))), progress=False)


def test_run_dir_from_another_config_and_corrupt_ledger(tiny_data, tmp_path):
    run_from_config(load_config(write_config(tmp_path, tiny_data, cycles=0)), progress=False)
    before = (tmp_path / "run" / "ledger.npz").read_bytes()
    with pytest.raises(ValueError, match=r"was started with a different config: 'lr' is 0.003 there but 0.01 here"):
        run_from_config(load_config(write_config(tmp_path, tiny_data, cycles=0, lr=0.01)), progress=False)
    (tmp_path / "run" / "ledger.npz").write_bytes(before[: len(before) // 2])
    with pytest.raises(LedgerError, match=r"ledger.npz is corrupt .* start the run again in a new directory"):
        resume_run(tmp_path / "run", progress=False)


def test_run_dir_from_an_older_version_without_newer_keys_continues(tiny_data, tmp_path):
    """Keys added to activedet after a run started (absent from its config.json) count as their defaults."""
    config = write_config(tmp_path, tiny_data, cycles=0)
    run_from_config(load_config(config), progress=False)
    saved = json.loads((tmp_path / "run/config.json").read_text())
    for key in ("training", "training_options", "detector_options"):
        del saved[key]
    (tmp_path / "run/config.json").write_text(json.dumps(saved))
    run_from_config(load_config(config), progress=False)  # no "started with a different config" error
    saved["lr"] = 0.5
    (tmp_path / "run/config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"'lr' is 0.5 there but 0.003 here"):
        run_from_config(load_config(config), progress=False)


def test_strategy_needs_the_detector_cannot_meet(tiny_data, tmp_path, monkeypatch):
    from activedet import strategies

    original = strategies.get_strategy

    def needs_proposals(name, **options):
        from dataclasses import replace

        return replace(original(name, **options), needs=frozenset({"proposals"}))

    monkeypatch.setattr(strategies, "get_strategy", needs_proposals)
    with pytest.raises(ValueError, match=r"needs \['proposals'\] from the detector, but 'ssd' provides only"):
        run_from_config(load_config(write_config(tmp_path, tiny_data, strategy="entropy")), progress=False)


def run_cli(args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "activedet", *args], capture_output=True, text=True, env=env, timeout=600
    )


def kill_then_resume(config: Path, run_dir: Path, points: list[str]) -> None:
    """``activedet run`` SIGKILLed at ``points[0]``, each ``activedet resume`` SIGKILLed at the next point, then a
    final resume that must finish."""
    proc = run_cli(["run", str(config), "--quiet"], {"ACTIVEDET_KILL_AT": points[0]})
    assert proc.returncode == -9, proc.stderr
    for point in points[1:]:
        proc = run_cli(["resume", str(run_dir), "--quiet"], {"ACTIVEDET_KILL_AT": point})
        assert proc.returncode == -9, (point, proc.stderr)
    proc = run_cli(["resume", str(run_dir), "--quiet"])
    assert proc.returncode == 0, proc.stderr


def test_sigkill_at_several_stages_then_resume_gives_the_same_run(tiny_data, tmp_path):
    straight = write_config(tmp_path / "straight", tiny_data, strategy="entropy")
    proc = run_cli(["run", str(straight), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    killed = write_config(tmp_path / "killed", tiny_data, strategy="entropy")
    run_dir = tmp_path / "killed" / "run"
    kill_then_resume(
        killed,
        run_dir,
        ["train_epoch:1", "train:0", "score:0", "select:0", "label:0", "start:1", "evaluate:1", "train_epoch:2"],
    )
    a, b = outcome(tmp_path / "straight" / "run"), outcome(run_dir)
    assert np.array_equal(a[0], b[0])
    assert a[1] == b[1]


def test_sigkill_inside_an_ensemble_and_mc_dropout_scoring_then_resume_gives_the_same_run(tiny_data, tmp_path):
    """Members train one after the other (a kill resumes at the member it hit) and the stochastic passes of the
    scoring stage are seeded by (seed, cycle), so a resumed run scores and selects exactly as a straight one."""
    extra = {
        "strategy": "mc_dropout",
        "ensemble_size": 2,
        "detector_options": {"dropout": 0.25},
        "strategy_options": {"passes": 3},
        "cycles": 1,
    }
    straight = write_config(tmp_path / "straight", tiny_data, **extra)
    assert run_cli(["run", str(straight), "--quiet"]).returncode == 0
    killed = write_config(tmp_path / "killed", tiny_data, **extra)
    run_dir = tmp_path / "killed" / "run"
    kill_then_resume(killed, run_dir, ["train_epoch:2", "train_epoch:1", "train:0"])
    a, b = outcome(tmp_path / "straight" / "run"), outcome(run_dir)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    scores = [np.load(d / "cycles/0/scores.npz")["pool_scores"] for d in (tmp_path / "straight/run", run_dir)]
    assert np.array_equal(scores[0], scores[1])


def test_composed_criteria_score_the_shortlist_and_resume_between_stages(tiny_data, tmp_path):
    """``strategy: [entropy, coreset]``: entropy scores the pool, core-set only entropy's top 2 x budget; a kill
    between the two stages resumes to the same run."""
    extra = {"strategy": ["entropy", "coreset"], "cycles": 1, "strategy_options": {"factors": [1.5]}}
    straight = write_config(tmp_path / "straight", tiny_data, **extra)
    assert run_cli(["run", str(straight), "--quiet"]).returncode == 0
    run = tmp_path / "straight" / "run"
    first, second = np.load(run / "cycles/0/scores.npz"), np.load(run / "cycles/0/scores.stage1.npz")
    assert len(first["pool_indices"]) == 24 - 6 and len(second["pool_indices"]) == 6  # ceil(1.5 x 4)
    entropy_order = first["pool_indices"][np.argsort(-np.nan_to_num(first["pool_scores"], nan=-np.inf), kind="stable")]
    assert set(second["pool_indices"]) == set(entropy_order[:6]) and "labelled_embeddings" in second
    picks = json.loads((run / "cycles/0/selection.json").read_text())["picks"]
    assert {p["index"] for p in picks} <= set(second["pool_indices"])
    assert {p["strategy"] for p in picks} == {"entropy+coreset"}
    killed = write_config(tmp_path / "killed", tiny_data, **extra)
    kill_then_resume(killed, tmp_path / "killed" / "run", ["stage0:0", "stage1:0"])
    a, b = outcome(run), outcome(tmp_path / "killed" / "run")
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert "entropy+coreset" in (run / "metrics.jsonl").read_text()


@pytest.mark.parametrize(
    "options, pattern",
    [
        ({"criteria": ["coreset", "entropy"]}, "criterion 'coreset' cannot narrow the pool"),
        ({"criteria": ["entropy", "nope"]}, "must be a list of at least 2 registered strategy names"),
        (
            {"criteria": ["entropy", "coreset"], "factors": [0.5]},
            r"'factors' parameter of compose must be a float in \[1",
        ),
        ({"criteria": ["entropy", "coreset"], "factors": [2, 3]}, "must be a list of 1 floats"),
        ({"criteria": ["entropy", "coreset"], "kmeans": {}}, "Unknown option 'kmeans' for strategy 'compose'"),
        ({"criteria": ["entropy", "coreset"], "coreset": {"projection": 2}}, "Unknown option 'projection'"),
        (
            {"criteria": ["entropy", "class_balance"], "per_box": True},
            r"'per_box' is an option of 'class_balance'; give it under that criterion's name, "
            r"strategy_options: \{class_balance: \{per_box: \.\.\.\}\}",
        ),
        ({"criteria": ["entropy", "class_balance"], "aggregation": "sum"}, "'aggregation' is an option of 'entropy'"),
    ],
)
def test_compose_rejects_bad_criteria_with_the_reason(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_strategy("compose", **options)


def test_bench_shares_cycle_zero_and_writes_the_report(tiny_data, tmp_path, capsys):
    from activedet.cli import main

    config = write_config(tmp_path, tiny_data, cycles=1)
    assert (
        main(
            [
                "bench",
                str(config),
                "--strategies",
                "random",
                "entropy:aggregation=sum",
                "--seeds",
                "0",
                "--out",
                str(tmp_path / "bench"),
                "--quiet",
            ]
        )
        == 0
    )
    runs = tmp_path / "bench" / "runs"
    a = json.loads((runs / "random/seed0/cycles/0/metrics.json").read_text())
    b = json.loads((runs / "entropy[aggregation=sum]/seed0/cycles/0/metrics.json").read_text())
    assert a["metrics"] == b["metrics"] and b["strategy"] == "entropy"  # trained once, shared
    assert (runs / "random/seed0/cycles/0/model.pt").read_bytes() == (
        runs / "entropy[aggregation=sum]/seed0/cycles/0/model.pt"
    ).read_bytes()
    shared = [
        (runs / arm / "seed0/cycles/0/environment.json").read_text() for arm in ("random", "entropy[aggregation=sum]")
    ]
    assert shared[0] == shared[1] and json.loads(shared[0])["device"] == "cpu"  # where the shared model was trained
    report = tmp_path / "bench" / "report"
    assert (report / "report.md").is_file() and (report / "metric_vs_images.png").is_file()
    assert "entropy[aggregation=sum]" in capsys.readouterr().out


def test_a_strategy_that_selects_nothing_stops_with_the_reason(tiny_data, tmp_path):
    """Nothing reaches score 1.0 and empty images are skipped: the cycle cannot advance, so the run stops with what
    to change instead of looping."""
    config = write_config(
        tmp_path,
        tiny_data,
        strategy="entropy",
        cycles=1,
        strategy_options={"score_threshold": 1.0, "empty_policy": "skip"},
    )
    with pytest.raises(ValueError, match="strategy 'entropy' selected no image from the 18 candidates"):
        run_from_config(load_config(config), progress=False)
    assert not (tmp_path / "run/cycles/0/selection.json").exists()


def test_sigkill_between_score_shards_then_resume_gives_the_same_scores(tiny_data, tmp_path):
    """Scoring in shards of 5 images: a kill after a shard is saved resumes at the next one; MC-dropout's passes
    are seeded per shard, so the resumed run scores and selects exactly as a straight one."""
    extra = {**NEEDS_DETECTOR["mc_dropout"], "strategy": "mc_dropout", "cycles": 1, "score_shard_size": 5}
    straight = write_config(tmp_path / "straight", tiny_data, **extra)
    assert run_cli(["run", str(straight), "--quiet"]).returncode == 0
    killed = write_config(tmp_path / "killed", tiny_data, **extra)
    run_dir = tmp_path / "killed" / "run"
    proc = run_cli(["run", str(killed), "--quiet"], {"ACTIVEDET_KILL_AT": "stage0.pool.shard1:0"})
    assert proc.returncode == -9, proc.stderr
    shards = run_dir / "cycles/0/scores.stage0.pool.shards"
    assert sorted(p.name for p in shards.iterdir()) == ["00000.npz", "00001.npz"]
    assert not (run_dir / "cycles/0/scores.npz").exists()
    kill_then_resume(killed, run_dir, ["stage0.pool.shard2:0"])  # one more kill in the resumed scoring
    assert not shards.exists()  # removed once the stage's scores are written
    a, b = outcome(tmp_path / "straight" / "run"), outcome(run_dir)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    scores = [np.load(d / "cycles/0/scores.npz") for d in (tmp_path / "straight/run", run_dir)]
    assert len(scores[0]["pool_indices"]) == 18
    for key in scores[0].files:
        assert np.array_equal(scores[0][key], scores[1][key], equal_nan=True), key


def test_the_shard_size_does_not_change_deterministic_scores(tiny_data, tmp_path):
    """Core-set scores the pool and the labelled set (embeddings): in shards of 4 or in one, the same files."""
    runs = []
    for size in (4, 50_000):
        config = write_config(tmp_path / str(size), tiny_data, strategy="coreset", cycles=1, score_shard_size=size)
        run_from_config(load_config(config), progress=False)
        runs.append(tmp_path / str(size) / "run")
    a, b = (np.load(run / "cycles/0/scores.npz") for run in runs)
    assert sorted(a.files) == sorted(b.files) and "labelled_embeddings" in a.files
    for key in a.files:
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    picks = [json.loads((run / "cycles/0/selection.json").read_text())["picks"] for run in runs]
    assert [p["index"] for p in picks[0]] == [p["index"] for p in picks[1]]
