"""AL-MDN mixture heads, MC-dropout and deep ensembles: the model parts, the scores and the training of ensembles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from activedet.engine.train import TrainOptions
from activedet.engine.trainers import train_ensemble
from activedet.methods.almdn.model import detection_uncertainties, mixture_loc_nll
from activedet.methods.almdn.scoring import almdn_combine, almdn_vector
from activedet.methods.stochastic.model import HeadDropout, StochasticPredictor
from activedet.methods.stochastic.scoring import cluster_predictions, dense_stochastic_score, matched_stochastic_score
from activedet.models import EnsembleDetector, build_detector
from activedet.models.outputs import Detections
from activedet.strategies import ScoredPool, get_strategy

C = 3
MDN = [("almdn_ssd", {"backbone": "tiny", "min_size": 96}), ("almdn_retinanet", {"backbone": "tiny"})]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _images(n: int = 2, size: int = 96):
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, size, size + 16 * i, generator=g) for i in range(n)]


def _targets(n: int = 2):
    full = {"boxes": torch.tensor([[8.0, 10.0, 40.0, 50.0], [50.0, 20.0, 90.0, 70.0]]), "labels": torch.tensor([1, C])}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return [full if i % 2 == 0 else empty for i in range(n)]


def _dets(scores, boxes=None, labels=None, kind="sigmoid", probs=None) -> Detections:
    n = len(scores)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n) if boxes is None else torch.tensor(boxes, dtype=torch.float32)
    labels = torch.ones(n, dtype=torch.int64) if labels is None else torch.tensor(labels)
    return Detections(
        boxes.reshape(n, 4),
        torch.tensor(scores, dtype=torch.float32),
        labels,
        kind,
        class_probs=None if probs is None else torch.tensor(probs, dtype=torch.float32),
    )


# ------------------------------------------------------------------------------------------------- AL-MDN head


@pytest.mark.parametrize("name, kwargs", MDN)
def test_mixture_weights_sum_to_one_and_variances_are_positive(name, kwargs):
    model = build_detector(name, C, **kwargs).eval()
    with torch.no_grad():
        image_list, _ = model.transform(_images(1))
        features = model.backbone(image_list.tensors)
        features = list(features.values()) if isinstance(features, dict) else [features]
        out = model.head(features)
    k = 4
    assert out["cls_pi"].shape[-1] == k and out["loc_pi"].shape[-2:] == (k, 4)
    assert torch.allclose(out["cls_pi"].sum(-1), torch.ones(1)) and torch.allclose(out["loc_pi"].sum(-2), torch.ones(1))
    for key in ("cls_var_logit", "loc_sigma_logit"):
        values = torch.sigmoid(out[key])
        assert torch.all(values > 0) and torch.all(values < 1)
    # the mixed prediction torchvision postprocesses is the mixture of the component probabilities
    probs = model.dense_class_probs(out)
    component = torch.softmax(out["cls_mu"], -1) if name == "almdn_ssd" else torch.sigmoid(out["cls_mu"])
    mixed = (out["cls_pi"].unsqueeze(-1) * component).sum(-2)
    assert torch.allclose(probs, mixed if name == "almdn_ssd" else mixed[..., 1:], atol=1e-5)
    assert torch.allclose(out["bbox_regression"], (out["loc_pi"] * out["loc_mu"]).sum(-2), atol=1e-6)


@pytest.mark.parametrize(
    "name, kwargs", MDN + [("almdn_ssd", {"backbone": "tiny", "min_size": 96, "cls_loss": "type2", "separable": False})]
)
def test_mixture_losses_are_finite_and_decrease(name, kwargs):
    model = build_detector(name, C, **kwargs).train()
    images, targets = _images(4), _targets(4)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(40):
        loss_dict = model(images, targets)
        assert set(loss_dict) == {"classification", "bbox_regression"}
        assert all(torch.isfinite(v) for v in loss_dict.values())
        loss = sum(loss_dict.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses


def test_mixture_nll_is_the_released_kernel():
    t, mu, sigma = torch.tensor([[0.3, -0.2, 0.0, 1.0]]), torch.zeros(1, 2, 4), torch.full((1, 2, 4), 0.5)
    pi = torch.tensor([[[0.25] * 4, [0.75] * 4]])
    kernel = torch.exp(-0.5 * ((t - 0.0) / 0.5) ** 2) / (math.sqrt(2 * math.pi) * (0.5 + 0.3))
    expected = -(torch.log(kernel + 1e-9)).sum() / 2.0
    assert torch.allclose(mixture_loc_nll(t, mu, sigma, pi), expected.reshape(1), atol=1e-5)
    far = mixture_loc_nll(torch.full((1, 4), 1e4), mu, sigma, pi)  # the +1e-9 bounds the loss of outliers
    assert torch.allclose(far, torch.tensor([-4 * math.log(1e-9) / 2]), atol=1e-3)


def _outputs(agree: bool):
    g = torch.Generator().manual_seed(0)
    k, a, c = 4, 6, C + 1
    cls_mu = torch.randn(1, a, 1 if agree else k, c, generator=g).expand(1, a, k, c)
    loc_mu = torch.randn(1, a, 1 if agree else k, 4, generator=g).expand(1, a, k, 4)
    return {
        "cls_mu": cls_mu,
        "cls_var_logit": torch.randn(1, a, k, c, generator=g),
        "cls_pi": torch.softmax(torch.randn(1, a, k, generator=g), -1),
        "loc_mu": loc_mu,
        "loc_sigma_logit": torch.randn(1, a, k, 4, generator=g),
        "loc_pi": torch.softmax(torch.randn(1, a, k, 4, generator=g), -2),
    }


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_epistemic_terms_are_zero_when_all_components_agree(kind):
    anchors, labels = torch.tensor([0, 3, 5]), torch.tensor([1, 2, C])
    agree = detection_uncertainties(_outputs(True), 0, anchors, labels, kind)
    assert agree.shape == (3, 4) and torch.all(agree[:, [0, 2]] > 0)
    assert torch.allclose(agree[:, [1, 3]], torch.zeros(3, 2), atol=1e-7)
    disagree = detection_uncertainties(_outputs(False), 0, anchors, labels, kind)
    assert torch.all(disagree[:, [1, 3]] > 0)


@pytest.mark.parametrize("name, kwargs", MDN)
def test_predict_returns_four_uncertainties_per_detection(name, kwargs):
    model = build_detector(name, C, score_thresh=0.0, **kwargs)
    dets = model.predict(_images(2), fields={"uncertainties", "class_probs"})
    for det in dets:
        assert det.extras["uncertainties"].shape == (len(det), 4) and torch.all(det.extras["uncertainties"] >= 0)
    assert model.predict([torch.zeros(3, 64, 64)], fields={"uncertainties"})[0].extras["uncertainties"].shape[1] == 4


def test_almdn_score_normalises_over_all_detections_of_the_pool():
    u = [[[1.0, 2, 3, 4], [0, 0, 0, 0]], [[2.0, 2, 1, 1]], [[5.0, 5, 5, 5]], []]
    scores = [[0.9, 0.6], [0.9], [0.1], []]
    dets = [
        Detections(
            torch.zeros(len(s), 4),
            torch.tensor(s),
            torch.ones(len(s), dtype=torch.int64),
            extras={"uncertainties": torch.tensor(x).reshape(-1, 4)},
        )
        for x, s in zip(u, scores)
    ]
    strategy = get_strategy("almdn")
    pool = ScoredPool.collect(enumerate(dets), strategy).finalize(strategy)
    # kept values per type over the pool: (1, 0, 2), (2, 0, 2), (3, 0, 1), (4, 0, 1); population std
    type3 = np.array([4.0, 0, 1])
    assert pool.scores[0] == pytest.approx((4 - type3.mean()) / type3.std())
    assert pool.scores[1] == pytest.approx((2 - 1) / np.array([1.0, 0, 2]).std())
    assert np.isnan(pool.scores[2]) and np.isnan(pool.scores[3]) and list(pool.empty) == [False, False, True, True]
    # shards gathered from several processes combine to the same scores
    shards = [ScoredPool.collect(list(enumerate(dets))[i::2], strategy) for i in range(2)]
    joined = ScoredPool.concatenate(shards).finalize(strategy)
    assert np.allclose(joined.scores, pool.scores, equal_nan=True)
    assert np.all(np.isnan(almdn_combine(ScoredPool.collect(enumerate(dets[2:]), strategy))))
    with pytest.raises(ValueError, match=r"needs Detections.extras\['uncertainties'\]"):
        almdn_vector(dets[0].to("cpu").__class__(torch.zeros(1, 4), torch.ones(1), torch.ones(1, dtype=torch.int64)))


# ---------------------------------------------------------------------------------------------- MC-dropout


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("retinanet", {"backbone": "tiny"}),
        ("fcos", {"backbone": "tiny"}),
        ("ssd", {"backbone": "tiny", "min_size": 96}),
        ("faster_rcnn", {"backbone": "tiny"}),
    ],
)
def test_mc_dropout_passes_differ_and_batchnorm_stays_in_eval(name, kwargs):
    model = build_detector(name, C, dropout=0.3, norm="batchnorm", score_thresh=0.0, **kwargs)
    plain_keys = build_detector(name, C, norm="batchnorm", **kwargs).state_dict().keys()
    assert model.state_dict().keys() == plain_keys  # dropout adds no state: checkpoints stay interchangeable
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    modes = []
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    hooks = [m.register_forward_hook(lambda mod, i, o: modes.append(mod.training)) for m in bns]
    predictor = StochasticPredictor.mc_dropout(model, passes=3)
    fields = {"passes"} | ({"dense_probs", "dense_expected_entropy", "dense_box_var"} if predictor.dense else set())
    det = predictor.predict(_images(1), fields=fields)[0]
    for hook in hooks:
        hook.remove()
    assert modes and not any(modes)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model.training and all(m.training for m in model.modules() if isinstance(m, HeadDropout))
    passes = det.extras["passes"]
    assert len(passes) == 3 and all(p.class_probs is not None for p in passes)
    assert not torch.equal(passes[0].scores, passes[1].scores)
    if predictor.dense:
        assert (
            float(det.extras["dense_box_var"].max()) > 0
            and det.extras["dense_expected_entropy"].shape == det.dense_probs.shape[:1]
        )
        # the detections are those of the mean prediction, with their mean class vectors
        assert len(det) > 0 and torch.all(det.dense_probs.sum(-1) > 0)
    # an ordinary predict samples nothing: dropout is off in eval mode
    first, second = model.predict(_images(1))[0], model.predict(_images(1))[0]
    assert torch.equal(first.scores, second.scores)


def test_without_dropout_or_ensemble_the_predictors_say_what_to_set():
    model = build_detector("retinanet", C, backbone="tiny")
    with pytest.raises(ValueError, match=r"detector_options: \{dropout: 0.25\}"):
        StochasticPredictor.mc_dropout(model)
    with pytest.raises(ValueError, match="ensemble_size: 3"):
        StochasticPredictor.ensemble(model)
    with pytest.raises(ValueError, match="The 'passes' parameter of mc_dropout must be an int in \\[2"):
        get_strategy("mc_dropout", passes=1)
    with pytest.raises(ValueError, match="formulation: matched"):
        dense_stochastic_score(_dets([0.5]))


def test_matching_puts_one_object_from_every_pass_in_one_cluster():
    a = [[10.0, 10.0, 50.0, 50.0], [12.0, 9.0, 52.0, 49.0], [9.0, 11.0, 48.0, 51.0]]
    b = [[60.0, 60.0, 90.0, 95.0], [61.0, 59.0, 91.0, 96.0]]
    passes = [
        _dets([0.9, 0.8], [a[0], b[0]]),
        _dets([0.85, 0.7, 0.6], [b[1], a[1], [11.0, 10.0, 50.0, 51.0]]),  # duplicate of a: 2nd member? no
        _dets([0.95, 0.3], [a[2], [0.0, 0.0, 5.0, 5.0]]),
    ]  # a low-score box is ignored
    clusters = cluster_predictions(passes, detection_threshold=0.5, iou_threshold=0.5)
    assert sorted(map(sorted, clusters)) == [[(0, 0), (1, 1), (2, 0)], [(0, 1), (1, 0)], [(1, 2)]]
    # labels can be required to agree
    labelled = [_dets([0.9], [a[0]], [1]), _dets([0.9], [a[1]], [2])]
    assert len(cluster_predictions(labelled, same_label=True)) == 2 and len(cluster_predictions(labelled)) == 1


def test_matched_score_ranks_disagreeing_passes_first():
    box = [10.0, 10.0, 50.0, 50.0]
    stable = [_dets([0.95], [box]) for _ in range(4)]
    shifted = [_dets([0.95], [[10.0 + 6 * t, 10.0, 50.0 + 6 * t, 50.0]]) for t in range(4)]
    missing = [_dets([0.95], [box]), _dets([0.95], [box]), _dets([], []), _dets([], [])]
    unsure = [_dets([0.55], [box]) for _ in range(4)]
    score = lambda passes: matched_stochastic_score(
        Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), extras={"passes": passes})
    )
    values = {
        name: score(p)
        for name, p in [("stable", stable), ("shifted", shifted), ("missing", missing), ("unsure", unsure)]
    }
    assert values["stable"] == pytest.approx(
        1 - (1 - float(-(0.95 * math.log(0.95) + 0.05 * math.log(0.05))) / math.log(2)), abs=1e-5
    )
    assert values["missing"] > values["stable"] and values["shifted"] > values["stable"]
    assert values["unsure"] > values["stable"]
    assert score([_dets([], []) for _ in range(3)]) is None


def test_dense_scores_rank_disagreement_first():
    mean = torch.tensor([[0.5, 0.01], [0.5, 0.01], [0.01, 0.01]])
    base = dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.int64))
    # anchor 0: passes agree on 0.5 (expected entropy = entropy of the mean: MI 0); anchor 1: they disagree
    entropy_of_mean = float(-(0.5 * math.log(0.5) * 2) - (0.01 * math.log(0.01) + 0.99 * math.log(0.99)))
    agree = Detections(
        **base,
        dense_probs=mean[:1],
        extras={"dense_expected_entropy": torch.tensor([entropy_of_mean]), "dense_box_var": torch.tensor([0.0])},
    )
    disagree = Detections(
        **base,
        dense_probs=mean[1:2],
        extras={"dense_expected_entropy": torch.tensor([0.2]), "dense_box_var": torch.tensor([0.3])},
    )
    background = Detections(
        **base,
        dense_probs=mean[2:],
        extras={"dense_expected_entropy": torch.tensor([0.0]), "dense_box_var": torch.tensor([5.0])},
    )
    mi = [dense_stochastic_score(d) for d in (agree, disagree, background)]
    assert mi[0] == pytest.approx(0.0, abs=1e-5) and mi[1] == pytest.approx(entropy_of_mean - 0.2, abs=1e-5)
    assert mi[2] is None  # no anchor reaches the score threshold
    assert dense_stochastic_score(disagree, measure="box_variance") == pytest.approx(0.3)
    assert dense_stochastic_score(agree, measure="entropy") == pytest.approx(entropy_of_mean, abs=1e-5)


# ------------------------------------------------------------------------------------------------ ensembles


def test_ensemble_members_differ_and_member_0_is_the_plain_detector():
    torch.manual_seed(5)
    plain = build_detector("retinanet", C, backbone="tiny")
    torch.manual_seed(5)
    ensemble = EnsembleDetector([build_detector("retinanet", C, backbone="tiny") for _ in range(3)])
    first, second = ensemble.members[0].state_dict(), ensemble.members[1].state_dict()
    assert all(torch.equal(v, first[k]) for k, v in plain.state_dict().items())
    assert not torch.equal(
        first["head.classification_head.cls_logits.weight"], second["head.classification_head.cls_logits.weight"]
    )
    images = _images(1)
    assert torch.equal(ensemble.predict(images)[0].scores, plain.predict(images)[0].scores)
    predictor = StochasticPredictor.ensemble(ensemble)
    det = predictor.predict(images, fields={"passes", "dense_probs", "dense_expected_entropy", "dense_box_var"})[0]
    assert len(det.extras["passes"]) == 3 and float(det.extras["dense_box_var"].max()) > 0


def test_train_ensemble_seeds_members_and_resumes_finished_ones(toy_dataset, tmp_path):
    torch.manual_seed(0)
    ensemble = EnsembleDetector([build_detector("ssd", 2, backbone="tiny", min_size=64) for _ in range(2)])
    initial = {k: v.clone() for k, v in ensemble.state_dict().items()}
    options = TrainOptions(
        epochs=1, batch_size=4, lr=1e-3, optimizer="adamw", warmup_iters=1, amp=False, lr_schedule="constant", seed=3
    )
    calls = []

    def counting(member, data, **kwargs):
        calls.append(kwargs["options"].seed)
        from activedet.engine.train import train_detector

        return train_detector(member, data, **kwargs)

    result = train_ensemble(
        ensemble,
        toy_dataset,
        member_trainer=counting,
        options=options,
        out_dir=tmp_path,
        device="cpu",
        resume=True,
        progress=False,
    )
    assert calls[0] == 3 and calls[1] != 3 and result.epochs_completed == 1
    assert (tmp_path / "member0" / "member.pt").is_file() and (tmp_path / "member1" / "member.pt").is_file()
    trained = {k: v.clone() for k, v in ensemble.state_dict().items()}
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)
    ensemble.load_state_dict(initial)
    calls.clear()
    train_ensemble(
        ensemble,
        toy_dataset,
        member_trainer=counting,
        options=options,
        out_dir=tmp_path,
        device="cpu",
        resume=True,
        progress=False,
    )
    assert calls == [] and all(torch.equal(v, trained[k]) for k, v in ensemble.state_dict().items())
    with pytest.raises(RuntimeError, match="trains member by member"):
        ensemble.train()(_images(1), _targets(1))
