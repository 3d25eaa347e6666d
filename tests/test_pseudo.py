"""Pseudo labels (thresholds, clipping, artefact files), per-image loss weights in training, TensorBoard logging."""

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_model, train_options

from activedet.data.records import DetectionDataset, ImageRecord
from activedet.data.torch_dataset import DetectionTorchDataset, collate_detection
from activedet.engine.pseudo import (
    PseudoLabelOptions,
    PseudoLabelRecord,
    load_pseudo_labels,
    pseudo_label_records,
    pseudo_label_stats,
    save_pseudo_labels,
    with_pseudo_labels,
)
from activedet.engine.train import OptionError, TrainOptions, build_optimizer, train_detector, weighted_loss_dict
from activedet.methods.miaod.training import train_miaod
from activedet.models import Detections, build_detector
from activedet.tensorboard import log_cycle, require_tensorboard

# ---------------------------------------------------------------------------------------------- pseudo labels


def fake_pool(n=4, width=100, height=80) -> DetectionDataset:
    records = [
        ImageRecord(f"img{i}", Path(f"/nowhere/img{i}.png"), width, height, [[10, 10, 30, 30]], [1]) for i in range(n)
    ]
    return DetectionDataset(records, ["red", "blue"])


def dets(boxes=(), scores=(), labels=()) -> Detections:
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores),
        torch.tensor(labels, dtype=torch.int64),
    )


#: image 0: three detections (0.95 red, 0.85 blue, 0.3 red); image 1: best is 0.7; image 2: none
PREDICTIONS = [
    (0, dets([[0, 0, 20, 20], [40, 40, 60, 60], [5, 5, 15, 15]], [0.95, 0.85, 0.3], [1, 2, 1])),
    (1, dets([[0, 0, 20, 20]], [0.7], [2])),
    (2, dets()),
]


def kept(options, predictions=PREDICTIONS):
    """``{pool_index: scores}`` of the pseudo records."""
    return {r.pool_index: r.scores.tolist() for r in pseudo_label_records(predictions, fake_pool(), options)}


def test_default_is_med_sslal_top1_box_at_0_8_with_weight_lambda():
    records = pseudo_label_records(PREDICTIONS, fake_pool(), PseudoLabelOptions(loss_weight=0.5))
    assert len(records) == 1  # image 1 (best 0.7) and image 2 (no detection) give no record
    record = records[0]
    assert isinstance(record, ImageRecord) and record.pool_index == 0 and record.image_id == "img0"
    assert record.boxes.tolist() == [[0, 0, 20, 20]] and record.labels.tolist() == [1]
    assert record.scores.tolist() == pytest.approx([0.95]) and record.loss_weight == 0.5
    assert pseudo_label_stats(records) == {"images": 1, "boxes": 1, "mean_score": pytest.approx(0.95)}


@pytest.mark.parametrize(
    "options, expected",
    [
        (dict(top1_only=False), {0: [0.95, 0.85]}),
        (dict(top1_only=False, score_threshold=0.25), {0: [0.95, 0.85, 0.3], 1: [0.7]}),
        (dict(top1_only=False, score_threshold=0.25, max_boxes=2), {0: [0.95, 0.85], 1: [0.7]}),
        (dict(top1_only=True, score_threshold=0.25, max_boxes=2), {0: [0.95], 1: [0.7]}),
        (dict(top1_only=False, score_threshold=0.99), {}),
        (dict(top1_only=False, class_thresholds={"blue": 0.5, "red": 0.99}), {0: [0.85], 1: [0.7]}),
        (dict(top1_only=False, class_thresholds={1: 0.2}), {0: [0.95, 0.85, 0.3]}),
        (dict(top1_only=False, class_thresholds=[0.9, 0.99]), {0: [0.95]}),
    ],
)
def test_thresholds_top1_and_max_boxes(options, expected):
    assert {k: pytest.approx(v) for k, v in expected.items()} == kept(PseudoLabelOptions(**options))


def test_empty_predictions_give_no_records():
    assert pseudo_label_records([], fake_pool()) == []
    assert pseudo_label_stats([])["images"] == 0


def test_boxes_are_clipped_and_degenerate_ones_dropped_before_the_top1_choice():
    predictions = [(0, dets([[110, 0, 130, 20], [-10, 5, 50, 90], [20, 20, 20, 40]], [0.99, 0.9, 0.95], [1, 2, 1]))]
    records = pseudo_label_records(predictions, fake_pool(width=100, height=80))
    assert records[0].boxes.tolist() == [[0, 5, 50, 80]] and records[0].labels.tolist() == [2]


def test_class_agnostic_nms_drops_a_box_overlapped_by_a_better_one_of_another_class():
    predictions = [(0, dets([[0, 0, 20, 20], [1, 1, 21, 21], [50, 50, 70, 70]], [0.95, 0.9, 0.85], [1, 2, 2]))]
    assert kept(PseudoLabelOptions(top1_only=False), predictions) == {0: pytest.approx([0.95, 0.9, 0.85])}
    assert kept(PseudoLabelOptions(top1_only=False, class_agnostic_nms=0.5), predictions) == {
        0: pytest.approx([0.95, 0.85])
    }


def test_records_are_new_and_the_pool_is_never_modified():
    pool = fake_pool()
    before = copy.deepcopy(pool)
    records = pseudo_label_records(PREDICTIONS, pool, PseudoLabelOptions(top1_only=False, score_threshold=0.2))
    records[0].boxes[:] = -1
    records[0].labels[:] = 2
    for a, b in zip(pool.records, before.records):
        assert a.boxes.tolist() == b.boxes.tolist() and a.labels.tolist() == b.labels.tolist()
        assert a.loss_weight == 1.0 and type(a) is ImageRecord
    assert all(r is not pool.records[r.pool_index] for r in records)


def test_with_pseudo_labels_appends_them_to_the_labelled_set():
    pool = fake_pool()
    pseudo = pseudo_label_records(PREDICTIONS, pool, PseudoLabelOptions(loss_weight=0.5))
    train = with_pseudo_labels(pool.subset([1, 3]), pseudo)
    assert [r.image_id for r in train] == ["img1", "img3", "img0"] and len(pool) == 4
    assert [r.loss_weight for r in train] == [1.0, 1.0, 0.5]


def test_bad_predictions_are_errors():
    with pytest.raises(IndexError, match="pool index 9, but the pool has 4 images"):
        pseudo_label_records([(9, dets())], fake_pool())
    with pytest.raises(ValueError, match="two predictions for pool index 0"):
        pseudo_label_records([(0, dets()), (0, dets())], fake_pool())
    with pytest.raises(ValueError, match="non-finite"):
        pseudo_label_records([(0, dets([[0, 0, 5, 5]], [float("nan")], [1]))], fake_pool())


@pytest.mark.parametrize(
    "options, pattern",
    [
        (
            dict(score_threshold=1.5),
            r"The 'pseudo_labels.score_threshold' training option must be a float in \[0, 1\]. "
            r"Got 1.5 instead.",
        ),
        (dict(max_boxes=0), r"'pseudo_labels.max_boxes' .* must be an int >= 1 or null. Got 0"),
        (dict(loss_weight=-1.0), r"'pseudo_labels.loss_weight' .* must be a finite float >= 0. Got -1.0"),
        (dict(top1_only="yes"), r"'pseudo_labels.top1_only' .* must be true or false"),
        (dict(class_agnostic_nms=0), r"'pseudo_labels.class_agnostic_nms' .* must be an IoU threshold in \(0, 1\]"),
        (dict(class_thresholds={"red": 2}), r"'pseudo_labels.class_thresholds' .* floats in \[0, 1\]. Got 2"),
    ],
)
def test_option_errors(options, pattern):
    with pytest.raises(OptionError, match=pattern):
        PseudoLabelOptions(**options)


def test_unknown_option_and_classes_the_dataset_lacks_are_errors():
    with pytest.raises(OptionError, match=r"'pseudo_labels.score_thr' training option must be one of \['score_"):
        PseudoLabelOptions.from_dict({"score_thr": 0.5})
    with pytest.raises(
        OptionError,
        match=r"class_thresholds' .* class names \['red', 'blue'\] or labels 1..2. "
        r"Got 'green'",
    ):
        pseudo_label_records(PREDICTIONS, fake_pool(), PseudoLabelOptions(class_thresholds={"green": 0.5}))
    with pytest.raises(OptionError, match=r"a list of 2 thresholds, one per class"):
        pseudo_label_records(PREDICTIONS, fake_pool(), PseudoLabelOptions(class_thresholds=[0.5]))


def test_save_load_round_trip_is_exact(tmp_path):
    pool = fake_pool()
    predictions = PREDICTIONS + [(3, dets([[1.1, 2.2, 33.3, 44.4]], [0.912345], [2]))]
    records = pseudo_label_records(predictions, pool, PseudoLabelOptions(top1_only=False, loss_weight=0.7))
    save_pseudo_labels(tmp_path / "pseudo_labels.json", records)
    loaded = load_pseudo_labels(tmp_path / "pseudo_labels.json", pool)
    assert [r.pool_index for r in loaded] == [0, 3]
    for a, b in zip(records, loaded):
        assert (a.image_id, a.file_name, a.width, a.height, a.loss_weight) == (
            b.image_id,
            b.file_name,
            b.width,
            b.height,
            b.loss_weight,
        )
        for name in ("boxes", "labels", "scores"):
            assert (
                np.array_equal(getattr(a, name), getattr(b, name)) and getattr(a, name).dtype == getattr(b, name).dtype
            )
    save_pseudo_labels(tmp_path / "none.json", [])
    assert load_pseudo_labels(tmp_path / "none.json", pool) == []


def _item(**changes):
    return {
        "index": 0,
        "image_id": "img0",
        "boxes": [[0, 0, 20, 20]],
        "labels": [1],
        "scores": [0.9],
        "loss_weight": 1.0,
        **changes,
    }


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("{not json", r"bad.json: not a JSON file"),
        ({"format": "coco", "images": []}, r"bad.json: not a pseudo-label file"),
        ({"version": 2, "images": []}, r"bad.json: pseudo-label file version 2"),
        ({"images": [_item(index=99)]}, r"bad.json: images\[0\]: index 99 is not a pool index \(the pool has 4"),
        (
            {"images": [_item(image_id="img7")]},
            r"bad.json: images\[0\]: image_id 'img7' but pool index 0 is image "
            r"'img0'",
        ),
        ({"images": [_item(labels=[3])]}, r"bad.json: images\[0\]: labels must be in 1..2"),
        ({"images": [_item(boxes=[[0, 0, 120, 20]])]}, r"bad.json: images\[0\]: boxes must lie inside the 100x80"),
        ({"images": [_item(scores=[0.9, 0.8])]}, r"bad.json: images\[0\]: .*1 pseudo boxes but 2 scores"),
        ({"images": [_item(loss_weight=-1)]}, r"bad.json: images\[0\]: .*loss_weight must be a finite float >= 0"),
        ({"images": [_item(), _item()]}, r"bad.json: a pool index appears more than once"),
        ({"images": [{"index": 0}]}, r"bad.json: images\[0\]: expected an object with index, image_id"),
    ],
)
def test_bad_pseudo_label_files_are_rejected(tmp_path, content, pattern):
    path = tmp_path / "bad.json"
    if isinstance(content, dict):
        content = json.dumps({"format": "activedet-pseudo-labels", "version": 1, **content})
    path.write_text(content)
    with pytest.raises(ValueError, match=pattern + ".*; delete the file: the run makes it again"):
        load_pseudo_labels(path, fake_pool())


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf"), True, "1"])
def test_record_loss_weight_is_validated(weight):
    with pytest.raises(ValueError, match="loss_weight must be a finite float >= 0"):
        ImageRecord("a", Path("a.png"), 10, 10, loss_weight=weight)


def test_subset_keeps_the_loss_weight():
    record = ImageRecord("a", Path("a.png"), 50, 50, [[0, 0, 5, 5], [1, 1, 9, 9]], [1, 2], loss_weight=0.25)
    assert record.subset(np.array([False, True])).loss_weight == 0.25


# ---------------------------------------------------------------------------------------- loss-weighted training


def options(**overrides):
    return train_options(**{"batch_size": 3, **overrides})


def trained(data, opts, **kwargs):
    model = tiny_model()
    train_detector(model, data, options=opts, device="cpu", progress=False, **kwargs)
    return model.state_dict()


def assert_identical(a, b):
    for (name, x), y in zip(a.items(), b.values()):
        assert torch.equal(x, y), name


def reference_training(model, data, opts):
    """The training loop as it was before loss weights: one forward per batch, the plain sum of the losses."""
    from activedet.engine.train import train_loader

    loader, sampler = train_loader(data, opts)
    optimizer = build_optimizer(model, opts)
    model.train()
    for epoch in range(opts.epochs):
        sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        torch.manual_seed(opts.seed * 100_003 + epoch)
        for images, targets in loader:
            loss = sum(model(images, [{k: t[k] for k in ("boxes", "labels")} for t in targets]).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.state_dict()


def test_weights_of_one_train_exactly_as_the_unweighted_loop(toy_dataset):
    data = toy_dataset.subset(range(6))
    opts = options(warmup_iters=0, lr_schedule="constant")  # the reference loop has no schedule
    assert_identical(trained(data, opts), reference_training(tiny_model(), data, opts))


def test_a_weight_zero_pseudo_image_leaves_training_unchanged(toy_dataset):
    pseudo = pseudo_label_records(
        [(5, dets([[10, 10, 40, 40]], [0.99], [2]))], toy_dataset, PseudoLabelOptions(loss_weight=0.0)
    )
    assert len(pseudo) == 1
    labelled, opts = toy_dataset.subset(range(4)), options(epochs=1)
    assert_identical(trained(with_pseudo_labels(labelled, pseudo), opts), trained(labelled, opts))


def test_weight_lambda_scales_the_gradient_of_every_image(toy_dataset):
    # SGD without momentum or decay: weight 1/2 at lr 2η is weight 1 at lr η, bit for bit (powers of two are exact)
    sgd = dict(epochs=1, optimizer="sgd", momentum=0.0, weight_decay=0.0, warmup_iters=0, lr_schedule="constant")
    data = toy_dataset.subset(range(4))
    halved = DetectionDataset([replace(r, loss_weight=0.5) for r in data], data.class_names)
    assert_identical(trained(halved, options(lr=2**-7, **sgd)), trained(data, options(lr=2**-8, **sgd)))


@pytest.mark.parametrize("detector", ["retinanet", "faster_rcnn"])
def test_a_mixed_batch_is_the_weighted_combination_of_its_groups(toy_dataset, detector):
    images, targets = collate_detection([DetectionTorchDataset(toy_dataset)[i] for i in range(4)])
    targets = [{k: t[k] for k in ("boxes", "labels")} for t in targets]
    weights = [1.0, 0.5, 1.0, 0.25]
    model = tiny_model(detector=detector).train()
    torch.manual_seed(1)  # Faster R-CNN's samplers draw from the global RNG
    combined = weighted_loss_dict(model, images, targets, weights)
    torch.manual_seed(1)
    groups = [([0, 2], 1.0), ([1], 0.5), ([3], 0.25)]
    parts = [(w, len(g), model([images[i] for i in g], [targets[i] for i in g])) for g, w in groups]
    for name, value in combined.items():
        expected = sum(w * n * losses[name] for w, n, losses in parts) / 4
        assert torch.allclose(value, expected, rtol=1e-6, atol=0), name
    sum(combined.values()).backward()  # one graph through every group


def test_all_weights_zero_and_miaod_with_weights_are_errors(toy_dataset):
    zero = DetectionDataset([replace(r, loss_weight=0.0) for r in toy_dataset], toy_dataset.class_names)
    with pytest.raises(ValueError, match="all 8 training images have loss_weight 0"):
        train_detector(tiny_model(), zero, options=options(), device="cpu", progress=False)
    pseudo = pseudo_label_records([(1, dets([[10, 10, 40, 40]], [0.99], [2]))], toy_dataset)
    model = build_detector("miaod", 2, backbone="tiny", min_size=96, max_size=96)
    with pytest.raises(ValueError, match=r"training 'miaod' does not support per-image loss weights .* 'img_001'"):
        train_miaod(
            model,
            with_pseudo_labels(toy_dataset, [replace(pseudo[0], loss_weight=0.5)]),
            options=options(),
            device="cpu",
            progress=False,
        )


# ------------------------------------------------------------------------------------------------- TensorBoard


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_training_writes_tensorboard_scalars(toy_dataset, tmp_path):
    train_detector(
        tiny_model(),
        toy_dataset.subset(range(4)),
        val_set=toy_dataset.subset([0, 1]),
        options=options(tensorboard=True),
        out_dir=tmp_path,
        device="cpu",
        progress=False,
    )
    found = scalars(tmp_path / "tensorboard")
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    iters = [x for x in log if x["event"] == "iter"]
    assert {
        "train/classification",
        "train/bbox_regression",
        "train/loss",
        "train/lr",
        "epoch/train_classification",
        "val/mAP_area",
    } <= set(found)
    assert [s for s, _ in found["train/loss"]] == list(range(4))  # 2 epochs of 2 iterations, every one logged
    assert [v for _, v in found["train/loss"]] == pytest.approx([x["loss"] for x in iters], rel=1e-6)
    assert [s for s, _ in found["val/mAP_area"]] == [1, 2]


def test_log_cycle_writes_metrics_selection_and_pseudo_scalars(tmp_path):
    for cycle in (0, 1):
        log_cycle(
            tmp_path,
            cycle,
            {"voc": {"mAP_area": 0.1 * (cycle + 1), "per_class": [0.1, 0.2]}, "coco": {"AP": 0.05}},
            {"images": 10, "boxes": 23, "mean_score": 0.5},
            pseudo_stats={"images": 4, "boxes": 4},
        )
    found = scalars(tmp_path / "tensorboard")
    assert set(found) == {
        "metrics/voc/mAP_area",
        "metrics/coco/AP",
        "selection/images",
        "selection/boxes",
        "selection/mean_score",
        "pseudo/images",
        "pseudo/boxes",
    }
    assert found["metrics/voc/mAP_area"] == [(0, pytest.approx(0.1)), (1, pytest.approx(0.2))]


def test_missing_tensorboard_is_an_import_error_with_the_install_hint(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # "import tensorboard" now raises ImportError
    with pytest.raises(ImportError, match=r"needs the 'tensorboard' package.*pip install tensorboard"):
        require_tensorboard()
    with pytest.raises(ImportError, match=r"pip install activedet\[tensorboard\]"):
        train_detector(
            tiny_model(), toy_dataset, options=options(tensorboard=True), out_dir=tmp_path, device="cpu", progress=False
        )
    assert not (tmp_path / "last.pt").exists()


def test_tensorboard_option_is_validated_and_needs_an_out_dir(toy_dataset):
    with pytest.raises(OptionError, match=r"The 'tensorboard' training option must be true or false. Got 'yes'"):
        TrainOptions(tensorboard="yes")
    with pytest.raises(ValueError, match="'tensorboard' training option needs an out_dir"):
        train_detector(tiny_model(), toy_dataset, options=options(tensorboard=True), device="cpu", progress=False)


def test_importing_activedet_does_not_import_tensorboard():
    code = (
        "import sys, activedet, activedet.tensorboard, activedet.engine.train, activedet.engine.pseudo; "
        "assert 'tensorboard' not in sys.modules and 'torch.utils.tensorboard' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pseudo_label_records_are_image_records_for_training(toy_dataset):
    pseudo = pseudo_label_records([(2, dets([[10, 10, 40, 40]], [0.99], [2]))], toy_dataset)
    assert isinstance(pseudo[0], PseudoLabelRecord) and isinstance(pseudo[0], ImageRecord)
    image, target = DetectionTorchDataset(with_pseudo_labels(toy_dataset.subset([0]), pseudo), train=True)[1]
    assert target["boxes"].tolist() == [[10, 10, 40, 40]] and target["labels"].tolist() == [2]
