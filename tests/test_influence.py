"""ISAL influence (methods.md §8): gradients and Hessian-vector products against finite differences, the recursion
on a known quadratic, a helpful image ranked before a harmful one, detectors end to end, and the validation split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activedet.data.records import DetectionDataset, ImageRecord, check_disjoint
from activedet.engine.inference import iter_predictions
from activedet.methods.isal.model import (
    InfluenceOptions,
    InfluencePredictor,
    hessian_vector_product,
    influence_of,
    influence_parameters,
    lissa,
    loss_gradient,
)
from activedet.models import build_detector
from activedet.models.outputs import Detections
from activedet.strategies import get_strategy
from activedet.strategies.base import ScoredPool, ScoringContext, SelectionInput


# ------------------------------------------------------------------------------ derivatives, finite differences
def tiny_loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A small non-quadratic loss: cross-entropy of a 2-layer tanh network."""
    w1, w2 = params
    return nn.functional.cross_entropy(torch.tanh(x @ w1.T) @ w2.T, y)


def test_gradient_and_hvp_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    params = [
        torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True),
    ]
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    grads = loss_gradient(tiny_loss(params, x, y), params)
    eps = 1e-6
    for b, p in enumerate(params):
        for idx in [(0, 0), (1, 2), (p.shape[0] - 1, p.shape[1] - 1)]:
            with torch.no_grad():
                p[idx] += eps
                up = tiny_loss(params, x, y)
                p[idx] -= 2 * eps
                down = tiny_loss(params, x, y)
                p[idx] += eps
            assert grads[b][idx].item() == pytest.approx(((up - down) / (2 * eps)).item(), rel=1e-6, abs=1e-9)
    vector = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    hv = hessian_vector_product(tiny_loss(params, x, y), params, vector)
    with torch.no_grad():  # H v ≈ (∇ℓ(θ + εv) - ∇ℓ(θ - εv)) / 2ε
        shifted_up = [(p + eps * v).requires_grad_() for p, v in zip(params, vector)]
        shifted_down = [(p - eps * v).requires_grad_() for p, v in zip(params, vector)]
    with torch.enable_grad():
        up = loss_gradient(tiny_loss(shifted_up, x, y), shifted_up)
        down = loss_gradient(tiny_loss(shifted_down, x, y), shifted_down)
    for b in range(2):
        torch.testing.assert_close(hv[b], (up[b] - down[b]) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_the_recursion_converges_to_the_damped_block_scaled_inverse_hvp_of_a_quadratic():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    hessian = torch.tensor(a @ a.T + 5 * np.eye(5))  # symmetric positive definite, two blocks of 2 and 3
    v = torch.tensor(rng.normal(size=5))
    blocks = lambda x: [x[:2], x[2:]]  # noqa: E731
    hvp = lambda h: blocks(hessian @ torch.cat(h))  # noqa: E731
    scales, damping = [40.0, 60.0], 0.01
    h, stats = lissa(blocks(v), [hvp] * 3000, damping=damping, scales=scales)
    scale = torch.diag(torch.tensor([40.0, 40.0, 60.0, 60.0, 60.0], dtype=torch.float64))
    expected = torch.linalg.solve(damping * torch.eye(5, dtype=torch.float64) + torch.linalg.inv(scale) @ hessian, v)
    torch.testing.assert_close(torch.cat(h), expected, rtol=1e-6, atol=1e-8)
    assert stats["steps"] == 3000 and stats["resets"] == 0
    # without damping and with one scale, the fixed point is S H^-1 v
    h, _ = lissa(blocks(v), [hvp] * 4000, damping=0.0, scales=[50.0, 50.0])
    torch.testing.assert_close(torch.cat(h), 50.0 * torch.linalg.solve(hessian, v), rtol=1e-6, atol=1e-8)


def test_adaptive_scales_recover_from_a_scale_below_the_curvature():
    hessian = torch.diag(torch.tensor([50.0, 1.0], dtype=torch.float64))
    v = [torch.tensor([1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)]
    hvp = lambda h: [50.0 * h[0], h[1]]  # noqa: E731
    h, stats = lissa(v, [hvp] * 50, damping=0.1, scales=[10.0, 10.0])  # 1 - 0.1 - 50/10 = -4.1: diverges
    assert stats["norms"][-1] > 1e20 and stats["scale_increases"] == 0
    h, stats = lissa(v, [hvp] * 3000, damping=0.1, scales=[10.0, 10.0], adapt=True)
    assert stats["scale_increases"] == 1 and stats["scales"] == [40.0, 10.0]
    expected = torch.linalg.solve(
        0.1 * torch.eye(2, dtype=torch.float64)
        + torch.diag(torch.tensor([1 / 40, 1 / 10], dtype=torch.float64)) @ hessian,
        torch.ones(2, dtype=torch.float64),
    )
    torch.testing.assert_close(torch.cat(h), expected)


def test_a_non_finite_product_resets_its_block_and_influence_skips_non_finite_blocks():
    v = [torch.ones(2), torch.ones(3)]
    bad = lambda h: [h[0] * 0.5, torch.full((3,), float("nan"))]  # noqa: E731
    h, stats = lissa(v, [bad], damping=0.1, scales=[1.0, 1.0])
    torch.testing.assert_close(h[0], torch.ones(2) + 0.9 - 0.5)
    torch.testing.assert_close(h[1], torch.ones(3))
    assert stats["resets"] == 1
    assert influence_of([torch.ones(2), torch.ones(3)], [torch.full((2,), 2.0), torch.full((3,), float("nan"))]) == -4
    with pytest.raises(ValueError, match="one scale per block"):
        lissa(v, [], damping=0.1, scales=[1.0])


# ------------------------------------------------------------------------------ a helpful and a harmful image
class ColourClassifier(nn.Module):
    """Mean RGB -> 2 logits: the classifier convention (one whole-image detection per image)."""

    INFLUENCE_PARAMETERS = ("fc.weight",)
    INFLUENCE_SCALES = (10.0,)
    PROVIDES = frozenset({"class_probs"})

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():  # red -> class 1, blue -> class 2, weakly
            self.fc.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
            self.fc.bias.zero_()

    def logits(self, images):
        return self.fc(torch.stack([img.mean(dim=(1, 2)) for img in images]))

    def forward(self, images, targets=None):
        labels = torch.cat([t["labels"] for t in targets]) - 1
        return {"loss_classifier": nn.functional.cross_entropy(self.logits(images), labels)}

    def predict(self, images, fields=()):
        probs = self.logits(images).softmax(dim=1)
        out = []
        for img, p in zip(images, probs):
            h, w = img.shape[-2:]
            out.append(
                Detections(
                    torch.tensor([[0.0, 0.0, float(w), float(h)]]),
                    p.max().reshape(1),
                    (p.argmax() + 1).reshape(1),
                    "softmax",
                    class_probs=torch.cat([torch.zeros(1), p]).reshape(1, 3),
                )
            )
        return out


def colour_images(tmp_path, rgbs, labels, prefix) -> DetectionDataset:
    from PIL import Image

    records = []
    for i, (rgb, label) in enumerate(zip(rgbs, labels)):
        path = tmp_path / f"{prefix}{i}.png"
        Image.fromarray(np.full((8, 8, 3), np.array(rgb) * 255, np.uint8)).save(path)
        records.append(ImageRecord(f"{prefix}{i}", path, 8, 8, [[0, 0, 8, 8]], [label]))
    return DetectionDataset(records, ["red", "blue"])


def test_a_helpful_image_outranks_a_harmful_one(tmp_path):
    labelled = colour_images(tmp_path, [(0.8, 0, 0.2), (0.2, 0, 0.8), (0.7, 0, 0.3), (0.3, 0, 0.7)], [1, 2, 1, 2], "l")
    val = colour_images(tmp_path, [(0.6, 0, 0.4)] * 3, [1, 1, 1], "v")  # red, predicted red with only p = 0.6
    # helpful: looks red and is predicted red; harmful: predicted blue, so its pseudo label teaches red -> blue
    pool = colour_images(tmp_path, [(0.45, 0, 0.55), (0.7, 0, 0.3)], [1, 1], "u")
    strategy = get_strategy("influence", recursion_images=4)
    context = ScoringContext(labelled=labelled, val=val, seed=0)
    predictor = strategy.predictor(ColourClassifier(), context)
    scored = ScoredPool.collect(iter_predictions(predictor, pool, fields=strategy.needs), strategy)
    influence = -scored.scores
    assert influence[1] < 0 < influence[0]  # negative = predicted to lower the validation loss
    picks = list(strategy.select(SelectionInput(scored, None, 1, np.random.default_rng(0))))
    assert picks == [1, 0]
    assert predictor.stats["parameters"] == ["fc.weight"] and predictor.stats["validation_images"] == 3


# ------------------------------------------------------------------------------ detectors
@pytest.mark.parametrize("detector", ["fcos", "retinanet", "faster_rcnn"])
def test_detectors_score_pseudo_labelled_images_and_leave_the_model_untouched(detector, toy_dataset):
    torch.manual_seed(0)
    model = build_detector(detector, 2, backbone="tiny", min_size=96)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    names = [n for n, p in influence_parameters(model)]
    assert names and all(n.endswith("weight") for n in names)  # biases excluded
    strategy = get_strategy("influence", score_threshold=0.0, recursion_images=3)
    context = ScoringContext(labelled=toy_dataset.subset([0, 1, 3]), val=toy_dataset.subset([4, 5]), seed=1)
    predictor = strategy.predictor(model, context)
    assert predictor.stats["steps"] == 3 and len(predictor.stats["scales"]) == len(names)
    # an image with no object as pseudo label source too (index 7 has no box; threshold 0 keeps every detection)
    first = ScoredPool.collect(
        iter_predictions(predictor, toy_dataset, [2, 6, 7], batch_size=1, fields=strategy.needs), strategy
    )
    again = ScoredPool.collect(
        iter_predictions(predictor, toy_dataset, [7, 2], batch_size=1, fields=strategy.needs), strategy
    )
    assert np.isfinite(first.scores[~first.empty]).all()
    np.testing.assert_allclose(first.scores[[2, 0]], again.scores, rtol=1e-5, equal_nan=True)  # order-independent
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert modes == [m.training for m in model.modules()]


def test_images_without_pseudo_labels_go_to_the_unscored_bucket(toy_dataset):
    torch.manual_seed(0)
    model = build_detector("fcos", 2, backbone="tiny", min_size=96)
    strategy = get_strategy("influence", score_threshold=1.0, recursion_images=2)  # nothing reaches 1.0
    context = ScoringContext(labelled=toy_dataset.subset([0, 1]), val=toy_dataset.subset([4]), seed=0)
    scored = ScoredPool.collect(
        iter_predictions(strategy.predictor(model, context), toy_dataset, [2, 5, 6], fields=strategy.needs), strategy
    )
    assert scored.empty.all()
    picks = list(strategy.select(SelectionInput(scored, None, 2, np.random.default_rng(0))))
    assert sorted(picks) == [2, 5, 6]  # random fill


def test_influence_needs_named_parameters_a_validation_split_and_valid_options(toy_dataset):
    with pytest.raises(ValueError, match="INFLUENCE_PARAMETERS.*fcos, faster_rcnn, retinanet or classifier"):
        get_strategy("influence").predictor(build_detector("ssd", 2, backbone="tiny"))
    model = build_detector("fcos", 2, backbone="tiny", min_size=96)
    with pytest.raises(ValueError, match="needs a validation split.*val_data"):
        get_strategy("influence").predictor(model, ScoringContext(labelled=toy_dataset, val=None))
    with pytest.raises(ValueError, match="one scale per influence parameter"):
        get_strategy("influence", scales=[1.0]).predictor(model)
    with pytest.raises(ValueError, match="'scales' option of strategy 'influence'"):
        get_strategy("influence", scales=[0.0, 1.0, 1.0])
    with pytest.raises(RuntimeError, match="without a scoring context"):
        get_strategy("influence").predictor(model).predict([torch.zeros(3, 8, 8)])
    predictor = InfluencePredictor(model, options=InfluenceOptions(scales="auto"))
    assert predictor.scales == "auto" and "influence" in predictor.PROVIDES


def test_auto_scales_bound_the_curvature(toy_dataset):
    torch.manual_seed(0)
    model = build_detector("faster_rcnn", 2, backbone="tiny", min_size=96)
    context = ScoringContext(labelled=toy_dataset.subset([0, 1, 2]), val=toy_dataset.subset([4]), seed=0)
    predictor = get_strategy("influence", scales="auto", recursion_images=3).predictor(model, context)
    assert len(predictor.stats["scales"]) == 4 and all(s > 0 for s in predictor.stats["scales"])
    assert predictor.stats["resets"] == 0


# ------------------------------------------------------------------------------ splits
def test_overlapping_splits_are_errors(toy_dataset):
    check_disjoint(toy_dataset.subset([0, 1]), toy_dataset.subset([2]), toy_dataset.subset([3]))
    with pytest.raises(ValueError, match=r"test and validation splits share 1 image\(s\), e.g. .*img_002.png"):
        check_disjoint(toy_dataset.subset([0, 1]), toy_dataset.subset([2]), toy_dataset.subset([2, 3]))
    with pytest.raises(ValueError, match="pool \\(train\\) and test splits share 2"):
        check_disjoint(toy_dataset.subset([0, 1]), toy_dataset.subset([0, 1]))


def test_a_run_needs_a_validation_split_disjoint_from_the_test_split(tiny_data, tmp_path):
    from test_loop import write_config

    from activedet.config import ConfigError, load_config
    from activedet.workflows import run_from_config

    with pytest.raises(ConfigError, match="key 'val_data' must be the path of a validation split"):
        load_config(write_config(tmp_path, tiny_data, strategy="influence", detector="faster_rcnn"))
    leaky = write_config(
        tmp_path,
        tiny_data,
        strategy="influence",
        detector="faster_rcnn",
        val_data=str(tiny_data / "annotations/test.json"),
    )
    with pytest.raises(ValueError, match="test and validation splits share"):
        run_from_config(load_config(leaky), progress=False)
    assert not (tmp_path / "run" / "ledger.npz").exists()  # refused before any work


def test_two_detection_cycles_score_by_influence_and_log_the_recursion(tiny_data, tmp_path):
    import json

    from test_loop import write_config

    from activedet.config import load_config
    from activedet.workflows import run_from_config

    config = write_config(
        tmp_path,
        tiny_data,
        strategy="influence",
        detector="faster_rcnn",
        val_data=str(tiny_data / "annotations/val.json"),
        strategy_options={"recursion_images": 3, "score_threshold": 0.05},
    )
    ledger = run_from_config(load_config(config), progress=False)
    assert len(ledger.labelled()) == 6 + 2 * 4
    for t in range(2):
        stats = json.loads((tmp_path / f"run/cycles/{t}/influence.json").read_text())
        assert stats["steps"] == 3 and stats["validation_images"] > 0 and stats["score_threshold"] == 0.05
        picks = json.loads((tmp_path / f"run/cycles/{t}/selection.json").read_text())["picks"]
        scored = [p["score"] for p in picks if p["score"] is not None]
        assert scored == sorted(scored, reverse=True) and scored  # the most negative influence first


def test_predict_scores_single_images_by_influence(tiny_data, tmp_path):
    """``activedet predict`` with the influence strategy: the checkpoint's training split is the labelled set."""
    import json

    from conftest import untrained_checkpoint

    from activedet.cli import main

    cfg = {
        "train_data": str(tiny_data / "annotations/train.json"),
        "val_data": str(tiny_data / "annotations/val.json"),
        "image_root": str(tiny_data),
        "detector": "faster_rcnn",
        "backbone": "tiny",
        "min_size": 96,
        "device": "cpu",
        "out_dir": str(tmp_path / "out"),
        "strategy": "influence",
        "strategy_options": {"score_threshold": 0.0, "recursion_images": 3},
    }
    path, checkpoint = untrained_checkpoint(cfg, tmp_path)
    images = sorted((tiny_data / "images").rglob("*.png"))[:2]
    assert (
        main(
            [
                "predict",
                str(path),
                *map(str, images),
                "--checkpoint",
                str(checkpoint),
                "--json",
                str(tmp_path / "pred.json"),
                "--quiet",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "pred.json").read_text())
    assert [r["strategy"] for r in results] == ["influence"] * 2
    assert all(r["image_score"] is None or np.isfinite(r["image_score"]) for r in results)
    assert any(r["image_score"] is not None for r in results)
