"""MI-AOD's ``classifier_loss``: how the labelled images' focal losses of its two classifiers combine (the released
mean, or the sum that gives each classifier a plain RetinaNet's loss weight), and the config key that sets it."""

from __future__ import annotations

import pytest
import torch
from test_loop import write_config

from activedet.config import ConfigError, load_config
from activedet.models import build_detector
from activedet.workflows import build_model

TINY = {"backbone": "tiny", "min_size": 96, "max_size": 160}


def _batch():
    images = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(1)), torch.rand(3, 80, 112)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 44.0, 50.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[30.0, 20.0, 70.0, 60.0], [5.0, 5.0, 25.0, 30.0]]), "labels": torch.tensor([1, 3])},
    ]
    return images, targets


def _miaod_with_equal_classifiers(classifier_loss: str):
    """An MI-AOD detector (torch seeded by 0) whose f2 holds f1's weights."""
    torch.manual_seed(0)
    model = build_detector("miaod", 3, classifier_loss=classifier_loss, **TINY)
    model.head.classification_head_2.load_state_dict(model.head.classification_head.state_dict())
    return model.train()


@pytest.mark.parametrize(("classifier_loss", "factor"), [("mean", 1.0), ("sum", 2.0)])
def test_each_classifier_gets_a_plain_retinanets_focal_loss_weight_with_sum(classifier_loss, factor):
    miaod = _miaod_with_equal_classifiers(classifier_loss)
    retinanet = build_detector("retinanet", 3, **TINY)
    shared = {
        k: v for k, v in miaod.state_dict().items() if not k.startswith(("head.classification_head_2", "head.mil"))
    }
    retinanet.load_state_dict(shared)
    images, targets = _batch()
    plain = retinanet.train()(images, targets)
    for stage in ("label", "min", "max"):
        losses = miaod(images, targets, stage=stage)
        # two copies of RetinaNet's classifier: the mean is RetinaNet's focal loss, the sum counts it once per copy
        assert float(losses["classification"].detach()) == pytest.approx(
            factor * float(plain["classification"].detach()), rel=1e-6
        )
        assert float(losses["bbox_regression"].detach()) == pytest.approx(
            float(plain["bbox_regression"].detach()), rel=1e-6
        )
        assert ("mil" in losses) is (stage != "max")


def test_sum_doubles_the_classification_gradient_in_the_trunk():
    images, targets = _batch()
    grads = {}
    for classifier_loss in ("mean", "sum"):
        model = _miaod_with_equal_classifiers(classifier_loss)
        model.head.classification_head_2.load_state_dict(  # f2 unlike f1: the trunk's gradient sums two heads'
            build_detector("miaod", 3, **TINY).head.classification_head_2.state_dict()
        )
        model(images, targets)["classification"].backward()
        grads[classifier_loss] = torch.cat(
            [p.grad.flatten() for p in model.backbone.parameters() if p.grad is not None]
        )
    assert grads["mean"].abs().max() > 0
    torch.testing.assert_close(grads["sum"], 2 * grads["mean"], rtol=1e-5, atol=1e-12)


def test_the_released_mean_is_the_default_and_the_config_key_sets_the_sum(tiny_data, tmp_path):
    assert build_detector("miaod", 3, **TINY).head.classifier_loss == "mean"
    cfg = load_config(write_config(tmp_path, tiny_data, detector="miaod", detector_options={"classifier_loss": "sum"}))
    assert build_model(cfg, 3).head.classifier_loss == "sum"
    with pytest.raises(
        ValueError, match=r"'classifier_loss' parameter of build_miaod must be one of \['mean', 'sum'\]"
    ):
        build_detector("miaod", 3, classifier_loss="half", **TINY)
    bad = load_config(write_config(tmp_path, tiny_data, detector="miaod", detector_options={"classifier_loss": "half"}))
    with pytest.raises(ConfigError, match=r"detector_options.classifier_loss"):
        build_model(bad, 3)
