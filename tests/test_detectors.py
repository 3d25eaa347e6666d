"""Detector adapters: training, the ``predict`` contract, weights, argument errors. Weights-free, CPU, small."""

from __future__ import annotations

import pytest
import torch
import torchvision.models.detection as tv_detection
from torchvision.ops.misc import FrozenBatchNorm2d

from activedet.methods.almdn.model import build_almdn_retinanet, build_almdn_ssd
from activedet.methods.miaod.model import build_miaod
from activedet.models.backbones import build_fpn_backbone
from activedet.models.faster_rcnn import build_faster_rcnn
from activedet.models.fcos import build_fcos
from activedet.models.outputs import Detections
from activedet.models.retinanet import build_retinanet
from activedet.models.ssd import build_ssd

C = 3  # foreground classes

#: Every registered family/variant at a CPU size: (builder, kwargs, training steps, batch size).
VARIANTS = {
    "retinanet-tiny": (build_retinanet, dict(backbone="tiny"), 12, 4),
    "miaod-tiny": (build_miaod, dict(backbone="tiny"), 12, 4),
    "fcos-tiny": (build_fcos, dict(backbone="tiny"), 12, 4),
    "ssd-tiny": (build_ssd, dict(variant="tiny"), 12, 4),
    "faster_rcnn-tiny": (build_faster_rcnn, dict(backbone="tiny"), 12, 4),
    "almdn_ssd-tiny": (build_almdn_ssd, dict(variant="tiny"), 12, 4),
    "almdn_retinanet-tiny": (build_almdn_retinanet, dict(backbone="tiny"), 24, 4),
    "retinanet-dropout": (build_retinanet, dict(backbone="tiny", dropout=0.2), 12, 4),
    "ssdlite-160": (build_ssd, dict(variant="ssdlite320_mobilenet_v3_large", size=160), 8, 3),
    "ssd300_vgg16-268": (build_ssd, dict(variant="ssd300_vgg16", size=268), 2, 2),
}
SIGMOID = {"retinanet-tiny", "fcos-tiny", "miaod-tiny", "almdn_retinanet-tiny", "retinanet-dropout"}
TWO_STAGE = {"faster_rcnn-tiny"}


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _build(name: str, **overrides):
    builder, kwargs, _, _ = VARIANTS[name]
    return builder(C, **{**kwargs, **overrides})


_PREDICT_MODELS: dict[str, torch.nn.Module] = {}


def _predict_model(name: str):
    """An untrained model with a low score threshold (so that it detects), built once per variant."""
    if name not in _PREDICT_MODELS:
        torch.manual_seed(0)
        _PREDICT_MODELS[name] = _build(name, score_thresh=0.005).eval()
    return _PREDICT_MODELS[name]


def _batch(num_images: int, size: int = 128):
    """Images with 1-2 boxes each (labels up to C) and, last, one image with no box."""
    generator = torch.Generator().manual_seed(1)
    images, targets = [], []
    for i in range(num_images):
        image = torch.rand(3, size, size, generator=generator) * 0.2
        boxes = torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 30.0, 110.0, 90.0]])[: 1 + i % 2] * size / 128
        labels = torch.tensor([1, C])[: 1 + i % 2]
        if i == num_images - 1:
            boxes, labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
        for (x1, y1, x2, y2), label in zip(boxes.int().tolist(), labels.tolist()):
            image[label - 1, y1:y2, x1:x2] = 0.9
        images.append(image)
        targets.append({"boxes": boxes, "labels": labels})
    return images, targets


@pytest.mark.parametrize("name", VARIANTS)
def test_training_lowers_the_loss(name):
    _, _, steps, batch_size = VARIANTS[name]
    model = _build(name)
    size = 268 if "vgg" in name else 128
    images, targets = _batch(batch_size, size)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4 if "vgg" in name else 1e-3)
    model.train()
    losses = []
    for _ in range(steps):
        loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        assert all(torch.isfinite(v) for v in loss_dict.values()), loss_dict
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def _check_types(det: Detections, name: str, height: int, width: int) -> None:
    n = len(det)
    assert det.boxes.dtype == torch.float32 and det.boxes.shape == (n, 4)
    assert det.scores.dtype == torch.float32 and det.scores.shape == (n,)
    assert det.labels.dtype == torch.int64 and det.labels.shape == (n,)
    assert det.prob_kind == ("sigmoid" if name in SIGMOID else "softmax")
    if n:
        assert det.labels.min() >= 1 and det.labels.max() <= C
        assert det.boxes[:, 0].min() >= 0 and det.boxes[:, 1].min() >= 0
        assert det.boxes[:, 2].max() <= width + 1e-3 and det.boxes[:, 3].max() <= height + 1e-3
        assert torch.all(det.scores[:-1] >= det.scores[1:]), "scores sorted descending"


@pytest.mark.parametrize("name", VARIANTS)
def test_predict_returns_every_requested_field(name):
    model = _predict_model(name)
    images = [torch.rand(3, 96, 120), torch.rand(3, 128, 128)]
    fields = ["class_probs", "proposals", "embedding", "dense_probs"]
    detections = model.predict(images, fields=fields)
    assert len(detections) == 2
    K = C if name in SIGMOID else C + 1
    for det, image in zip(detections, images):
        _check_types(det, name, *image.shape[-2:])
        n = len(det)
        assert n > 0
        assert det.class_probs.shape == (n, K)
        assert det.embedding.dim() == 1 and det.embedding.dtype == torch.float32
        if name in TWO_STAGE:
            assert det.proposals.shape == (n, 4) and det.dense_probs is None
            assert det.proposals[:, 2].max() <= image.shape[-1] + 1e-3
        else:
            assert det.proposals is None
            assert det.dense_probs.dim() == 2 and det.dense_probs.shape[1] == K
        rows = torch.arange(n)
        if name == "fcos-tiny":  # score = sqrt(p_class * centerness)
            assert torch.all(det.scores**2 <= det.class_probs[rows, det.labels - 1] + 1e-6)
        elif name in SIGMOID:
            torch.testing.assert_close(det.class_probs[rows, det.labels - 1], det.scores)
        else:
            torch.testing.assert_close(det.class_probs[rows, det.labels], det.scores)
            torch.testing.assert_close(det.class_probs.sum(1), torch.ones(n))
        if det.dense_probs is not None:  # each carried vector is the vector of one anchor of the image
            matches = (det.class_probs[:, None, :] == det.dense_probs[None, :, :]).all(-1).any(-1)
            assert matches.all()


@pytest.mark.parametrize("name", VARIANTS)
def test_predict_equals_plain_forward_and_restores_mode(name):
    model = _predict_model(name)
    images = [torch.rand(3, 100, 128), torch.rand(3, 128, 112)]
    model.train()
    model.backbone.eval()  # a mixed mode must come back as it was
    detections = model.predict(images, fields=["class_probs", "embedding"])
    assert model.training and not model.backbone.training
    model.eval()
    with torch.no_grad():
        expected = model(images)
    for det, exp in zip(detections, expected):
        assert set(exp) == {"boxes", "scores", "labels"}
        assert torch.equal(det.boxes, exp["boxes"])
        assert torch.equal(det.scores, exp["scores"])
        assert torch.equal(det.labels, exp["labels"])


@pytest.mark.parametrize("name", VARIANTS)
def test_boxes_are_in_original_image_pixels(name):
    model = _predict_model(name)
    image = torch.rand(3, 64, 96)
    resized, _ = model.transform.resize(image, None)  # what the model sees internally, unnormalised
    small, large = model.predict([image, resized], fields=["proposals", "embedding"])
    assert resized.shape[-2:] != image.shape[-2:]
    scale = torch.tensor([96 / resized.shape[-1], 64 / resized.shape[-2]] * 2)
    assert len(small) > 0 and len(small) == len(large)
    # the same detections, matched by box and class: an untrained model's near-tied scores may swap two places
    distance = (small.boxes[:, None] - (large.boxes * scale)[None]).abs().amax(-1)
    distance += 1e6 * (small.labels[:, None] != large.labels[None])
    match = distance.argmin(1)
    assert len(set(match.tolist())) == len(small)
    torch.testing.assert_close(small.boxes, large.boxes[match] * scale, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(small.scores, large.scores[match])
    if small.proposals is not None:
        torch.testing.assert_close(small.proposals, large.proposals * scale, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", VARIANTS)
def test_no_detections_and_empty_images(name):
    model = _predict_model(name)
    heads = model.roi_heads if name in TWO_STAGE else model
    heads.score_thresh = 1.0
    try:
        _check_no_detections(model, name)
    finally:
        heads.score_thresh = 0.005


def _check_no_detections(model, name: str) -> None:
    K = C if name in SIGMOID else C + 1
    blank = torch.zeros(3, 80, 80)
    detections = model.predict(
        [blank, torch.rand(3, 64, 64)], fields=["class_probs", "proposals", "embedding", "dense_probs"]
    )
    for det in detections:
        _check_types(det, name, 80, 80)
        assert len(det) == 0 and det.class_probs.shape == (0, K)
        assert det.embedding.dim() == 1
        if name in TWO_STAGE:
            assert det.proposals.shape == (0, 4)
        else:
            assert det.dense_probs.shape[0] > 0
    assert model.predict([]) == []
    plain = model.predict([blank])[0]
    assert plain.class_probs is None and plain.embedding is None and plain.dense_probs is None


def _force_class(model, name: str, label: int) -> None:
    """Make the classifier output ``label`` (1..C) everywhere, through each family's raw class layout."""
    K = C + 1
    if name in TWO_STAGE:
        layers = [model.roi_heads.box_predictor.cls_score]
    elif name in SIGMOID:
        layers = [model.head.classification_head.cls_logits]
    else:
        layers = [m if isinstance(m, torch.nn.Conv2d) else m[-1] for m in model.head.classification_head.module_list]
    with torch.no_grad():
        for layer in layers:
            layer.weight.zero_()
            bias = layer.bias.view(-1, K)  # [anchors per location, C + 1]
            bias.fill_(-10.0)
            bias[:, label] = 10.0


@pytest.mark.parametrize(
    "name", ["retinanet-tiny", "miaod-tiny", "fcos-tiny", "ssd-tiny", "faster_rcnn-tiny", "ssdlite-160"]
)
def test_labels_are_class_indices_1_to_C(name):
    model = _build(name).eval()
    _force_class(model, name, label=2)
    det = model.predict([torch.rand(3, 128, 128)], fields=["class_probs"])[0]
    assert len(det) > 0 and torch.all(det.labels == 2)
    column = 1 if name in SIGMOID else 2
    assert torch.all(det.class_probs.argmax(1) == column)


def test_fpn_backbones_strides_and_norms():
    for name, size, strides in [
        ("tiny", 128, [8, 16, 32, 64]),
        ("resnet18", 64, [4, 8, 16, 32, 64]),
        ("mobilenet_v3_large", 64, [32, 32, 64]),
    ]:
        backbone = build_fpn_backbone(name, fpn_channels=32, norm="group").eval()
        maps = backbone(torch.rand(1, 3, size, size))
        assert [size // m.shape[-1] for m in maps.values()] == strides
        assert all(m.shape[1] == 32 == backbone.out_channels for m in maps.values())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    tiny = build_fpn_backbone("tiny", norm="frozen", trainable_layers=2, fpn_channels=64)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in tiny.modules())
    trainable = {n.split(".")[0] for n, p in tiny.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    assert 100_000 <= sum(p.numel() for p in tiny.body.parameters()) <= 500_000


@pytest.mark.parametrize("builder", [build_retinanet, build_fcos, build_faster_rcnn])
@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_large"])
def test_torchvision_backbones_build_and_predict(builder, backbone):
    model = builder(C, backbone=backbone, min_size=96, max_size=96, score_thresh=0.0)
    det = model.predict([torch.rand(3, 96, 80)], fields=["class_probs", "embedding"])[0]
    assert det.embedding.shape == (256,) and det.class_probs.shape[0] == len(det)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: build_retinanet(90, backbone="resnet50"), tv_detection.retinanet_resnet50_fpn),
        (lambda: build_fcos(90, backbone="resnet50"), tv_detection.fcos_resnet50_fpn),
        (lambda: build_faster_rcnn(90, backbone="resnet50"), tv_detection.fasterrcnn_resnet50_fpn),
        (lambda: build_faster_rcnn(90, backbone="mobilenet_v3_large"), tv_detection.fasterrcnn_mobilenet_v3_large_fpn),
        (lambda: build_ssd(90, variant="ssd300_vgg16"), tv_detection.ssd300_vgg16),
        (lambda: build_ssd(90, variant="ssdlite320_mobilenet_v3_large"), tv_detection.ssdlite320_mobilenet_v3_large),
    ],
    ids=["retinanet", "fcos", "faster_rcnn", "faster_rcnn_mobile", "ssd300", "ssdlite"],
)
def test_architectures_match_torchvision_so_its_weights_load(ours, theirs):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = ours()
        reference = theirs(weights=None, weights_backbone=None, num_classes=91)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}


def test_weights_round_trip_through_a_local_file(tmp_path):
    model = _build("retinanet-tiny")
    state = model.state_dict()
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "ckpt.pth")
    for file in ("plain.pt", "ckpt.pth"):
        torch.manual_seed(1)
        loaded = _build("retinanet-tiny", weights=str(tmp_path / file)).state_dict()
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    with pytest.raises(ValueError, match=r"shape-mismatched key\(s\).*cls_logits.*weights_strict=False"):
        build_retinanet(C + 2, backbone="tiny", weights=tmp_path / "plain.pt")
    with pytest.warns(UserWarning, match="skipped 2 shape-mismatched"):
        other = build_retinanet(C + 2, backbone="tiny", weights=tmp_path / "plain.pt", weights_strict=False)
    assert torch.equal(other.state_dict()["backbone.body.stem.0.0.weight"], state["backbone.body.stem.0.0.weight"])
    torch.save(build_faster_rcnn(C, backbone="tiny").state_dict(), tmp_path / "frcnn.pt")
    with pytest.raises(ValueError, match=r"missing key\(s\): \['head.*unexpected key\(s\): \['rpn"):
        build_retinanet(C, backbone="tiny", weights=tmp_path / "frcnn.pt")
    torch.save(build_fcos(C, backbone="tiny").state_dict(), tmp_path / "fcos.pt")
    with pytest.raises(ValueError, match=r"Could not load .*fcos.pt"):
        build_retinanet(C, backbone="tiny", weights=tmp_path / "fcos.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_retinanet(C, backbone="tiny", weights=tmp_path / "absent.pt")
    body = build_fpn_backbone("tiny", fpn_channels=64).body
    torch.save(body.state_dict(), tmp_path / "body.pt")
    detector = build_faster_rcnn(C, backbone="tiny", weights_backbone=tmp_path / "body.pt")
    assert torch.equal(detector.backbone.body.layer4[1][0].weight, body.layer4[1][0].weight)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: build_retinanet(C, backbone="resnet50", weights="RetinaNet_ResNet50_FPN_Weights.COCO_V9"),
            r"The 'weights' parameter of build_retinanet must be None, a path .* weights name in \[.*"
            r"'RetinaNet_ResNet50_FPN_Weights.COCO_V1'.*Got 'RetinaNet_ResNet50_FPN_Weights.COCO_V9' instead",
        ),
        (
            lambda: build_retinanet(C, backbone="resnet50", weights="RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1"),
            r"Got 'RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1' instead",
        ),
        (
            lambda: build_fcos(C, backbone="tiny", weights="DEFAULT"),
            r"'weights' parameter of build_fcos must be None or a path .* no torchvision weights\). Got 'DEFAULT'",
        ),
        (lambda: build_ssd(C, variant="tiny", weights_backbone="DEFAULT"), r"'weights_backbone'.*no torchvision"),
        (
            lambda: build_faster_rcnn(C, backbone="resnet18", weights_backbone="ResNet50_Weights.IMAGENET1K_V2"),
            r"'weights_backbone' parameter of build_fpn_backbone.*'ResNet18_Weights.IMAGENET1K_V1'",
        ),
    ],
)
def test_unknown_torchvision_weights_names(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: build_retinanet(C, backbone="resnet5"),
            r"The 'backbone' parameter of build_retinanet must be one of \['efficientnet_lite0', 'mobilenet_v3_large', "
            r"'resnet18', 'resnet50', 'tiny'\]. Got 'resnet5' instead.",
        ),
        (lambda: build_fcos(0, backbone="tiny"), r"'num_classes' parameter of build_fcos must be an int >= 1. Got 0"),
        (lambda: build_ssd(C, variant="ssd512"), r"'variant' parameter of build_ssd must be one of .*Got 'ssd512'"),
        (
            lambda: build_ssd(C, variant="ssd300_vgg16", size=200),
            r"'size' parameter of build_ssd must be an int >= 268 for 'ssd300_vgg16' .* Got 200",
        ),
        (lambda: build_faster_rcnn(C, backbone="tiny", norm="layer"), r"'norm' parameter .* Got 'layer'"),
        (lambda: build_retinanet(C, backbone="tiny", anchor_sizes=(16, 32)), r"'anchor_sizes' .* 4 positive sizes"),
        (lambda: build_fcos(C, backbone="tiny", fpn_channels=48), r"'fpn_channels' .* multiple of 32 .* Got 48"),
        (lambda: build_retinanet(C, backbone="tiny", score_thresh=1.5), r"'score_thresh' .* \[0.0, 1.0\]. Got 1.5"),
        (
            lambda: build_faster_rcnn(C, backbone="tiny", trainable_backbone_layers=6),
            r"'trainable_backbone_layers' parameter of build_faster_rcnn must be an int in \[0, 5\]. Got 6",
        ),
        (lambda: build_fpn_backbone("resnet18", weights_backbone="DEFAULT", norm="group"), r"cannot be 'group'"),
        (lambda: build_fpn_backbone("tiny", returned_layers=[0, 5]), r"'returned_layers' .* \[1, 4\]"),
        (lambda: build_faster_rcnn(C, backbone="tiny", rpn_post_nms_top_n_test=0), r"'rpn_post_nms_top_n_test'"),
        (lambda: _build("ssd-tiny").predict([torch.rand(3, 64, 64)], fields=["logits"]), r"Unknown Detections field"),
    ],
)
def test_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------------- Detections.extras


def test_every_extras_key_is_declared_once_and_documented_where_it_is_filled():
    import importlib

    from activedet import models
    from activedet.models import outputs

    assert not set(models.EXTRA_FIELDS) & outputs.CORE_OPTIONAL_FIELDS
    assert models.OPTIONAL_FIELDS == outputs.CORE_OPTIONAL_FIELDS | set(models.EXTRA_FIELDS)
    declared = [
        key for module in set(models.EXTRA_FIELDS.values()) for key in importlib.import_module(module).EXTRA_FIELDS
    ]
    assert sorted(declared) == sorted(models.EXTRA_FIELDS), "a key declared by two modules"
    for key, module in models.EXTRA_FIELDS.items():
        assert f"``{key}``: " in importlib.import_module(module).__doc__, f"{module} does not document {key!r}"
        assert f"``{key}``" in outputs.Detections.__doc__ and f":mod:`{module}`" in outputs.Detections.__doc__
    assert "``reference_boxes``" in importlib.import_module("activedet.models.views").__doc__
    with pytest.raises(ValueError, match=r"Unknown Detections field\(s\) \['reference_boxes'\]; valid optional "):
        Detections.check_fields({"views", "reference_boxes"})
    assert Detections.check_fields(models.OPTIONAL_FIELDS) == models.OPTIONAL_FIELDS


def _tiny_detections(n: int, **kwargs) -> Detections:
    return Detections(torch.rand(n, 4), torch.rand(n), torch.ones(n, dtype=torch.int64), **kwargs)


def test_to_moves_the_tensors_inside_extras_and_with_extras_copies():
    view = _tiny_detections(2, extras={"reference_boxes": torch.rand(2, 4)})
    det = _tiny_detections(
        2,
        class_probs=torch.rand(2, 3),
        extras={
            "uncertainties": torch.rand(2, 4),
            "passes": [_tiny_detections(1, class_probs=torch.rand(1, 3)), _tiny_detections(0)],
            "views": [view],
            "pair": (torch.rand(1), {"nested": torch.rand(1)}),
            "note": "kept",
        },
    )
    moved = det.to("meta")
    assert moved.boxes.is_meta and moved.class_probs.is_meta and moved.extras["uncertainties"].is_meta
    assert all(p.boxes.is_meta for p in moved.extras["passes"]) and moved.extras["passes"][0].class_probs.is_meta
    assert moved.extras["views"][0].extras["reference_boxes"].is_meta
    assert moved.extras["pair"][0].is_meta and moved.extras["pair"][1]["nested"].is_meta
    assert moved.extras["note"] == "kept" and not det.extras["uncertainties"].is_meta  # the original is unchanged
    added = det.with_extras(influence=torch.tensor(0.5, dtype=torch.float64))
    assert "influence" not in det.extras and set(added.extras) == {*det.extras, "influence"}
    assert added.get("influence") == 0.5 and added.get("class_probs") is det.class_probs
    assert added.get("class_quality") is None and _tiny_detections(1).extras == {}
