"""Class balance: greedy inverse-frequency re-ranking of candidates by their predicted classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_loop import write_config

from activedet.al.scores import load_scores
from activedet.config import load_config
from activedet.models.outputs import Detections
from activedet.strategies import get_strategy
from activedet.strategies.balance import balance_order, class_presence
from activedet.strategies.base import ScoredPool, SelectionInput
from activedet.workflows import run_from_config


def detections(labels, scores) -> Detections:
    n = len(labels)
    return Detections(
        boxes=torch.tensor([[0.0, 0.0, 4.0, 4.0]] * n).reshape(n, 4),
        scores=torch.tensor(scores, dtype=torch.float32).reshape(n),
        labels=torch.tensor(labels, dtype=torch.int64).reshape(n),
    )


def test_greedy_order_by_hand():
    # labelled: 10 boxes of class 1, none of class 2; rows a, b, c, d
    presence = np.array([[0.9, 0.0], [0.0, 0.5], [0.2, 0.2], [0.0, 0.0]])
    # weights 1/11, 1: a .082, b .5, c .218 -> b; counts (10, .5), weights 1/11, 1/1.5: a .082, c .152 -> c;
    # counts (10.2, .7): a .080 -> a; d adds nothing -> last
    assert list(balance_order(presence, np.array([10.0, 0.0]))) == [1, 2, 0, 3]
    # power 0: counts ignored, the strongest evidence of any class first
    assert list(balance_order(presence, np.array([10.0, 0.0]), power=0)) == [0, 1, 2, 3]
    # no labelled counts (all zero): a (.9); then b (.5) beats c (.2 / 1.9 + .2 = .305)
    assert list(balance_order(presence, None)) == [0, 1, 2, 3]


def test_per_box_divides_each_gain_by_the_candidate_cost():
    # one rare object alone (a) against the same rare object among five frequent ones (b): per image b also adds
    # to class 1, per box a costs 2 where b costs 7
    presence = np.array([[0.0, 0.9], [0.9, 0.9]])
    counts = np.array([100.0, 0.0])
    assert list(balance_order(presence, counts)) == [1, 0]
    assert list(balance_order(presence, counts, cost=np.array([1.9, 6.3]))) == [0, 1]
    with pytest.raises(ValueError, match=r"one positive, finite cost per candidate \(2\); got 2 values in \[0\.0"):
        list(balance_order(presence, counts, cost=np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match=r"cost per candidate \(2\); got 1 values"):
        list(balance_order(presence, counts, cost=np.array([1.0])))


def test_per_box_prefers_the_rare_object_alone_among_detections():
    pool = [
        detections([2, 1, 1, 1, 1, 1], [0.9, 0.9, 0.9, 0.9, 0.9, 0.9]),  # the rare class among five frequent
        detections([2], [0.8]),  # the rare class alone
        detections([], []),  # no detection: last either way
    ]
    counts = np.array([100.0, 0.0])
    for per_box, expected in ((False, [10, 11, 12]), (True, [11, 10, 12])):
        strategy = get_strategy("class_balance", per_box=per_box)
        scored = ScoredPool.collect(zip(range(10, 13), pool), strategy)
        inputs = SelectionInput(scored, None, budget_hint=1, rng=np.random.default_rng(0), labelled_class_counts=counts)
        assert list(strategy.select(inputs)) == expected


def test_ties_and_empty_candidates_keep_the_order_given():
    presence = np.array([[0.0, 0.0], [0.3, 0.0], [0.3, 0.0], [0.0, 0.0]])
    assert list(balance_order(presence, np.array([0.0, 5.0]))) == [1, 2, 0, 3]


def test_class_presence_takes_each_class_maximum_and_checks_labels():
    assert class_presence(np.array([2, 2, 1]), np.array([0.3, 0.7, 0.1]), 3).tolist() == [0.1, 0.7, 0.0]
    assert class_presence(np.zeros(0), np.zeros(0), 2).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"labels must lie in 1\.\.2 .*got 1\.\.3"):
        class_presence(np.array([1, 3]), np.array([0.5, 0.5]), 2)
    with pytest.raises(ValueError, match=r"counts for 3 classes but the detections describe 2"):
        list(balance_order(np.zeros((1, 2)), np.zeros(3)))


def test_a_rare_class_candidate_comes_first_and_low_scores_are_not_evidence():
    strategy = get_strategy("class_balance", min_score=0.2)
    pool = [
        detections([1, 1], [0.9, 0.8]),  # frequent class
        detections([1, 2], [0.9, 0.1]),  # class 2 only below min_score
        detections([], []),  # no detection
        detections([2], [0.6]),  # rare class
    ]
    scored = ScoredPool.collect(zip(range(10, 14), pool), strategy)
    inputs = SelectionInput(
        scored, None, budget_hint=2, rng=np.random.default_rng(0), labelled_class_counts=np.array([50.0, 1.0])
    )
    assert list(strategy.select(inputs)) == [13, 10, 11, 12]


@pytest.mark.parametrize("options", [{"power": -1}, {"min_score": 1.5}, {"per_box": 1}])
def test_bad_options_are_refused_with_the_name(options):
    key = next(iter(options))
    with pytest.raises(ValueError, match=f"'{key}' parameter of class_balance"):
        get_strategy("class_balance", **options)


def test_chained_after_an_uncertainty_criterion_it_re_ranks_the_shortlist(tiny_data, tmp_path):
    config = write_config(
        tmp_path,
        tiny_data,
        strategy=["entropy", "class_balance"],
        strategy_options={"factors": [2.0]},
        cycles=1,
    )
    ledger = run_from_config(load_config(config), progress=False)
    assert len(ledger.labelled()) == 6 + 4
    picks = json.loads((tmp_path / "run/cycles/0/selection.json").read_text())["picks"]
    assert len(picks) == 4 and all(p["strategy"] == "entropy+class_balance" for p in picks)
    # the second stage scored entropy's first 2 x 4 picks and picked among them
    first, _ = load_scores(tmp_path / "run/cycles/0/scores.npz")
    second, _ = load_scores(tmp_path / "run/cycles/0/scores.stage1.npz")
    ranked = np.flatnonzero(~first.empty)[np.argsort(-first.scores[~first.empty], kind="stable")]
    assert sorted(second.indices.tolist()) == sorted(first.indices[ranked][:8].tolist())
    assert set(np.flatnonzero(ledger.labelled_at == 1).tolist()) <= set(second.indices.tolist())
    # class balance has no per-image score: each pick shows entropy's, the criterion that shortlisted it
    entropy_of = dict(zip(first.indices.tolist(), first.scores.tolist()))
    assert [p["score"] for p in picks] == [entropy_of[p["index"]] for p in picks]
    assert all(p["score"] is not None for p in picks)


def test_previewed_classes_replace_the_detections_with_the_candidates_truth():
    strategy = get_strategy("class_balance", classes="previewed")
    assert strategy.needs_preview and not get_strategy("class_balance").needs_preview
    pool = [
        detections([2], [0.9]),  # looks rare, holds only the frequent class
        detections([1], [0.9]),  # looks frequent, holds the rare class
        detections([], []),  # no detection, holds nothing
    ]
    truth = {10: [3.0, 0.0], 11: [1.0, 1.0], 12: [0.0, 0.0]}
    scored = ScoredPool.collect(zip(range(10, 13), pool), strategy)
    asked = []

    def previewed(indices):
        asked.append(list(indices))
        return np.array([truth[int(i)] for i in indices])

    inputs = SelectionInput(
        scored,
        None,
        budget_hint=2,
        rng=np.random.default_rng(0),
        labelled_class_counts=np.array([50.0, 1.0]),
        previewed_class_counts=previewed,
    )
    assert list(strategy.select(inputs)) == [11, 10, 12]
    assert asked == [[10, 11, 12]]
    # the same candidates by the detections: the image that only looks rare comes first
    predicted = get_strategy("class_balance")
    inputs.pool = ScoredPool.collect(zip(range(10, 13), pool), predicted)
    assert list(predicted.select(inputs)) == [10, 11, 12]


def test_previewed_classes_without_a_preview_are_refused_with_the_fix():
    strategy = get_strategy("class_balance", classes="previewed")
    scored = ScoredPool.collect([(0, detections([1], [0.9]))], strategy)
    inputs = SelectionInput(scored, None, budget_hint=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="only a simulated oracle that previews labels gives; use classes: predicted"):
        list(strategy.select(inputs))
    with pytest.raises(ValueError, match=r"'classes' parameter of class_balance must be one of \['predicted'"):
        get_strategy("class_balance", classes="truth")


@pytest.mark.parametrize(
    "keys,refused",
    [({"oracle": "human"}, "key 'oracle' must be 'simulated'"), ({"simulated_preview": False}, "'simulated_preview'")],
)
def test_a_config_reading_previewed_classes_without_a_preview_is_refused(tiny_data, tmp_path, keys, refused):
    config = write_config(
        tmp_path,
        tiny_data,
        strategy=["entropy", "class_balance"],
        strategy_options={"class_balance": {"classes": "previewed"}},
        **keys,
    )
    with pytest.raises(ValueError, match=f"{refused}.*a simulation-only diagnostic"):
        load_config(config)


def test_a_run_with_previewed_classes_buys_the_rare_class_by_its_truth(tiny_data, tmp_path):
    config = write_config(
        tmp_path,
        tiny_data,
        strategy=["entropy", "class_balance"],
        strategy_options={"class_balance": {"classes": "previewed"}, "factors": [2.0]},
        cycles=1,
    )
    cfg = load_config(config)
    ledger = run_from_config(cfg, progress=False)
    assert len(ledger.labelled()) == 6 + 4
    # the picks, replayed by hand: the greedy order of the shortlist's true classes against the labelled counts
    second, _ = load_scores(tmp_path / "run/cycles/0/scores.stage1.npz")
    records = json.loads((tiny_data / "annotations/train.json").read_text())
    num_classes = len(records["categories"])
    by_image = {}
    for ann in records["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["category_id"])
    ids = [image["id"] for image in records["images"]]
    labels_of = lambda index: by_image.get(ids[index], [])
    presence = np.array([[float(c + 1 in labels_of(int(i))) for c in range(num_classes)] for i in second.indices])
    counts = np.zeros(num_classes)
    for index in np.flatnonzero(ledger.labelled_at == 0):
        for label in labels_of(int(index)):
            counts[label - 1] += 1
    expected = [int(second.indices[p]) for p in balance_order(presence, counts)][:4]
    picks = json.loads((tmp_path / "run/cycles/0/selection.json").read_text())["picks"]
    assert [p["index"] for p in picks] == expected
