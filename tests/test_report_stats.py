"""Paired per-seed savings with 95% intervals, on hand-made run directories with hand-computed expectations."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from activedet.report import format_table, load_runs, summarize, write_report
from activedet.report.savings import mean_interval, t_quantile
from tests.test_report import make_run

T_975_2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # df=2 closed form (2p - 1) / sqrt(2p(1 - p)): 4.303
T_975_4 = 2.7764451051977934  # textbook t(0.975, df=4): 2.776

# random: 0.2, 0.4, 0.6 at 10, 30, 50 images (every seed); entropy takes 10, 20, 30 images.
RANDOM_IMAGES = (10, 30, 50)
ENTROPY_IMAGES = (10, 20, 30)
ENTROPY = {0: (0.2, 0.5, 0.7), 1: (0.2, 0.4, 0.5), 2: (0.2, 0.6, 0.6)}
# needed by random, per seed: cycle 1: 0.5 -> 40, 0.4 -> 30, 0.6 -> 50; cycle 2: 0.7 -> beyond 50, 0.5 -> 40, 0.6 -> 50
CYCLE1 = (100 * (1 - 20 / 40), 100 * (1 - 20 / 30), 100 * (1 - 20 / 50))  # 50, 33.3, 60
CYCLE2 = (100 * (1 - 30 / 50), 100 * (1 - 30 / 40), 100 * (1 - 30 / 50))  # >= 40 (bound), 25, 40


def ci(values, t):
    values = np.asarray(values, float)
    half = t * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


@pytest.fixture
def root(tmp_path):
    for seed, values in ENTROPY.items():
        make_run(tmp_path, "random", seed, (0.2, 0.4, 0.6), images=RANDOM_IMAGES)
        make_run(tmp_path, "entropy", seed, values, images=ENTROPY_IMAGES)
    return tmp_path


def test_t_quantile_matches_textbook_values():
    assert t_quantile(0.975, 4) == pytest.approx(T_975_4, abs=1e-9)
    assert t_quantile(0.975, 2) == pytest.approx(T_975_2, abs=1e-9) == pytest.approx(4.303, abs=1e-3)
    assert T_975_4 == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), abs=1e-9)  # df=1: Cauchy
    with pytest.raises(ValueError, match="0 < p < 1 and df > 0"):
        t_quantile(0.975, 0)


def test_mean_interval_five_values():
    i = mean_interval([1, 2, 3, 4, 5, np.nan])  # NaN is left out: n = 5, df = 4
    half = T_975_4 * math.sqrt(2.5) / math.sqrt(5)
    assert (i.mean, i.low, i.high, i.n, i.bound) == pytest.approx((3, 3 - half, 3 + half, 5, False))
    assert math.isclose(half, 1.9632, abs_tol=1e-4)
    one = mean_interval([4.0], [True])
    assert one.mean == 4 and math.isnan(one.low) and math.isnan(one.high) and one.n == 1 and one.bound
    assert mean_interval([]).n == 0 and math.isnan(mean_interval([]).mean)


def test_paired_savings_per_seed_bounds_and_intervals(root):
    summary = summarize(load_runs(root))
    entropy = summary.strategies["entropy"]
    expected = np.array([[0, 0, 0], [CYCLE1[0], CYCLE1[1], CYCLE1[2]], list(CYCLE2)]).T  # [seed, cycle]
    np.testing.assert_allclose(entropy.images_saved_per_seed, expected, atol=1e-9)
    np.testing.assert_array_equal(entropy.images_saved_bound, [[False, False, True], [False] * 3, [False] * 3])
    np.testing.assert_allclose(entropy.boxes_saved_per_seed, expected, atol=1e-9)  # boxes = 3 x images here
    # the mean-curve figure is undefined at the last cycle (0.6 = random's best point exactly, but 0.7 is not)
    assert entropy.paired_saved("images")[2].bound
    per_cycle = entropy.paired_saved("images")
    assert (per_cycle[1].mean, per_cycle[1].low, per_cycle[1].high) == pytest.approx(ci(CYCLE1, T_975_2))
    assert not per_cycle[1].bound and per_cycle[1].n == 3
    assert (per_cycle[2].mean, per_cycle[2].low, per_cycle[2].high) == pytest.approx(ci(CYCLE2, T_975_2))
    assert per_cycle[2].mean == pytest.approx(35.0) and per_cycle[2].bound
    overall = entropy.paired_saved_overall("images")  # per seed over cycles 1-2, then over seeds
    per_seed = [(a + b) / 2 for a, b in zip(CYCLE1, CYCLE2)]
    assert (overall.mean, overall.low, overall.high) == pytest.approx(ci(per_seed, T_975_2))
    assert overall.bound and overall.n == 3
    # final metric - random, same seed: +0.1, -0.1, 0.0
    np.testing.assert_allclose(entropy.paired_difference, [0.1, -0.1, 0.0], atol=1e-12)
    d = entropy.paired_difference_interval
    assert (d.mean, d.low, d.high) == pytest.approx(ci([0.1, -0.1, 0.0], T_975_2), abs=1e-12)
    random = summary.strategies["random"]
    np.testing.assert_allclose(random.images_saved_per_seed, 0.0, atol=1e-9)
    assert not random.images_saved_bound.any()


def test_above_the_best_point_is_a_bound_not_nan(tmp_path):
    make_run(tmp_path, "random", 0, (0.2, 0.4), images=(10, 50))
    make_run(tmp_path, "entropy", 0, (0.2, 0.9), images=(10, 20))
    entropy = summarize(load_runs(tmp_path)).strategies["entropy"]
    assert math.isnan(entropy.images_saved_pct[1])  # the mean-curve figure: outside random's curve
    assert entropy.images_saved_per_seed[0, 1] == pytest.approx(60.0)  # >= 1 - 20 / 50
    assert entropy.images_saved_bound[0, 1]


def test_below_the_first_point_is_undefined_and_left_out(tmp_path):
    for seed, value in ((0, 0.1), (1, 0.3), (2, 0.4)):
        make_run(tmp_path, "random", seed, (0.2, 0.4), images=(10, 30))
        make_run(tmp_path, "entropy", seed, (0.2, value), images=(10, 20))
    # seed 0: 0.1 is below random's first point (undefined); seed 1: 0.3 -> 20, 0%; seed 2: 0.4 -> 30, 33.3%
    summary = summarize(load_runs(tmp_path))
    i = summary.strategies["entropy"].paired_saved("images")[1]
    assert (i.mean, i.n, i.bound) == pytest.approx((50 / 3, 2, False))
    assert (i.low, i.high) == pytest.approx(ci([0.0, 100 / 3], math.tan(math.pi * 0.475))[1:])
    assert "(n=2)" in format_table(summary)  # fewer seeds than the strategy's 3 paired seeds: said so


def test_one_seed_gives_no_interval(tmp_path):
    make_run(tmp_path, "random", 0, (0.2, 0.4, 0.6), images=RANDOM_IMAGES)
    make_run(tmp_path, "entropy", 0, ENTROPY[0], images=ENTROPY_IMAGES)
    summary = summarize(load_runs(tmp_path))
    i = summary.strategies["entropy"].paired_saved("images")[1]
    assert i.mean == pytest.approx(50.0) and i.n == 1 and math.isnan(i.low) and math.isnan(i.high)
    text = format_table(summary)
    assert "| entropy | 1 | 50.0% (1 seed, no CI) | 50.0% (1 seed, no CI) | +0.1000 (1 seed, no CI) |" in text
    assert "| entropy | 2 | ≥ 40.0% (1 seed, no CI) |" in text
    ci_json = summary.to_dict()["strategies"]["entropy"]["paired_savings"]["images"]["per_cycle"][1]
    assert ci_json["ci_low"] is None and ci_json["n_seeds"] == 1


def test_mismatched_seed_sets_warn_and_pair_what_they_can(root):
    make_run(root, "entropy", 7, (0.2, 0.5, 0.7), images=ENTROPY_IMAGES)  # no random run with seed 7
    summary = summarize(load_runs(root))
    assert any("entropy: seed(s) [7] have no 'random' run with the same seed" in w for w in summary.warnings)
    assert any("not paired" in w for w in summary.warnings)
    entropy = summary.strategies["entropy"]
    assert np.isnan(entropy.images_saved_per_seed[-1]).all()
    assert entropy.paired_saved("images")[1].n == 3
    assert entropy.paired_saved("images")[1].mean == pytest.approx(np.mean(CYCLE1))
    text = format_table(summary)
    assert "| entropy | 3 | " in text and "(n=" not in text  # 4 seeds, 3 of them paired: the table says 3


def test_table_json_and_csv(root, tmp_path):
    out = tmp_path / "report"
    summary = write_report(root, out)
    text = format_table(summary)
    m, lo, hi = ci(CYCLE2, T_975_2)
    dm, dlo, dhi = ci([0.1, -0.1, 0.0], T_975_2)
    assert (
        f"| entropy | 2 | ≥ {m:.1f}% [{lo:.1f}%, {hi:.1f}%] | ≥ {m:.1f}% [{lo:.1f}%, {hi:.1f}%] "
        f"| {dm:+.4f} [{dlo:+.4f}, {dhi:+.4f}] |"
    ) in text
    m, lo, hi = ci([(a + b) / 2 for a, b in zip(CYCLE1, CYCLE2)], T_975_2)
    assert f"| entropy | 3 | ≥ {m:.1f}% [{lo:.1f}%, {hi:.1f}%] |" in text
    data = json.loads((out / "summary.json").read_text())
    paired = data["strategies"]["entropy"]["paired_savings"]["images"]
    assert paired["per_cycle"][2]["bound"] is True and paired["per_cycle"][2]["mean"] == pytest.approx(35.0)
    assert paired["per_seed_is_bound"][0] == [False, False, True]
    assert data["strategies"]["entropy"]["final_metric"]["paired_difference_ci"]["n_seeds"] == 3
    assert "lower bound" in data["conventions"]["paired_savings"]
    with open(out / "savings.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["strategy"], r["cycle"]) for r in rows] == [("entropy", "0"), ("entropy", "1"), ("entropy", "2")]
    last = rows[2]
    assert float(last["images_saved_mean"]) == pytest.approx(35.0) and last["images_saved_bound"] == "1"
    assert float(last["boxes_saved_ci_low"]) == pytest.approx(ci(CYCLE2, T_975_2)[1])
    assert last["images_saved_n_seeds"] == "3" and rows[1]["images_saved_bound"] == "0"
    assert float(last["metric_difference_ci_high"]) == pytest.approx(dhi)
    assert (out / "savings_vs_cycle.png").stat().st_size > 5000
    assert "![savings_vs_cycle](savings_vs_cycle.png)" in (out / "report.md").read_text()


def test_no_baseline_no_paired_figures(root, tmp_path):
    summary = write_report(root, tmp_path / "report", baseline=None)
    assert not (tmp_path / "report" / "savings_vs_cycle.png").exists()
    assert (tmp_path / "report" / "savings.csv").read_text().count("\n") == 1  # the header only
    assert "Paired by seed" not in format_table(summary)


def test_a_baseline_that_went_on_measures_what_was_a_bound(tmp_path):
    """Random run one cycle further (70 images, 0.8): seed 0's last entropy point (0.7 at 30 images) is on its curve
    now, so the bound becomes a measured 100 * (1 - 30 / 60) = 50%; random's own AUC and final stay over cycles 0-2."""
    for seed, values in ENTROPY.items():
        make_run(tmp_path, "random", seed, (0.2, 0.4, 0.6, 0.8), images=(*RANDOM_IMAGES, 70))
        make_run(tmp_path, "entropy", seed, values, images=ENTROPY_IMAGES)
    alone = summarize(load_runs(tmp_path))  # without cycles: random's whole curve, and a warning
    assert alone.baseline_extended is None and len(alone.strategies["random"].cycles) == 4
    assert any("different numbers of cycles" in w for w in alone.warnings)
    summary = summarize(load_runs(tmp_path), cycles=2)
    entropy, random = summary.strategies["entropy"], summary.strategies["random"]
    assert entropy.images_saved_per_seed[0, 2] == pytest.approx(50.0)
    assert not entropy.images_saved_bound.any()
    last = entropy.paired_saved("images")[2]
    assert (last.mean, last.low, last.high) == pytest.approx(ci((50.0, CYCLE2[1], CYCLE2[2]), T_975_2))
    assert len(random.cycles) == 3 and random.final_mean_std[0] == pytest.approx(0.6)
    assert len(summary.baseline_extended.cycles) == 4
    assert not any("different numbers of cycles" in w for w in summary.warnings)
    np.testing.assert_allclose(entropy.paired_difference, [0.1, -0.1, 0.0], atol=1e-12)  # at cycle 2, same seed
    text = format_table(summary)
    assert "`random` went on to cycle 3" in text and "| random | 3 | 70 |" in text
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["baseline_extended"]["cycles"] == [0, 1, 2, 3] and data["strategies"]["random"]["cycles"] == [0, 1, 2]


def test_a_baseline_extension_stops_at_its_first_undefined_mean_and_cuts_other_long_arms(tmp_path):
    for seed, values in ENTROPY.items():
        make_run(tmp_path, "random", seed, (0.2, 0.4, 0.6, 0.8, math.nan), images=(*RANDOM_IMAGES, 70, 90))
        make_run(tmp_path, "entropy", seed, values, images=ENTROPY_IMAGES)
    summary = summarize(load_runs(tmp_path), cycles=2)
    assert len(summary.baseline_extended.cycles) == 4  # the NaN at cycle 4 is left out, not spread to every saving
    assert summary.strategies["entropy"].images_saved_per_seed[0, 2] == pytest.approx(50.0)
    # entropy as the baseline: random's extra cycles are cut to the compared ones, the differences are defined
    other = summarize(load_runs(tmp_path), baseline="entropy", cycles=2)
    assert other.baseline_extended is None and len(other.strategies["random"].cycles) == 3
    np.testing.assert_allclose(other.strategies["random"].paired_difference, [-0.1, 0.1, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="'cycles' parameter of summarize must be an int >= 0 or None. Got -1"):
        summarize(load_runs(tmp_path), cycles=-1)


def test_cycles_warns_only_about_runs_cut_short_within_the_compared_cycles(tmp_path):
    """Random seed 2 stopped one extension early: the compared cycles 0-2 are complete everywhere, so no truncation
    warning; the extension is the cycles every random seed finished (0-3)."""
    for seed, values in ENTROPY.items():
        extra = (0.8, 0.9) if seed < 2 else (0.8,)
        make_run(tmp_path, "random", seed, (0.2, 0.4, 0.6, *extra), images=(*RANDOM_IMAGES, 70, 90)[: 3 + len(extra)])
        make_run(tmp_path, "entropy", seed, values, images=ENTROPY_IMAGES)
    summary = summarize(load_runs(tmp_path), cycles=2)
    assert not any("truncated" in w for w in summary.warnings)
    assert len(summary.strategies["random"].cycles) == 3 and len(summary.baseline_extended.cycles) == 4
    whole = summarize(load_runs(tmp_path), cycles=4)
    assert any(
        "random: runs have 5 (seed 0), 5 (seed 1), 4 (seed 2) cycles; truncated to the 4" in w for w in whole.warnings
    )


def test_a_seed_whose_baseline_run_went_on_is_measured_on_its_whole_run(tmp_path):
    """Only seed 0's random run went on (70 images, 0.8): the mean curves stop at the 3 cycles every seed shares,
    but seed 0's last entropy point (0.7 at 30 images) is on its own run's curve, so it is a measured
    100 * (1 - 30 / 60) = 50%, not the bound 40% that the shared cycles give; the other seeds are unchanged."""
    for seed, values in ENTROPY.items():
        extra = ((0.8,), (70,)) if seed == 0 else ((), ())
        make_run(tmp_path, "random", seed, (0.2, 0.4, 0.6, *extra[0]), images=(*RANDOM_IMAGES, *extra[1]))
        make_run(tmp_path, "entropy", seed, values, images=ENTROPY_IMAGES)
    summary = summarize(load_runs(tmp_path))
    entropy = summary.strategies["entropy"]
    assert len(summary.strategies["random"].cycles) == 3
    np.testing.assert_allclose(entropy.images_saved_per_seed[:, 2], [50.0, CYCLE2[1], CYCLE2[2]])
    np.testing.assert_allclose(entropy.images_saved_per_seed[:, 1], CYCLE1)
    assert not entropy.images_saved_bound.any()
    assert any(
        "random: runs have 4 (seed 0), 3 (seed 1), 3 (seed 2) cycles; truncated to the 3 common cycles 0-2; "
        "the paired savings use each seed's whole run" in w
        for w in summary.warnings
    )
    np.testing.assert_allclose(entropy.paired_difference, [0.1, -0.1, 0.0], atol=1e-12)


def test_report_cycles_option(tmp_path, capsys):
    from activedet.cli import main

    for seed, values in ENTROPY.items():
        make_run(tmp_path / "runs", "random", seed, (0.2, 0.4, 0.6, 0.8), images=(*RANDOM_IMAGES, 70))
        make_run(tmp_path / "runs", "entropy", seed, values, images=ENTROPY_IMAGES)
    assert main(["report", str(tmp_path / "runs"), "--cycles", "2", "--out", str(tmp_path / "report"), "--html"]) == 0
    assert "`random` went on to cycle 3" in capsys.readouterr().out
    summary = json.loads((tmp_path / "report/summary.json").read_text())
    assert summary["strategies"]["random"]["cycles"] == [0, 1, 2] and summary["baseline_extended"]["cycles"][-1] == 3
    page = (tmp_path / "report/index.html").read_text()
    assert "<h2>Per class, cycle 2</h2>" in page and "cycle 3, 70 images" not in page


def test_the_report_names_the_seeds_whose_baseline_went_further(tmp_path, capsys):
    from activedet.cli import main

    for seed, values in ENTROPY.items():
        extra = ((0.8,), (70,)) if seed == 0 else ((), ())
        make_run(tmp_path / "runs", "random", seed, (0.2, 0.4, 0.6, *extra[0]), images=(*RANDOM_IMAGES, *extra[1]))
        make_run(tmp_path / "runs", "entropy", seed, values, images=ENTROPY_IMAGES)
    assert main(["report", str(tmp_path / "runs"), "--cycles", "1", "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report/report.md").read_text()
    assert "`random` went on to cycle 2 (seed 0 to cycle 3; each seed's labels saved use its own whole run)" in text
    assert json.loads((tmp_path / "report/summary.json").read_text())["baseline_last_cycle"] == {"0": 3, "1": 2, "2": 2}
    capsys.readouterr()
