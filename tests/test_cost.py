"""Labelling cost: the per-image arithmetic, predicted costs, cost-aware selection, budgets in boxes and cost with
the simulation and with people, the report's cost columns, and the config keys' errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from activedet.al.annotation import write_native_labels
from activedet.al.cost import CostError, CostModel, accepted_count, box_iou, check_cost_aware, cost_aware_order
from activedet.al.ledger import Ledger
from activedet.bench import parse_arm_overrides
from activedet.cli import main
from activedet.config import ConfigError, config_from_dict, load_config
from activedet.report import label_extras
from activedet.workflows import import_into_run, run_from_config, run_status
from tests.test_human_loop import human_setup
from tests.test_loop import write_config

#: every term priced differently so a wrong count shows
PRICES = CostModel(image_cost=1.0, box_cost=10.0, accept_cost=2.0, correct_cost=5.0, accept_iou=0.5, cost_min_score=0.3)


def detections(boxes, labels, scores):
    """Anything with ``boxes``, ``labels``, ``scores`` (torch tensors, as the detectors return)."""
    return SimpleNamespace(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
        scores=torch.tensor(scores, dtype=torch.float32),
    )


TRUTH = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float64), np.array([1, 2])


def test_accepted_pre_annotations_cost_less_than_drawn_boxes_by_hand():
    boxes, labels = TRUTH
    # both boxes predicted well: 1 + 2 * 2 = 5
    both = detections([[0, 0, 10, 10], [20, 20, 40, 41]], [1, 2], [0.9, 0.8])
    assert PRICES.actual(boxes, labels, both) == {"cost": 5.0, "boxes": 2, "accepted": 2, "shown": 2}
    # one right, one of the wrong class, one below cost_min_score (not shown): 1 + 2 + 5 (corrected) + 10 (drawn)
    mixed = detections([[0, 0, 10, 10], [20, 20, 40, 40], [20, 20, 40, 40]], [1, 1, 2], [0.9, 0.8, 0.1])
    assert PRICES.actual(boxes, labels, mixed) == {"cost": 18.0, "boxes": 2, "accepted": 1, "shown": 2}
    # a poorly placed box (IoU 0.25 < 0.5) is corrected and its true box drawn: 1 + 5 + 10 + 10
    off = detections([[5, 0, 15, 10]], [1], [0.9])
    assert PRICES.actual(boxes, labels, off)["cost"] == 26.0
    # no pre-annotations at all: every box drawn
    assert PRICES.actual(boxes, labels, None) == {"cost": 21.0, "boxes": 2, "accepted": 0, "shown": 0}
    assert PRICES.cost(2) == 21.0 and PRICES.cost(2, 2, 2) < PRICES.cost(2, 0, 0)


def test_empty_images_and_images_with_no_detection():
    empty = np.zeros((0, 4)), np.zeros(0, np.int64)
    nothing = detections([], [], [])
    assert PRICES.actual(*empty, nothing) == {"cost": 1.0, "boxes": 0, "accepted": 0, "shown": 0}
    # an empty image shown two false positives: both deleted
    ghosts = detections([[0, 0, 5, 5], [1, 1, 6, 6]], [1, 1], [0.9, 0.5])
    assert PRICES.actual(*empty, ghosts)["cost"] == 1.0 + 2 * 5.0
    # an image with boxes but no detection: drawn from scratch
    assert PRICES.actual(*TRUTH, nothing)["cost"] == 21.0
    assert PRICES.predict(np.zeros(0)) == (0.0, 1.0)


def test_one_prediction_is_accepted_for_one_true_box_at_most():
    boxes, labels = np.array([[0, 0, 10, 10]]), np.array([1])
    twice = detections([[0, 0, 10, 10], [0, 0, 10, 11]], [1, 1], [0.6, 0.9])
    assert accepted_count(boxes, labels, twice.boxes.numpy(), twice.labels.numpy(), twice.scores.numpy(), 0.5) == 1
    assert PRICES.actual(boxes, labels, twice)["cost"] == 1.0 + 2.0 + 5.0  # the duplicate is deleted
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [0, 0, 0, 0]])).tolist() == [[1 / 3, 0.0]]
    with pytest.raises(ValueError, match=r"accepted pre-annotations must be in \[0, min\(boxes, shown\)\] = \[0, 1\]"):
        PRICES.cost(1, 2, 2)


def test_predicted_cost_from_detection_scores():
    scores = np.array([0.9, 0.5, 0.2])  # two shown (>= 0.3), one hidden
    boxes, cost = PRICES.predict(scores)
    assert boxes == pytest.approx(1.6)
    # 1 + (2 * 0.9 + 5 * 0.1) + (2 * 0.5 + 5 * 0.5) + 10 * 0.2
    assert cost == pytest.approx(1 + 2.3 + 3.5 + 2.0)
    counted = dataclasses.replace(PRICES, cost_estimate="count")
    assert counted.predict(scores) == (2.0, 1.0 + 2 * 2.0)
    # a team that draws every box: the prediction is image + box x expected boxes
    drawing = dataclasses.replace(PRICES, accept_cost=10.0, correct_cost=0.0)
    assert drawing.predict(scores)[1] == pytest.approx(1 + 10 * 1.6)


def test_cost_aware_order_picks_the_cheaper_of_equally_informative_images():
    indices, scores = np.array([7, 3, 5, 9]), np.array([0.8, 0.8, 0.4, np.nan])
    costs = np.array([10.0, 4.0, 1.0, 0.5])
    # ratios 0.08, 0.2, 0.4; the unscored image last whatever its cost
    assert cost_aware_order(indices, scores, costs).tolist() == [5, 3, 7, 9]
    # equal ratio: the cheaper first
    assert cost_aware_order(np.array([1, 2]), np.array([2.0, 1.0]), np.array([2.0, 1.0])).tolist() == [2, 1]
    # negative scores are shifted so the least informative scores 0 (it comes last)
    assert cost_aware_order(np.array([1, 2, 3]), np.array([-3.0, -1.0, -1.0]), np.array([1.0, 1.0, 2.0])).tolist() == [
        2,
        3,
        1,
    ]
    with pytest.raises(ValueError, match="cost_aware selection needs a positive, finite predicted cost per image"):
        cost_aware_order(np.array([1]), np.array([1.0]), np.array([0.0]))


def test_cost_aware_needs_a_strategy_that_scores_images():
    from activedet.strategies import get_strategy

    aware = dataclasses.replace(PRICES, cost_aware=True)
    check_cost_aware(aware, get_strategy("entropy"))
    check_cost_aware(PRICES, get_strategy("random"))
    with pytest.raises(CostError, match=r"The 'cost_aware' setting must be false with strategy 'random'"):
        check_cost_aware(aware, get_strategy("random"))
    default = get_strategy("compose", criteria=["entropy", "class_balance"])
    with pytest.raises(CostError, match=r"strategy 'entropy\+class_balance'.*\{class_balance: \{per_box: true\}\}"):
        check_cost_aware(aware, default)
    with pytest.raises(CostError, match=r"strategy 'class_balance'.*strategy_options \{per_box: true\}"):
        check_cost_aware(aware, get_strategy("class_balance"))
    free = dataclasses.replace(aware, image_cost=0.0)  # an empty image would be predicted to cost nothing
    check_cost_aware(dataclasses.replace(free, cost_aware=False), get_strategy("entropy"))
    with pytest.raises(CostError, match=r"The 'image_cost' setting must be > 0 with cost_aware"):
        check_cost_aware(free, get_strategy("entropy"))


CONFIG = {"train_data": "train.json", "test_data": "test.json"}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("box_cost", -1.0, r"box_cost"),
        ("accept_iou", 0.0, r"accept_iou"),
        ("cost_min_score", 1.5, r"cost_min_score"),
        ("cost_estimate", "guess", r"cost_estimate"),
        ("image_cost", "cheap", r"image_cost"),
    ],
)
def test_a_wrong_cost_key_is_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**CONFIG, key: value})
    with pytest.raises(CostError, match=rf"The '{key}' setting must be"):
        dataclasses.replace(CostModel(), **{key: value}).check()


def test_cost_keys_in_the_config():
    cfg = config_from_dict({**CONFIG, "image_cost": 2, "box_cost": 30.0, "export_min_score": 0.4})
    model = cfg.cost_model()
    assert (model.image_cost, model.box_cost, model.cost_min_score, model.min_score) == (2, 30.0, 0.4, 0.4)
    assert config_from_dict({**CONFIG, "cost_min_score": 0.6}).cost_model().min_score == 0.6
    assert CostModel().min_score == 0.3
    with pytest.raises(ConfigError, match=r"key 'budget' must be an int \(labelling cost per cycle"):
        config_from_dict({**CONFIG, "budget_unit": "cost", "budget": 0.5})
    with pytest.raises(ConfigError, match=r"key 'cost_aware' must be false with strategy 'random'"):
        config_from_dict({**CONFIG, "strategy": "random", "cost_aware": True})


def lines(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_cost_budget_in_simulation_spends_actual_costs_and_records_both(tiny_data, tmp_path):
    prices = {"image_cost": 1.0, "box_cost": 10.0, "accept_cost": 2.0, "correct_cost": 5.0}
    config = write_config(
        tmp_path, tiny_data, strategy="entropy", budget_unit="cost", budget=60, cycles=1, cost_aware=True, **prices
    )
    run_from_config(load_config(config), progress=False)
    run, ledger = tmp_path / "run", Ledger.load(tmp_path / "run/ledger.npz")
    picks = json.loads((run / "cycles/0/selection.json").read_text())["picks"]
    spent = [p["cost"] for p in ledger.picks]
    assert all(p["predicted_cost"] >= 1.0 and p["predicted_boxes"] >= 0 for p in picks)
    ratios = [p["score"] / p["predicted_cost"] for p in picks]  # cost_aware: by score per predicted cost
    assert ratios == sorted(ratios, reverse=True)
    assert sum(spent[:-1]) < 60 <= sum(spent)  # the image that crosses the budget is kept
    # the actual cost counts the revealed boxes: accepted ones at 2, the others drawn at 10
    for pick in ledger.picks:
        assert pick["cost"] == pytest.approx(CostModel(**prices).cost(pick["boxes"], pick["accepted"], pick["shown"]))
    first, second = lines(run)
    assert first["labelled_cost"] == pytest.approx(1.0 * first["labelled_images"] + 10.0 * first["labelled_boxes"])
    assert second["labelled_cost"] == pytest.approx(first["labelled_cost"] + sum(spent))


def test_a_boxes_budget_with_people_labelling_spends_predicted_boxes(tiny_data, tmp_path, capsys):
    config, run, known, class_names = human_setup(
        tiny_data,
        tmp_path,
        budget_unit="boxes",
        budget=20,
        cycles=1,
        cost_min_score=0.0,  # the untrained detector's low scores are shown: accepts and corrections happen
    )
    run_from_config(load_config(config), progress=False)
    picks = json.loads((run / "cycles/0/selection.json").read_text())["picks"]
    predicted = [p["predicted_boxes"] for p in picks]
    assert all(p["boxes"] is None for p in picks)  # people: nothing revealed before labelling
    assert sum(predicted[:-1]) < 20 <= sum(predicted)
    pending = run_status(run)["pending"]
    assert pending == [p["image_id"] for p in picks]
    labels = write_native_labels(tmp_path / "labels.json", [known[i] for i in pending], class_names)
    import_into_run(run, labels)
    run_from_config(load_config(config), progress=False)
    ledger = Ledger.load(run / "ledger.npz")
    prices = CostModel(cost_min_score=0.0)
    for pick in ledger.picks:
        record = known[pick["image_id"]]
        assert pick["shown"] >= pick["accepted"] >= 0 and "predicted_cost" in pick
        assert pick["boxes"] == record.num_boxes  # unknown at selection, recorded once labelled
        assert pick["cost"] == pytest.approx(prices.cost(record.num_boxes, pick["accepted"], pick["shown"]))
    first, second = lines(run)
    assert second["labelled_cost"] == pytest.approx(first["labelled_cost"] + sum(p["cost"] for p in ledger.picks))
    # status: the labelled batch's true boxes and cost beside what was predicted when it was selected
    (batch,) = run_status(run)["batches"]
    assert batch == {
        "cycle": 0,
        "images": len(picks),
        "boxes": sum(known[p["image_id"]].num_boxes for p in picks),
        "predicted_boxes": pytest.approx(sum(predicted)),
        "cost": pytest.approx(sum(p["cost"] for p in ledger.picks)),
        "predicted_cost": pytest.approx(sum(p["predicted_cost"] for p in picks)),
    }
    ratio = run_status(run)["calibration"]
    assert ratio == {
        "boxes": pytest.approx(batch["boxes"] / batch["predicted_boxes"], abs=1e-6),
        "cost": pytest.approx(batch["cost"] / batch["predicted_cost"], abs=1e-6),
    }
    assert main(["status", str(run)]) == 0
    shown = capsys.readouterr().out
    assert f"actual/predicted boxes {ratio['boxes']:.3f}, cost {ratio['cost']:.3f} over the labelled" in shown
    assert (
        f"batch            cycle 0: {len(picks)} images, {batch['boxes']:,} boxes ({sum(predicted):,.1f} predicted)"
        in shown
    )


def test_a_simulation_without_preview_spends_predicted_boxes_as_people_do(tiny_data, tmp_path):
    config = write_config(
        tmp_path, tiny_data, strategy="entropy", budget_unit="boxes", budget=20, cycles=2, simulated_preview=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_from_config(load_config(config), progress=False)
    run, ledger = tmp_path / "run", Ledger.load(tmp_path / "run/ledger.npz")
    selection = json.loads((run / "cycles/0/selection.json").read_text())
    picks = selection["picks"]
    # the first batch is spent as predicted; the second times the first's true / predicted boxes
    assert selection["calibration"] == 1.0
    first_batch = [p for p in ledger.picks if p["cycle"] == 0]
    factor = sum(p["boxes"] for p in first_batch) / sum(p["predicted_boxes"] for p in first_batch)
    second = json.loads((run / "cycles/1/selection.json").read_text())
    # recorded to 6 decimals; the untrained detector over-predicts, so the factor is not 1
    assert second["calibration"] == pytest.approx(factor, abs=1e-6) and factor != 1.0
    predicted = [p["predicted_boxes"] for p in picks]
    assert picks and all(p["boxes"] is None for p in picks)  # nothing previewed at selection
    capped = any("the batch stopped at" in str(w.message) for w in caught)  # few predicted boxes: the cap
    assert capped or sum(predicted[:-1]) < 20 <= sum(predicted)
    # answered at once, with the true boxes: the ledger and the metrics count what was bought
    assert [p["index"] for p in first_batch] == [p["index"] for p in picks]
    first, after = lines(run)[:2]
    assert after["labelled_images"] == first["labelled_images"] + len(picks)
    assert after["labelled_boxes"] == first["labelled_boxes"] + sum(p["boxes"] for p in first_batch)
    seen = write_config(tmp_path / "seen", tiny_data, strategy="entropy", budget_unit="boxes", budget=20, cycles=0)
    assert load_config(seen).simulated_preview is True


def test_a_budget_spent_on_predicted_figures_is_labelled_apart():
    arm = {"budget_unit": "boxes", "budget": 320}
    assert label_extras(arm) == " +budget[320 boxes]"
    calibrated = {**arm, "simulated_preview": False, "cost_calibration": True}
    assert label_extras(calibrated) == " +budget[320 boxes, predicted]"
    uncalibrated = " +budget[320 boxes, predicted, uncalibrated]"
    assert label_extras({**arm, "simulated_preview": False, "cost_calibration": False}) == uncalibrated
    assert label_extras({**arm, "simulated_preview": False}) == uncalibrated  # a run made before the key
    assert parse_arm_overrides("entropy@cost_calibration=false")[-1] == ("cost_calibration", False)
    assert parse_arm_overrides("entropy@budget_unit=boxes@simulated_preview=false")[-1] == ("simulated_preview", False)


def test_simulated_preview_is_refused_with_people():
    with pytest.raises(ConfigError, match=r"key 'simulated_preview' must be true with oracle 'human'"):
        config_from_dict({**CONFIG, "oracle": "human", "unlabelled_data": "x", "simulated_preview": False})


def with_costs(run_dir, costs):
    """Add ``labelled_cost`` per cycle to a hand-made run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "labelled_cost": c}) + "\n" for r, c in zip(records, costs)))


# random costs 10 per image; entropy 10, 5, 5 per image over its cycles: (100, 150, 200) for 10, 20, 30 images
ENTROPY = {0: (0.2, 0.5, 0.7), 1: (0.2, 0.4, 0.5), 2: (0.2, 0.6, 0.6)}
# cycle 1, per seed: random needs 400, 300, 500 to reach 0.5, 0.4, 0.6; entropy spent 150
COST_SAVED_1 = (100 * (1 - 150 / 400), 100 * (1 - 150 / 300), 100 * (1 - 150 / 500))


def test_reports_have_cost_columns_and_paired_cost_saved(tmp_path):
    from activedet.report import format_table, write_report
    from tests.test_report import make_run

    for seed, values in ENTROPY.items():
        with_costs(make_run(tmp_path / "runs", "random", seed, (0.2, 0.4, 0.6), images=(10, 30, 50)), (100, 300, 500))
        with_costs(make_run(tmp_path / "runs", "entropy", seed, values, images=(10, 20, 30)), (100, 150, 200))
    summary = write_report(tmp_path / "runs", tmp_path / "report")
    saved = summary.strategies["entropy"].paired_saved("cost")[1]
    assert (saved.mean, saved.n, saved.bound) == pytest.approx((np.mean(COST_SAVED_1), 3, False))
    text = format_table(summary)
    assert "cost saved vs random (cycles >= 1)" in text and "| labelled cost |" in text
    assert "| entropy | 1 | 20 | 60 | 150 |" in text  # labelled images, boxes, cost (every seed alike: no ±)
    data = json.loads((tmp_path / "report/summary.json").read_text())["strategies"]["entropy"]
    assert data["paired_savings"]["cost"]["per_cycle"][1]["mean"] == pytest.approx(np.mean(COST_SAVED_1))
    assert data["labelled_cost"]["mean"] == [100, 150, 200]
    with open(tmp_path / "report/savings.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[1]["cost_saved_mean"]) == pytest.approx(np.mean(COST_SAVED_1))
    assert rows[1]["cost_saved_n_seeds"] == "3" and rows[1]["cost_saved_bound"] == "0"


def test_runs_without_costs_leave_the_cost_columns_out_or_empty(tmp_path):
    from activedet.report import format_table, write_report
    from tests.test_report import make_run

    make_run(tmp_path / "runs", "random", 0, (0.2, 0.4, 0.6), images=(10, 30, 50))
    make_run(tmp_path / "runs", "entropy", 0, ENTROPY[0], images=(10, 20, 30))
    summary = write_report(tmp_path / "runs", tmp_path / "report")
    assert "cost" not in format_table(summary)
    with open(tmp_path / "report/savings.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[1]["cost_saved_mean"] == "" and rows[1]["cost_saved_n_seeds"] == "0"
    assert json.loads((tmp_path / "report/summary.json").read_text())["strategies"]["entropy"]["labelled_cost"] is None


def test_the_library_needs_a_cost_model_for_a_cost_budget_and_for_boxes_with_people():
    from activedet.al.cost_stage import check_cost_setup
    from activedet.strategies import get_strategy

    people, simulation = SimpleNamespace(previews_cost=False), SimpleNamespace(previews_cost=True)
    entropy = get_strategy("entropy")
    with pytest.raises(ValueError, match=r"budget_unit 'cost' needs a labelling cost model: pass cost=CostModel"):
        check_cost_setup("cost", simulation, None, entropy)
    with pytest.raises(
        ValueError, match=r"or pass cost=CostModel\(\) \(activedet.al.cost\) to spend the boxes predicted"
    ):
        check_cost_setup("boxes", people, None, entropy)
    check_cost_setup("boxes", simulation, None, entropy)
    for unit in ("boxes", "cost"):
        check_cost_setup(unit, people, CostModel(), entropy)
    with pytest.raises(CostError, match=r"The 'box_cost' setting must be a float >= 0. Got -2.0 instead."):
        check_cost_setup("images", people, CostModel(box_cost=-2.0), entropy)


@pytest.mark.parametrize("predicted, taken, warned", [(0.0, 20, True), (2.0, 10, False)])
def test_a_budget_on_predicted_boxes_stops_at_twice_the_expected_images(predicted, taken, warned, recwarn):
    """A detector that predicts nothing would spend a boxes budget never: the batch stops at 2 x budget_hint."""
    from activedet.al.cost_stage import budget_picks
    from activedet.al.plan import LoopOptions

    options = LoopOptions(budget=20, budget_unit="boxes")
    costs = SimpleNamespace(
        cost=CostModel(), prefetch=lambda picks, chunk: picks, predicted=lambda index: (predicted, 1.0 + predicted)
    )
    stage = SimpleNamespace(select=lambda inputs: iter(range(1000)))
    inputs = SimpleNamespace(budget_hint=10)  # 20 boxes at the labelled set's 2 boxes per image
    people = SimpleNamespace(previews_cost=False)
    assert budget_picks(stage, inputs, options, people, costs, 1000) == list(range(taken))
    messages = [str(w.message) for w in recwarn.list]
    assert (
        any("the batch stopped at 20 images (2 x the 10" in m and "budget_unit 'cost'" in m for m in messages) == warned
    )


def test_a_cost_budget_is_bounded_by_image_cost_and_not_capped(recwarn):
    from activedet.al.cost_stage import budget_picks
    from activedet.al.plan import LoopOptions

    options = LoopOptions(budget=20, budget_unit="cost")
    costs = SimpleNamespace(
        cost=CostModel(image_cost=1.0), prefetch=lambda picks, chunk: picks, predicted=lambda index: (0.0, 1.0)
    )
    stage = SimpleNamespace(select=lambda inputs: iter(range(1000)))
    people = SimpleNamespace(previews_cost=False)
    picks = budget_picks(stage, SimpleNamespace(budget_hint=5), options, people, costs, 1000)
    assert picks == list(range(20)) and not recwarn.list  # 20 x image_cost, beyond 2 x the hint of 5


def test_calibration_is_actual_over_predicted_over_the_labelled_picks():
    from activedet.al.cost import calibration

    picks = [
        {"boxes": 3, "predicted_boxes": 2.0, "cost": 30.0, "predicted_cost": 20.0},
        {"boxes": 0, "predicted_boxes": 0.5, "cost": 3.0, "predicted_cost": 5.0},
        {"boxes": 4, "predicted_boxes": None, "cost": None, "predicted_cost": None},  # a run without cost records
        {"boxes": None, "predicted_boxes": 1.0},  # selected, not labelled yet
    ]
    assert calibration(picks, "boxes") == pytest.approx(3 / 2.5)
    assert calibration(picks, "cost") == pytest.approx(33 / 25)
    assert calibration([], "boxes") == 1.0  # before the first labelled batch
    assert calibration([{"boxes": 2, "predicted_boxes": 0.0}], "boxes") == 1.0  # nothing predicted: no ratio


@pytest.mark.parametrize("unit", ["boxes", "cost"])
def test_a_predicted_budget_spends_the_calibrated_figures(unit):
    """People labelling: each predicted figure is spent times the labelled batches' actual / predicted; a
    simulation that previews the labels, an image budget and `cost_calibration: false` spend no factor."""
    from activedet.al.cost_stage import budget_picks, spend_scale
    from activedet.al.plan import LoopOptions

    history = [{"boxes": 6, "predicted_boxes": 3.0, "cost": 60.0, "predicted_cost": 30.0}]  # both ran 2x low
    people, simulation = SimpleNamespace(previews_cost=False), SimpleNamespace(previews_cost=True)
    costs = SimpleNamespace(
        cost=CostModel(image_cost=1.0), prefetch=lambda picks, chunk: picks, predicted=lambda index: (1.0, 2.0)
    )
    assert spend_scale(unit, people, costs, history) == pytest.approx(2.0)
    assert spend_scale(unit, people, costs, []) == 1.0
    assert spend_scale(unit, simulation, costs, history) is None
    assert spend_scale("images", people, costs, history) is None
    off = SimpleNamespace(**{**vars(costs), "cost": CostModel(image_cost=1.0, cost_calibration=False)})
    assert spend_scale(unit, people, off, history) is None
    options = LoopOptions(budget=20, budget_unit=unit)
    stage = SimpleNamespace(select=lambda inputs: iter(range(1000)))
    inputs = SimpleNamespace(budget_hint=10)
    # 1 predicted box (cost 2) per image: 20 images as predicted, 10 at the factor 2 (the crossing image kept)
    assert len(budget_picks(stage, inputs, options, people, costs, 1000)) == (20 if unit == "boxes" else 10)
    assert len(budget_picks(stage, inputs, options, people, costs, 1000, 2.0)) == (10 if unit == "boxes" else 5)
