"""MI-AOD's ``mil_loss_weight``: the weight of the MIL image-classification loss (1 as released; 0 turns it off, a
diagnostic of what the loss does to the detector), on labelled and on pseudo-labelled unlabelled images."""

from __future__ import annotations

import pytest
import torch
from test_loop import write_config
from test_miaod_classifier_loss import TINY, _batch

from activedet.config import ConfigError, load_config
from activedet.models import build_detector
from activedet.workflows import build_model


def _model(mil_loss_weight: float):
    torch.manual_seed(0)
    model = build_detector("miaod", 3, mil_loss_weight=mil_loss_weight, **TINY).train()
    with torch.no_grad():  # confident, equal classifiers: every image gets pseudo-positive classes
        for head in (model.head.classification_head, model.head.classification_head_2):
            head.cls_logits.bias.fill_(2.0)
    return model


@pytest.mark.parametrize("weight", [0.0, 0.25, 3.0])
def test_every_mil_term_is_scaled_and_the_rest_is_unchanged(weight):
    images, targets = _batch()
    for stage, given in (("label", targets), ("min", targets), ("min", None)):
        plain, scaled = _model(1.0)(images, given, stage=stage), _model(weight)(images, given, stage=stage)
        assert float(plain["mil"].detach()) > 0
        assert float(scaled["mil"].detach()) == pytest.approx(
            weight * float(plain["mil"].detach()), rel=1e-6, abs=1e-12
        )
        for key in plain.keys() - {"mil"}:
            assert float(scaled[key].detach()) == pytest.approx(float(plain[key].detach()), rel=1e-6)


def test_weight_zero_leaves_the_mil_classifier_untrained():
    images, targets = _batch()
    model = _model(0.0)
    sum(model(images, targets).values()).backward()
    grads = [p.grad for p in model.head.mil_head.parameters()]
    assert all(g is None or not g.any() for g in grads)
    assert any(p.grad is not None and p.grad.any() for p in model.head.classification_head.parameters())


def test_the_released_weight_is_the_default_and_the_config_key_sets_it(tiny_data, tmp_path):
    assert build_detector("miaod", 3, **TINY).mil_loss_weight == 1.0
    cfg = load_config(write_config(tmp_path, tiny_data, detector="miaod", detector_options={"mil_loss_weight": 0}))
    assert build_model(cfg, 3).mil_loss_weight == 0.0
    with pytest.raises(ValueError, match=r"'mil_loss_weight' parameter of build_miaod must be a float in \[0.0, inf\]"):
        build_detector("miaod", 3, mil_loss_weight=-1, **TINY)
    bad = load_config(write_config(tmp_path, tiny_data, detector="miaod", detector_options={"mil_loss_weight": "x"}))
    with pytest.raises(ConfigError, match=r"detector_options.mil_loss_weight"):
        build_model(bad, 3)
