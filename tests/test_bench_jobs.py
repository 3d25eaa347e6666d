"""``activedet bench --jobs N``: runs as separate processes give what the sequential bench gives; a failed run stops
only itself, is named with its log, and the same command resumes it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_loop import outcome, write_config

from activedet.cli import main

ARMS = ["random", "compose:criteria=[entropy,coreset]"]
LABELS = ["random", "compose[criteria=[entropy,coreset]]"]


def bench(config: Path, out: Path, *extra: str) -> int:
    return main(["bench", str(config), "--strategies", *ARMS, "--seeds", "0", "--out", str(out), "--quiet", *extra])


def test_parallel_bench_killed_then_resumed_equals_the_sequential_bench(tiny_data, tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path, tiny_data, cycles=1)
    assert bench(config, tmp_path / "in_turn") == 0

    # the runs' processes compute with as many threads as this one did: sums of floats in another order differ
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    # every run is killed right after its cycle-1 model is saved: the cycle 0 of each seed is already shared
    monkeypatch.setenv("ACTIVEDET_KILL_AT", "train:1")
    assert bench(config, tmp_path / "parallel", "--jobs", "3") == 1
    err = capsys.readouterr().err
    assert "2 of the bench's runs failed" in err and "run the same command again" in err
    for label in LABELS:
        for seed in (0,):
            assert f"seed {seed}, strategy {label} (log " in err
            assert (tmp_path / "parallel/logs" / f"{label}.seed{seed}.log").is_file()
    assert (tmp_path / "parallel/report/report.md").is_file()  # written from what finished

    monkeypatch.delenv("ACTIVEDET_KILL_AT")
    resume = ["bench", str(config), "--strategies", *ARMS, "--seeds", "0", "--out", str(tmp_path / "parallel")]
    assert main([*resume, "--jobs", "3"]) == 0  # not quiet: the runs write their progress to their logs
    log = (tmp_path / "parallel/logs/random.seed0.log").read_text()  # plain lines, no bars: it is a file
    assert re.fullmatch(
        r"cycle 1: 10 labelled images, \d+ boxes, voc/mAP_area [\d.]+\nrun finished at cycle 1.*\n", log
    )
    # (the quiet first bench wrote nothing there: no cycle 0 or epoch lines; the resumed run had its model)
    for label in LABELS:
        for seed in (0,):
            a = tmp_path / "in_turn/runs" / label / f"seed{seed}"
            b = tmp_path / "parallel/runs" / label / f"seed{seed}"
            (labelled_a, lines_a), (labelled_b, lines_b) = outcome(a), outcome(b)
            assert (labelled_a == labelled_b).all()
            assert json.dumps(lines_a, sort_keys=True) == json.dumps(lines_b, sort_keys=True)  # NaN-safe
            assert (a / "cycles/1/model.pt").read_bytes() == (b / "cycles/1/model.pt").read_bytes()
    for seed in (0,):  # cycle 0 trained once per seed, by its first strategy
        runs = tmp_path / "parallel/runs"
        head, tail = (runs / label / f"seed{seed}/cycles/0" for label in LABELS)
        assert (head / "model.pt").read_bytes() == (tail / "model.pt").read_bytes()
        assert json.loads((tail / "metrics.json").read_text())["strategy"] == "entropy+coreset"  # as the loop names it
    summaries = [(tmp_path / out / "report/summary.json").read_text() for out in ("in_turn", "parallel")]
    assert summaries[0].replace("/in_turn/", "/parallel/") == summaries[1]


def test_jobs_below_one_is_refused_before_any_work(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path, tiny_data, cycles=1)
    assert bench(config, tmp_path / "out", "--jobs", "0") == 2
    assert "argument --jobs: expected a whole number >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_strategy_options_may_be_lists_and_bad_yaml_is_named():
    from activedet.bench import parse_strategy_spec

    assert parse_strategy_spec("compose:criteria=[influence,coreset],factors=[3]") == (
        "compose",
        {"criteria": ["influence", "coreset"], "factors": [3]},
    )
    assert parse_strategy_spec("hybrid:uncertainty=entropy,factor=2") == (
        "hybrid",
        {"uncertainty": "entropy", "factor": 2},
    )
    with pytest.raises(ValueError, match=r"value of 'criteria' in 'compose:criteria=\[influence' is not valid YAML"):
        parse_strategy_spec("compose:criteria=[influence")


def test_baseline_cycles_extends_random_only_and_is_checked(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path, tiny_data, cycles=1)
    assert bench(config, tmp_path / "bad", "--baseline-cycles", "0") == 2
    assert "argument --baseline-cycles: expected at least the config's 'cycles' (1), got 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "out"
    assert bench(config, out) == 0
    assert bench(config, out, "--baseline-cycles", "2") == 0  # the finished random run goes on
    lines = lambda label: (out / "runs" / label / "seed0/metrics.jsonl").read_text().splitlines()
    assert len(lines("random")) == 3 and len(lines(LABELS[1])) == 2
    summary = json.loads((out / "report/summary.json").read_text())
    assert summary["baseline_extended"]["cycles"] == [0, 1, 2]
    assert summary["strategies"]["random"]["cycles"] == [0, 1]
    assert "`random` went on to cycle 2" in (out / "report/report.md").read_text()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_baseline_cycles_auto_continues_random_until_it_reaches_the_other_arms(
    jobs, tiny_data, tmp_path, capsys, monkeypatch
):
    """The plumbing of ``--baseline-cycles auto`` (what random must reach is decided by ``baseline_short_of``, tested
    below; here it asks for two more cycles): random goes on a cycle at a time, the other arms stay, the report
    keeps random's whole curve, and the same command again has nothing more to do."""
    import activedet.bench

    asked = []

    def short_of(curve, images, arm_curves):
        asked.append((len(curve), len(arm_curves)))
        return 0.99 if len(curve) < 4 else None

    monkeypatch.setattr(activedet.bench, "baseline_short_of", short_of)
    config = write_config(tmp_path, tiny_data, cycles=1)
    out = tmp_path / "out"
    assert bench(config, out, "--baseline-cycles", "auto", "--jobs", jobs) == 0
    assert asked == [(2, 1), (3, 1), (4, 1)]
    printed = capsys.readouterr().out
    assert "is below 0.9900, which another arm reached; random goes on to cycle 2" in printed
    assert "random goes on to cycle 3" in printed
    lines = lambda label: (out / "runs" / label / "seed0/metrics.jsonl").read_text().splitlines()
    assert len(lines("random")) == 4 and len(lines(LABELS[1])) == 2
    summary = json.loads((out / "report/summary.json").read_text())
    assert summary["baseline_extended"]["cycles"] == [0, 1, 2, 3]
    asked.clear()
    assert bench(config, out, "--baseline-cycles", "auto", "--jobs", jobs) == 0  # finished: not trained again
    assert asked == [(4, 1)] and len(lines("random")) == 4


def test_baseline_short_of_names_the_best_metric_random_has_not_reached():
    from activedet.bench import AUTO_MAX_RATIO, baseline_short_of

    arms = [
        (np.array([0.2, 0.4, 0.5]), np.array([200.0, 270.0, 340.0])),
        (np.array([0.2, 0.55, np.nan]), np.array([200.0, 300.0, 400.0])),  # a cycle without the metric
    ]
    random = np.array([0.2, 0.3, 0.45])
    assert baseline_short_of(random, 400.0, arms) == 0.55
    assert baseline_short_of(np.array([0.2, 0.56, 0.5]), 400.0, arms) is None  # a point reached it
    assert baseline_short_of(np.array([0.2, 0.55]), 300.0, arms) is None  # as high is reached
    assert baseline_short_of(random, AUTO_MAX_RATIO * 300.0, arms) is None  # 4x the images the arm needed
    assert baseline_short_of(random, AUTO_MAX_RATIO * 300.0 - 1, arms) == 0.55
    assert baseline_short_of(random, 400.0, [(np.full(3, np.nan), np.ones(3))]) is None
    assert baseline_short_of(np.full(2, np.nan), 300.0, arms) == 0.55


def test_baseline_cycles_auto_stops_a_random_run_that_cannot_go_on(tiny_data, tmp_path, capsys, monkeypatch):
    """A random run that a round asked for one more cycle and that did not add it (here max_labelled: the pool
    used up is the same) is left where it is, its savings bounds, instead of being asked again forever."""
    import activedet.bench

    asked = []

    def never_reached(curve, images, arm_curves):
        asked.append(len(curve))
        return 0.99

    monkeypatch.setattr(activedet.bench, "baseline_short_of", never_reached)
    config = write_config(tmp_path, tiny_data, cycles=1, max_labelled=14)  # 6 + 4 per cycle: cycle 2 is the last
    out = tmp_path / "out"
    assert bench(config, out, "--baseline-cycles", "auto") == 0
    assert asked == [2, 3]  # cycle 2 added; asked for cycle 3, which max_labelled ends at once
    assert "seed 0: random cannot go past cycle 2; its savings stay bounds" in capsys.readouterr().out
    assert len((out / "runs/random/seed0/metrics.jsonl").read_text().splitlines()) == 3


def test_baseline_cycles_auto_is_checked(tiny_data, tmp_path, capsys):
    config = write_config(tmp_path, tiny_data, cycles=1)
    with pytest.raises(SystemExit, match="2"):
        bench(config, tmp_path / "bad", "--baseline-cycles", "all")
    assert "argument --baseline-cycles: expected a whole number of cycles or 'auto'; found 'all'" in (
        capsys.readouterr().err
    )
    argv = ["bench", str(config), "--strategies", "entropy", "--out", str(tmp_path / "x"), "--baseline-cycles", "auto"]
    assert main(argv) == 2
    assert "no arm is 'random' without @ overrides" in capsys.readouterr().err


def test_a_cold_start_arm_is_labelled_and_trains_its_own_cycle_zero(tiny_data, tmp_path):
    from activedet.bench import check_bench_arguments, run_settings

    config = write_config(tmp_path, tiny_data, cycles=1)
    arms = check_bench_arguments(
        config,
        strategies=["random", "random@initial_selection=kmeans_medoids"],
        seeds=[0],
        overrides=None,
        metric="voc/mAP_area",
    )
    assert [arm.label for arm in arms] == ["random", "random +kmeans_medoids start"]
    assert arms[0].cycle_zero != arms[1].cycle_zero  # a cold start trains its own cycle 0
    assert 'initial_selection="kmeans_medoids"' in run_settings(arms[1], 0, tmp_path / "r", None)
    with pytest.raises(ValueError, match="no arm is 'random' without @ overrides"):
        from activedet.bench import run_bench

        run_bench(config, strategies=["entropy"], seeds=[0], out=tmp_path / "x", baseline_cycles=2)


def test_two_spellings_of_one_setting_share_cycle_zero(tiny_data, tmp_path):
    from activedet.bench import check_bench_arguments

    config = write_config(tmp_path, tiny_data, cycles=1)
    arms = check_bench_arguments(
        config,
        strategies=["random@semi_supervised={}", "entropy@semi_supervised.method=teacher_student", "entropy"],
        seeds=[0],
        overrides=["epochs=5"],
        metric="voc/mAP_area",
    )
    assert arms[0].overrides != arms[1].overrides and arms[0].cycle_zero == arms[1].cycle_zero != arms[2].cycle_zero


def test_arm_folders_are_file_names_every_file_system_accepts(tiny_data, tmp_path, monkeypatch):
    import activedet.bench_arms
    from activedet.bench import check_bench_arguments
    from activedet.bench_jobs import folder_name

    spec = "compose:criteria=[entropy,class_balance],class_balance={per_box: true}"
    config = write_config(tmp_path, tiny_data, cycles=1)
    (arm,) = check_bench_arguments(config, strategies=[spec], seeds=[0], overrides=None, metric="voc/mAP_area")
    assert arm.label == 'compose[class_balance={"per_box":true},criteria=[entropy,class_balance]]'
    assert arm.directory == "compose[class_balance={per_box=true},criteria=[entropy,class_balance]]"
    assert arm.run_dir(tmp_path / "out", 3) == tmp_path / "out/runs" / arm.directory / "seed3"
    legacy = tmp_path / "old/runs" / arm.label / "seed0"  # where an earlier version kept the runs: resumed there
    legacy.mkdir(parents=True)
    assert arm.run_dir(tmp_path / "old", 0) == legacy

    assert folder_name('a/b\\c|d?e*f<g>h "i":j\tk.') == "a_b_c_d_e_f_g_hi=j_k"
    long = [folder_name(f"compose[criteria=[{'entropy,' * 20}{tail}]]") for tail in ("coreset", "kmeans")]
    assert all(len(name) == 120 for name in long) and long[0][:103] == long[1][:103] and long[0] != long[1]
    monkeypatch.setattr(activedet.bench_arms, "folder_name", lambda label: "same")
    with pytest.raises(ValueError, match=r"arms 'random' and 'entropy' would share the run folder 'same'"):
        check_bench_arguments(
            config, strategies=["random", "entropy"], seeds=[0], overrides=None, metric="voc/mAP_area"
        )


def test_a_box_budget_arm_is_labelled_apart_and_shares_cycle_zero(tiny_data, tmp_path):
    from activedet.bench import check_bench_arguments, run_settings

    config = write_config(tmp_path, tiny_data, cycles=1)
    arms = check_bench_arguments(
        config,
        strategies=["random", "entropy", "entropy@budget_unit=boxes@budget=12"],
        seeds=[0],
        overrides=None,
        metric="voc/mAP_area",
    )
    assert [arm.label for arm in arms] == ["random", "entropy", "entropy +budget[12 boxes]"]
    assert arms[1].directory != arms[2].directory
    assert arms[0].cycle_zero == arms[1].cycle_zero == arms[2].cycle_zero  # a budget does not change cycle 0
    settings = run_settings(arms[2], 0, tmp_path / "r", None)
    assert 'budget_unit="boxes"' in settings and "budget=12" in settings
    with pytest.raises(ValueError, match=r"argument --strategies 'entropy@budget_unit=pages'.*budget_unit"):
        check_bench_arguments(
            config, strategies=["entropy@budget_unit=pages"], seeds=[0], overrides=None, metric="voc/mAP_area"
        )


def test_draws_retrain_every_run_under_other_draws_and_average_each_seeds_saving(
    tiny_data, tmp_path, capsys, monkeypatch
):
    config = write_config(tmp_path, tiny_data, cycles=1)
    assert bench(config, tmp_path / "bad", "--draws", "0") == 2
    assert "argument --draws: expected a whole number >= 1 (1: the runs' own training), got 0" in (
        capsys.readouterr().err
    )
    pseudo = ["bench", str(config), "--strategies", "random", "entropy@pseudo_labels={}", "--seeds", "0"]
    assert main([*pseudo, "--out", str(tmp_path / "bad"), "--draws", "2"]) == 2
    assert "argument --draws: the arm 'entropy@pseudo_labels={}' uses warm_start or pseudo_labels" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "out"
    assert bench(config, out, "--draws", "2") == 0
    printed = capsys.readouterr().out
    for label in LABELS:
        run = [json.loads(line) for line in (out / "runs" / label / "seed0/metrics.jsonl").read_text().splitlines()]
        again = (out / "draws/draw2" / label / "seed0/metrics.jsonl").read_text().splitlines()
        again = [json.loads(line) for line in again]
        assert [r["labelled_images"] for r in again] == [r["labelled_images"] for r in run]
        assert {r["retrained"]["salt"] for r in again} == {"draw2"}
        assert again[0]["retrained"]["config"] == str(out / "runs" / label / "seed0/config.json")
    # entropy's cycle 0 is random's set under the same recipe (the configs differ in the strategy): trained once
    first, second = (
        [json.loads(line) for line in (out / "draws/draw2" / label / "seed0/metrics.jsonl").open()] for label in LABELS
    )
    assert first[0]["retrained"]["digest"] == second[0]["retrained"]["digest"]
    reused = [
        line for line in printed.splitlines() if line.endswith("retrained before: the same set as an earlier run's")
    ]
    assert len(reused) == 1 and f"{LABELS[1]}/seed0 cycle 0: 6 images" in reused[0], reused
    text = (out / "report/draws.txt").read_text()
    assert f"draw 1: {out / 'runs'}\ndraw 2: {out / 'draws/draw2'}\n{LABELS[1]} (seeds 0)\n" in text
    assert "cycle 1 images saved: draw 1 " in text and "; mean of the draws " in text
    assert text.strip() in printed
    # run again with the same draws: nothing is trained, the same table comes back
    assert bench(config, out, "--draws", "2", "--jobs", "2") == 0
    assert (out / "report/draws.txt").read_text() == text
    # the retrains as processes give what they give in turn (with as many threads as this process computes with)
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    assert bench(config, tmp_path / "parallel", "--draws", "2", "--jobs", "2") == 0
    assert (tmp_path / "parallel/report/draws.txt").read_text() == text.replace(str(out), str(tmp_path / "parallel"))
    assert (tmp_path / "parallel/logs" / f"{LABELS[1]}@draw2.seed0.log").is_file()
    assert f"strategy {LABELS[1]}@draw2 -> {tmp_path / 'parallel/draws/draw2' / LABELS[1] / 'seed0'} (log" in (
        capsys.readouterr().out
    )
