"""Teacher-student semi-supervision: EMA, thresholds, strong views, the hook in the one training loop, the config
key and the bench's per-arm overrides. Tiny weights-free detectors on 96 px images, some with no boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_toy_dataset
from test_loop import write_config
from torchvision.transforms import v2

from activedet.config import ConfigError, load_config
from activedet.data.records import DetectionDataset
from activedet.engine.options import OptionError
from activedet.engine.teacher import (
    IGNORED,
    TeacherStudentOptions,
    ema_update,
    pseudo_targets,
    strong_augmentation,
    strong_views,
    unsupervised_terms,
)
from activedet.engine.train import TrainOptions, train_detector
from activedet.engine.trainer import HookBase, Trainer
from activedet.models import build_detector
from activedet.models.outputs import Detections

SSL = {"semi_supervised": {"method": "teacher_student", "burn_in_epochs": 1, "threshold": 0.05, "ema_decay": 0.9}}


# ------------------------------------------------------------------------------------------------ the pieces


def test_ema_update_matches_the_formula_by_hand():
    torch.manual_seed(0)
    teacher, student = (torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)) for _ in range(2))
    student.train()
    student(torch.randn(4, 2))  # moves the student's running statistics and batch counter
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.75)
    after, source = teacher.state_dict(), student.state_dict()
    for name in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.allclose(after[name], 0.75 * before[name] + 0.25 * source[name]), name
    assert after["1.num_batches_tracked"] == source["1.num_batches_tracked"] == 1  # integer buffer: copied
    ema_update(teacher, student, 1.0)  # decay 1: the teacher does not move
    assert torch.equal(teacher.state_dict()["0.weight"], after["0.weight"])


def test_pseudo_targets_keep_scores_at_or_above_the_threshold_and_drop_degenerate_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 20, 30], [1, 1, 4, 4], [3, 3, 3, 9]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.7, 0.69, 0.95])
    labels = torch.tensor([1, 2, 1, 2])
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    targets = pseudo_targets([Detections(boxes, scores, labels), empty], 0.7)
    assert targets[0]["boxes"].tolist() == [[0, 0, 10, 10], [5, 5, 20, 30]]  # 0.69 below, zero-width box out
    assert targets[0]["labels"].tolist() == [1, 2] and targets[0]["labels"].dtype == torch.int64
    assert targets[1]["boxes"].shape == (0, 4) and targets[1]["labels"].shape == (0,)  # no detection: background


def test_uncertain_teacher_detections_become_ignored_boxes_below_the_threshold():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [5, 5, 20, 30], [1, 1, 4, 4], [3, 3, 3, 9], [2, 2, 8, 8]], dtype=torch.float32
    )
    scores = torch.tensor([0.9, 0.4, 0.29, 0.5, 0.3])
    targets = pseudo_targets([Detections(boxes, scores, torch.tensor([1, 2, 1, 2, 1]))], 0.7, ignore_below=0.3)
    assert targets[0]["boxes"].tolist() == [[0, 0, 10, 10], [5, 5, 20, 30], [2, 2, 8, 8]]  # 0.29 and zero-width out
    assert targets[0]["labels"].tolist() == [1, IGNORED, IGNORED] and targets[0]["labels"].dtype == torch.int64


def _anchors_and_rpn_labels(model, boxes, labels):
    from torchvision.models.detection.image_list import ImageList

    model.train()
    images = ImageList(torch.zeros(1, 3, 96, 96), [(96, 96)])
    features = model.backbone(images.tensors)
    anchors = model.rpn.anchor_generator(images, list(features.values()))
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}
    return anchors[0], model.rpn.assign_targets_to_anchors(anchors, [target])[0][0]


def test_faster_rcnn_anchors_and_rois_near_an_ignored_box_train_as_neither_object_nor_background():
    from torchvision.ops import box_iou

    torch.manual_seed(0)
    model = build_detector("faster_rcnn", 2, backbone="tiny", min_size=96, max_size=96)
    confident, unsure = [8.0, 8.0, 40.0, 40.0], [50.0, 50.0, 90.0, 90.0]
    anchors, plain = _anchors_and_rpn_labels(model, [confident, unsure], [1, 2])
    _, ignoring = _anchors_and_rpn_labels(model, [confident, unsure], [1, IGNORED])
    near = box_iou(torch.tensor([unsure]), anchors)[0] >= 0.3
    assert (plain[near] != -1).any() and (ignoring[near] == -1).all()  # the RPN: anchors on it sit out
    assert torch.equal(plain[~near], ignoring[~near])  # elsewhere as torchvision assigns them
    _, without = _anchors_and_rpn_labels(model, [confident], [1])
    assert torch.equal(without[~near], ignoring[~near]) and (without[near] == 0).any()  # not background there
    # the RoI sampler: proposals on the ignored box are never drawn, those far from both boxes are background
    proposals = [torch.tensor([confident, unsure, [52.0, 51.0, 90.0, 88.0], [0.0, 60.0, 20.0, 95.0]])]
    target = {"boxes": torch.tensor([confident, unsure]), "labels": torch.tensor([1, IGNORED])}
    sampled, _, roi_labels, _ = model.roi_heads.select_training_samples(proposals, [target])
    on_unsure = box_iou(sampled[0], torch.tensor([unsure]))[:, 0] >= 0.5
    assert not on_unsure.any() and (roi_labels[0] >= 0).all()
    assert 1 in roi_labels[0].tolist() and 0 in roi_labels[0].tolist()


def test_ignored_boxes_are_counted_per_epoch_and_refused_where_the_detector_cannot_ignore(tmp_path):
    pool = make_toy_dataset(tmp_path / "toy", n_images=6, empty_every=3)
    labelled, unlabelled = pool.subset([0, 1]), pool.subset([2, 3, 4, 5])
    _, result = _train_tiny(labelled, unlabelled, "faster_rcnn", ssl={"threshold": 0.9, "ignore_below": 0.001})
    assert result.history[1]["ignored_boxes_per_image"] > 0 and "ignored_boxes_per_image" not in result.history[0]
    assert any(k.startswith("train_unsup_") for k in result.history[1])
    with pytest.raises(OptionError, match=r"'semi_supervised.ignore_below'.*null with RetinaNetDetector"):
        _train_tiny(labelled, unlabelled, "retinanet", ssl={"threshold": 0.9, "ignore_below": 0.1})


def test_strong_augmentation_changes_pixels_never_boxes():
    """Every step is photometric (it moves no pixel), so the teacher's boxes on the weak view hold for the strong
    one; a geometric step (a flip, a crop) would fail here."""
    photometric = (v2.ColorJitter, v2.RandomGrayscale, v2.GaussianBlur, v2.RandomErasing)
    steps = [inner for step in strong_augmentation().transforms for inner in getattr(step, "transforms", [step])]
    assert steps and all(isinstance(step, photometric) for step in steps), steps
    image = torch.rand(3, 64, 80)
    torch.manual_seed(3)
    changed = 0
    for _ in range(10):
        out_image = strong_augmentation()(image)
        assert out_image.shape == image.shape and out_image.dtype == image.dtype
        changed += not torch.equal(out_image, image)
    assert changed >= 8  # colour jitter alone applies with p 0.8


def test_strong_views_are_a_function_of_the_seed_and_leave_the_global_rng_alone():
    images = [torch.rand(3, 40, 40), torch.rand(3, 32, 48)]
    state = torch.get_rng_state()
    a, b, c = strong_views(images, 7), strong_views(images, 7), strong_views(images, 8)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert [v.shape for v in a] == [i.shape for i in images]


def test_unsupervised_terms_are_the_classification_ones_unless_all():
    losses = {k: torch.tensor(1.0) for k in ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")}
    assert sorted(unsupervised_terms(losses, "classification")) == ["loss_classifier", "loss_objectness"]
    assert sorted(
        unsupervised_terms({"classification": 1, "bbox_regression": 2, "bbox_ctrness": 3}, "classification")
    ) == ["classification"]
    assert sorted(unsupervised_terms(losses, "all")) == sorted(losses)
    with pytest.raises(ValueError, match="semi_supervised.pseudo_losses 'classification'.*set semi_supervised"):
        unsupervised_terms({"mse": torch.tensor(1.0)}, "classification")


@pytest.mark.parametrize(
    "given, pattern",
    [
        ({"threshold": 1.5}, r"'semi_supervised.threshold' training option must be a float in \[0, 1\]. Got 1.5"),
        ({"ema_decay": -0.1}, r"'semi_supervised.ema_decay' training option must be a float in \[0, 1\]"),
        ({"method": "mean_teacher"}, r"'semi_supervised.method' training option must be one of \['teacher_student'\]"),
        ({"unlabelled_ratio": 0}, r"'semi_supervised.unlabelled_ratio' training option must be a float in \(0, 16\]"),
        ({"pseudo_losses": "box"}, r"'semi_supervised.pseudo_losses'.*one of \['classification', 'all'\]"),
        ({"treshold": 0.5}, r"'semi_supervised.treshold' training option must be one of \['method', 'threshold'"),
    ],
)
def test_bad_options_name_the_key(given, pattern):
    with pytest.raises(OptionError, match=pattern):
        TeacherStudentOptions.from_dict(given)


def test_the_burn_in_must_leave_epochs_for_the_teacher(toy_dataset):
    model = build_detector("retinanet", 2, backbone="tiny", min_size=96, max_size=96)
    with pytest.raises(OptionError, match=r"semi_supervised.burn_in_epochs' .* less than 'epochs' \(2\)"):
        train_detector(
            model,
            toy_dataset,
            unlabelled=toy_dataset,
            options=TrainOptions(epochs=2),
            semi_supervised=TeacherStudentOptions(burn_in_epochs=2),
        )
    with pytest.raises(ValueError, match="semi_supervised trains on unlabelled images, and none were given"):
        train_detector(
            model, toy_dataset, options=TrainOptions(epochs=2), semi_supervised=TeacherStudentOptions(burn_in_epochs=1)
        )


def test_a_hook_adds_loss_terms_to_the_step():
    """``extra_losses`` joins the step's loss dict before its one backward pass."""

    class Pull(HookBase):
        def extra_losses(self):
            return {"pull": (self.trainer.model.w - 3.0) ** 2}

    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.zeros(()))
    forward = lambda images, targets: {"zero": model.w * 0.0}  # noqa: E731
    trainer = Trainer(
        model,
        [([torch.zeros(1)], [{}])],
        torch.optim.SGD(model.parameters(), lr=0.1),
        max_epochs=1,
        device=torch.device("cpu"),
        forward_model=forward,
        hooks=[Pull()],
    )
    trainer.forward_model.train = lambda: None
    trainer.train()
    assert trainer.history[0]["train_pull"] == pytest.approx(9.0)
    assert float(model.w.detach()) == pytest.approx(0.6)  # w - lr * 2 (w - 3)


# ------------------------------------------------------------------------------------------ the hook trains


def _strip_boxes(dataset: DetectionDataset) -> DetectionDataset:
    from dataclasses import replace

    records = [
        replace(
            r, boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64), difficult=None, iscrowd=None, area=None
        )
        for r in dataset.records
    ]
    return DetectionDataset(records, dataset.class_names, root=dataset.root)


def _train_tiny(labelled, unlabelled, detector="retinanet", val=None, epochs=2, seed=0, built=None, **kwargs):
    torch.manual_seed(seed)
    model = build_detector(
        detector,
        2,
        backbone="tiny",
        min_size=96,
        max_size=96,
        score_thresh=0.005,
        detections_per_img=5,
        **(built or {}),
    )
    options = TrainOptions(
        epochs=epochs,
        batch_size=2,
        lr=0.01,
        warmup_iters=0,
        lr_schedule="constant",
        seed=5,
        **kwargs.pop("options", {}),
    )
    ssl = TeacherStudentOptions(
        **{"burn_in_epochs": 1, "threshold": 0.005, "ema_decay": 0.5, "unlabelled_ratio": 1.5, **kwargs.pop("ssl", {})}
    )
    result = train_detector(
        model,
        labelled,
        unlabelled=unlabelled,
        val_set=val,
        options=options,
        semi_supervised=ssl,
        progress=False,
        **kwargs,
    )
    return model, result


def test_a_resumed_training_continues_with_the_same_teacher(tmp_path):
    """last.pt holds the teacher: a training stopped after the burn-in resumes to the uninterrupted model."""
    pool = make_toy_dataset(tmp_path / "toy", n_images=6)
    labelled, unlabelled = pool.subset([0, 1]), pool.subset([2, 3, 4, 5])
    straight, _ = _train_tiny(labelled, unlabelled, epochs=3)
    # stopped after epoch 2 (the teacher's first); "all" keeps last.pt as written then, optimizer state included
    _train_tiny(labelled, unlabelled, epochs=2, out_dir=tmp_path / "b", options={"epoch_checkpoints": "all"})
    assert torch.load(tmp_path / "b/last.pt", weights_only=False)["teacher"] is not None
    resumed, result = _train_tiny(labelled, unlabelled, epochs=3, seed=123, out_dir=tmp_path / "b", resume=True)
    assert result.epochs_completed == 3
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_finished_trainings_checkpoint_does_not_bring_the_teacher_back():
    """last.pt of a finished training (``final``) holds the weights it ended with, which the best epoch may have
    chosen over the teacher: a resume of it must not copy the teacher back over them."""
    from types import SimpleNamespace

    from activedet.engine.teacher import TeacherStudent, TeacherStudentOptions

    hook = TeacherStudent(TeacherStudentOptions(), None, batch_size=1, hflip_prob=0.0, seed=0)
    hook.trainer = SimpleNamespace(model=torch.nn.Linear(2, 2))
    teacher = torch.nn.Linear(2, 2).state_dict()
    hook.load_state_dict({"teacher": teacher, "final": True})
    assert hook.teacher is None
    hook.load_state_dict({"teacher": teacher})  # stopped mid-training: the teacher resumes
    assert all(torch.equal(a, b) for a, b in zip(hook.teacher.state_dict().values(), teacher.values()))


@pytest.mark.parametrize("detector", ["retinanet", "faster_rcnn"])
def test_pseudo_boxes_do_not_feed_the_training_sample_observers(tmp_path, detector):
    """The labelled images have no boxes, so a class-difficulty EMA (an observer of the positive training samples)
    may see nothing, although the student trains on the teacher's pseudo boxes."""
    pool = make_toy_dataset(tmp_path / "toy", n_images=6)
    labelled = _strip_boxes(pool.subset([0, 1]))
    model, result = _train_tiny(labelled, pool.subset([2, 3, 4, 5]), detector, built={"difficulty_ema": True})
    assert any(k.startswith("train_unsup_") for k in result.history[1])  # the pseudo-box forward ran
    assert result.history[1]["pseudo_boxes_per_image"] > 0
    ema = model.difficulty if detector == "retinanet" else model.roi_heads.difficulty
    assert int(ema.updates) > 0 and not ema.quality.any()  # called for the labelled batches, with no positive


@pytest.mark.parametrize("detector", ["faster_rcnn", "fcos"])
def test_pseudo_boxes_train_only_the_classification_terms(tmp_path, detector):
    pool = make_toy_dataset(tmp_path / "toy", n_images=6, empty_every=2)  # half the images have no boxes
    _, result = _train_tiny(pool.subset([0, 1]), pool.subset([2, 3, 4, 5]), detector)
    expected = {
        "faster_rcnn": ["train_unsup_loss_classifier", "train_unsup_loss_objectness"],
        "fcos": ["train_unsup_classification"],
    }
    assert not any(k.startswith("train_unsup_") for k in result.history[0])  # burn-in: supervised only
    assert sorted(k for k in result.history[1] if k.startswith("train_unsup_")) == expected[detector]


def test_teacher_student_training_is_seeded_and_never_reads_the_unlabelled_boxes(tmp_path):
    pool = make_toy_dataset(tmp_path / "toy", n_images=8)  # images 3 and 7 have no boxes
    labelled, unlabelled = pool.subset([0, 1, 2, 3]), pool.subset([4, 5, 6, 7])
    model, result = _train_tiny(labelled, unlabelled)
    assert "train_unsup_classification" not in result.history[0]
    assert result.history[1]["train_unsup_classification"] > 0 and result.history[1]["pseudo_boxes_per_image"] > 0
    again, _ = _train_tiny(labelled, unlabelled)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    blind, _ = _train_tiny(labelled, _strip_boxes(unlabelled))  # the pool's ground truth stays hidden
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), blind.state_dict().values()))


def test_unlabelled_images_without_pseudo_boxes_train_as_background(tmp_path):
    pool = make_toy_dataset(tmp_path / "toy", n_images=6)
    _, result = _train_tiny(pool.subset([0, 1]), pool.subset([2, 3, 4, 5]), ssl={"threshold": 1.0})
    assert result.history[1]["pseudo_boxes_per_image"] == 0.0
    assert result.history[1]["train_unsup_classification"] > 0  # every anchor a background target


def test_training_ends_with_the_teachers_weights(tmp_path, monkeypatch):
    from activedet.engine import teacher as teacher_module

    pool = make_toy_dataset(tmp_path / "toy", n_images=8)
    seen = {}
    original = teacher_module.TeacherStudent.after_train

    def spy(self):
        seen["teacher"] = {k: v.clone() for k, v in self.teacher.state_dict().items()}
        seen["student"] = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}
        original(self)

    monkeypatch.setattr(teacher_module.TeacherStudent, "after_train", spy)
    model, _ = _train_tiny(pool.subset([0, 1]), pool.subset([4, 5, 6, 7]))
    final = model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in seen["teacher"].items())
    assert not all(torch.equal(final[k], v) for k, v in seen["student"].items())


def test_validation_sees_the_teacher_and_the_best_epoch_keeps_its_weights(tmp_path, monkeypatch):
    from activedet.engine import train as train_module

    pool = make_toy_dataset(tmp_path / "toy", n_images=8)
    calls = []

    def validate(model, val_set, options, device, batch_size):
        calls.append((model, {k: v.clone() for k, v in model.state_dict().items()}))
        return 1.0 if len(calls) == 2 else 0.0  # epoch 2 (the teacher's first) is the best

    monkeypatch.setattr(train_module, "_validate", validate)
    model, result = _train_tiny(pool.subset([0, 1]), pool.subset([4, 5, 6, 7]), val=pool.subset([4, 5]), epochs=3)
    assert len(calls) == 3 and result.best_epoch == 2
    assert calls[0][0] is model  # burn-in: no teacher yet, the student is validated
    assert calls[1][0] is not model and calls[2][0] is calls[1][0]  # then the teacher
    assert all(torch.equal(model.state_dict()[k], v) for k, v in calls[1][1].items())


# ---------------------------------------------------------------------------------- config, loop and bench


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"semi_supervised": {"threshold": 2}}, r"key 'semi_supervised.threshold' must be a float in \[0, 1\]"),
        (
            {"semi_supervised": {"burn_in_epochs": 2}},
            r"key 'semi_supervised.burn_in_epochs' must be less than 'epochs'",
        ),
        ({"semi_supervised": {"warmup": 1}}, r"key 'semi_supervised.warmup' must be one of \['method'"),
        (
            {"semi_supervised": {}, "detector": "miaod"},
            r"key 'semi_supervised' must be null with training 'miaod' .*semi_supervised: null",
        ),
        (
            {"semi_supervised": {}, "pseudo_labels": {}},
            r"key 'semi_supervised' must be null when pseudo_labels is set .*pseudo_labels: null",
        ),
        ({"semi_supervised": 3}, r"key 'semi_supervised' must be of type"),
        (
            {"semi_supervised": {"ignore_below": 0.7}, "detector": "faster_rcnn"},
            r"key 'semi_supervised.ignore_below' must be less than semi_supervised.threshold \(0.7\)",
        ),
        (
            {"semi_supervised": {"ignore_below": 0.3}},
            r"key 'semi_supervised.ignore_below' must be null with detector 'ssd' .*faster_rcnn",
        ),
    ],
)
def test_bad_semi_supervised_configs_name_the_key_and_the_fix(tiny_data, tmp_path, overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(write_config(tmp_path, tiny_data, **{"epochs": 2, **overrides}))


def test_a_semi_supervised_cycle_runs_and_repeats_exactly(tiny_data, tmp_path):
    from activedet.workflows import run_from_config

    outcomes = []
    for name in ("a", "b"):
        cfg = load_config(write_config(tmp_path / name, tiny_data, cycles=1, epochs=2, strategy="entropy", **SSL))
        run_from_config(cfg, progress=False)
        run = tmp_path / name / "run"
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        outcomes.append(
            (
                [x["metrics"] for x in lines],
                (run / "cycles/0/model.pt").read_bytes(),
                (run / "cycles/0/selection.json").read_text(),
            )
        )
        assert lines[-1]["labelled_images"] == 10  # pseudo boxes are never annotation
        history = torch.load(run / "cycles/1/model.pt", weights_only=False)["history"]
        assert "train_unsup_classification" not in history[0] and history[1]["train_unsup_classification"] > 0
    assert outcomes[0] == outcomes[1]


def test_bench_arms_override_the_config_and_are_labelled_apart(tiny_data, tmp_path):
    from activedet.bench import check_bench_arguments, parse_arm_overrides, parse_strategy_spec

    spec = "entropy:aggregation=sum@semi_supervised.threshold=0.5@semi_supervised.burn_in_epochs=1"
    assert parse_strategy_spec(spec) == ("entropy", {"aggregation": "sum"})
    assert parse_arm_overrides(spec) == [("semi_supervised.threshold", 0.5), ("semi_supervised.burn_in_epochs", 1)]
    config = write_config(tmp_path, tiny_data, epochs=2)
    arms = check_bench_arguments(
        config,
        strategies=["random", "random@semi_supervised={burn_in_epochs: 1}", spec],
        seeds=[0],
        overrides=None,
        metric="voc/mAP_area",
    )
    assert [a.label for a in arms] == [
        "random",
        "random +ssl[burn_in_epochs=1]",
        "entropy[aggregation=sum] +ssl[burn_in_epochs=1,threshold=0.5]",
    ]
    assert arms[1].directory == "random+ssl[burn_in_epochs=1]"
    assert json.loads(arms[2].overrides[0].split("=", 1)[1]) == {"threshold": 0.5, "burn_in_epochs": 1}
    with pytest.raises(ValueError, match=r"argument --strategies: 'entropy@lr=0.1' overrides 'lr', but an arm may"):
        parse_arm_overrides("entropy@lr=0.1")
    # a strategy's option after '@' is not a config key: the message says where it goes
    with pytest.raises(ValueError, match=r"'class_balance', which is not a config key; a strategy's own options go "):
        parse_arm_overrides("compose:criteria=[entropy,class_balance]@class_balance={power: 2}")
    with pytest.raises(ValueError, match=r"argument --strategies 'random@semi_supervised.threshold=3'.*threshold"):
        check_bench_arguments(
            config, strategies=["random@semi_supervised.threshold=3"], seeds=[0], overrides=None, metric="voc/mAP_area"
        )
    with pytest.raises(ValueError, match="lists the same arm twice"):
        check_bench_arguments(
            config,
            strategies=["random@semi_supervised={}", "random@semi_supervised.method=teacher_student"],
            seeds=[0],
            overrides=["epochs=5"],
            metric="voc/mAP_area",
        )


def test_bench_compares_ssl_arms_with_random_supervised_and_random_ssl(tiny_data, tmp_path, capsys):
    from activedet.bench import run_bench

    config = write_config(tmp_path, tiny_data, cycles=1, epochs=2)
    ssl = "semi_supervised={burn_in_epochs: 1, threshold: 0.05}"
    run_bench(
        config, strategies=["random", f"random@{ssl}", f"entropy@{ssl}"], seeds=[0], out=tmp_path / "b", progress=False
    )
    runs = tmp_path / "b" / "runs"
    label = "+ssl[burn_in_epochs=1,threshold=0.05]"
    supervised, semi = runs / "random/seed0", runs / f"random{label}/seed0"
    # cycle 0 is shared between arms of the same overrides only
    assert (supervised / "cycles/0/model.pt").read_bytes() != (semi / "cycles/0/model.pt").read_bytes()
    assert (semi / "cycles/0/model.pt").read_bytes() == (runs / f"entropy{label}/seed0/cycles/0/model.pt").read_bytes()
    first = json.loads((tmp_path / "b/report/summary.json").read_text())
    second = json.loads((tmp_path / f"b/report-vs-random{label}/summary.json").read_text())
    assert first["baseline"] == "random" and second["baseline"] == f"random {label}"
    assert f"entropy {label}" in capsys.readouterr().out
