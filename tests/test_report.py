"""Reports over active-learning runs, on hand-made run directories with numbers chosen so results are exact."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activedet.report import (
    format_table,
    labels_needed,
    load_runs,
    normalised_auc,
    plot,
    strategy_label,
    summarize,
    write_report,
)

IMAGES = (10, 20, 30)
# random: 0.2, 0.3, 0.4; entropy: 0.3, 0.4, 0.5 (means over seeds 1 and 2, which are -/+ 0.01 around them).
RANDOM = (0.2, 0.3, 0.4)
ENTROPY = (0.3, 0.4, 0.5)
RANDOM_BOXES = (10, 40, 50)
ENTROPY_BOXES = (10, 50, 90)


def make_run(
    root: Path,
    strategy: str,
    seed: int,
    values,
    images=IMAGES,
    boxes=None,
    *,
    options=None,
    metric: str = "voc/mAP_area",
) -> Path:
    """Write RUN/config.json and RUN/metrics.jsonl with one line per value (cycle t = values[t])."""
    run = root / f"{strategy_label(strategy, options)}-seed{seed}"
    run.mkdir(parents=True)
    config = {"strategy": strategy, "seed": seed, **({"strategy_options": options} if options else {})}
    (run / "config.json").write_text(json.dumps(config))
    boxes = boxes if boxes is not None else tuple(3 * n for n in images)
    lines = [
        json.dumps(
            {
                "cycle": t,
                "strategy": strategy,
                "seed": seed,
                "labelled_images": images[t],
                "labelled_boxes": boxes[t],
                "metrics": {metric: value, "voc/mAP_11pt": value - 0.01},
                "seconds": {"train": 1.0},
            }
        )
        for t, value in enumerate(values)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def shifted(values, delta):
    return tuple(v + delta for v in values)


@pytest.fixture
def runs_root(tmp_path) -> Path:
    """random and entropy, seeds 1 and 2, metric = the hand-chosen curve -0.01 (seed 1) / +0.01 (seed 2)."""
    root = tmp_path / "runs"
    for seed, delta in ((1, -0.01), (2, 0.01)):
        make_run(root, "random", seed, shifted(RANDOM, delta), boxes=RANDOM_BOXES)
        make_run(root, "entropy", seed, shifted(ENTROPY, delta), boxes=ENTROPY_BOXES)
    return root


def test_mean_std_and_auc_are_exact(runs_root):
    summary = summarize(load_runs(runs_root))
    assert list(summary.strategies) == ["entropy", "random"]
    assert summary.warnings == []
    random, entropy = summary.strategies["random"], summary.strategies["entropy"]
    assert random.seeds == [1, 2]
    np.testing.assert_allclose(random.metric_mean, RANDOM)
    np.testing.assert_allclose(random.metric_std, [math.sqrt(2) * 0.01] * 3)  # sample std of -0.01, +0.01
    np.testing.assert_allclose(random.images_mean, IMAGES)
    np.testing.assert_allclose(random.images_std, 0.0)
    # images: (10 * 0.25 + 10 * 0.35) / 20 = 0.3 per seed, shifted by -/+ 0.01.
    np.testing.assert_allclose(random.auc_images, [0.29, 0.31])
    assert random.auc_images_mean_std == pytest.approx((0.3, math.sqrt(2) * 0.01))
    assert entropy.auc_images_mean_std[0] == pytest.approx(0.4)
    # boxes: random (30 * 0.25 + 10 * 0.35) / 40 = 0.275; entropy (40 * 0.35 + 40 * 0.45) / 80 = 0.4.
    assert random.auc_boxes_mean_std[0] == pytest.approx(0.275)
    assert entropy.auc_boxes_mean_std[0] == pytest.approx(0.4)
    assert entropy.final_mean_std == pytest.approx((0.5, math.sqrt(2) * 0.01))


def test_labels_saved_against_baseline(runs_root):
    summary = summarize(load_runs(runs_root), baseline="random")
    entropy, random = summary.strategies["entropy"], summary.strategies["random"]
    # entropy reaches 0.3 at 10 images, random needs 20 (50% saved); 0.4 at 20 vs 30; 0.5 is beyond random: NaN.
    np.testing.assert_allclose(entropy.images_needed, [20, 30, np.nan])
    np.testing.assert_allclose(entropy.images_saved_pct, [50, 100 / 3, np.nan])
    assert entropy.mean_images_saved_pct == pytest.approx(100 / 3)  # cycles >= 1 where defined
    # where it is beyond random's curve, only a bound against random's last point: 30 images (and 50 boxes)
    np.testing.assert_allclose(entropy.images_saved_at_least, [np.nan, np.nan, 0.0], atol=1e-9)
    np.testing.assert_allclose(entropy.boxes_saved_at_least, [np.nan, np.nan, -80.0])
    # boxes: 0.3 at 10 boxes vs random's 40 (75%); 0.4 at 50 boxes vs random's 50 (0%).
    np.testing.assert_allclose(entropy.boxes_needed, [40, 50, np.nan])
    np.testing.assert_allclose(entropy.boxes_saved_pct, [75, 0, np.nan], atol=1e-9)
    assert entropy.mean_boxes_saved_pct == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(random.images_saved_pct, 0.0, atol=1e-9)  # the baseline saves nothing


def test_labels_needed_interpolates_first_crossing_and_never_extrapolates():
    x, y = [10, 20, 30, 40], [0.2, 0.4, 0.3, 0.5]
    assert labels_needed(x, y, 0.35) == pytest.approx(17.5)  # first crossing, although 0.35 recurs later
    assert labels_needed(x, y, 0.2) == 10
    assert labels_needed(x, y, 0.45) == pytest.approx(37.5)  # 0.3 at 30 -> 0.5 at 40
    assert math.isnan(labels_needed(x, y, 0.1))  # below the first point
    assert math.isnan(labels_needed(x, y, 0.6))  # above the best point
    assert math.isnan(labels_needed(x, [0.2, math.nan, 0.3, 0.5], 0.25))


def test_normalised_auc():
    assert normalised_auc([0, 10], [0.2, 0.4]) == pytest.approx(0.3)
    assert normalised_auc([10, 40, 50], [0.2, 0.3, 0.4]) == pytest.approx(0.275)
    assert math.isnan(normalised_auc([10], [0.2]))


def test_single_seed_has_no_std(tmp_path):
    make_run(tmp_path, "random", 1, RANDOM)
    s = summarize(load_runs(tmp_path)).strategies["random"]
    assert np.isnan(s.metric_std).all() and math.isnan(s.auc_images_mean_std[1])
    assert "| random | 0.3000 | " in format_table(summarize(load_runs(tmp_path)))


def test_strategy_options_make_separate_variants(tmp_path):
    assert strategy_label("entropy", {"top_k": 5, "aggregation": "sum"}) == "entropy[aggregation=sum,top_k=5]"
    assert strategy_label("entropy", {}) == "entropy"
    assert strategy_label("compose", {"criteria": ["influence", "coreset"]}) == "compose[criteria=[influence,coreset]]"
    assert strategy_label("x", {"factors": [2, 3], "m": {"k": 1}}) == 'x[factors=[2,3],m={"k":1}]'
    make_run(tmp_path, "entropy", 1, ENTROPY)
    make_run(tmp_path, "entropy", 1, RANDOM, options={"aggregation": "sum"})
    summary = summarize(load_runs(tmp_path), baseline="entropy")
    assert list(summary.strategies) == ["entropy", "entropy[aggregation=sum]"]
    np.testing.assert_allclose(summary.strategies["entropy[aggregation=sum]"].metric_mean, RANDOM)


def test_runs_of_different_lengths_are_truncated_to_common_cycles(tmp_path):
    make_run(tmp_path, "random", 1, RANDOM)
    make_run(tmp_path, "random", 2, RANDOM[:2])  # unfinished run
    make_run(tmp_path, "entropy", 1, ENTROPY)
    make_run(tmp_path, "entropy", 2, ENTROPY)
    summary = summarize(load_runs(tmp_path))
    random = summary.strategies["random"]
    assert list(random.cycles) == [0, 1]
    np.testing.assert_allclose(random.metric_mean, RANDOM[:2])
    assert len(summary.strategies["entropy"].cycles) == 3
    assert any(
        "random: runs have 3 (seed 1), 2 (seed 2) cycles; truncated to the 2 common cycles 0-1" in w
        for w in summary.warnings
    )
    assert any("different numbers of cycles (entropy: 3, random: 2)" in w for w in summary.warnings)
    # random now ends at 0.3 (20 images): entropy's 0.4 and 0.5 lie outside its curve.
    np.testing.assert_allclose(summary.strategies["entropy"].images_needed, [20, np.nan, np.nan])


def test_seed_mismatch_and_missing_baseline_are_warned(tmp_path):
    make_run(tmp_path, "random", 1, RANDOM)
    make_run(tmp_path, "entropy", 1, ENTROPY)
    make_run(tmp_path, "entropy", 2, ENTROPY)
    summary = summarize(load_runs(tmp_path))
    assert any(
        "different seeds, so the comparison is not paired (entropy: [1, 2]; random: [1])" in w for w in summary.warnings
    )
    summary = summarize(load_runs(tmp_path), baseline="core-set")
    assert any("baseline 'core-set' is not among the strategies (entropy, random)" in w for w in summary.warnings)
    assert np.isnan(summary.strategies["entropy"].images_saved_pct).all()


def _trained_in(run: Path, *environments: dict) -> None:
    """Give ``run`` a timing.jsonl whose cycle t was trained in ``environments[t]``."""
    lines = [json.dumps({"cycle": t, "seconds": {"train": 1.0}, "environment": e}) for t, e in enumerate(environments)]
    (run / "timing.jsonl").write_text("\n".join(lines) + "\n")


def test_runs_trained_in_different_environments_are_warned(tmp_path):
    """A run's cycles record where their models were trained; the report names the environments when the runs it
    compares span more than one (another CPU instruction set is another training draw), and is silent when one."""
    avx2 = {"torch": "2.14.1", "device": "cpu", "cpu_capability": "AVX2", "threads": 1, "world_size": 1}
    avx512 = {**avx2, "cpu_capability": "AVX512", "cpu": "another model name"}
    gpu = {"torch": "2.14.1", "device": "cuda", "gpu": "NVIDIA H100", "threads": 8, "world_size": 1}
    random, entropy = make_run(tmp_path, "random", 1, RANDOM), make_run(tmp_path, "entropy", 1, ENTROPY)
    _trained_in(random, avx2, avx2, {**avx2, "cpu": "a third name"})  # the CPU's name alone changes nothing
    _trained_in(entropy, *[avx2] * 3)
    assert load_runs(random)[0].environments == ("torch 2.14.1, CPU AVX2, 1 thread(s), 1 process(es)",)
    assert not any("environments" in w for w in summarize(load_runs(tmp_path)).warnings)
    _trained_in(entropy, avx2, avx512, avx512, gpu)  # a line past the run's last cycle (3 cycles) is not read
    assert load_runs(entropy)[0].environments == (
        "torch 2.14.1, CPU AVX2, 1 thread(s), 1 process(es)",
        "torch 2.14.1, CPU AVX512, 1 thread(s), 1 process(es)",
    )
    (warning,) = [w for w in summarize(load_runs(tmp_path)).warnings if "environments" in w]
    assert warning.startswith(
        "the runs' models were trained in 2 environments (torch 2.14.1, CPU AVX2, 1 thread(s), 1 process(es): 2 "
        "run(s); torch 2.14.1, CPU AVX512, 1 thread(s), 1 process(es): 1 run(s)); another torch version"
    ), warning
    _trained_in(random, gpu, gpu, gpu)
    assert load_runs(random)[0].environments == ("torch 2.14.1, NVIDIA H100, 1 process(es)",)
    (entropy / "timing.jsonl").write_text("{not json\n")  # the timing is no result: unreadable, it is left out
    assert load_runs(entropy)[0].environments == ()


def test_load_accepts_runs_and_parents_blank_lines_and_empty_runs(tmp_path):
    run = make_run(tmp_path / "a", "random", 1, RANDOM)
    make_run(tmp_path / "b" / "nested", "entropy", 1, ENTROPY)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write("\n   \n")
    empty = make_run(tmp_path / "c", "entropy", 2, ())
    runs = load_runs([run, tmp_path, tmp_path / "b"])  # the same run reached twice is loaded once
    assert sorted((r.strategy, r.seed, len(r.cycles)) for r in runs) == [
        ("entropy", 1, 3),
        ("entropy", 2, 0),
        ("random", 1, 3),
    ]
    assert sorted(runs[0].metrics) == ["voc/mAP_11pt", "voc/mAP_area"]
    summary = summarize(runs)
    assert f"run {empty} has no completed cycle; left out" in summary.warnings


def test_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no metrics.jsonl and no subdirectory with one"):
        load_runs(tmp_path / "empty")
    run = make_run(tmp_path / "x", "random", 1, RANDOM)
    (run / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has metrics.jsonl but no config.json"):
        load_runs(run)
    run = make_run(tmp_path / "y", "random", 1, RANDOM)
    with pytest.raises(
        ValueError,
        match=r"must be one of the metrics the runs report: voc/mAP_11pt, "
        r"voc/mAP_area. Got 'coco/AP' instead",
    ):
        summarize(load_runs(run), metric="coco/AP")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"cycle": 1, "labelled_images": 2', r"metrics.jsonl, line 2: not valid JSON"),
        ('{"cycle": 1, "labelled_images": 20, "labelled_boxes": 3}', r"line 2: missing field\(s\) metrics"),
        ('{"cycle": 2, "labelled_images": 20, "labelled_boxes": 3, "metrics": {}}', r"line 2: expected cycle 1"),
        (
            '{"cycle": 1, "labelled_images": 20, "labelled_boxes": 3, "metrics": {"m": "high"}}',
            r"line 2: metric 'm' must be a number or null",
        ),
        (
            '{"cycle": 1, "seed": 7, "labelled_images": 20, "labelled_boxes": 3, "metrics": {}}',
            r"line 2: 'seed' is 7 but config.json says 1",
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    run = make_run(tmp_path, "random", 1, RANDOM[:1])
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(ValueError, match=message):
        load_runs(run)


def test_duplicate_strategy_and_seed_is_an_error(tmp_path):
    make_run(tmp_path / "a", "random", 1, RANDOM)
    make_run(tmp_path / "b", "random", 1, RANDOM)
    with pytest.raises(ValueError, match=r"both strategy 'random' with seed 1; a paired comparison needs one run"):
        load_runs(tmp_path)


def test_format_table_is_markdown(runs_root):
    text = format_table(summarize(load_runs(runs_root)))
    lines = text.splitlines()
    assert (
        "| strategy | AUC (images) | AUC (boxes) | final voc/mAP_area | final - random, per seed "
        "| images saved vs random | boxes saved vs random | seeds |"
    ) in lines
    assert (
        "| entropy | 0.4000 ± 0.0141 | 0.4000 ± 0.0141 | 0.5000 ± 0.0141 | +0.1000 / +0.1000 | 33.3% | 0.0% | 2 |"
    ) in lines
    assert "| entropy | 0 | 10 | 10 | 0.3000 ± 0.0141 | 50.0% | 75.0% |" in lines
    # above random's whole curve: a lower bound against its last point (30 images, 50 boxes), marked as such
    assert "| entropy | 2 | 30 | 90 | 0.5000 ± 0.0141 | ≥ 0.0% | ≥ -80.0% |" in lines
    table_lines = [line for line in lines if line.startswith("|")]
    assert len({line.count("|") for line in table_lines[:4]}) == 1  # header, rule and rows align


def test_write_report_files(runs_root, tmp_path):
    out = tmp_path / "report"
    summary = write_report(runs_root, out, metric="voc/mAP_area", baseline="random")
    for name in ("metric_vs_images.png", "metric_vs_boxes.png"):
        png = out / name
        assert png.stat().st_size > 5000
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 300
    data = json.loads((out / "summary.json").read_text())  # strict JSON: NaN was written as null
    assert data == summary.to_dict()
    entropy = data["strategies"]["entropy"]
    assert entropy["labels_saved"]["images"]["saved_pct"][2] is None
    assert entropy["auc_boxes"]["mean"] == pytest.approx(0.4)
    assert entropy["seeds"] == [1, 2] and data["metric"] == "voc/mAP_area"
    report = (out / "report.md").read_text()
    assert format_table(summary) in report and "![metric_vs_boxes](metric_vs_boxes.png)" in report
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary files left behind
    again = plot(summary, tmp_path / "again")  # same numbers, same pixels and bytes
    assert [p.read_bytes() for p in again] == [(out / p.name).read_bytes() for p in again]


def test_import_has_no_side_effects():
    code = "import sys, activedet.report; assert 'matplotlib' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
