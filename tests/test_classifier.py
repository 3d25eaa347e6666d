"""The image classifier in the detector interface: predict contract, training, registry, accuracy, train_detector.

A classification image is a record with one box covering the whole image and one label (models/classifier.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import train_options
from PIL import Image

from activedet.data.records import DetectionDataset, ImageRecord
from activedet.data.torch_dataset import DetectionTorchDataset
from activedet.engine.train import OptionError, TrainOptions, train_detector, weighted_loss_dict
from activedet.evaluation import accuracy, evaluate
from activedet.models import DETECTORS, Detections, ImageClassifier, build_classifier, build_detector
from activedet.strategies.uncertainty import image_uncertainty

C = 3
RED, BLUE = (0.85, 0.1, 0.1), (0.1, 0.1, 0.85)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _colour_image(colour, height=32, width=32, seed=0) -> torch.Tensor:
    noise = torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed)) * 0.1
    return (torch.tensor(colour).view(3, 1, 1) + noise).clamp(0, 1)


def _target(label: int, height=32, width=32, **extra) -> dict:
    return {"boxes": torch.tensor([[0.0, 0.0, width, height]]), "labels": torch.tensor([label]), **extra}


def _colour_dataset(root, n: int, seed: int = 0) -> DetectionDataset:
    """``n`` PNGs, even = red (label 1), odd = blue (label 2), widths 32-40, each labelled with its whole image."""
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        label, width = 1 + i % 2, 32 + 4 * (i % 3)
        image = _colour_image(RED if label == 1 else BLUE, 32, width, seed=seed * 1000 + i)
        path = root / f"im{i:02d}.png"
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
        records.append(ImageRecord(f"im{i:02d}", path, width, 32, [[0, 0, width, 32]], [label]))
    return DetectionDataset(records, ["red", "blue"], root=root)


# ------------------------------------------------------------------------------------------------------------
# predict / forward
# ------------------------------------------------------------------------------------------------------------
def test_predict_returns_one_whole_image_detection_per_image():
    model = build_classifier(C)
    images = [torch.rand(3, 32, 32), torch.rand(3, 48, 20), torch.rand(3, 17, 64)]
    detections = model.predict(images, fields=["class_probs", "embedding", "proposals"])
    assert len(detections) == 3
    for det, image in zip(detections, images):
        height, width = image.shape[-2:]
        assert len(det) == 1 and det.prob_kind == "softmax"
        assert det.boxes.dtype == torch.float32 and det.labels.dtype == torch.int64
        assert det.scores.dtype == torch.float32 and det.scores.shape == (1,)
        assert torch.equal(det.boxes, torch.tensor([[0.0, 0.0, width, height]]))
        assert det.class_probs.shape == (1, C + 1) and det.class_probs[0, 0] == 0
        torch.testing.assert_close(det.class_probs.sum(1), torch.ones(1))
        assert det.scores[0] == det.class_probs[0].max()
        assert det.labels[0] == det.class_probs[0].argmax() and 1 <= det.labels[0] <= C
        assert det.embedding.shape == (128,) and det.embedding.dtype == torch.float32
        assert det.proposals is None  # not among PROVIDES
    plain = model.predict(images[:1])[0]
    assert plain.class_probs is None and plain.embedding is None
    assert model.predict([]) == []


def test_predict_equals_eval_forward_and_restores_mode():
    model = build_classifier(C, dropout=0.3)
    images = [torch.rand(3, 32, 32), torch.rand(3, 40, 24)]
    model.train()
    model.body.eval()
    detections = model.predict(images)
    assert model.training and not model.body.training
    model.eval()
    with torch.no_grad():
        expected = model(images)
    for det, exp in zip(detections, expected):
        assert set(exp) == {"boxes", "scores", "labels"}
        for key in exp:
            assert torch.equal(getattr(det, key), exp[key])


def test_interface_attributes_name_real_parameters():
    model = build_classifier(C)
    assert model.task == "classification" and model.prob_kind == "softmax"
    assert model.PROVIDES == {"class_probs", "embedding"}
    names = dict(model.named_parameters())
    assert model.INFLUENCE_PARAMETERS == ("fc.weight",) and names["fc.weight"].shape == (C, 128)
    assert 100_000 < sum(p.numel() for p in model.body.parameters()) < 300_000


def test_resnet18_builds_without_weights_and_predicts():
    model = build_detector("classifier", C, backbone="resnet18", min_size=32)
    assert isinstance(model, ImageClassifier) and model.min_size == 32
    images = [torch.rand(3, 32, 32), torch.rand(3, 50, 40)]
    detections = model.predict(images, fields=["class_probs", "embedding"])
    assert [d.embedding.shape for d in detections] == [(512,), (512,)]
    assert torch.equal(detections[1].boxes, torch.tensor([[0.0, 0.0, 40.0, 50.0]]))
    assert dict(model.named_parameters())["fc.weight"].shape == (C, 512)
    model.train()
    loss = model(images, [_target(1), _target(3, 50, 40)])["loss_classifier"]
    assert torch.isfinite(loss)


def test_uncertainty_measures_read_the_softmax_row():
    det = build_classifier(C).predict([torch.rand(3, 32, 32)], fields=["class_probs"])[0]
    p = det.class_probs[0, 1:].double()
    top = p.sort(descending=True).values
    lc = image_uncertainty(det, measure="least_confidence", use_class_probs=True)
    margin = image_uncertainty(det, measure="margin", use_class_probs=True)
    entropy = image_uncertainty(det, measure="entropy", use_class_probs=True)
    assert lc == pytest.approx(1 - float(top[0]))
    assert margin == pytest.approx(1 - float(top[0] - top[1]))
    assert entropy == pytest.approx(float(-(p * p.log()).sum()))


# ------------------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------------------
def test_training_lowers_the_loss_on_red_vs_blue():
    model = build_classifier(2)
    images = [_colour_image(RED if i % 2 == 0 else BLUE, seed=i) for i in range(8)]
    targets = [_target(1 + i % 2) for i in range(8)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(images, targets)["loss_classifier"]
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    labels = [int(d.labels[0]) for d in model.predict(images)]
    assert labels == [1 + i % 2 for i in range(8)]


def test_weighted_loss_is_the_weighted_mean_of_per_image_losses():
    model = build_classifier(C, norm="group").train()  # group norm: each image's loss independent of its batch
    images = [torch.rand(3, 32, 32) for _ in range(4)]
    targets = [_target(c) for c in (1, 2, 3, 1)]
    weights = [1.0, 0.5, 1.0, 0.25]
    combined = weighted_loss_dict(model, images, targets, weights)
    single = [model([img], [t])["loss_classifier"] for img, t in zip(images, targets)]
    expected = sum(w * loss for w, loss in zip(weights, single)) / 4
    torch.testing.assert_close(combined["loss_classifier"], expected)


@pytest.mark.parametrize("labels, found", [([1, 2], "2 labels"), ([], "0 labels")])
def test_a_target_without_exactly_one_label_is_an_error(labels, found):
    model = build_classifier(C).train()
    targets = [
        _target(1),
        {
            "boxes": torch.zeros(len(labels), 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "index": torch.tensor(7),
        },
    ]
    with pytest.raises(
        ValueError,
        match=rf"exactly one label per image.*whole image.*Got {found} in target 1 "
        rf"\(pool index 7\)",
    ):
        model([torch.rand(3, 32, 32)] * 2, targets)
    with pytest.raises(ValueError, match=r"labels in 1\.\.3\. Got 4 in target 0 instead"):
        model([torch.rand(3, 32, 32)], [_target(4)])
    with pytest.raises(ValueError, match="must be given in training mode"):
        model([torch.rand(3, 32, 32)])


def test_hflip_keeps_the_whole_image_box(tmp_path):
    data = _colour_dataset(tmp_path / "d", 3)
    flipped = DetectionTorchDataset(data, train=True, hflip_prob=1.0)
    for i, record in enumerate(data.records):
        image, target = flipped[i]
        assert torch.equal(target["boxes"], torch.tensor([[0.0, 0.0, record.width, record.height]]))


# ------------------------------------------------------------------------------------------------------------
# registry and builder errors
# ------------------------------------------------------------------------------------------------------------
def test_registered_and_unknown_keywords_are_errors():
    assert DETECTORS["classifier"] is build_classifier
    with pytest.raises(
        ValueError,
        match=r"detector 'classifier' does not take \['max_size'\]; it accepts \["
        r"'backbone', 'dropout', 'min_size', 'norm', 'weights'",
    ):
        build_detector("classifier", C, max_size=64)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(backbone="tiny"),
            r"'backbone' parameter of build_classifier must be one of \['resnet18', 'small'\]\. "
            r"Got 'tiny' instead",
        ),
        (dict(min_size=0), r"'min_size' parameter of build_classifier must be an int >= 1\. Got 0 instead"),
        (dict(dropout=1.0), r"'dropout' parameter of build_classifier must be a float in \[0\.0, 0\.95\]"),
        (
            dict(weights="DEFAULT"),
            r"'weights' parameter of build_classifier must be None or a path to an existing "
            r"weights file",
        ),
        (
            dict(backbone="resnet18", weights_backbone="IMAGENET9"),
            r"'weights_backbone' parameter of build_classifier "
            r"must be None.*ResNet18_Weights\.IMAGENET1K_V1",
        ),
        (dict(norm="group", weights_backbone="x.pt"), r"'norm' parameter of build_classifier cannot be 'group'"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_classifier(C, **kwargs)


def test_weights_round_trip_through_a_local_file(tmp_path):
    model = build_classifier(C, dropout=0.2)
    torch.save({"model": model.state_dict()}, tmp_path / "cls.pt")
    loaded = build_classifier(C, weights=tmp_path / "cls.pt")
    images = [torch.rand(3, 32, 32)]
    assert torch.equal(model.predict(images)[0].scores, loaded.predict(images)[0].scores)
    with pytest.raises(ValueError, match="shape-mismatched key"):
        build_classifier(C + 1, weights=tmp_path / "cls.pt")


# ------------------------------------------------------------------------------------------------------------
# accuracy
# ------------------------------------------------------------------------------------------------------------
def _accuracy_case():
    names = ["cat", "dog", "bird"]
    records = [
        ImageRecord(f"i{k}", f"i{k}.png", 10, 10, [[0, 0, 10, 10]], [label]) for k, label in enumerate([1, 1, 2, 2, 1])
    ]

    def det(labels, scores):
        n = len(labels)
        return Detections(
            boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n).reshape(n, 4),
            scores=torch.tensor(scores, dtype=torch.float32),
            labels=torch.tensor(labels).long(),
        )

    predictions = [
        det([1], [0.9]),  # right
        det([1, 2], [0.3, 0.8]),  # the top-scoring detection says dog: wrong
        det([2], [0.6]),  # right
        det([], []),  # no detection: wrong
        {"boxes": np.array([[0, 0, 10, 10]]), "scores": np.array([0.5]), "labels": np.array([1])},  # right
    ]
    return records, names, predictions


def test_accuracy_on_a_hand_made_case():
    records, names, predictions = _accuracy_case()
    result = accuracy(records, predictions, class_names=names)
    assert result["top1"] == pytest.approx(3 / 5)
    assert result["num_images"] == 5
    assert result["per_class"]["cat"] == {"accuracy": pytest.approx(2 / 3), "num_images": 3}
    assert result["per_class"]["dog"] == {"accuracy": 0.5, "num_images": 2}
    assert math.isnan(result["per_class"]["bird"]["accuracy"]) and result["per_class"]["bird"]["num_images"] == 0
    assert result["mean_per_class"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_accuracy_needs_one_label_per_record():
    records, names, predictions = _accuracy_case()
    records[2] = ImageRecord("two-cats", "x.png", 10, 10, [[0, 0, 5, 5], [5, 5, 10, 10]], [1, 1])
    with pytest.raises(
        ValueError,
        match=r"dataset\[2\] \(image_id 'two-cats'\) has 2 labels; accuracy needs exactly "
        r"one per image",
    ):
        accuracy(records, predictions, class_names=names)


def test_evaluate_accuracy_keys():
    records, names, predictions = _accuracy_case()
    flat = evaluate(records, predictions, metrics=["accuracy"], class_names=names)
    expected = {"accuracy/top1", "accuracy/mean_per_class", "accuracy/num_images"}
    expected |= {f"accuracy/{n}/{k}" for n in names for k in ("accuracy", "num_images")}
    assert set(flat) == expected
    assert flat["accuracy/top1"] == pytest.approx(0.6) and flat["accuracy/dog/num_images"] == 2


# ------------------------------------------------------------------------------------------------------------
# train_detector
# ------------------------------------------------------------------------------------------------------------
def _options(**overrides) -> TrainOptions:
    """The quick options of conftest, with a constant learning rate, AMP and top-1 validation."""
    return train_options(
        **{"lr": 1e-2, "warmup_iters": 0, "lr_schedule": "constant", "amp": True, "val_metric": "top1", **overrides}
    )


def test_train_detector_validates_with_accuracy(tmp_path):
    train = _colour_dataset(tmp_path / "train", 16)
    for record in train.records[:4]:
        record.loss_weight = 0.5  # pseudo-label weights: weighted_loss_dict's groups
    val = _colour_dataset(tmp_path / "val", 6, seed=1)
    result = train_detector(
        build_classifier(2),
        train,
        val_set=val,
        options=_options(),
        out_dir=tmp_path / "run",
        device="cpu",
        progress=False,
    )
    assert result.epochs_completed == 2 and result.best_epoch in (1, 2)
    assert [set(h) for h in result.history] == [{"epoch", "train_loss_classifier", "val_top1"}] * 2
    assert result.best_metric == max(h["val_top1"] for h in result.history)
    assert (tmp_path / "run" / "best.pt").is_file()


def test_classifier_option_errors(tmp_path):
    train = _colour_dataset(tmp_path / "train", 4)
    with pytest.raises(
        OptionError,
        match=r"'val_metric' training option must be one of \['mean_per_class', "
        r"'top1'\] for a classification model\. Got 'mAP_area' instead",
    ):
        train_detector(
            build_classifier(2),
            train,
            val_set=train,
            options=_options(val_metric="mAP_area"),
            device="cpu",
            progress=False,
        )
    with pytest.raises(
        OptionError,
        match=r"'scale_jitter' training option must be a float in \[0, 0\.4\] for a "
        r"classifier",
    ):
        train_detector(build_classifier(2), train, options=_options(scale_jitter=0.5), device="cpu", progress=False)
    detector = build_detector("retinanet", 2, backbone="tiny", min_size=64, max_size=64)
    with pytest.raises(
        OptionError,
        match=r"must be one of \['mAP_11pt', 'mAP_area'\] for a detection model\. Got "
        r"'top1' instead",
    ):
        train_detector(detector, train, val_set=train, options=_options(), device="cpu", progress=False)
