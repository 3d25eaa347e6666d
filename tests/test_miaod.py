"""MI-AOD: head outputs, losses per stage, which parameters each stage trains, scoring, the schedule, edge cases
the released code breaks on, and kill-and-resume inside every stage."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_loop import kill_then_resume, outcome, run_cli, write_config

from activedet.config import ConfigError, load_config
from activedet.engine.train import OptionError, TrainOptions, build_optimizer
from activedet.methods.miaod.training import MIAODOptions, miaod_schedule, stage_parameters, train_miaod
from activedet.models import Detections, build_detector
from activedet.strategies import get_strategy
from activedet.workflows import run_from_config

EMPTY = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
FIELDS = {"class_probs", "class_probs_2", "dense_probs", "dense_probs_2", "dense_weights", "embedding"}


def model_and_batch(num_classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    model = build_detector("miaod", num_classes, backbone="tiny", min_size=96, max_size=160)
    images = [torch.rand(3, 96, 96), torch.rand(3, 80, 112)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 44.0, 50.0]]), "labels": torch.tensor([min(2, num_classes)])},
        dict(EMPTY),
    ]
    return model, images, targets


@pytest.mark.parametrize("stage", ["label", "min", "max"])
def test_losses_of_each_stage_are_finite_and_named(stage):
    model, images, targets = model_and_batch()
    model.train()
    labelled = model(images, targets, stage=stage)
    expected = {"classification", "bbox_regression"} | ({"mil"} if stage != "max" else set())
    assert set(labelled) == expected and all(torch.isfinite(v) for v in labelled.values())
    if stage == "label":
        with pytest.raises(ValueError, match="stage 'label' trains on labelled images only"):
            model(images, None, stage=stage)
        return
    unlabelled = model(images, None, stage=stage)
    assert set(unlabelled) == ({"discrepancy", "mil"} if stage == "min" else {"discrepancy"})
    assert all(torch.isfinite(v) for v in unlabelled.values())


def test_head_outputs_shapes_and_finiteness():
    model, images, _ = model_and_batch()
    image_list, _ = model.transform(images)
    features = list(model.backbone(image_list.tensors).values())
    outputs = model.head(features)
    anchors = sum(f.shape[-2] * f.shape[-1] for f in features) * 9
    assert set(outputs) == {"cls_logits", "cls_logits_2", "mil_logits", "bbox_regression"}
    for key, width in (("cls_logits", 4), ("cls_logits_2", 4), ("mil_logits", 4), ("bbox_regression", 4)):
        assert outputs[key].shape == (2, anchors, width) and torch.isfinite(outputs[key]).all()
    assert not torch.equal(outputs["cls_logits"], outputs["cls_logits_2"])  # different random initialisations


def test_unknown_stage_is_an_error():
    model, images, targets = model_and_batch()
    model.train()
    with pytest.raises(ValueError, match=r"'stage' parameter of MIAODRetinaNet.forward must be one of"):
        model(images, targets, stage="adversarial")


def test_predict_shapes_and_weights():
    model, images, _ = model_and_batch()
    with torch.no_grad():  # make some anchors detections
        model.head.classification_head.cls_logits.bias.fill_(0.5)
    dets = model.predict(images, fields=FIELDS)
    for det, image in zip(dets, images):
        anchors = det.dense_probs.shape[0]
        probs_2, weights = det.extras["dense_probs_2"], det.extras["dense_weights"]
        assert anchors > 0 and det.dense_probs.shape == probs_2.shape == weights.shape
        assert det.dense_probs.shape[1] == 3 and det.extras["class_probs_2"].shape == (len(det), 3)
        assert all(torch.isfinite(t).all() for t in (det.dense_probs, probs_2, weights))
        # per level the instance softmax sums to 1, times softmax over classes: 4 levels -> each class ~ 4/3
        assert torch.allclose(weights.sum(), torch.tensor(4.0), atol=1e-3)
        assert len(det) > 0 and (det.boxes[:, 2] <= image.shape[-1] + 1e-3).all()
    plain = build_detector("retinanet", 3, backbone="tiny").predict(images, fields={"dense_probs_2"})
    assert plain[0].extras.get("dense_probs_2") is None  # detectors with one classifier leave it empty


def _changed(before: dict[str, torch.Tensor], model) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


@pytest.mark.parametrize("stage", ["label", "min", "max"])
def test_each_stage_updates_exactly_its_parameters(stage):
    model, images, targets = model_and_batch()
    model.train()
    base = {n: p.requires_grad for n, p in model.named_parameters()}
    stage_parameters(model, stage, base)
    optimizer = build_optimizer(model, TrainOptions(optimizer="sgd", lr=0.1, weight_decay=0.0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batches = [(images, targets)] + ([(images, None)] if stage != "label" else [])
    for imgs, tgts in batches:
        optimizer.zero_grad()
        sum(model(imgs, tgts, stage=stage).values()).backward()
        optimizer.step()
    changed = _changed(before, model)
    adversarial = {n for n in before if n.startswith(("head.classification_head.", "head.classification_head_2."))}
    mil = {n for n in before if n.startswith("head.mil_head.")}
    trunk = {n for n in before if n.startswith("backbone.")}
    if stage == "max":
        assert changed and changed <= adversarial
        assert any(n.startswith("head.classification_head_2.") for n in changed)
    elif stage == "min":
        assert not changed & adversarial
        assert changed & mil and changed & trunk and any(n.startswith("head.regression_head.") for n in changed)
    else:
        assert changed & adversarial and changed & mil and changed & trunk
    stage_parameters(model, "label", base)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == base


def test_single_class_mil_loss_has_a_gradient():
    model, images, targets = model_and_batch(num_classes=1)
    model.train()
    loss = model(images, targets)["mil"]
    assert loss.item() > 1e-3
    loss.backward()
    grad = model.head.mil_head.cls_logits.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_empty_pseudo_labels_zero_the_batch_mil_loss_without_crashing():
    model, images, _ = model_and_batch()
    model.train()
    with torch.no_grad():  # every class of every anchor below 0.5: no pseudo-positive class anywhere
        for head in model.head.adversarial_classifiers():
            head.cls_logits.bias.fill_(-6.0)
    losses = model(images, None, stage="min")
    assert losses["mil"].item() == 0.0 and torch.isfinite(losses["discrepancy"])
    with torch.no_grad():
        for head in model.head.adversarial_classifiers():
            head.cls_logits.bias.fill_(6.0)
    assert model(images, None, stage="min")["mil"].item() > 0


def test_images_without_boxes_train(toy_dataset):
    model, images, _ = model_and_batch()
    model.train()
    losses = model(images, [dict(EMPTY), dict(EMPTY)])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_losses_decrease_on_a_tiny_set(toy_dataset):
    torch.manual_seed(0)
    model = build_detector("miaod", 2, backbone="tiny", min_size=96, max_size=160)
    options = TrainOptions(batch_size=4, optimizer="adamw", lr=3e-3, warmup_iters=0, hflip_prob=0.0, amp=False)
    schedule = MIAODOptions(label_epochs=6, adversarial_epochs=2, outer_loops=1, repeat_labelled=1, lr_drop_epochs=0)
    labelled = toy_dataset.subset(range(4))
    result = train_miaod(
        model,
        labelled,
        unlabelled=toy_dataset.subset(range(4, 8)),
        options=options,
        training_options=schedule,
        device="cpu",
        progress=False,
    )
    history = result.history
    label_units = [h for h in history if h["stage"] == "label"]
    first, last = label_units[0], label_units[5]
    assert last["train_l_classification"] < first["train_l_classification"]
    assert last["train_l_mil"] < first["train_l_mil"]
    maxs = [h for h in history if h["stage"] == "max"]
    assert maxs[-1]["train_u_discrepancy"] < maxs[0]["train_u_discrepancy"]  # 1 - |p1 - p2| falls: f1, f2 diverge
    assert [h["stage"] for h in history] == ["label"] * 6 + ["min"] * 2 + ["max"] * 2 + ["label"] * 6


def test_labelled_set_smaller_than_a_batch_and_no_unlabelled(toy_dataset, tmp_path):
    torch.manual_seed(0)
    model = build_detector("miaod", 2, backbone="tiny", min_size=96, max_size=160)
    options = TrainOptions(
        batch_size=8, optimizer="adamw", lr=1e-3, warmup_iters=0, hflip_prob=0.0, amp=False, log_every=1
    )
    schedule = {"label_epochs": 1, "outer_loops": 1, "repeat_labelled": 1}
    for i, unlabelled in enumerate((toy_dataset.subset([3, 4, 5]), None)):
        result = train_miaod(
            model,
            toy_dataset.subset([0, 1]),
            unlabelled=unlabelled,
            options=replace(options, epoch_checkpoints="all"),
            training_options=schedule,
            out_dir=tmp_path / str(i),
            device="cpu",
            progress=False,
        )
        assert [h["stage"] for h in result.history] == ["label", "min", "max", "label"]
        # the training options every procedure reads: a checkpoint per unit kept, a log line per iteration
        assert sorted(p.name for p in (tmp_path / str(i)).glob("epoch_*.pt")) == [f"epoch_{u}.pt" for u in (1, 2, 3, 4)]
        events = [
            json.loads(line)["event"] for line in (tmp_path / str(i) / "train_log.jsonl").read_text().splitlines()
        ]
        assert events.count("unit") == 4 and events.count("iter") >= 4


def test_unlabelled_labels_never_reach_the_model(toy_dataset, monkeypatch):
    model, _, _ = model_and_batch(num_classes=2)
    seen = []
    original = type(model).forward

    def spy(self, images, targets=None, stage="label"):
        seen.append((stage, targets is None))
        return original(self, images, targets, stage)

    monkeypatch.setattr(type(model), "forward", spy)
    options = TrainOptions(batch_size=4, optimizer="sgd", lr=1e-3, warmup_iters=0, hflip_prob=0.0, amp=False)
    train_miaod(
        model,
        toy_dataset.subset([0, 1, 2, 3]),
        unlabelled=toy_dataset.subset([4, 5, 6, 7]),
        options=options,
        training_options={"label_epochs": 1, "outer_loops": 1, "repeat_labelled": 1},
        device="cpu",
        progress=False,
    )
    assert seen.count(("min", True)) == seen.count(("min", False)) == 1  # one labelled + one unlabelled step
    assert seen.count(("max", True)) == 1 and ("label", True) not in seen


def test_schedule_matches_the_released_config():
    units = miaod_schedule(MIAODOptions())
    assert [u.stage for u in units] == ["label"] * 3 + (["min", "max"] + ["label"] * 3) * 2
    assert [u.lr_factor for u in units] == [1.0] * 12 + [0.1]
    assert len({u.block for u in units}) == 7  # a new optimiser per stage: 7 stages
    assert 2 * len(units) == 26  # 13 mmcv epochs of 2 passes: 26 passes over the labelled set


def test_scoring_ranks_disagreement_above_agreement():
    agree = torch.full((300, 3), 0.2)
    det_agree = Detections(
        torch.zeros(0, 4),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.int64),
        dense_probs=agree,
        extras={"dense_probs_2": agree.clone(), "dense_weights": torch.full((300, 3), 0.01)},
    )
    apart = agree.clone()
    apart[:20] = 0.9
    det_apart = Detections(
        torch.zeros(0, 4),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.int64),
        dense_probs=apart,
        extras={"dense_probs_2": agree.clone(), "dense_weights": torch.full((300, 3), 0.01)},
    )
    for weighted in (False, True):
        strategy = get_strategy("miaod", weighted=weighted)
        assert strategy.score(det_apart) > strategy.score(det_agree) == 0.0
    # k = ceil(0.1 * 300) = 30 anchors: 20 disagree by 0.7 -> mean of the top 30 = 20 * 0.49 / 30
    assert get_strategy("miaod").score(det_apart) == pytest.approx(20 * 0.49 / 30, rel=1e-5)
    assert get_strategy("miaod", topk=10).score(det_apart) == pytest.approx(0.49, rel=1e-5)
    with pytest.raises(ValueError, match="needs dense_probs and dense_probs_2"):
        get_strategy("miaod").score(Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)))
    with pytest.raises(ValueError, match=r"'topk_fraction' parameter of miaod must be a float in \[0, 1\]"):
        get_strategy("miaod", topk_fraction=2.0)


def test_options_are_validated_with_their_key(tiny_data, tmp_path):
    with pytest.raises(OptionError, match=r"'training_options.label_epochs' .* must be an int >= 1. Got 0"):
        MIAODOptions(label_epochs=0)
    with pytest.raises(ConfigError, match=r"key 'training_options.outer_loop' must be one of \['label_epochs'"):
        load_config(write_config(tmp_path, tiny_data, detector="miaod", training_options={"outer_loop": 1}))
    with pytest.raises(ConfigError, match=r"key 'training' must be 'standard' or 'auto' for detector 'ssd'"):
        load_config(write_config(tmp_path, tiny_data, training="miaod"))
    with pytest.raises(ConfigError, match=r"training 'standard' takes no training_options"):
        load_config(write_config(tmp_path, tiny_data, training_options={"label_epochs": 1}))
    with pytest.raises(ValueError, match=r"strategy 'miaod' needs \['dense_probs_2'\] from the detector, but 'ssd'"):
        run_from_config(load_config(write_config(tmp_path, tiny_data, strategy="miaod")), progress=False)


MIAOD_RUN = {
    "detector": "miaod",
    "strategy": "miaod",
    "min_size": 96,
    "max_size": 96,
    "cycles": 1,
    "training_options": {"label_epochs": 2, "adversarial_epochs": 2, "outer_loops": 1, "repeat_labelled": 1},
}


def test_sigkill_inside_every_stage_then_resume_gives_the_same_run(tiny_data, tmp_path):
    straight = write_config(tmp_path / "straight", tiny_data, **MIAOD_RUN)
    assert run_cli(["run", str(straight), "--quiet"]).returncode == 0
    killed = write_config(tmp_path / "killed", tiny_data, **MIAOD_RUN)
    run_dir = tmp_path / "killed" / "run"
    # units: label label | min min | max max | label label  -> kill inside each stage, and in the next cycle
    kill_then_resume(
        killed,
        run_dir,
        ["train_epoch:1", "train_epoch:3", "train_epoch:5", "train_epoch:7", "score:0", "train_epoch:4"],
    )
    a, b = outcome(tmp_path / "straight" / "run"), outcome(run_dir)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    picks = json.loads((run_dir / "cycles/0/selection.json").read_text())["picks"]
    assert all(p["strategy"] == "miaod" and p["score"] >= 0 for p in picks)


@pytest.mark.parametrize("weighting", ["code", "class"])
def test_mil_weights_softmax_over_the_anchors_of_each_level(weighting):
    from activedet.methods.miaod.model import mil_image_scores, mil_weights

    torch.manual_seed(0)
    z1, z2, zm = torch.randn(2, 7, 3), torch.randn(2, 7, 3), torch.randn(2, 7, 3)
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[1, 3] = False  # a padding anchor of the second image, in the first level
    w = mil_weights(z1, z2, zm, [4, 3], valid, weighting)
    assert w[1, 3].abs().sum() == 0
    instance = w / torch.softmax(zm, dim=-1)  # the instance factor
    for level in (slice(0, 4), slice(4, 7)):
        sums = instance[:, level].sum(dim=1)  # [B, C]
        torch.testing.assert_close(sums, torch.ones(2, 3))
    if weighting == "code":  # max over classes first: one factor per anchor, the same for every class
        torch.testing.assert_close(instance, instance[..., :1].expand_as(instance))
    else:
        assert not torch.allclose(instance, instance[..., :1].expand_as(instance))
    scores = mil_image_scores(w, [4, 3])
    assert scores.shape == (2, 3) and scores.min() >= 1e-5 and scores.max() <= 1 - 1e-5
