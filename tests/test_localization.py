"""LT/C, LS(+C) and CALD on hand-built Detections: each criterion's direction, the formulas, empty images and
empty views, CALD's distribution stage, the registry entries and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from activedet.models.faster_rcnn import build_faster_rcnn
from activedet.models.outputs import Detections
from activedet.models.retinanet import build_retinanet
from activedet.models.views import ViewPredictor
from activedet.strategies import ScoredPool, SelectionInput, get_strategy
from activedet.strategies.cald import (
    cald_consistency,
    cald_distribution_select,
    cald_references,
    class_score_vector,
    distribution_order,
    js_divergence,
)
from activedet.strategies.localization import localization_stability, localization_tightness, max_foreground_prob

BOX = [10.0, 10.0, 50.0, 50.0]


def dets(boxes, probs, kind="softmax", proposals=None, views=None, reference_boxes=None) -> Detections:
    """Detections whose score and label are those of each class vector's top foreground entry."""
    first = 1 if kind == "softmax" else 0
    probs = torch.tensor(probs, dtype=torch.float32).reshape(len(boxes), len(probs[0]) if probs else 2 + first)
    fg = probs[:, first:]
    scores = fg.max(dim=1).values if len(boxes) else torch.zeros(0)
    labels = fg.argmax(dim=1) + 1 if len(boxes) else torch.zeros(0, dtype=torch.int64)
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores,
        labels,
        kind,
        class_probs=probs,
        proposals=None if proposals is None else torch.tensor(proposals).reshape(-1, 4),
        extras={
            **({} if views is None else {"views": views}),
            **(
                {}
                if reference_boxes is None
                else {"reference_boxes": torch.tensor(reference_boxes, dtype=torch.float32).reshape(-1, 4)}
            ),
        },
    )


def shifted(box, dx):
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


# ------------------------------------------------------------------------------------------------------ LT/C


def test_tightness_picks_the_image_where_tightness_and_confidence_disagree():
    tight_confident = dets([BOX], [[0.05, 0.95]], proposals=[BOX])  # IoU 1, P 0.95: J = 0.95
    loose_confident = dets([BOX], [[0.05, 0.95]], proposals=[shifted(BOX, 20)])  # IoU 1/3: J = 0.2833
    assert localization_tightness(tight_confident) == pytest.approx(1 - 0.95)
    assert localization_tightness(loose_confident) == pytest.approx(1 - (1 / 3 + 0.95 - 1))
    strategy = get_strategy("localization_tightness")
    pool = ScoredPool.collect(enumerate([tight_confident, loose_confident, dets([], [], proposals=[])]), strategy)
    assert list(strategy.select(SelectionInput(pool, None, 2, np.random.default_rng(0)))) == [1, 0, 2]


def test_tightness_takes_the_minimum_over_detections_and_pmax_without_background():
    det = dets([BOX, BOX], [[0.6, 0.3, 0.1], [0.1, 0.5, 0.4]], proposals=[BOX, shifted(BOX, 20)])
    assert max_foreground_prob(det).tolist() == pytest.approx([0.3, 0.5])
    j = min(abs(1 + 0.3 - 1), abs(1 / 3 + 0.5 - 1))
    assert localization_tightness(det) == pytest.approx(1 - j)
    assert localization_tightness(dets([], [], proposals=[])) is None


def test_pure_tightness_ranks_the_loosest_box_first_whatever_the_confidence():
    tight_unsure = dets([BOX], [[0.9, 0.1]], proposals=[BOX])  # +C: J = |1 + 0.1 - 1| = 0.1
    loose_sure = dets([BOX], [[0.01, 0.99]], proposals=[shifted(BOX, 20)])  # +C: J = 1/3 + 0.99 - 1
    assert localization_tightness(tight_unsure, with_classification=False) == pytest.approx(0.0)
    assert localization_tightness(loose_sure, with_classification=False) == pytest.approx(1 - 1 / 3)
    strategy = get_strategy("localization_tightness", with_classification=False)
    pool = ScoredPool.collect(enumerate([tight_unsure, loose_sure]), strategy)
    assert list(strategy.select(SelectionInput(pool, None, 2, np.random.default_rng(0)))) == [1, 0]
    # with +C the order flips: the tight box with a low confidence disagrees most
    plus_c = get_strategy("localization_tightness")
    pool = ScoredPool.collect(enumerate([tight_unsure, loose_sure]), plus_c)
    assert list(plus_c.select(SelectionInput(pool, None, 2, np.random.default_rng(0)))) == [0, 1]


def test_tightness_fails_early_on_a_single_stage_detector():
    strategy = get_strategy("localization_tightness")
    torch.manual_seed(0)
    with pytest.raises(
        ValueError, match="RetinaNetDetector is single-stage: use a two-stage detector such as faster_rcnn"
    ):
        strategy.predictor(build_retinanet(2, backbone="tiny"))
    with pytest.raises(ValueError, match="needs Detections.proposals"):
        localization_tightness(dets([BOX], [[0.1, 0.9]]))


# -------------------------------------------------------------------------------------------------------- LS


def noisy_views(det: Detections, view_boxes: list[list[list[float]]]) -> list[Detections]:
    return [dets(boxes, [[0.2, 0.8]] * len(boxes), reference_boxes=det.boxes.tolist()) for boxes in view_boxes]


def test_stability_ranks_the_unstable_image_first_and_matches_the_formula():
    ref = dets([BOX, [60.0, 10.0, 90.0, 40.0]], [[0.1, 0.9], [0.4, 0.6]])
    stable = dets(ref.boxes.tolist(), ref.class_probs.tolist(), views=noisy_views(ref, [ref.boxes.tolist()] * 3))
    unstable = dets(
        ref.boxes.tolist(), ref.class_probs.tolist(), views=noisy_views(ref, [[shifted(BOX, 20)], [], [BOX]])
    )
    assert localization_stability(stable) == pytest.approx(0.4 - 1.0)
    s_b = [(1 / 3 + 0 + 1) / 3, (300 / 2200) / 3]  # box 1: IoU 1/3, no detection, IoU 1; box 2: 300 / 2200, 0, 0
    s_i = (0.9 * s_b[0] + 0.6 * s_b[1]) / 1.5
    assert localization_stability(unstable) == pytest.approx(0.4 - s_i)
    assert localization_stability(unstable, with_classification=False) == pytest.approx(-s_i)
    assert localization_stability(unstable) > localization_stability(stable)
    assert localization_stability(dets([], [], views=[])) is None


def test_stability_keeps_the_top_references_by_pmax():
    ref = dets([BOX, shifted(BOX, 100)], [[0.1, 0.9], [0.7, 0.3]])
    det = dets(ref.boxes.tolist(), ref.class_probs.tolist(), views=noisy_views(ref, [[BOX]]))
    assert localization_stability(det, max_references=1) == pytest.approx(0.1 - 1.0)  # the 0.3 box is dropped
    with pytest.raises(ValueError, match=r"view 0 must carry reference_boxes \[2, 4\]"):
        localization_stability(dets(ref.boxes.tolist(), ref.class_probs.tolist(), views=[dets([BOX], [[0.1, 0.9]])]))
    with pytest.raises(ValueError, match=r"needs Detections.extras\['views'\]"):
        localization_stability(ref)


# ------------------------------------------------------------------------------------------------------ CALD


def test_js_divergence_natural_log_on_renormalised_vectors():
    assert js_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])).item() == pytest.approx(math.log(2))
    assert js_divergence(torch.tensor([[0.2, 0.3]]), torch.tensor([[0.4, 0.6]])).item() == pytest.approx(0, abs=1e-12)


def cald_views(ref: Detections, per_view) -> list[Detections]:
    return [dets(boxes, probs, reference_boxes=ref.boxes.tolist()) for boxes, probs in per_view]


def test_consistency_formula_and_the_inconsistent_image_ranks_first():
    # c = |IoU + ½(1 - JS)(P_ref + P_view) - 1.3|: a confident detection found again unchanged gives |2 - 1.3|,
    # one found shifted and less sure lands near the base point 1.3: less consistent, more informative
    ref_probs, unsure = [0.05, 0.95, 0.0], [0.4, 0.6, 0.0]
    ref = dets([BOX], [ref_probs])
    same = cald_views(ref, [([BOX], [ref_probs])] * 2)
    changed = cald_views(ref, [([shifted(BOX, 8)], [unsure]), ([BOX], [ref_probs])])
    consistent = dets([BOX], [ref_probs], views=same)
    inconsistent = dets([BOX], [ref_probs], views=changed)
    assert cald_consistency(consistent) == pytest.approx(abs(1 + 0.95 - 1.3))
    js = js_divergence(torch.tensor([ref_probs]), torch.tensor([unsure])).item()
    first = abs(1280 / 1920 + 0.5 * (1 - js) * (0.95 + 0.6) - 1.3)
    assert first < 0.15 and cald_consistency(inconsistent) == pytest.approx((first + 0.65) / 2)
    strategy = get_strategy("cald")
    pool = ScoredPool.collect(enumerate([consistent, inconsistent, dets([], [], views=[])]), strategy)
    assert pool.scores[1] == pytest.approx(-(first + 0.65) / 2)
    assert list(strategy.select(SelectionInput(pool, None, 3, np.random.default_rng(0)))) == [2, 1, 0]


def test_consistency_view_without_detections_gives_zero_and_min_is_capped_at_one():
    ref = dets([BOX], [[0.1, 0.9]])
    empty_view = dets(ref.boxes.tolist(), ref.class_probs.tolist(), views=cald_views(ref, [([], [])]))
    assert cald_consistency(empty_view) == 0.0
    low = dets([BOX], [[1.0, 0.0]], views=cald_views(dets([BOX], [[1.0, 0.0]]), [([shifted(BOX, 200)], [[1.0, 0.0]])]))
    assert cald_consistency(low) == pytest.approx(1.0)  # |0 + 0 - 1.3| = 1.3, capped by the initial 1.0


def test_cald_references_evenly_spaced_past_40():
    assert cald_references(40).tolist() == list(range(40))
    assert cald_references(99).tolist() == np.round(np.linspace(0, 98, 50)).astype(int).tolist()
    assert len(cald_references(45)) == 50 and cald_references(50).tolist() == list(range(50))


def test_class_score_vector_averages_per_class_maxima_over_original_and_views():
    ref = dets([BOX, BOX], [[0.1, 0.8, 0.1], [0.3, 0.1, 0.6]])
    det = dets(
        ref.boxes.tolist(), ref.class_probs.tolist(), views=cald_views(ref, [([BOX], [[0.5, 0.4, 0.1]]), ([], [])])
    )
    assert class_score_vector(det).tolist() == pytest.approx([(0.8 + 0.4 + 0) / 3, 0.6 / 3])
    sigmoid = dets([BOX], [[0.7, 0.2]], kind="sigmoid", views=[])
    assert class_score_vector(sigmoid).tolist() == pytest.approx([0.7, 0.0])


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_distribution_order_zero_vectors_first_then_largest_js():
    q = np.array([[0.5, 0.5], [0.0, 0.0], [0.9, 0.0], [0.0, 0.9], [0.4, 0.45]])
    counts, n = np.array([6.0, 0.0]), 2  # labelled mean [3, 0]: class 1 dominates
    p = softmax(np.array([3.0, 0.0]))
    js = [js_divergence(torch.tensor(p[None]), torch.tensor(softmax(row)[None])).item() for row in q]
    expected = [1] + sorted([0, 2, 3, 4], key=lambda i: -js[i])
    assert expected[1] == 3  # the class the labelled set lacks
    assert list(distribution_order(q, counts, n)) == expected
    assert sorted(distribution_order(q, None, 0)) == [0, 1, 2, 3, 4]


def test_distribution_order_with_update_moves_the_target():
    q = np.array([[0.0, 0.9], [0.0, 0.85], [0.9, 0.0]])
    assert list(distribution_order(q, np.array([0.5, 0.0]), 1)) == [0, 1, 2]
    updated = list(distribution_order(q, np.array([0.5, 0.0]), 1, update=True))
    assert updated[0] == 0 and updated[1] == 2  # after one class-2 pick the labelled mean leans to class 2


def test_cald_distribution_select_reads_the_pool_extras_and_yields_pool_indices():
    pool = ScoredPool.from_lists([7, 8, 9], [0.1, 0.2, 0.3], [1, 1, 1])
    pool.extras = {"class_scores": [np.array([0.9, 0.0]), np.array([0.0, 0.0]), np.array([0.0, 0.9])]}
    inputs = SelectionInput(pool, None, 2, np.random.default_rng(0))
    inputs.labelled_class_counts, inputs.num_labelled = np.array([4.0, 0.0]), 2
    assert list(cald_distribution_select(inputs)) == [8, 9, 7]
    pool.extras = {}
    with pytest.raises(ValueError, match=r"extras\['class_scores'\]"):
        list(cald_distribution_select(inputs))


# ------------------------------------------------------------------------------------------------ registry


def test_registry_options_are_checked():
    with pytest.raises(ValueError, match="The 'views' parameter of cald must be letters"):
        get_strategy("cald", views="FQ")
    with pytest.raises(ValueError, match=r"The 'shortlist' parameter of cald must be a float in \[1, inf\)"):
        get_strategy("cald", shortlist=0.5)
    with pytest.raises(ValueError, match="'with_classification' parameter of localization_stability"):
        get_strategy("localization_stability", with_classification="yes")
    with pytest.raises(ValueError, match="'empty_policy' parameter of localization_tightness"):
        get_strategy("localization_tightness", empty_policy="first")
    assert get_strategy("localization_stability").needs == {"views", "class_probs"}
    assert get_strategy("localization_tightness").needs == {"proposals", "class_probs"}


def test_strategy_predictors_build_on_tiny_detectors_and_score():
    torch.manual_seed(0)
    frcnn = build_faster_rcnn(2, backbone="tiny", min_size=64, max_size=96, score_thresh=0.0)
    assert get_strategy("localization_tightness").predictor(frcnn) is frcnn
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    for name in ("localization_stability", "cald"):
        strategy = get_strategy(name)
        predictor = strategy.predictor(frcnn)
        assert isinstance(predictor, ViewPredictor)
        det = predictor.predict([image], strategy.needs)[0]
        assert len(det.extras["views"]) == (6 if name == "localization_stability" else 4)
        assert np.isfinite(strategy.score(det))
    lt = get_strategy("localization_tightness")
    det = frcnn.predict([image], lt.needs)[0]
    assert 0 <= lt.score(det) <= 1
