"""PPAL: the class-difficulty EMA, DCUS, the CCM distance and k-medoids on hand-made inputs, and the detector side
(per-detection features, identical training with the EMA on, the untrained-model error). Weights-free, CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from activedet.methods.ppal.model import ClassDifficultyEMA, DifficultyPredictor, aligned_iou
from activedet.methods.ppal.scoring import (
    ccm_describe,
    ccm_distances,
    class_weights,
    dcus_score,
    kmedoids,
    kmedoids_select,
)
from activedet.models.faster_rcnn import build_faster_rcnn
from activedet.models.outputs import Detections
from activedet.models.retinanet import build_retinanet
from activedet.strategies.base import ScoredPool, SelectionInput

C = 3


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def det(scores, labels, boxes=None, quality=None, features=None) -> Detections:
    n = len(scores)
    boxes = [[0.0, 0.0, 20.0, 20.0]] * n if boxes is None else boxes
    return Detections(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels).long(),
        features=None if features is None else torch.tensor(features, dtype=torch.float32),
        extras={} if quality is None else {"class_quality": torch.tensor(quality, dtype=torch.float32)},
    )


# ------------------------------------------------------------------------------------------ difficulty EMA


@pytest.mark.parametrize("absent", ["keep", "decay"])
def test_ema_update_rule_with_an_absent_class(absent):
    ema = ClassDifficultyEMA(2, momentum=0.9, absent=absent)
    ema.update(torch.tensor([1.6, 0.0]), torch.tensor([2.0, 0.0]))  # class 1: mean 0.8; class 2 absent
    assert ema.quality.tolist() == pytest.approx([0.1 * 0.8, 0.0])
    ema.quality[1] = 0.5  # as if class 2 had been seen
    ema.update(torch.tensor([0.4, 0.0]), torch.tensor([1.0, 0.0]))
    assert ema.quality[0].item() == pytest.approx(0.9 * 0.08 + 0.1 * 0.4)
    if absent == "keep":
        assert ema.quality[1].item() == pytest.approx(0.5) and ema.momentum[1].item() == pytest.approx(0.9)
    else:  # the official rule: an EMA step towards 0 with the current momentum, which then shrinks
        assert ema.quality[1].item() == pytest.approx(0.9**2 * 0.5)
        assert ema.momentum[1].item() == pytest.approx(0.9**3)
    assert ema.momentum[0].item() == pytest.approx(0.9) and int(ema.updates) == 2


def test_observe_computes_the_quality_and_class_means():
    ema = ClassDifficultyEMA(C, momentum=0.0, xi=0.6)  # momentum 0: Q = this batch's class means
    ema.observe(torch.tensor([1, 1, 3]), torch.tensor([0.5, 1.0, 0.2]), torch.tensor([1.0, 0.25, 1.0]))
    expected_1 = (0.5**0.6 + 0.25**0.4) / 2
    assert ema.quality.tolist() == pytest.approx([expected_1, 0.0, 0.2**0.6])
    iou = aligned_iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 0, 15, 10]]))
    assert iou.item() == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------------- DCUS


def test_class_weight_formula():
    alpha, beta = 0.3, 0.2
    w = class_weights(torch.tensor([1.0, 0.0, 0.5]), alpha, beta)
    b = math.exp(1 / alpha) - 1
    assert w.tolist() == pytest.approx([1.0, 1 + beta, 1 + alpha * beta * math.log(1 + b * 0.5)])


def test_dcus_ranks_uncertain_detections_of_hard_classes_first():
    quality = [0.9, 0.1, 0.5]  # class 2 is hard
    hb = lambda s: -(s * math.log(s) + (1 - s) * math.log(1 - s))  # noqa: E731
    easy = det([0.5], [1], quality=quality)
    hard = det([0.5], [2], quality=quality)
    assert dcus_score(hard) > dcus_score(easy)
    assert dcus_score(hard) == pytest.approx(float(class_weights(torch.tensor(quality))[1]) * hb(0.5))
    two = det([0.5, 0.6], [1, 1], quality=quality)  # the sum grows with the detections
    assert dcus_score(two) > dcus_score(easy)


def test_dcus_filters_and_empty_images():
    quality = [0.5, 0.5, 0.5]
    assert dcus_score(det([], [], quality=quality)) is None
    assert dcus_score(det([0.04], [1], quality=quality)) is None  # below the score threshold
    small = det([0.5], [1], boxes=[[0, 0, 3, 3]], quality=quality)
    assert dcus_score(small) is None and dcus_score(small, min_size=2.0) is not None
    thin = [[0, 0, 60, 10]]  # aspect ratio 6
    assert dcus_score(det([0.5], [1], boxes=thin, quality=quality)) is None
    assert dcus_score(det([0.5], [1], boxes=thin, quality=quality), max_aspect=7.0) is not None
    with pytest.raises(ValueError, match="class_quality"):
        dcus_score(det([0.5], [1]))


# ---------------------------------------------------------------------------------------------------- CCM


def test_ccm_distance_on_hand_made_features():
    s = 0.6**2 + 0.8**2  # unit vectors below
    feats = [
        np.array([[1, 0], [0, 1]], np.float32),
        np.array([[0.6, 0.8]], np.float32) / s**0.5,
        np.array([[1, 0]], np.float32),
        np.zeros((0, 2), np.float32),
        np.zeros((0, 2), np.float32),
    ]
    labels = [np.array([1, 2]), np.array([1]), np.array([3]), np.zeros(0, np.int64), np.zeros(0, np.int64)]
    scores = [
        np.array([0.9, 0.3], np.float32),
        np.array([0.5], np.float32),
        np.array([0.8], np.float32),
        np.zeros(0, np.float32),
        np.zeros(0, np.float32),
    ]
    d = ccm_distances(feats, labels, scores)
    assert np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    # 0 -> 1: class 1 matches at 1 - 0.6, class 2 has no partner (2); 1 -> 0: 1 - 0.6. Score-weighted, averaged.
    assert d[0, 1] == pytest.approx(0.5 * ((0.9 * 0.4 + 0.3 * 2) / 1.2 + 0.4), abs=1e-6)
    assert d[0, 2] == pytest.approx(2.0) and d[1, 2] == pytest.approx(2.0)  # no common label
    assert d[3, 4] == 0 and d[0, 3] == pytest.approx(2.0) and d[3, 2] == pytest.approx(2.0)  # empty images


def test_ccm_describe_keeps_the_best_detections_above_the_threshold():
    d = det([0.9, 0.5, 0.04], [1, 2, 1], features=[[3.0, 4.0], [1.0, 0.0], [0.0, 1.0]])
    kept = ccm_describe(d, max_detections=1)
    assert kept["labels"].tolist() == [1] and kept["features"].dtype == np.float16
    assert kept["features"][0].astype(np.float32) == pytest.approx([0.6, 0.8], abs=1e-3)
    assert len(ccm_describe(d)["scores"]) == 2
    with pytest.raises(ValueError, match="features"):
        ccm_describe(det([0.9], [1]))


def _two_blobs() -> np.ndarray:
    """Positions 0-2 near each other (1 is their centre), 3-5 likewise (4 the centre), the blobs 10 apart."""
    x = np.array([0.0, 1.0, 2.2, 10.0, 11.0, 12.1])
    return np.abs(x[:, None] - x[None, :])


@pytest.mark.parametrize("seed", range(6))
def test_kmedoids_finds_the_known_medoids_from_any_start(seed):
    assert sorted(kmedoids(_two_blobs(), 2, np.random.default_rng(seed)).tolist()) == [1, 4]
    assert sorted(kmedoids(_two_blobs(), 6, np.random.default_rng(seed)).tolist()) == list(range(6))


def test_kmedoids_select_yields_medoids_first_in_a_stable_order():
    labels = [np.array([1])] * 6
    feats = [np.array([[1.0, 0.0]], np.float32)] * 3 + [np.array([[0.0, 1.0]], np.float32)] * 3
    feats[1] = np.array([[0.9, 0.1]], np.float32)  # makes the blobs unequal only in their inner distances
    scores = [np.array([0.5], np.float32)] * 6
    pool = ScoredPool.from_lists(np.arange(100, 106), [1.0] * 6, [1] * 6)
    pool.extras = {"features": feats, "labels": labels, "scores": scores}
    picks = [list(kmedoids_select(SelectionInput(pool, None, 2, np.random.default_rng(s)))) for s in range(3)]
    assert all(p == picks[0] for p in picks) and len(picks[0]) == 6 and len(set(picks[0])) == 6
    assert set(picks[0][:2]) & {100, 101, 102} and set(picks[0][:2]) & {103, 104, 105}
    with pytest.raises(ValueError, match="extras"):
        next(kmedoids_select(SelectionInput(ScoredPool.from_lists([1], [1.0], [1]), None, 1, np.random.default_rng(0))))


# ------------------------------------------------------------------------------------------------ detectors


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 128, 128, generator=g) for _ in range(2)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 30.0, 120.0, 90.0]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[20.0, 20.0, 50.0, 44.0]]), "labels": torch.tensor([2])},
    ]
    return images, targets


BUILDERS = {"faster_rcnn": build_faster_rcnn, "retinanet": build_retinanet}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_per_detection_features(name):
    torch.manual_seed(0)
    model = BUILDERS[name](C, backbone="tiny", score_thresh=0.001, detections_per_img=20)
    dets = model.predict([torch.rand(3, 128, 100), torch.rand(3, 96, 128)], fields={"features"})
    width = 256 if name == "faster_rcnn" else 64  # representation_size / fpn_channels of "tiny"
    for d in dets:
        assert len(d) > 0 and d.features.shape == (len(d), width) and torch.isfinite(d.features).all()
    assert model.predict([torch.rand(3, 128, 128)])[0].features is None


def _trained(builder, steps: int, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = builder(C, backbone="tiny", **options)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for step in range(steps):
        images, targets = _batch(step)
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_training_is_identical_with_the_difficulty_ema(name):
    plain = _trained(BUILDERS[name], 3)
    tracked = _trained(BUILDERS[name], 3, difficulty_ema=True, difficulty_momentum=0.5)
    plain_state = plain.state_dict()
    tracked_state = tracked.state_dict()
    difficulty = {k for k in tracked_state if "difficulty" in k}
    assert set(tracked_state) - set(plain_state) == difficulty and len(difficulty) == 3
    for key, value in plain_state.items():
        assert torch.equal(value, tracked_state[key]), key
    ema = DifficultyPredictor(tracked).class_quality()
    assert int(tracked_state[next(k for k in difficulty if k.endswith("updates"))]) == 3
    assert (ema > 0).all() and (ema < 1).all()  # every class was seen


def test_models_without_a_trained_difficulty_are_rejected():
    with pytest.raises(ValueError, match=r"detector_options: \{difficulty_ema: true\}"):
        DifficultyPredictor(build_faster_rcnn(C, backbone="tiny"))
    untrained = DifficultyPredictor(build_retinanet(C, backbone="tiny", difficulty_ema=True))
    with pytest.raises(ValueError, match="never updated"):
        untrained.predict([torch.rand(3, 64, 64)], fields={"class_quality"})
    with pytest.raises(ValueError, match="'difficulty_absent' parameter of build_faster_rcnn"):
        build_faster_rcnn(C, backbone="tiny", difficulty_ema=True, difficulty_absent="forget")


def test_difficulty_predictor_attaches_the_class_quality():
    model = _trained(build_faster_rcnn, 1, difficulty_ema=True)
    predictor = DifficultyPredictor(model)
    dets = predictor.predict([torch.rand(3, 128, 128)], fields={"class_quality", "features"})
    assert torch.equal(dets[0].extras["class_quality"], model.roi_heads.difficulty.quality)
    assert dets[0].features is not None and "class_quality" in predictor.PROVIDES
