"""The published figures that a committed record holds (benchmarks/results/) are what `activedet report` computes
from it: the README and docs cannot drift from the runs behind them."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from test_retrain import benchmark_script

from activedet.report import draws
from activedet.report.runs import load_runs
from activedet.report.savings import paired_saved
from activedet.report.summary import summarize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = (ROOT / "README.md").read_text()
BENCHMARKS_MD = (ROOT / "docs" / "benchmarks.md").read_text()
PEOPLE = RESULTS / "bench3-people"
#: the labelled sets of PEOPLE and BOX trained again under another draw (activedet retrain --salt again)
AGAIN = RESULTS / "bench3-again"
#: the labelled sets of BOX and PEOPLE's random trained again under a third draw (--salt third)
THIRD = RESULTS / "bench3-third"
#: the default chain spending 320 true boxes per cycle (simulated labelling)
BOX = RESULTS / "bench3-box"
BOX_ARM = "compose[criteria=[entropy,class_balance]] +budget[320 boxes]"
#: the same chain with a 4x shortlist (factors: [4])
BOX4 = RESULTS / "bench3-box4"
BOX4_ARM = "compose[criteria=[entropy,class_balance],factors=[4]] +budget[320 boxes]"
#: the same chain with class_balance's gain per expected box (class_balance: {per_box: true})
BOXPB = RESULTS / "bench3-boxpb"
BOXPB_ARM = 'compose[class_balance={"per_box":true},criteria=[entropy,class_balance]] +budget[320 boxes]'
#: the box budget and random at 16 epochs per cycle (random run on until it reached every seed's box-budget mAP)
BOXP2 = RESULTS / "bench3-boxp2"
BOXP2_ARM = 'compose[class_balance={"power":2},criteria=[entropy,class_balance]] +budget[320 boxes]'
BOXP05 = RESULTS / "bench3-boxp05"
BOXP05_ARM = 'compose[class_balance={"power":0.5},criteria=[entropy,class_balance]] +budget[320 boxes]'
BOX16 = RESULTS / "bench16"
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


def _shown(interval, bound: bool = False) -> str:
    """``mean% [low, high]``; the interval is a bound (some seed above its random curve) only where ``bound``."""
    assert interval.bound == bound
    return f"{interval.mean:.1f}% [{interval.low:.1f}, {interval.high:.1f}]"


def _point(arm, i: int, t: int) -> str:
    """Seed ``i``'s labelled images / boxes / mAP at cycle ``t``, as the docs' per-seed tables give them."""
    return f"{int(arm.images_per_seed[i][t])} / {int(arm.boxes_per_seed[i][t]):,} / {arm.metric_per_seed[i][t]:.3f}"


@pytest.fixture(scope="module")
def people():
    return summarize(load_runs(PEOPLE), cycles=3)


@pytest.fixture(scope="module")
def box_budget():
    """The box budget's record paired with the people record's random runs, over cycles 0-3."""
    return summarize([*load_runs(PEOPLE / "random"), *load_runs(BOX)], cycles=3)


def test_the_record_reproduces_the_published_random_curves():
    documented = _documented_random_curves()
    assert sorted(documented) == [0, 1, 2, 3, 4]
    random = {run.seed: run for run in load_runs(PEOPLE / "random")}
    assert sorted(random) == [0, 1, 2, 3, 4]
    for seed, run in random.items():
        np.testing.assert_array_equal(run.labelled_images, [200, 300, 400, 500, 600, 700, 800])
        assert np.round(run.metrics["voc/mAP_area"], 3).tolist() == documented[seed][:7], seed


def test_randoms_half_of_the_image_budget_table_is_the_record():
    """The README's first table (and docs/benchmarks.md's copy): `random`'s mAP and boxes bought at 300-500 images
    are the record's runs over seeds 0-4 (the default's arm: the test below)."""
    arm = summarize(load_runs(PEOPLE / "random"), cycles=3).strategies["random"]
    assert arm.seeds == [0, 1, 2, 3, 4] and arm.images_mean[1:].tolist() == [300, 400, 500]
    cycles = (1, 2, 3)
    cells = [f"{arm.metric_mean[t]:.3f} ± {arm.metric_std[t]:.3f}" for t in cycles]
    row = f"| `random`: mAP | {' | '.join(cells)} |"
    bought = [f" / {arm.boxes_mean[t]:,.0f} ± {arm.boxes_std[t]:.0f}" for t in cycles]
    for text in (README, BENCHMARKS_MD):
        assert row in text.splitlines(), row
        (line,) = [line for line in text.splitlines() if line.startswith("| boxes bought: default / random |")]
        cells = [cell.strip() for cell in line.split("|")[2:-1]]
        assert len(cells) == 3 and all(cell.endswith(b) for cell, b in zip(cells, bought)), (line, bought)


def test_the_people_arms_savings_are_the_docs(people):
    arm = people.strategies[PEOPLE_ARM]
    assert arm.seeds == [0, 1, 2, 3, 4]
    section = _section("### Spending calibrated predicted boxes, as with people (5 seeds)")
    for axis in ("images", "boxes"):
        cells = [_shown(cell) for cell in arm.paired_saved(axis)[1:]]
        shown = f"{axis} saved {cells[0]}, {cells[1]}, **{cells[2]}**"
        assert shown in section, shown


@pytest.mark.parametrize("record", [AGAIN, THIRD], ids=["again", "third"])
def test_the_retrained_record_holds_the_same_labelled_sets(record):
    first = {(run.strategy, run.seed): run for run in [*load_runs(PEOPLE), *load_runs(BOX)]}
    again = {(run.strategy, run.seed): run for run in load_runs(record)}
    assert set(again) <= set(first) and {seed for _, seed in again} == {0, 1, 2, 3, 4}
    for key, run in again.items():
        cycles = len(run.labelled_images)
        # random to 700 images (cycles 0-5), seed 2 to 800: two arms' sets end above its 700-image point
        assert cycles == ({2: 7}.get(key[1], 6) if key[0] == "random" else 4), key
        np.testing.assert_array_equal(run.labelled_images, first[key].labelled_images[:cycles])
        np.testing.assert_array_equal(run.labelled_boxes, first[key].labelled_boxes[:cycles])
        assert not np.array_equal(run.metrics["voc/mAP_area"], first[key].metrics["voc/mAP_area"][:cycles]), key


def test_random_at_800_images_under_the_other_draws_is_the_docs():
    """Seed 2's random set at 800 images trained under the `again` and `third` draws, as the docs cite it."""
    seed_2 = [next(run for run in load_runs(record / "random") if run.seed == 2) for record in (AGAIN, THIRD)]
    shown = [f"{run.metrics['voc/mAP_area'][6]:.3f}" for run in seed_2]
    section = _section("### A budget in boxes over three cycles (5 seeds)")
    assert f"seed 2's `random` set at 800 images was trained under both too: {shown[0]} and {shown[1]}" in section


def _check_per_seed_rows(arm, section: str, last: int = 3) -> None:
    """The docs' per-seed rows of an arm: seed, images / boxes / mAP at cycles 0 to ``last``, images and boxes saved
    at 1 to ``last``."""
    for i, seed in enumerate(arm.seeds):
        cells = ", ".join(_point(arm, i, t) for t in range(last + 1))
        saved = [
            ", ".join(f"{v:.1f}%" for v in getattr(arm, f"{a}_saved_per_seed")[i][1:]) for a in ("images", "boxes")
        ]
        assert f"| {seed} | {cells} | {saved[0]} | {saved[1]} |" in section, seed


NOT_WIDER_HEADING = "### What did not widen the box budget's lead (a summary of the sections below)"


def _section_text(heading: str, text: str = BENCHMARKS_MD) -> str:
    """``text`` (docs/benchmarks.md) from ``heading`` to the next heading or the end, as written."""
    start = text.index(heading)
    end = re.compile(r"\n#{2,3} ").search(text, start + 1)  # not a bash comment in a code block
    return text[start : end.start() if end else None]


def _section(heading: str, text: str = BENCHMARKS_MD) -> str:
    """:func:`_section_text`, flattened."""
    return _flat(_section_text(heading, text))


def _cycle_0(record: Path) -> list[tuple[int, int, int, float]]:
    """Each run's seed, labelled images and boxes and mAP at cycle 0: equal for two records whose runs share their
    initial sets and cycle-0 models."""
    return sorted(
        (r.seed, r.labelled_images[0], r.labelled_boxes[0], r.metrics["voc/mAP_area"][0]) for r in load_runs(record)
    )


def _draw_table(arm: dict, heading: str, rows: tuple[str, ...]) -> dict[str, list[str]]:
    """Check the docs section's table of an arm under several draws (one row per draw, named by ``rows``: the runs'
    own training first, then each retraining; then each seed's mean over the draws) against ``arm``; return each
    axis's cells of the mean at cycles 1-3."""
    section, count = _section(heading), {2: "two", 3: "three"}[len(rows)]
    means = {}
    for axis in ("images", "boxes"):
        for d, row in enumerate(rows):
            cells = [_shown(draws.mean_interval(arm[axis][d, :, t])) for t in (1, 2, 3)]
            assert f"| {axis} saved: {row} | {' | '.join(cells)} |" in section, (row, cells)
        mean = [_shown(draws.over_draws(arm, axis, t)) for t in (1, 2, 3)]
        row = f"| **{axis} saved: each seed's mean over the {count} draws** | {mean[0]} | {mean[1]} | **{mean[2]}** |"
        assert row in section, row
        means[axis] = mean
    return means


def _retrained_at_cycle_3(arm: dict, draw: int = 1) -> str:
    """The images and boxes ``draw`` (a retraining) saved at cycle 3, as the prose gives them."""
    images, boxes = (draws.mean_interval(arm[axis][draw, :, 3]).mean for axis in ("images", "boxes"))
    return f"{images:.1f}% and {boxes:.1f}%"


def test_the_savings_under_another_draw_are_the_docs():
    arm = draws.draw_savings([PEOPLE, AGAIN], cycles=3)[PEOPLE_ARM]
    heading = "### The people arm under another training draw (5 seeds)"
    means = _draw_table(arm, heading, ("the runs' own training", "retrained"))
    shown = f"the people arm saved **{means['images'][2]} of images and {means['boxes'][2]} of boxes**"
    assert shown in _section(heading), shown


def test_the_box_budgets_savings_are_the_readmes(box_budget):
    """The README's box-budget table (320 true boxes per cycle) is what the record computes, paired with the
    record's random runs (the same runs bit for bit: the first test)."""
    arm = box_budget.strategies[BOX_ARM]
    assert arm.seeds == [0, 1, 2, 3, 4]
    readme = _flat(README)
    images = [f"{t} ({round(n)})" for t, n in enumerate(arm.images_mean[1:], 1)]
    assert f"| cycle (labelled images) | {' | '.join(images)} |" in readme, images
    for axis in ("images", "boxes"):
        cells = [_shown(cell) for cell in arm.paired_saved(axis)[1:]]
        assert f"| {axis} saved | {' | '.join(cells)} |" in readme, cells


def test_the_box_budgets_savings_under_three_draws_are_the_docs_and_the_readmes():
    arm = _box_budget_draws()
    heading = "### How much of the box budget's lead is one training draw (5 seeds, three draws)"
    rows = ("the runs' own training", "retrained (`again`)", "retrained (`third`)")
    means = _draw_table(arm, heading, rows)
    readme, section = _flat(README), _section(heading)
    for axis, mean in means.items():
        assert f"| **{axis} saved, mean of three training draws** | {mean[0]} | {mean[1]} | **{mean[2]}** |" in readme
    shown = f"saved {_retrained_at_cycle_3(arm, 1)}, then {_retrained_at_cycle_3(arm, 2)}"
    assert shown in readme, shown
    per_seed = {axis: arm[axis][:, :, 3].mean(axis=0) for axis in ("images", "boxes")}
    spread = (
        f"every seed saved {per_seed['images'].min():.1f}-{per_seed['images'].max():.1f}% of the images and "
        f"{per_seed['boxes'].min():.1f}-{per_seed['boxes'].max():.1f}% of the boxes"
    )
    assert spread in readme, spread
    # the two draws the people arm has: the box budget over the same two
    two = draws.draw_savings([[PEOPLE / "random", BOX], AGAIN], cycles=3)[BOX_ARM]
    cells = [_shown(draws.over_draws(two, axis, 3)) for axis in ("images", "boxes")]
    assert f"the box budget saves {cells[0]} and {cells[1]}" in section, cells


@pytest.mark.parametrize(
    "record,label",
    [(BOX4, BOX4_ARM), (BOXPB, BOXPB_ARM), (BOXP2, BOXP2_ARM), (BOXP05, BOXP05_ARM)],
    ids=["factors-4", "per-box", "power-2", "power-0.5"],
)
def test_a_variant_of_the_box_budget_and_its_difference_from_it_are_the_docs(record, label):
    """The box budget's variants (a 4x shortlist; the class gain per expected box), one draw each: per seed, over
    the seeds and paired with the box budget's runs at cycle 3."""
    summary = summarize([*load_runs(PEOPLE / "random"), *load_runs(BOX), *load_runs(record)], cycles=3)
    variant, box = summary.strategies[label], summary.strategies[BOX_ARM]
    assert variant.seeds == box.seeds == [0, 1, 2, 3, 4]
    section = _section("### A budget in boxes over three cycles (5 seeds)")
    _check_per_seed_rows(variant, section)
    for axis in ("images", "boxes"):
        cells = [_shown(cell) for cell in variant.paired_saved(axis)[1:]]
        assert f"{axis} saved {cells[0]}, {cells[1]}, **{cells[2]}**" in section, cells
    differences = []
    for axis in ("images", "boxes"):
        d = draws.mean_interval(
            getattr(variant, f"{axis}_saved_per_seed")[:, 3] - getattr(box, f"{axis}_saved_per_seed")[:, 3]
        )
        differences.append(
            f"{axis} saved {d.mean:+.1f}{' points' if axis == 'images' else ''} [{d.low:+.1f}, {d.high:+.1f}]"
        )
    d = draws.mean_interval(variant.metric_per_seed[:, 3] - box.metric_per_seed[:, 3])
    shown = ", ".join([*differences, f"mAP {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"])
    assert shown in section, shown
    if record in (BOXP2, BOXP05):  # bought at cycle 3, and the mAP paired at cycles 1 and 2
        images, boxes = variant.images_per_seed[:, 3].mean(), variant.boxes_per_seed[:, 3].mean()
        bought = f"with {images:.0f} images and {boxes:,.0f} boxes"
        assert f"{bought} at cycle 3 (the box budget's rerun: {box.images_per_seed[:, 3].mean():.0f} and" in section
        early = [np.mean(variant.metric_per_seed[:, t] - box.metric_per_seed[:, t]) for t in (1, 2)]
        assert f"level at cycles 1 and 2 (mAP {early[0]:+.3f} and {early[1]:+.3f})" in section, early
    if record == BOXPB:  # what the prose compares cycle by cycle
        mine, theirs = (arm.paired_saved("boxes") for arm in (variant, box))
        shown = (
            f"more boxes at cycles 1 and 2 ({mine[1].mean:.1f}% and {mine[2].mean:.1f}%, against {theirs[1].mean:.1f}%"
        )
        assert f"{shown} and {theirs[2].mean:.1f}%)" in section, shown
        bought = [f"{a.images_per_seed[:, 3].mean():.0f}" for a in (variant, box)]
        boxes = [f"{a.boxes_per_seed[:, 3].mean():,.0f}" for a in (variant, box)]
        shown = (
            f"{bought[0]} images for {boxes[0]} boxes at cycle 3, against the box budget's {bought[1]} for {boxes[1]}"
        )
        assert shown in section, shown


def test_class_balances_power_2_and_0_5_are_the_strategies_docs():
    """strategies.md's figures: each power's three-draw mean at cycle 3 (measured, no bound) against the box
    budget's."""
    shown = []
    for record in (BOXP2, BOXP05):
        paired = _against_the_box_budgets_draws(_last_cycle_draws(record))["images"]
        assert not paired.bound.any()
        shown.append(f"{paired.mine.mean():.1f}%")
    default = f"{paired.theirs.mean():.1f}%"
    strategies = _flat((ROOT / "docs" / "strategies.md").read_text())
    expected = f"2 and 0.5 saved no more than 1 ({shown[0]} and {shown[1]} of the images at cycle 3"
    assert expected in strategies and f"where the default saved {default};" in strategies, expected


def test_the_box_budgets_fourth_cycle_is_the_docs():
    """The box budget's runs continued by a fourth cycle (bench3-box holds cycles 0-4): per seed and over the seeds,
    a bound where a seed ends above its random run's curve, and the paired change from cycle 3."""
    summary = summarize([*load_runs(PEOPLE / "random"), *load_runs(BOX)], cycles=4)
    arm = summary.strategies[BOX_ARM]
    assert arm.seeds == [0, 1, 2, 3, 4]
    section = _section("### A budget in boxes over three cycles (5 seeds)")

    def cell(axis: str, i: int, t: int) -> str:
        value, bound = getattr(arm, f"{axis}_saved_per_seed")[i, t], getattr(arm, f"{axis}_saved_bound")[i, t]
        return f"{'≥ ' if bound else ''}{value:.1f}%"

    for i, seed in enumerate(arm.seeds):
        saved = [f"{cell(axis, i, 3)}, {cell(axis, i, 4)}" for axis in ("images", "boxes")]
        assert f"| {seed} | {_point(arm, i, 4)} | {saved[0]} | {saved[1]} |" in section, seed
    bounds = [seed for i, seed in enumerate(arm.seeds) if arm.images_saved_bound[i, 4] or arm.boxes_saved_bound[i, 4]]
    assert bounds == [4], bounds
    last = load_runs(PEOPLE / "random")[4].metrics["voc/mAP_area"][-1]
    assert f"Seed 4's cycle-4 mAP is above its random run's last point ({last:.3f} at 800 images)" in section
    metric = arm.metric_per_seed[:, 4]
    shown = (
        f"mAP {metric.mean():.3f} ± {metric.std(ddof=1):.3f} with {arm.images_per_seed[:, 4].mean():.0f} images and "
        f"{arm.boxes_per_seed[:, 4].mean():,.0f} boxes"
    )
    assert shown in section, shown
    cells, changes = [], []
    for axis in ("images", "boxes"):
        cells.append(_shown(arm.paired_saved(axis)[4], bound=True))
        per_seed = getattr(arm, f"{axis}_saved_per_seed")
        d = draws.mean_interval(per_seed[:, 4] - per_seed[:, 3])
        changes.append(f"{d.mean:+.1f}{' points' if axis == 'images' else ''} [{d.low:+.1f}, {d.high:+.1f}] of {axis}")
    assert f"images saved at least {cells[0]}, boxes at least {cells[1]}" in section, cells
    assert f"at least {changes[0]} and {changes[1]}" in section, changes


def test_the_box_budgets_class_by_class_savings_are_the_docs():
    """benchmarks/per_class.py on the records prints the docs' table (each class's AP paired as the report pairs
    the mean AP)."""
    per_class = benchmark_script("per_class")
    rows = per_class.class_savings(PEOPLE / "random", BOX, cycle=3)
    assert [row["name"] for row in rows][:3] == ["zero", "one", "two"] and len(rows) == 10
    table = per_class.format_rows(rows, 3)
    section = BENCHMARKS_MD[BENCHMARKS_MD.index("### Where the box budget's saving comes from") :]
    assert table in section, table
    # the ordering the prose describes: the most frequent class saves least, the two rarest the most
    means = {row["name"]: np.nanmean(row["saved"]) for row in rows}
    assert means["zero"] == min(means.values()) and {"seven", "nine"} == set(sorted(means, key=means.get)[-2:])
    rarest = min(means["seven"], means["nine"])
    shown = f"from {means['zero']:.1f}% for the most frequent class to at least {rarest:.0f}% for the two rarest"
    assert shown in _flat(README), shown


def test_the_box_budget_at_16_epochs_is_the_docs(box_budget):
    """The box budget and random at 16 epochs per cycle (bench16): per seed, over the seeds, paired with the
    8-epoch record, and random's extended curve (every saving measured, none a bound)."""
    summary = summarize(load_runs(BOX16), cycles=3)
    arm = summary.strategies[BOX_ARM]
    assert arm.seeds == [0, 1, 2, 3, 4] and not arm.images_saved_bound.any() and not arm.boxes_saved_bound.any()
    section = _section("### The box budget at 16 epochs per cycle (5 seeds, one draw)")
    _check_per_seed_rows(arm, section)
    shown = {axis: ", ".join(_shown(cell) for cell in arm.paired_saved(axis)[1:]) for axis in ("images", "boxes")}
    assert f"images saved {shown['images']}; boxes saved {shown['boxes']}" in section, shown
    random = {run.seed: run for run in load_runs(BOX16 / "random")}
    at_600 = ", ".join(f"{random[seed].metrics['voc/mAP_area'][4]:.3f}" for seed in range(4))
    assert f"{at_600} and {random[4].metrics['voc/mAP_area'][4]:.3f} at 600 images" in section, at_600
    eight = box_budget.strategies[BOX_ARM]
    # per seed and cycle, the 16-epoch saving minus the 8-epoch one
    change = {
        a: getattr(arm, f"{a}_saved_per_seed") - getattr(eight, f"{a}_saved_per_seed") for a in ("images", "boxes")
    }
    changes = []
    for axis in ("images", "boxes"):
        intervals = [draws.mean_interval(change[axis][:, t]) for t in (1, 2, 3)]
        changes.append(", ".join(f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]" for d in intervals))
    assert f"the images saved changed by {changes[0]} points" in section, changes
    assert f"the boxes saved by {changes[1]}." in section, changes


RFS = RESULTS / "rfs-cycle3" / "retrained.txt"
_RETRAINED = re.compile(
    r"^(?P<runs>.+)/seed(?P<seed>\d) cycle (?P<cycle>\d): (?P<images>\d+) images, (?P<boxes>\d+) boxes, "
    r"trained in \d+ s: voc/mAP_area (?P<metric>[\d.]+)$"
)


def _checked_retrained(path: Path) -> list[tuple[object, int, float]]:
    """The lines `activedet retrain --cycle T` printed into ``path``: ``(the record's run, T, retrained metric)``,
    each checked to be the labelled set of that run (the same images and boxes at that cycle)."""
    runs: dict[str, dict[int, object]] = {}  # each record's runs by seed, read once
    checked = []
    for line in path.read_text().splitlines():
        row = _RETRAINED.match(line).groupdict()
        if row["runs"] not in runs:
            runs[row["runs"]] = {run.seed: run for run in load_runs(ROOT / row["runs"])}
        run = runs[row["runs"]][int(row["seed"])]
        t = int(row["cycle"])
        assert (run.labelled_images[t], run.labelled_boxes[t]) == (int(row["images"]), int(row["boxes"])), line
        checked.append((run, t, float(row["metric"])))
    return checked


#: `random`'s labelled sets past PEOPLE's `random` runs (benchmarks/random_next.py): each seed's config, X_L_7.npy on
NEXT = RESULTS / "random-next"


def _checked_next(path: Path) -> list[tuple[int, int, int, int, float]]:
    """The lines `activedet retrain --cycle T` printed into ``path`` for NEXT's sets: ``(seed, T, images, boxes,
    retrained metric)``, each set checked to be `random`'s selection from the set of cycle T - 1 (PEOPLE's run of
    that seed, or NEXT's set before), 100 images more."""
    random_next = benchmark_script("random_next")
    runs = {run.seed: run for run in load_runs(PEOPLE / "random")}
    checked = []
    for line in path.read_text().splitlines():
        row = _RETRAINED.match(line).groupdict()
        assert ROOT / row["runs"] == NEXT, line
        seed, t, images = int(row["seed"]), int(row["cycle"]), int(row["images"])
        run = runs[seed]
        assert t >= len(run.labelled_images) and images == 200 + 100 * t, line
        before = (run.path if t == len(run.labelled_images) else NEXT / f"seed{seed}") / f"X_L_{t - 1}.npy"
        made = random_next.random_next(np.load(before), pool_size=4000, seed=seed, cycle=t - 1, budget=100)
        np.testing.assert_array_equal(np.load(NEXT / f"seed{seed}" / f"X_L_{t}.npy"), made, err_msg=line)
        checked.append((seed, t, images, int(row["boxes"]), float(row["metric"])))
    return checked


def _retrained_lines() -> dict[tuple[str, int], dict[int, tuple[int, int, float, float]]]:
    """The record's lines: ``(arm, seed) -> {cycle: (images, boxes, retrained metric, the run's own metric)}`` (arm
    ``random`` or ``box``), each checked to be the labelled set of the record's run."""
    lines: dict[tuple[str, int], dict[int, tuple[int, int, float, float]]] = {}
    for run, t, metric in _checked_retrained(RFS):
        assert run.strategy in ("random", BOX_ARM), run.path
        arm = "random" if run.strategy == "random" else "box"
        counts = (int(run.labelled_images[t]), int(run.labelled_boxes[t]))
        lines.setdefault((arm, run.seed), {})[t] = (*counts, metric, run.metrics["voc/mAP_area"][t])
    return lines


def test_repeat_factor_sampling_at_cycle_3_is_the_docs():
    """The cycle-3 sets of random and the box budget trained again with repeat-factor sampling (the lines
    `activedet retrain --cycle 3` printed): the same sets as the records', and the docs' table from them."""
    metrics = {"random": {}, "box": {}}
    for (arm, seed), cycles in _retrained_lines().items():
        metrics[arm][seed] = (cycles[3][3], cycles[3][2])
    assert all(sorted(by_seed) == [0, 1, 2, 3, 4] for by_seed in metrics.values())
    own, rfs = ({arm: np.array([m[s][k] for s in range(5)]) for arm, m in metrics.items()} for k in (0, 1))
    section = _section("### Repeat-factor sampling in both arms (5 seeds, cycle 3 trained again)")

    def paired(d: np.ndarray) -> str:
        m = draws.mean_interval(d)
        return f"{m.mean:+.3f} [{m.low:+.3f}, {m.high:+.3f}]"

    for arm, name in (("random", "`random` (500 images)"), ("box", "box budget (404 images)")):
        cells = [f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" for v in (own[arm], rfs[arm])]
        row = f"| {name} | {cells[0]} | {cells[1]} | {paired(rfs[arm] - own[arm])} |"
        assert row in section, row
    gap_own, gap_rfs = own["box"] - own["random"], rfs["box"] - rfs["random"]
    row = f"| box budget − `random` | {paired(gap_own)} | {paired(gap_rfs)} | {paired(gap_rfs - gap_own)} |"
    assert row in section, row
    narrowed = draws.mean_interval(gap_own - gap_rfs)
    assert narrowed.low > 0 and (gap_rfs > 0).all()  # what the prose says: narrower, still ahead in every seed
    shown = f"{narrowed.mean:.3f} [{narrowed.low:.3f}, {narrowed.high:.3f}]"
    assert f"narrows by {shown} of mAP" in section, shown


def test_the_box_budgets_saving_with_repeat_factor_sampling_is_the_docs(box_budget):
    """random's cycle 3-5 sets and the box budget's cycle-3 sets trained again with repeat-factor sampling: the box
    budget's saving with it in both arms (random's retrained curve per seed), paired with its saving without it,
    and against random trained without it."""
    from activedet.report.savings import labels_needed

    lines = _retrained_lines()
    plain = {run.seed: run for run in load_runs(PEOPLE / "random")}
    own = box_budget.strategies[BOX_ARM]
    saved, against_plain = {"images": [], "boxes": []}, {"images": [], "boxes": []}
    for seed in range(5):
        curve, (*used, metric, _) = lines[("random", seed)], lines[("box", seed)][3]
        assert sorted(curve) == [3, 4, 5]
        for k, axis in enumerate(("images", "boxes")):
            needed = labels_needed([curve[t][k] for t in (3, 4, 5)], [curve[t][2] for t in (3, 4, 5)], metric)
            saved[axis].append(100 * (1 - used[k] / needed))  # NaN (and a failed test) where it is not measured
            run = plain[seed]
            needed = labels_needed(getattr(run, f"labelled_{axis}"), run.metrics["voc/mAP_area"], metric)
            against_plain[axis].append(100 * (1 - used[k] / needed))
    section = _section("### Repeat-factor sampling in both arms (5 seeds, cycle 3 trained again)")
    cells = {axis: _shown(draws.mean_interval(np.array(v))) for axis, v in saved.items()}
    shown = f"the box budget saved {cells['images']} of images and {cells['boxes']} of boxes at cycle 3"
    assert shown in section, shown
    changes = []
    for axis in ("images", "boxes"):
        d = draws.mean_interval(np.array(saved[axis]) - getattr(own, f"{axis}_saved_per_seed")[:, 3])
        changes.append(f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]")
    shown = f"paired with its saving without it, {changes[0]} points of images and {changes[1]} of boxes"
    assert shown in section, shown
    cells = {axis: _shown(draws.mean_interval(np.array(v))) for axis, v in against_plain.items()}
    shown = f"against `random` trained without it, {cells['images']} of images and {cells['boxes']} of boxes"
    assert shown in section, shown


ND = RESULTS / "bench3-nd"
ND_ARM = "compose[criteria=[entropy,class_balance]] +budget[320 boxes] +near_duplicates[0.85]"


def _last_cycle_draws(record: Path, last: int = 3) -> dict[str, dict[str, np.ndarray]]:
    """A record's saving per seed at cycle ``last`` under each draw: its own runs' training (``train``) and those sets
    retrained (the lines of ``retrained-again.txt``, ``retrained-third.txt``, each checked to be the record's set),
    each paired with `random`'s sets trained under the same draw by the report's rule (``<axis>_bound``: a seed
    above random's whole curve under that draw, its saving a lower bound)."""
    own = {run.seed: run for run in load_runs(record)}
    random = {"train": PEOPLE / "random", "again": AGAIN / "random", "third": THIRD / "random"}
    saved = {}
    for draw, folder in random.items():
        curves = {run.seed: run for run in load_runs(folder)}
        if draw == "train":
            points = {
                s: (run.labelled_images[last], run.labelled_boxes[last], run.metrics["voc/mAP_area"][last])
                for s, run in own.items()
            }
        else:
            points = {}
            for run, t, metric in _checked_retrained(record / f"retrained-{draw}.txt"):
                assert run.path.parent == own[run.seed].path.parent and t == last, run.path
                points[run.seed] = (run.labelled_images[last], run.labelled_boxes[last], metric)
        assert sorted(points) == [0, 1, 2, 3, 4], draw
        saved[draw] = {}
        for k, axis in enumerate(("images", "boxes")):
            pairs = []
            for s in range(5):
                curve = (getattr(curves[s], f"labelled_{axis}"), curves[s].metrics["voc/mAP_area"])
                pairs.append(paired_saved([points[s][k]], [points[s][2]], *curve))
            saved[draw][axis] = np.array([value[0] for value, _ in pairs])
            saved[draw][f"{axis}_bound"] = np.array([bound[0] for _, bound in pairs])
    return saved


class _ThreeDraws(NamedTuple):
    """One axis of an arm against the box budget at cycle 3: each seed's mean over the three draws (``mine``, a
    lower bound for the seeds in ``bound``), the box budget's (``theirs``), and their paired ``difference``."""

    mine: np.ndarray
    theirs: np.ndarray
    difference: object
    bound: np.ndarray


@functools.cache
def _box_budget_draws() -> dict[str, np.ndarray]:
    """The box budget's savings under its three draws (bench3-box, bench3-again, bench3-third), read once: every
    arm with three draws is paired with them. Callers read, never write, the arrays."""
    return draws.draw_savings([[PEOPLE / "random", BOX], AGAIN, THIRD], cycles=3)[BOX_ARM]


def _against_the_box_budgets_draws(saved: dict[str, dict[str, np.ndarray]]) -> dict[str, _ThreeDraws]:
    """Per axis: the arm's three draws (``saved``) against the box budget's (bench3-box, bench3-again,
    bench3-third)."""
    box = _box_budget_draws()
    out = {}
    for axis in ("images", "boxes"):
        assert not box[f"{axis}_bound"][:, :, 3].any()
        mine = np.mean([saved[d][axis] for d in ("train", "again", "third")], axis=0)
        bound = np.any([saved[d][f"{axis}_bound"] for d in ("train", "again", "third")], axis=0)
        theirs = box[axis][:, :, 3].mean(axis=0)
        out[axis] = _ThreeDraws(mine, theirs, draws.mean_interval(mine - theirs, bound), bound)
    return out


def _cell(interval) -> str:
    """``mean% [low, high]``, after ``≥`` where the interval is a lower bound."""
    return ("≥ " if interval.bound else "") + _shown(interval, interval.bound)


def _points(interval) -> str:
    """A paired difference in points, after ``≥`` where it is a lower bound."""
    return ("≥ " if interval.bound else "") + f"{interval.mean:+.1f} [{interval.low:+.1f}, {interval.high:+.1f}]"


def _check_a_three_draw_arm(record: Path, label: str, heading: str, last: int = 3) -> tuple[object, dict]:
    """An arm's section: per seed and over the seeds in its own runs, its sets at cycle ``last`` under the other two
    draws, each seed's mean over the three, and that mean paired with the box budget's own three-draw mean at cycle
    3 (the same labels spent where ``last`` is not 3). Returns the arm's summary and that pairing per axis."""
    arm = summarize([*load_runs(PEOPLE / "random"), *load_runs(record)], cycles=last).strategies[label]
    assert arm.seeds == [0, 1, 2, 3, 4] and not arm.images_saved_bound.any() and not arm.boxes_saved_bound.any()
    section = _section(heading)
    _check_per_seed_rows(arm, section, last)
    for axis in ("images", "boxes"):
        cells = [_shown(cell) for cell in arm.paired_saved(axis)[1:]]
        shown = f"{axis} saved " + ", ".join(cells[:-1]) + f", **{cells[-1]}**"
        assert shown in section, shown
    saved = _last_cycle_draws(record, last)
    for axis in ("images", "boxes"):
        np.testing.assert_allclose(saved["train"][axis], getattr(arm, f"{axis}_saved_per_seed")[:, last])
    rows = {"the runs' own training": "train", "retrained: `again`": "again", "retrained: `third`": "third"}
    for name, draw in rows.items():
        cells = [
            _cell(draws.mean_interval(saved[draw][axis], saved[draw][f"{axis}_bound"])) for axis in ("images", "boxes")
        ]
        assert f"| {name} | {cells[0]} | {cells[1]} |" in section, (name, cells)
    paired = _against_the_box_budgets_draws(saved)
    cells = [_cell(draws.mean_interval(paired[axis].mine, paired[axis].bound)) for axis in ("images", "boxes")]
    assert f"| **each seed's mean over the three draws** | **{cells[0]}** | **{cells[1]}** |" in section, cells
    cells = [_shown(draws.mean_interval(paired[axis].theirs)) for axis in ("images", "boxes")]
    assert f"| the box budget, each seed's mean over its three draws | {cells[0]} | {cells[1]} |" in section, cells
    cells = [_points(paired[axis].difference) for axis in ("images", "boxes")]
    assert f"| paired difference, points | {cells[0]} | {cells[1]} |" in section, cells
    per_seed = [", ".join(f"{v:.1f}%" for v in paired[axis].mine) for axis in ("images", "boxes")]
    shown = f"the three-draw means of seeds 0-4 are {per_seed[0]} of images and {per_seed[1]} of boxes"
    assert shown in section, shown
    return arm, paired


PREVIEWED = RESULTS / "bench3-prev"
PREVIEWED_ARM = 'compose[class_balance={"classes":"previewed"},criteria=[entropy,class_balance]] +budget[320 boxes]'
PREVIEWED_HEADING = "### The box budget with each candidate's true classes: a ceiling (5 seeds, three draws)"


def test_the_box_budget_with_the_true_classes_is_the_docs():
    """The box budget with each candidate's classes read from its ground truth (bench3-prev): the three-draw
    section, the boxes bought per class, the cycle-0 figures the prose cites."""
    _check_a_three_draw_arm(PREVIEWED, PREVIEWED_ARM, PREVIEWED_HEADING)
    section = _section(PREVIEWED_HEADING)
    runs = load_runs(PREVIEWED)
    # the same cycle-0 models as the near-duplicate arm's (the same environment), as the prose says
    assert _cycle_0(PREVIEWED) == _cycle_0(ND)
    rarest = ("five", "six", "seven", "eight", "nine")  # the fewest test boxes (the per-class table above)
    ap = [r.metrics[f"voc/{name}/ap_area"][0] for r in runs for name in rarest]
    assert f"at cycle 0 its AP on each of the five rarest is {min(ap):.3f}-{max(ap):.3f} over the seeds" in section
    # the boxes bought per class: `per_class.py --boxes`'s output kept in the record, each row summing to its
    # folder's mean labelled boxes at cycle 3, and shown in the docs under plainer names
    table = (PREVIEWED / "boxes-per-class.txt").read_text().splitlines()
    folders = [PEOPLE / "random", BOX, PREVIEWED]
    names = ["`random` at 500 images (0-4)", "the box budget (0-4)", "the box budget, true classes (0-4)"]
    assert len(table) == 2 + len(folders) and table[0] in section  # the same classes in the same order
    for line, folder, name in zip(table[2:], folders, names):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        runs = load_runs(folder)
        assert cells[0].endswith(f"({', '.join(str(r.seed) for r in runs)})")
        counts = [int(cell.replace(",", "")) for cell in cells[1:]]
        mean_boxes = np.mean([r.labelled_boxes[3] for r in runs])
        assert abs(sum(counts[:-1]) - mean_boxes) <= len(counts) - 1 and counts[-1] == round(mean_boxes), line
        shown = f"| {name} | " + " | ".join(cells[1:]) + " |"
        assert shown in section, shown


def test_skipping_near_duplicate_picks_is_the_docs():
    """The box budget with near-duplicate picks skipped (bench3-nd)."""
    _check_a_three_draw_arm(ND, ND_ARM, "### Skipping near-duplicate picks with the box budget (5 seeds, three draws)")


SMALLER = RESULTS / "bench6-box160"
SMALLER_ARM = "compose[criteria=[entropy,class_balance]] +budget[160 boxes]"
SMALLER_HEADING = "### Half the box budget per cycle, twice the cycles (5 seeds, three draws)"


def _check_six_cycles_against_the_box_budget(record: Path, label: str, heading: str, box_budget) -> dict:
    """A six-cycle arm of 160 boxes per cycle: its cycle-6 sets hold the labels the box budget's cycle-3 sets hold,
    so the three-draw pairing is at equal labels; and at each even cycle, its mAP against the box budget's (one
    draw each) at the cycle that had spent as many boxes. Returns the pairing per axis."""
    mine, paired = _check_a_three_draw_arm(record, label, heading, last=6)
    section = _section(heading)
    box = box_budget.strategies[BOX_ARM]
    cells = []
    for t in (1, 2, 3):
        spent = mine.boxes_per_seed[:, 2 * t] - box.boxes_per_seed[:, t]
        assert np.abs(spent).max() <= 80, (t, spent)  # the same budget spent, up to the image that crosses it
        d = draws.mean_interval(mine.metric_per_seed[:, 2 * t] - box.metric_per_seed[:, t])
        cells.append(f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
    shown = f"mAP minus the box budget's at cycles 2, 4 and 6 (its cycles 1, 2, 3): {', '.join(cells)}"
    assert shown in section, shown
    counts = [
        f"{a.images_per_seed[:, t].mean():.0f} images and {a.boxes_per_seed[:, t].mean():,.0f} boxes"
        for a, t in ((mine, 6), (box, 3))
    ]
    shown = f"with {counts[0]} at cycle 6 (the box budget: {counts[1].replace(' images', '')} at cycle 3)"
    assert shown in section, shown
    return paired


def test_half_the_box_budget_over_six_cycles_is_the_docs(box_budget):
    """160 boxes per cycle over six cycles (bench6-box160)."""
    paired = _check_six_cycles_against_the_box_budget(SMALLER, SMALLER_ARM, SMALLER_HEADING, box_budget)
    section = _section(SMALLER_HEADING)
    below = [int((paired[axis].mine < paired[axis].theirs).sum()) for axis in ("images", "boxes")]
    ranges = [f"{paired[axis].theirs.min():.1f}-{paired[axis].theirs.max():.1f}%" for axis in ("images", "boxes")]
    assert below == [4, 4] and f"in four seeds of five (its {ranges[0]} and {ranges[1]})" in section, ranges


SMALLER_F4 = RESULTS / "bench6-box160f4"
SMALLER_F4_ARM = "compose[criteria=[entropy,class_balance],factors=[4]] +budget[160 boxes]"
SMALLER_F4_HEADING = "### Half the box budget per cycle with a 4x shortlist (5 seeds, three draws)"


def test_half_the_box_budget_with_a_4x_shortlist_is_the_docs(box_budget):
    """160 boxes per cycle over six cycles with a 4x shortlist (bench6-box160f4): against the box budget as the
    2x arm is, and each seed's three-draw mean paired with the 2x arm's (the same seeds, initial sets and draws)."""
    paired = _check_six_cycles_against_the_box_budget(SMALLER_F4, SMALLER_F4_ARM, SMALLER_F4_HEADING, box_budget)
    section = _section(SMALLER_F4_HEADING)
    assert _cycle_0(SMALLER_F4) == _cycle_0(SMALLER)  # the same initial sets and cycle-0 models
    narrow = _against_the_box_budgets_draws(_last_cycle_draws(SMALLER, 6))
    cells = []
    for axis in ("images", "boxes"):
        wider = paired[axis].mine - narrow[axis].mine
        assert (wider > 0).all(), (axis, wider)  # "ahead in all five seeds"
        cells.append(_points(draws.mean_interval(wider)))
    shown = f"ahead in all five seeds: {cells[0]} points of images and {cells[1]} of boxes"
    assert shown in section, shown
    for axis in ("images", "boxes"):
        assert paired[axis].difference.low < 0 < paired[axis].difference.high  # level with the box budget
    means = [f"{paired[axis].mine.mean():.1f}%" for axis in ("images", "boxes")]
    assert f"the highest three-draw mean measured here ({means[0]} and {means[1]})" in section, means
    shown = f"the six cycles with a 4x shortlist saved the most, {means[0]} of images and {means[1]} of boxes"
    assert shown in _section(NOT_WIDER_HEADING), shown


LOCALISATION = RESULTS / "bench3-lt"
LOCALISATION_ARM = "compose[criteria=[entropy,localization_tightness,class_balance],factors=[6,3]] +budget[320 boxes]"
LOCALISATION_HEADING = "### Localisation tightness in the box budget's shortlist (5 seeds, three draws)"


def test_localisation_tightness_in_the_shortlist_is_the_docs():
    """The box budget's chain with localisation tightness between entropy and class balance (bench3-lt): the
    three-draw section, and its cycle-0 models those of the near-duplicate arm (the same environment)."""
    _, paired = _check_a_three_draw_arm(LOCALISATION, LOCALISATION_ARM, LOCALISATION_HEADING)
    assert _cycle_0(LOCALISATION) == _cycle_0(ND)
    behind = [int((paired[axis].mine < paired[axis].theirs).sum()) for axis in ("images", "boxes")]
    assert f"behind the box budget's in {behind[0]} seeds of 5 in images and {behind[1]} in boxes" in _section(
        LOCALISATION_HEADING
    ), behind


@pytest.mark.parametrize(
    "record", [BOX4, BOXPB, BOXP2, BOXP05], ids=["4x-shortlist", "per-box", "power-2", "power-0.5"]
)
def test_a_variant_of_the_box_budget_under_three_draws_is_the_docs(record):
    """A variant's cycle-3 sets retrained under the box budget's other two draws, and each seed's mean over the
    three paired with the box budget's (the one-draw pairing was with the box budget's best draw)."""
    saved = _last_cycle_draws(record)
    paired = _against_the_box_budgets_draws(saved)
    section = _section("### A budget in boxes over three cycles (5 seeds)")
    retrained = [
        [_cell(draws.mean_interval(saved[d][axis], saved[d][f"{axis}_bound"])) for d in ("again", "third")]
        for axis in ("images", "boxes")
    ]
    shown = (
        f"saved {retrained[0][0]} and {retrained[0][1]} of images and {retrained[1][0]} and {retrained[1][1]} of boxes"
    )
    assert shown in section, shown
    mean = [_cell(draws.mean_interval(paired[axis].mine, paired[axis].bound)) for axis in ("images", "boxes")]
    diff = [_points(paired[axis].difference) for axis in ("images", "boxes")]
    shown = (
        f"each seed's mean over the three draws, {mean[0]} of images and {mean[1]} of boxes, paired with the box "
        f"budget's three-draw mean: images {diff[0]} points, boxes {diff[1]}"
    )
    assert shown in section, shown


def test_the_box_budgets_variants_side_by_side_are_the_docs():
    """The summary table of every variant of the box budget with three draws, and the range the prose gives."""
    variants = [
        ("a 4x shortlist (`factors: [4]`)", BOX4, 3),
        ("`class_balance: {per_box: true}`", BOXPB, 3),
        ("`class_balance: {power: 2}`", BOXP2, 3),
        ("`class_balance: {power: 0.5}`", BOXP05, 3),
        ("near-duplicate picks skipped (`near_duplicates: 0.85`)", ND, 3),
        ("each candidate's true classes (`classes: previewed`, a ceiling)", PREVIEWED, 3),
        ("160 boxes per cycle over six cycles", SMALLER, 6),
        ("160 boxes per cycle over six cycles, a 4x shortlist", SMALLER_F4, 6),
        ("localisation tightness in the shortlist (`factors: [6, 3]`)", LOCALISATION, 3),
    ]
    section = _section("### The box budget's variants side by side (5 seeds, three draws)")
    differences = {"images": [], "boxes": []}
    for name, record, last in variants:
        paired = _against_the_box_budgets_draws(_last_cycle_draws(record, last))
        cells = [_cell(draws.mean_interval(paired[axis].mine, paired[axis].bound)) for axis in ("images", "boxes")]
        cells += [_points(paired[axis].difference) for axis in ("images", "boxes")]
        row = f"| {name} | " + " | ".join(cells) + " |"
        assert row in section, row
        for axis in differences:
            differences[axis].append((paired[axis].difference, name))
    theirs = [_shown(draws.mean_interval(paired[axis].theirs)) for axis in ("images", "boxes")]
    assert f"The box budget itself: {theirs[0]} of images, {theirs[1]} of boxes." in section, theirs
    means = {axis: [d.mean for d, _ in v] for axis, v in differences.items()}
    shown = (
        f"from {max(means['images']):+.1f} to {min(means['images']):.1f} points of images and from "
        f"{max(means['boxes']):+.1f} to {min(means['boxes']):.1f} of boxes"
    )
    assert shown in section, shown
    for v in differences.values():  # "the highest mean" of the prose and of the 4x six-cycle section
        assert max(v, key=lambda pair: pair[0].mean)[1] == "160 boxes per cycle over six cycles, a 4x shortlist"
    below = [(axis, name) for axis, v in differences.items() for d, name in v if d.high < 0]
    assert below == [("images", "`class_balance: {per_box: true}`")], below
    assert not any(d.low > 0 for v in differences.values() for d, _ in v)  # none ahead


SSL24 = RESULTS / "ssl24-cycle0"
SSL24_HEADING = "## Five seeds at 24 epochs: a small gain on the first cycle"
SEMI_SUPERVISED_MD = (ROOT / "docs" / "semi-supervised.md").read_text()


def _teacher_student_runs() -> dict[int, object]:
    """ssl24-cycle0's teacher-student runs by seed (cycle 0 on each seed's 200 initial images, 24 epochs)."""
    (folder,) = [path for path in SSL24.iterdir() if path.name.startswith("random+ssl")]
    return {run.seed: run for run in load_runs(folder)}


def test_teacher_student_at_24_epochs_over_five_seeds_is_the_docs():
    """docs/semi-supervised.md's five-seed comparison (ssl24-cycle0): each seed's cycle-0 mAP, supervised and
    teacher-student, on the same 200 images, and the paired difference over the seeds."""
    section = _section(SSL24_HEADING, SEMI_SUPERVISED_MD)
    supervised = {run.seed: run for run in load_runs(SSL24 / "random")}
    ssl = _teacher_student_runs()
    assert sorted(supervised) == sorted(ssl) == [0, 1, 2, 3, 4]
    differences = []
    for seed in range(5):
        assert supervised[seed].labelled_images[0] == ssl[seed].labelled_images[0] == 200
        assert supervised[seed].labelled_boxes[0] == ssl[seed].labelled_boxes[0]  # the same initial set
        a, b = (runs[seed].metrics["voc/mAP_area"][0] for runs in (supervised, ssl))
        assert f"| {seed} | {a:.3f} | {b:.3f} | {b - a:+.3f} |" in section, seed
        differences.append(b - a)
    overall = draws.mean_interval(np.array(differences))
    for d, name in ((overall, "seeds 0-4"), (draws.mean_interval(np.array(differences[1:])), "seeds 1-4")):
        shown = f"{name}: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        assert shown in section, shown
    # in labels: where supervised training's 24-epoch curve (its 200-image runs above, then bench3-people's `random`
    # sets at 300 images retrained at 24 epochs) reaches each seed's teacher-student mAP
    curves = {
        seed: {key: values[:2] for key, values in curve.items()}
        for seed, curve in _supervised_24_epoch_curves().items()
    }
    assert sorted(curves) == [0, 1, 2, 3, 4]
    cells = []
    for axis in ("images", "boxes"):
        saved, bound = [], []
        for seed in range(5):
            x, curve = curves[seed][axis], curves[seed]["metric"]
            s, b = paired_saved([x[0]], [ssl[seed].metrics["voc/mAP_area"][0]], x, curve)
            saved.append(s[0])
            bound.append(b[0])
        cells.append(_cell(draws.mean_interval(np.array(saved), np.array(bound))))
    shown = f"saved {cells[0]} of the images and {cells[1]} of the boxes"
    assert shown in section, shown
    people = {run.seed: run for run in load_runs(PEOPLE / "random")}
    means = [
        np.mean([curves[seed]["metric"][1] for seed in range(5)]),
        np.mean([people[seed].metrics["voc/mAP_area"][1] for seed in range(5)]),
    ]
    shown = f"(mean {means[0]:.3f}; at the bench's 8 epochs the same sets scored {means[1]:.3f} on average)"
    assert shown in section, shown
    shown = (
        f"5 seeds: {overall.mean:+.3f} mAP [{overall.low:+.3f}, {overall.high:+.3f}] over supervised training at 24 "
        f"epochs, {cells[0]} of the images saved"
    )
    assert shown in _section(NOT_WIDER_HEADING), shown


PIPE24 = RESULTS / "pipe24"
PIPE24_HEADING = "## The whole pipeline at 24 epochs (5 seeds)"


def _run_curve(run, points: int | None = None) -> dict[str, list]:
    """A run's curve (``images``, ``boxes``, ``metric`` per point), its first ``points`` cycles (default: all)."""
    return {
        "images": list(run.labelled_images[:points]),
        "boxes": list(run.labelled_boxes[:points]),
        "metric": list(run.metrics["voc/mAP_area"][:points]),
    }


def _add_points(curves: dict[int, dict[str, list]], points) -> None:
    """Append ``(seed, cycle, images, boxes, metric)`` points (:func:`_random_points`) to each seed's curve."""
    for seed, _, images, boxes, metric in points:
        for key, value in (("images", images), ("boxes", boxes), ("metric", metric)):
            curves[seed][key].append(value)


def _check_same_start(curves: dict[int, dict[str, list]]) -> None:
    """Each seed's curve starts on PEOPLE's `random` run's 200 initial images (the same images and boxes)."""
    for run in load_runs(PEOPLE / "random"):
        assert (curves[run.seed]["images"][0], curves[run.seed]["boxes"][0]) == (
            run.labelled_images[0],
            run.labelled_boxes[0],
        )


def _supervised_24_epoch_curves() -> dict[int, dict[str, list]]:
    """Per seed, supervised `random` at 24 epochs: its 200 initial images (ssl24-cycle0's runs), then bench3-people's
    `random` sets at 300, 400, 500 ... images (its cycles 1, 2, 3 ...) retrained at 24 epochs (ssl24-cycle0's
    retrained-300.txt, then pipe24's retrained-400.txt, ...): images, boxes and mAP per point, as far as each seed's
    curve was trained."""
    curves = {run.seed: _run_curve(run, 1) for run in load_runs(SSL24 / "random")}
    _check_same_start(curves)
    later = sorted(PIPE24.glob("retrained-*.txt"), key=lambda path: int(path.stem.removeprefix("retrained-")))
    files = (SSL24 / "retrained-300.txt", *later)
    for cycle, path in enumerate(files, start=1):
        assert path.name == f"retrained-{200 + 100 * cycle}.txt", path  # no gap in the curve
        points = _random_points(path)
        for seed, t, *_ in points:
            assert t == cycle, path
            assert len(curves[seed]["metric"]) == cycle, (path, seed)  # each point once, in order
        _add_points(curves, points)
    # every seed has each point to 500 images; a later file may leave out a seed (its saving is then a bound, shown
    # as such) but no seed skips a point (each point once, in order, above)
    assert all(len(curve["metric"]) >= 4 for curve in curves.values()), "a seed lacks a point"
    return curves


def _random_points(path: Path) -> list[tuple[int, int, int, int, float]]:
    """The lines `activedet retrain --cycle T` printed into ``path`` for `random`'s sets, PEOPLE's or NEXT's (one
    cycle past them): ``(seed, T, images, boxes, retrained metric)``, each checked to be that set."""
    if ROOT / _RETRAINED.match(path.read_text().splitlines()[0])["runs"] == NEXT:
        return _checked_next(path)
    points = []
    for run, t, metric in _checked_retrained(path):
        assert (run.strategy, run.path.parent.parent.name) == ("random", PEOPLE.name), path
        points.append((run.seed, t, int(run.labelled_images[t]), int(run.labelled_boxes[t]), metric))
    return points


def _pipeline_runs() -> tuple[dict[int, object], int]:
    """pipe24's runs by seed (the box budget with teacher-student training) and the number of cycles they reached,
    the same for every seed."""
    (folder,) = [path for path in PIPE24.iterdir() if path.is_dir()]
    assert "+ssl[" in folder.name and "+budget[320boxes]" in folder.name
    pipeline = {run.seed: run for run in load_runs(folder)}
    (n_cycles,) = {len(run.metrics["voc/mAP_area"]) for run in pipeline.values()}  # every seed equally far
    return pipeline, n_cycles


def _saved_against(pipeline: dict[int, object], curves: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per axis (images, boxes): ``(saved, is_bound)``, each ``[seed, cycle]``, the runs ``pipeline`` (by seed)
    against each seed's ``curves`` (``images``, ``boxes``, ``metric`` per point)."""
    by_axis = {}
    for axis in ("images", "boxes"):
        pairs = [
            paired_saved(
                getattr(pipeline[s], f"labelled_{axis}"),
                pipeline[s].metrics["voc/mAP_area"],
                curves[s][axis],
                curves[s]["metric"],
            )
            for s in range(5)
        ]
        by_axis[axis] = (np.array([saved for saved, _ in pairs]), np.array([bound for _, bound in pairs]))
    return by_axis


def _per_seed(by_axis: dict, seed: int, cycles) -> list[str]:
    """Per axis, seed ``seed``'s savings at ``cycles`` as the docs' per-seed tables give them (``≥`` on a bound)."""
    return [
        ", ".join(("≥ " if bound[seed, t] else "") + f"{saved[seed, t]:.1f}%" for t in cycles)
        for saved, bound in by_axis.values()
    ]


def _over_seeds(by_axis: dict, t: int) -> dict[str, str]:
    """Per axis, the mean [interval] over the seeds at cycle ``t`` (``≥`` on a bound)."""
    return {axis: _cell(draws.mean_interval(saved[:, t], bound[:, t])) for axis, (saved, bound) in by_axis.items()}


def _keep_points(curve: dict, images) -> dict:
    """``curve`` (``images``, ``boxes``, ``metric`` per point) with only its points at the counts ``images``."""
    return {key: [values[curve["images"].index(n)] for n in images] for key, values in curve.items()}


def test_the_whole_pipeline_at_24_epochs_is_the_docs():
    """docs/semi-supervised.md's pipeline section (record pipe24): the box budget with teacher-student training at
    24 epochs against supervised `random` at 24 epochs, per seed and over the seeds, at every cycle the runs reached."""
    section = _section(PIPE24_HEADING, SEMI_SUPERVISED_MD)
    curves = _supervised_24_epoch_curves()
    pipeline, n_cycles = _pipeline_runs()
    ssl = _teacher_student_runs()
    assert sorted(pipeline) == sorted(curves) == [0, 1, 2, 3, 4]
    cycles = range(n_cycles)
    by_axis = _saved_against(pipeline, curves)
    for seed in range(5):
        run, curve = pipeline[seed], curves[seed]
        # cycle 0 is ssl24-cycle0's teacher-student model on the same 200 images
        assert run.metrics["voc/mAP_area"][0] == ssl[seed].metrics["voc/mAP_area"][0]
        assert (run.labelled_images[0], run.labelled_boxes[0]) == (curve["images"][0], curve["boxes"][0])
        points = ", ".join(
            f"{int(run.labelled_images[t])} / {int(run.labelled_boxes[t]):,} / {run.metrics['voc/mAP_area'][t]:.3f}"
            for t in cycles
        )
        figures = _per_seed(by_axis, seed, cycles)
        row = f"| {seed} | {points} | {', '.join(f'{m:.3f}' for m in curve['metric'])} | " + " | ".join(figures) + " |"
        assert row in section, row
    for t in cycles:
        cells = _over_seeds(by_axis, t)
        shown = f"cycle {t}: {cells['images']} of the images and {cells['boxes']} of the boxes saved"
        assert shown in section, shown
    last = n_cycles - 1
    means = [np.mean([getattr(pipeline[seed], f"labelled_{axis}")[last] for seed in range(5)]) for axis in by_axis]
    metric = np.array([pipeline[seed].metrics["voc/mAP_area"][last] for seed in range(5)])
    shown = (
        f"with {means[0]:.0f} images and {means[1]:,.0f} boxes on average "
        f"(mAP {metric.mean():.3f} ± {metric.std(ddof=1):.3f})"
    )
    assert shown in section, shown
    shown = f"saved {cells['images']} of the images and {cells['boxes']} of the boxes"
    assert shown in _flat(README), shown
    # the seeds past supervised `random`'s 800-image point are measured on its later sets (random-next)
    passed = [seed for seed in range(5) if metric[seed] > curves[seed]["metric"][6]]
    assert not any(bound[:, last].any() for _, bound in by_axis.values())
    ends = "- and ".join(f"{int(curves[seed]['images'][-1]):,}" for seed in passed)
    words = {1: "one seed", 2: "two seeds", 3: "three seeds"}
    shown = (
        f"({words[len(passed)]} passed supervised `random`'s 800-image point; theirs are measured on its {ends}-image"
    )
    assert shown in _flat(README), shown


def _listed(items) -> str:
    """``0``, ``0 and 2``, ``1, 3 and 4``: items as the docs' prose lists them."""
    *rest, last = map(str, items)
    return f"{', '.join(rest)} and {last}" if rest else last


TEACHER_RANDOM_HEADING = "## The strategy's share: `random` with the teacher too (5 seeds)"


def _random_with_the_teacher_curves() -> dict[int, dict[str, list]]:
    """Per seed, `random` with teacher-student training at 24 epochs: ssl24-cycle0's teacher-student model on the 200
    initial images, then bench3-people's `random` sets trained with the teacher (pipe24's random-teacher-N.txt, N
    images, in order): images, boxes and mAP per point."""
    curves = {seed: _run_curve(run, 1) for seed, run in _teacher_student_runs().items()}
    _check_same_start(curves)
    files = sorted(PIPE24.glob("random-teacher-*.txt"), key=lambda path: int(path.stem.rpartition("-")[2]))
    assert files, "no random-teacher-N.txt in the record"
    for path in files:
        points = _random_points(path)
        assert sorted(seed for seed, *_ in points) == [0, 1, 2, 3, 4], path
        assert all(images == int(path.stem.rpartition("-")[2]) for _, _, images, _, _ in points), path
        _add_points(curves, points)
    return curves


def test_the_strategys_share_with_the_teacher_on_both_sides_is_the_docs():
    """docs/semi-supervised.md's section on `random` trained with the teacher as well: per seed its mAP at each point
    beside supervised `random`'s on the same sets, the teacher's gain per point, and the pipeline's last cycle (about
    400 images) against `random` with the teacher at 400 images (the strategy's share, the same training both sides)."""
    section = _section(TEACHER_RANDOM_HEADING, SEMI_SUPERVISED_MD)
    teacher, supervised = _random_with_the_teacher_curves(), _supervised_24_epoch_curves()
    pipeline, n_cycles = _pipeline_runs()
    last = n_cycles - 1
    at_400 = teacher[0]["images"].index(400)
    gains, shares, wholes = [], [], []
    for seed in range(5):
        mine, theirs, run = teacher[seed], supervised[seed], pipeline[seed]
        same_sets = [theirs["metric"][theirs["images"].index(n)] for n in mine["images"]]
        gains.append(np.array(mine["metric"]) - np.array(same_sets))
        shares.append(run.metrics["voc/mAP_area"][last] - mine["metric"][at_400])
        wholes.append(run.metrics["voc/mAP_area"][last] - theirs["metric"][theirs["images"].index(400)])
        images, boxes, metric = run.labelled_images[last], run.labelled_boxes[last], run.metrics["voc/mAP_area"][last]
        point = f"{int(images)} / {int(boxes):,} / {metric:.3f}"
        row = (
            f"| {seed} | {', '.join(f'{m:.3f}' for m in mine['metric'])} | {', '.join(f'{m:.3f}' for m in same_sets)} "
            f"| {point} | {shares[-1]:+.3f} |"
        )
        assert row in section, row
    for k, images in enumerate(teacher[0]["images"]):
        d = draws.mean_interval(np.array(gains)[:, k])
        shown = f"with {images:.0f} images: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        assert shown in section, shown
    for d, baseline in (
        (draws.mean_interval(np.array(shares)), "`random` with the teacher"),
        (draws.mean_interval(np.array(wholes)), "supervised `random`"),
    ):
        shown = f"cycle {last} minus {baseline} at 400 images: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        assert shown in section, shown
    shown = f"every seed ahead by {min(shares):.3f} to {max(shares):.3f}"
    assert shown in section, shown
    gain, share = (draws.mean_interval(values) for values in (np.array(gains)[:, at_400], np.array(shares)))
    shown = (
        f"pipeline was {share.mean:+.3f} [{share.low:+.3f}, {share.high:+.3f}] mAP ahead of `random` trained with the "
        f"teacher at 400 images, and the teacher had lifted `random` by {gain.mean:+.3f} [{gain.low:+.3f}, "
        f"{gain.high:+.3f}] there"
    )
    assert shown in _flat(README), shown


def test_the_strategys_share_in_labels_is_the_docs():
    """The same section in labels: per seed and over the seeds, the images and boxes the pipeline saved at each cycle
    past 0 against `random` with the teacher (a straight line between its points); and how far keeping only those
    points moves the saving against supervised `random`, whose curve has a point every 100 images."""
    section = _section(TEACHER_RANDOM_HEADING, SEMI_SUPERVISED_MD)
    teacher, supervised = _random_with_the_teacher_curves(), _supervised_24_epoch_curves()
    pipeline, n_cycles = _pipeline_runs()
    cycles = range(1, n_cycles)

    mine = _saved_against(pipeline, teacher)
    for seed in range(5):
        row = f"| {seed} | " + " | ".join(_per_seed(mine, seed, cycles)) + " |"
        assert row in section, row
    for t in cycles:
        cells = _over_seeds(mine, t)
        shown = f"cycle {t}: {cells['images']} of the images and {cells['boxes']} of the boxes saved"
        assert shown in section, shown
    shown = f"the pipeline saved {cells['images']} of the images and {cells['boxes']} of the boxes at its third cycle"
    assert n_cycles == 4 and shown in _flat(README), shown
    # the line's coarseness: supervised `random`'s curve with only the points `random` with the teacher has
    thinned = {seed: _keep_points(curve, teacher[seed]["images"]) for seed, curve in supervised.items()}
    (full, full_bound), (thin, thin_bound) = (
        _saved_against(pipeline, curves)["images"] for curves in (supervised, thinned)
    )
    measured = [t for t in cycles if not (full_bound[:, t].any() or thin_bound[:, t].any())]
    moved = [thin[:, t] - full[:, t] for t in measured]
    shown = (
        f"moves the pipeline's saving of images against it at cycles {', '.join(map(str, measured))} by "
        f"{', '.join(f'{round(m.mean(), 1) + 0.0:+.1f}' for m in moved)} points on average (by at most "
        f"{max(np.abs(m).max() for m in moved):.1f} for a seed)"
    )
    assert shown in section, shown
    # and the teacher's own curve without its 600-image point: the straight line from 400 to 700 images
    without = {seed: _keep_points(curve, [n for n in curve["images"] if n != 600]) for seed, curve in teacher.items()}
    assert all(len(curve["images"]) == len(teacher[seed]["images"]) - 1 for seed, curve in without.items())
    cells = _over_seeds(_saved_against(pipeline, without), 3)
    shown = (
        f"Without its 600-image point, the straight line from 400 to 700 images gives {cells['images']} of the images "
        f"and {cells['boxes']} of the boxes at cycle 3"
    )
    assert shown in section, shown
    below = []  # seeds whose 600-image point lies below the straight line from 400 to 700 images
    for seed, curve in teacher.items():
        line = np.interp(600, without[seed]["images"], without[seed]["metric"])
        if curve["metric"][curve["images"].index(600)] < line:
            below.append(seed)
    above = [seed for seed in range(5) if seed not in below]
    shown = f"point lies below that line for seeds {_listed(below)} and above it for seeds {_listed(above)}"
    assert shown in section, shown


def test_random_next_gives_every_cycle_of_the_recorded_random_runs(tmp_path):
    """benchmarks/random_next.py (the library's `random` selection over the unlabelled images, seeded as the loop
    seeds it) gives each of the 30 transitions of the recorded `random` runs, so the set it writes one cycle past the
    record is the one the run would have labelled; and the script writes that set with the run's config, where its
    own output continues."""
    random_next = benchmark_script("random_next")
    for seed in range(5):
        run = PEOPLE / "random" / f"seed{seed}"
        for t in range(6):
            before, after = np.load(run / f"X_L_{t}.npy"), np.load(run / f"X_L_{t + 1}.npy")
            made = random_next.random_next(before, pool_size=4000, seed=seed, cycle=t, budget=100)
            np.testing.assert_array_equal(made, after, err_msg=f"seed {seed}, cycle {t}")
    random_next.main([str(PEOPLE / "random" / "seed1"), str(tmp_path / "seed1")])
    written = np.load(tmp_path / "seed1" / "X_L_7.npy")
    assert len(written) == 900 and set(np.load(PEOPLE / "random/seed1/X_L_6.npy")) < set(written)
    assert sorted(path.name for path in (tmp_path / "seed1").iterdir()) == ["X_L_7.npy", "config.json"]
    random_next.main([str(tmp_path / "seed1"), str(tmp_path / "again")])  # its output continues in turn
    assert set(written) < set(np.load(tmp_path / "again" / "X_L_8.npy"))
    with pytest.raises(SystemExit, match="no labelled set X_L_<t>.npy"):
        random_next.main([str(tmp_path), str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="expected a `random` run with an image budget"):
        random_next.main([str(BOX / BOX_ARM.replace(" ", "") / "seed0"), str(tmp_path / "box")])


#: the default strategy with the image budget, three cycles (the README's first table)
DEFAULT = RESULTS / "bench3-default"


def test_the_image_budget_table_is_the_record():
    """The README's first table and docs/benchmarks.md's section: the default's record against PEOPLE's `random`
    runs (the same seeds and initial sets), whose curves go on to 900 images where a seed needs it (random-900.txt:
    NEXT's sets trained under the runs' own draw, which reproduces the 900-image points the docs list)."""
    default = {run.seed: run for run in load_runs(DEFAULT)}
    random = {run.seed: run for run in load_runs(PEOPLE / "random")}
    assert sorted(default) == sorted(random) == [0, 1, 2, 3, 4]
    curves = {seed: _run_curve(run) for seed, run in random.items()}
    documented = _documented_random_curves()
    at_900 = _random_points(DEFAULT / "random-900.txt")
    assert sorted(seed for seed, *_ in at_900) == [0, 1, 2, 3, 4]
    for seed, _, _, _, metric in at_900:
        assert round(metric, 3) == documented[seed][7], seed  # the 900-image point, reproduced
    _add_points(curves, at_900)
    by_axis = _saved_against(default, curves)
    cycles = (1, 2, 3)
    mine = np.array([default[s].metrics["voc/mAP_area"][: len(cycles) + 1] for s in range(5)])
    theirs = np.array([random[s].metrics["voc/mAP_area"][: len(cycles) + 1] for s in range(5)])
    for seed in range(5):
        run = default[seed]
        np.testing.assert_array_equal(run.labelled_images, [200, 300, 400, 500])
        assert run.labelled_boxes[0] == random[seed].labelled_boxes[0] and mine[seed, 0] == theirs[seed, 0]
        points = ", ".join(f"{int(b):,} / {m:.3f}" for b, m in zip(run.labelled_boxes, mine[seed]))
        assert f"| {seed} | {points} | {' | '.join(_per_seed(by_axis, seed, cycles))} |" in BENCHMARKS_MD, seed
    above = [s for s in range(5) if mine[s, -1] > curves[s]["metric"][6]]  # past random's 800-image point
    assert all(mine[s, -1] < curves[s]["metric"][7] for s in above)  # so every figure is measured
    at = {n: " and ".join(f"{curves[s]['metric'][n]:.3f}" for s in above) for n in (6, 7)}
    shown = f"seeds {_listed(above)} ended above their random run's 800-image point ({at[6]}) and below its 900-image"
    assert f"{shown} one ({at[7]})" in _section("## Labels saved over three cycles on the bench data (5 seeds)"), shown
    gap = [draws.mean_interval(mine[:, t] - theirs[:, t]) for t in cycles]
    rows = [
        "| **default**: mAP | " + " | ".join(f"{mine[:, t].mean():.3f} ± {mine[:, t].std(ddof=1):.3f}" for t in cycles),
        "| mAP − random | " + " | ".join(f"{g.mean:+.3f} [{g.low:+.3f}, {g.high:+.3f}]" for g in gap),
    ]
    # the savings over the seeds, to the shown digit: seeds 1 and 4's 900-image points are read from lines printed to
    # four decimals, so a figure within 0.05 of a rounding edge may show either neighbour (boxes at 500: 23.7496)
    saved = {
        f"| **{axis} saved** |": [
            [iv.mean, iv.low, iv.high] for iv in (draws.mean_interval(by_axis[axis][0][:, t]) for t in cycles)
        ]
        for axis in ("images", "boxes")
    }
    boxes = np.array([default[s].labelled_boxes for s in range(5)])
    bought = [f"{boxes[:, t].mean():,.0f} ± {boxes[:, t].std(ddof=1):.0f} / " for t in cycles]
    for text in (README, BENCHMARKS_MD):
        for row in rows:
            assert row + " |" in text.splitlines(), row
        for head, figures in saved.items():
            (line,) = [line for line in text.splitlines() if line.startswith(head)]
            shown = [[float(v) for v in re.findall(r"-?\d+\.\d", cell)] for cell in line.split("|")[2:-1]]
            np.testing.assert_allclose(shown, figures, atol=0.051, err_msg=line)
        (line,) = [line for line in text.splitlines() if line.startswith("| boxes bought: default / random |")]
        cells = [cell.strip() for cell in line.split("|")[2:-1]]
        assert all(cell.startswith(b) for cell, b in zip(cells, bought, strict=True)), (line, bought)


#: one selection round (200 -> 300 images) of every seed method on Faster R-CNN, random on to 500 images
METHODS = RESULTS / "bench-methods"
#: each arm's name in the README's table, docs/benchmarks.md's table and its per-seed table
METHOD_ARMS = {
    "compose[criteria=[entropy,class_balance]]": ("`[entropy, class_balance]` (the default)",) * 2 + ("default",),
    "ppal": ("PPAL", "PPAL (`ppal`: DCUS 4B, then CCM k-medoids)", "PPAL"),
    "localization_tightness": ("LT/C", "LT/C (`localization_tightness`)", "LT/C"),
    "coreset": ("core-set", "core-set (`coreset`)", "core-set"),
    "influence": ("ISAL", "ISAL (`influence`)", "ISAL"),
    "localization_stability": ("LS+C", "LS+C (`localization_stability`)", "LS+C"),
    "cald": ("CALD as released", "CALD as released (`cald`)", "CALD"),
}


def _table_rows(lines: list[str]) -> dict[str, list[str]]:
    """The rows of the markdown tables among ``lines``: first cell -> the other cells, bold marks dropped."""
    rows = {}
    for line in lines:
        if line.startswith("| ") and not line.startswith("|---"):
            name, *cells = [cell.strip().replace("**", "") for cell in line.split("|")[1:-1]]
            rows[name] = cells
    return rows


def test_every_seed_methods_round_on_faster_rcnn_is_the_record():
    """The README's table of every seed method (its Faster R-CNN block) and docs/benchmarks.md's section on it:
    mAP at 300 images, the paired difference and the images and boxes saved over seeds 0-4, per seed too, and
    `random`'s curve to 500 images, on which every arm's 300-image mAP falls (no saving is a bound)."""
    summary = summarize(load_runs(METHODS), cycles=1)
    assert set(summary.strategies) == {"random", *METHOD_ARMS}
    random, curve = summary.strategies["random"], summary.baseline_extended
    assert random.seeds == curve.seeds == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(curve.images_per_seed, [[200, 300, 400, 500]] * 5)
    heading = "## Every seed method against random, one selection round (5 seeds)"
    for i, seed in enumerate(curve.seeds):
        points = ", ".join(f"{int(b):,} / {m:.3f}" for b, m in zip(curve.boxes_per_seed[i], curve.metric_per_seed[i]))
        assert f"{points} (seed {seed})" in _section(heading), seed
    lines = README.splitlines()
    mean_std = f"{random.metric_mean[1]:.3f} ± {random.metric_std[1]:.3f}"
    start = lines.index(f"| *Faster R-CNN, 8 epochs:* `random` | {mean_std} | — | — | — |")
    end = next(i for i, line in enumerate(lines) if line.startswith("| *RetinaNet"))
    readme = _table_rows(lines[start + 1 : end])
    docs = _table_rows(_section_text(heading).splitlines())
    assert docs["random"] == [f"{random.boxes_mean[1]:,.0f} ± {random.boxes_std[1]:.0f}", mean_std, "—", "—", "—"]
    for label, (in_readme, in_docs, per_seed_name) in METHOD_ARMS.items():
        arm = summary.strategies[label]
        assert arm.seeds == [0, 1, 2, 3, 4] and arm.images_mean.tolist() == [200, 300], label
        np.testing.assert_array_equal(arm.boxes_per_seed[:, 0], random.boxes_per_seed[:, 0])  # the same start
        np.testing.assert_array_equal(arm.metric_per_seed[:, 0], random.metric_per_seed[:, 0])  # one cycle-0 model
        gap = arm.difference_intervals()[1]
        saved = [arm.paired_saved(axis)[1] for axis in ("images", "boxes")]
        assert not any(iv.bound for iv in saved), label
        figures = [
            f"{arm.metric_mean[1]:.3f} ± {arm.metric_std[1]:.3f}",
            f"{gap.mean:+.3f} [{gap.low:+.3f}, {gap.high:+.3f}]",
            *(f"{iv.mean:.1f}% [{iv.low:.1f}, {iv.high:.1f}]" for iv in saved),
        ]
        assert readme[in_readme] == figures, (in_readme, figures)
        assert docs[in_docs] == [f"{arm.boxes_mean[1]:,.0f} ± {arm.boxes_std[1]:.0f}", *figures], in_docs
        per_seed = [
            f"{int(arm.boxes_per_seed[i, 1]):,} / {arm.metric_per_seed[i, 1]:.3f} "
            f"({arm.metric_difference_per_seed[i, 1]:+.3f}; {arm.images_saved_per_seed[i, 1]:.0f}%, "
            f"{arm.boxes_saved_per_seed[i, 1]:.0f}%)"
            for i in range(5)
        ]
        assert docs[per_seed_name] == per_seed, (per_seed_name, per_seed)
    ranked = sorted(METHOD_ARMS, key=lambda label: -summary.strategies[label].metric_mean[1])
    assert list(readme) == [METHOD_ARMS[label][0] for label in ranked]  # the rows by mAP at 300 images


ALMDN_THRESHOLD = RESULTS / "almdn-threshold"


def test_almdn_at_a_lower_score_threshold_is_the_record():
    """AL-MDN's selection at its released score threshold and at 0.2, both from each seed's one cycle-0 model: the
    docs' per-seed boxes and mAP at 200 and 300 images, the paired difference and the means over seeds."""
    runs = {(r.strategy, r.seed): r for r in load_runs(ALMDN_THRESHOLD)}
    arms = {"0.5": "almdn", "0.2": "almdn[score_threshold=0.2]"}
    assert set(runs) == {(arm, seed) for arm in arms.values() for seed in range(5)}
    section = _section_text("#### AL-MDN's score threshold at 0.2 (5 seeds)")
    rows, gaps = [], []
    for seed in range(5):
        low, high = (runs[arms[name], seed] for name in ("0.2", "0.5"))
        assert low.labelled_images.tolist() == high.labelled_images.tolist() == [200, 300]
        assert low.metrics["voc/mAP_area"][0] == high.metrics["voc/mAP_area"][0]  # one cycle-0 model
        gaps.append(low.metrics["voc/mAP_area"][1] - high.metrics["voc/mAP_area"][1])
        cells = [f"{int(r.labelled_boxes[1]):,} / {r.metrics['voc/mAP_area'][1]:.3f}" for r in (high, low)]
        rows.append(
            (seed, f"{high.metrics['voc/mAP_area'][0]:.3f} |", f"| {cells[0]} | {cells[1]} | {gaps[-1]:+.3f} |")
        )
    for seed, start, end in rows:
        line = next(x for x in section.splitlines() if x.startswith(f"| {seed} | "))
        assert line.startswith(f"| {seed} | {start}") and line.endswith(end), line
    gap = draws.mean_interval(gaps)
    flat = _flat(section)
    assert f"paired difference (0.2 − 0.5) {gap.mean:+.3f} [{gap.low:+.3f}, {gap.high:+.3f}] mAP" in flat
    for name, arm in arms.items():
        mean = np.array([[runs[arm, s].metrics["voc/mAP_area"][1], runs[arm, s].labelled_boxes[1]] for s in range(5)])
        shown = (
            f"{name}, mAP {mean[:, 0].mean():.3f} ± {mean[:, 0].std(ddof=1):.3f} with "
            f"{mean[:, 1].mean():,.0f} ± {mean[:, 1].std(ddof=1):.0f} boxes"
        )
        assert shown in flat, shown
