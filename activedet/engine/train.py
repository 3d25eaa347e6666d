"""Detector training in the shape of torchvision's ``references/detection/engine.py``, ready for torchrun.

:func:`train_detector` runs the :class:`~activedet.engine.trainer.Trainer` loop with the standard hooks of
:mod:`activedet.engine.hooks`; in one process or many it amounts to::

    for epoch in range(start_epoch, epochs):
        seed the epoch (sampler permutation, augmentation, torchvision's samplers)        # SeedEpochs
        for images, targets in loader:              # DistributedSampler: this rank's share of the batch
            loss = sum(model(images, targets).values())    # images of loss weight != 1: weighted_loss_dict
            backward (AMP on CUDA), clip, step, per-iteration lr schedule                 # Trainer.run_step
            log a JSON line every `log_every` iterations                                    # TrainingLog
        evaluate on the validation split (every `eval_every` epochs), keep the best, stop early on a plateau
        save last.pt atomically (rank 0), barrier                                          # Checkpoint

``batch_size`` is the **global** batch: each of W processes takes ``batch_size / W`` images, and DDP's gradient
average makes a step equal to the one-process step on the same images (exactly so for losses that average over
images and for frozen/group normalisation; BatchNorm statistics are per process).

With ``semi_supervised`` the :class:`~activedet.engine.teacher.TeacherStudent` hook adds the unlabelled images'
pseudo-box loss to every step after its burn-in and the model ends with the teacher's weights
(:mod:`activedet.engine.teacher`).

Each record's ``loss_weight`` (1 for human labels, λ for pseudo labels, see :mod:`activedet.engine.pseudo`) scales
its image's loss: see :func:`weighted_loss_dict`. Images of weight 0 are left out of the epochs altogether.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..constants import VAL_METRICS
from ..data.records import DetectionDataset
from ..data.torch_dataset import DetectionTorchDataset, collate_detection
from ..models._common import unwrap_ddp
from . import distributed as dist_utils
from . import hooks
from .hooks import output_dir
from .inference import predict_dataset
from .options import OptionError, TrainOptions
from .repeat_factor import RepeatFactorSampler, image_repeat_factors
from .teacher import TeacherStudent, TeacherStudentOptions
from .trainer import Trainer

__all__ = [
    "OptionError",
    "TrainOptions",
    "TrainResult",
    "train_detector",
    "build_optimizer",
    "build_lr_lambda",
    "warmup_multiplier",
    "train_loader",
    "weighted_loss_dict",
    "DetectorTrainer",
]

#: largest ``scale_jitter`` that keeps a classifier's whole-image box (zoom keeps boxes with >= 1/2 of their area)
CLASSIFICATION_MAX_SCALE_JITTER = 0.4


@dataclass
class TrainResult:
    """What :func:`train_detector` did: epochs completed, the chosen epoch and its validation metric."""

    epochs_completed: int
    best_epoch: int | None
    best_metric: float | None
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    wall_time_s: float = 0.0


def build_optimizer(model: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)
    return torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)


def warmup_multiplier(options: TrainOptions, it: int) -> float:
    """Linear warm-up from ``warmup_factor`` to 1 over the first ``warmup_iters`` iterations (1 afterwards)."""
    if it >= options.warmup_iters:
        return 1.0
    alpha = it / options.warmup_iters
    return options.warmup_factor * (1 - alpha) + alpha


def build_lr_lambda(options: TrainOptions, iters_per_epoch: int):
    """Multiplier of ``lr`` at iteration ``it`` (0-based, counted over the whole run)."""
    total = max(1, options.epochs * iters_per_epoch)

    def factor(it: int) -> float:
        warm = warmup_multiplier(options, it)
        if options.lr_schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(it, total) / total))
        if options.lr_schedule == "step":
            epoch = it // max(1, iters_per_epoch)
            return warm * options.lr_gamma ** sum(epoch >= s for s in options.lr_steps)
        return warm

    return factor


def train_loader(
    train_set: DetectionDataset, options: TrainOptions, seed: int | None = None
) -> tuple[torch.utils.data.DataLoader, object]:
    """This rank's shuffled, augmented loader of ``train_set`` and its sampler (``seed``: ``options.seed``).

    With ``options.repeat_factor_threshold`` the epochs draw images of rare classes more often
    (:mod:`activedet.engine.repeat_factor`; the epoch keeps its length).
    """
    world = dist_utils.world_size()
    seed = options.seed if seed is None else seed
    if options.batch_size % world:
        raise ValueError(
            f"The 'batch_size' training option ({options.batch_size}) must be divisible by the number "
            f"of processes ({world}); it is the global batch size"
        )
    # weight 0 images would only dilute their batch's mean loss; leaving them out keeps training exactly as
    # without them (same sampler order and schedule)
    weighted = [i for i, record in enumerate(train_set.records) if record.loss_weight > 0]
    if train_set.records and not weighted:
        raise ValueError(f"all {len(train_set)} training images have loss_weight 0; nothing to train on")
    if world > 1 and any(record.loss_weight not in (0.0, 1.0) for record in train_set.records):
        # a weighted batch runs one forward per weight group, and processes whose shares hold different groups
        # would run different numbers of DDP forwards (mismatched collectives: a hang)
        raise ValueError(
            "per-image loss weights other than 0 and 1 (pseudo_labels.loss_weight) are not supported "
            f"under torchrun ({world} processes); set pseudo_labels.loss_weight to 1.0 or run in one "
            "process"
        )
    data = DetectionTorchDataset(
        train_set,
        weighted,
        train=True,
        hflip_prob=options.hflip_prob,
        scale_jitter=options.scale_jitter,
        color_jitter=options.color_jitter,
        ssd_augment=options.ssd_augment,
        seed=seed,
    )
    factors = None
    if options.repeat_factor_threshold is not None:
        classes = [train_set.records[i].labels for i in weighted]
        factors = image_repeat_factors(classes, options.repeat_factor_threshold)
    if factors is not None and (factors > 1).any():
        sampler = RepeatFactorSampler(factors, num_replicas=world, rank=dist_utils.rank(), seed=seed)
    else:  # no class rare enough to repeat: exactly the plain shuffle
        sampler = torch.utils.data.DistributedSampler(
            data, num_replicas=world, rank=dist_utils.rank(), shuffle=True, seed=seed, drop_last=False
        )
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=options.batch_size // world,
        sampler=sampler,
        num_workers=options.num_workers,
        collate_fn=collate_detection,
    )
    return loader, sampler


def weighted_loss_dict(
    model, images: list[torch.Tensor], targets: list[dict], weights: list[float]
) -> dict[str, torch.Tensor]:
    """The loss dict of a batch whose images have loss weights ``weights`` (one float ``w_i >= 0`` per image).

    torchvision detectors return one loss dict per batch, so the batch is split into groups of equal weight (in the
    order of their first image), each group goes through ``model`` on its own, and every loss term is combined as

        ``L = Σ_g w_g n_g L_g / Σ_g n_g``    (group ``g``: ``n_g`` images of weight ``w_g``, loss ``L_g``)

    For losses that average per-image losses over the batch (RetinaNet) this is the batch mean of
    ``w_i`` times image ``i``'s loss. Where a term is normalised over the whole batch instead (FCOS, SSD, AL-MDN: by the
    batch's foreground count; Faster R-CNN: over its sampled anchors and RoIs), it is the image-count-weighted mean
    of the groups' losses, each group normalised by its own count, which is what each group would give on its own.
    BatchNorm layers in training mode normalise each group with its own statistics (as separate processes would).
    :func:`train_detector` calls this only for batches with a weight other than 1; all-1 batches run
    ``model(images, targets)`` exactly as they did before loss weights existed. Not under DDP: processes whose
    shares hold different groups would run different numbers of forwards (:func:`train_detector` refuses weights
    other than 0 and 1 there).
    """
    groups: dict[float, list[int]] = {}
    for i, weight in enumerate(weights):
        groups.setdefault(float(weight), []).append(i)
    combined: dict[str, torch.Tensor] = {}
    for weight, members in groups.items():
        losses = model([images[i] for i in members], [targets[i] for i in members])
        factor = weight * len(members) / len(weights)
        for name, value in losses.items():
            combined[name] = combined[name] + factor * value if name in combined else factor * value
    return combined


class DetectorTrainer(Trainer):
    """The :class:`~activedet.engine.trainer.Trainer` of :func:`train_detector`: each image's loss is scaled by its
    record's ``loss_weight`` (:func:`weighted_loss_dict`; batches of weight 1 only run the plain forward)."""

    def forward_losses(self, batch):
        images, targets = batch
        records = self.loader.dataset.dataset.records  # ``index``: the position in the training set
        weights = [records[int(t["index"])].loss_weight for t in targets]
        images = [img.to(self.device) for img in images]
        targets = [{k: v.to(self.device) for k, v in t.items() if k != "index"} for t in targets]
        with torch.autocast(self.device.type, enabled=self.amp):
            if all(w == 1.0 for w in weights):  # human labels only: exactly the unweighted step
                yield self.forward_model(images, targets)
            else:
                yield weighted_loss_dict(self.forward_model, images, targets, weights)


def _task(model) -> str:
    """``"classification"`` for :class:`~activedet.models.ImageClassifier`, ``"detection"`` for the detectors."""
    return getattr(unwrap_ddp(model), "task", "detection")


def _check_task_options(model, options: TrainOptions, validating: bool) -> None:
    """Options that depend on the model's task, checked before the first epoch."""
    task = _task(model)
    if validating and options.val_metric not in VAL_METRICS[task]:
        raise OptionError("val_metric", f"one of {list(VAL_METRICS[task])} for a {task} model", options.val_metric)
    if task == "classification" and options.scale_jitter > CLASSIFICATION_MAX_SCALE_JITTER:
        # a stronger zoom-in crops the whole-image box below half its area, and the crop drops the image's label
        raise OptionError(
            "scale_jitter",
            f"a float in [0, {CLASSIFICATION_MAX_SCALE_JITTER}] for a classifier "
            "(a larger zoom crops away the whole-image box that carries the label)",
            options.scale_jitter,
        )
    if task == "classification" and options.ssd_augment:
        raise OptionError(
            "ssd_augment",
            "false for a classifier (its random crop can cut away the whole-image box that carries the label)",
            options.ssd_augment,
        )


def _teacher_hook(model, unlabelled, options: TrainOptions, semi_supervised) -> TeacherStudent | None:
    """The teacher-student hook of ``semi_supervised`` (``None`` when off), its combinations checked."""
    if semi_supervised is None:
        return None
    semi_supervised.check(options)
    if _task(model) != "detection" or not hasattr(unwrap_ddp(model), "predict"):
        raise ValueError(
            f"semi_supervised needs a detector with a predict method (the teacher's pseudo boxes); got "
            f"{type(unwrap_ddp(model)).__name__} ({_task(model)}). Set semi_supervised: null"
        )
    if semi_supervised.ignore_below is not None and not getattr(unwrap_ddp(model), "IGNORES_BOXES", False):
        raise OptionError(
            "semi_supervised.ignore_below",
            f"null with {type(unwrap_ddp(model)).__name__} (it cannot train a region as neither object nor "
            "background; detectors that can: faster_rcnn)",
            semi_supervised.ignore_below,
        )
    if unlabelled is None:
        raise ValueError(
            "semi_supervised trains on unlabelled images, and none were given (unlabelled=None); the "
            "active-learning loop (`activedet run`) passes the unlabelled pool. Set semi_supervised: null to "
            "train on the labelled images alone"
        )
    return TeacherStudent(
        semi_supervised,
        unlabelled,
        batch_size=semi_supervised.unlabelled_batch_size(options.batch_size),
        hflip_prob=options.hflip_prob,
        seed=options.seed,
    )


def _validate(model, val_set, options, device, batch_size) -> float:
    """``options.val_metric`` on ``val_set``: accuracy for a classifier, VOC mAP for a detector (the name was
    checked by :func:`_check_task_options`)."""
    # evaluation imports nothing from engine; kept local to avoid a cycle
    from ..evaluation import accuracy, voc_map

    predictions = predict_dataset(model, val_set, device=device, batch_size=batch_size)
    metrics = (accuracy if _task(model) == "classification" else voc_map)(val_set, predictions)
    return float(metrics[options.val_metric])


def train_detector(
    model: torch.nn.Module,
    train_set: DetectionDataset,
    *,
    unlabelled: DetectionDataset | None = None,
    val_set: DetectionDataset | None = None,
    options: TrainOptions | None = None,
    out_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    resume: bool = False,
    progress: bool = True,
    semi_supervised: TeacherStudentOptions | None = None,
) -> TrainResult:
    """Train ``model`` (a torchvision-style detector returning a loss dict in train mode) on ``train_set``.

    Args:
        model: detector built by :func:`activedet.models.build_detector`, the ``classifier`` included (validated
            with :func:`activedet.evaluation.accuracy` instead of VOC mAP); trained in place.
        train_set: training records (e.g. ``pool.subset(labelled_indices)``).
        unlabelled: the unlabelled images: trained on by ``semi_supervised``, ignored otherwise (part of the
            interface of :mod:`activedet.engine.trainers`).
        val_set: optional validation records: enables best-epoch selection and early stopping. When given, the
            model ends with the weights of the best validation epoch. Never pass the test split here.
        options: :class:`TrainOptions`.
        out_dir: where ``last.pt``, ``best.pt`` and ``train_log.jsonl`` go (rank 0 writes); ``None`` keeps
            everything in memory (no resume possible).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... chosen now, not at import.
        resume: continue from ``out_dir/last.pt`` if it exists (same options required).
        progress: show a progress bar (rank 0).
        semi_supervised: :class:`~activedet.engine.teacher.TeacherStudentOptions`: train a student on
            ``train_set`` and teacher pseudo boxes on ``unlabelled``; the model ends with the teacher's weights
            (see :mod:`activedet.engine.teacher`). ``None``: supervised training.
    """
    options = options or TrainOptions()
    _check_task_options(model, options, validating=val_set is not None)
    teacher = _teacher_hook(model, unlabelled, options, semi_supervised)
    device = dist_utils.resolve_device(device)
    started = time.perf_counter()
    out = output_dir(out_dir)
    model.to(device)
    ddp_model = model
    if dist_utils.is_distributed():
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    loader, _ = train_loader(train_set, options)
    tensorboard = hooks.TensorBoard.for_options(options, out, len(loader))
    optimizer = build_optimizer(model, options)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_lr_lambda(options, len(loader)))
    use_amp = options.amp and device.type == "cuda"
    evaluate = None
    if val_set is not None:

        def evaluate(m):
            return _validate(m, val_set, options, device, max(1, options.batch_size))

    best = out / hooks.TRAINING_FILES["best"] if out is not None else None
    best_epoch = hooks.BestEpoch(
        evaluate,
        options.val_metric,
        options.eval_every,
        options.early_stopping_patience,
        best,
        module=teacher.evaluated_model if teacher is not None else None,
    )
    checkpoint = hooks.Checkpoint(out, resume, options.epoch_checkpoints)
    trainer = DetectorTrainer(
        model,
        loader,
        optimizer,
        max_epochs=options.epochs,
        device=device,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type, enabled=use_amp),
        amp=use_amp,
        grad_clip=options.grad_clip,
        forward_model=ddp_model,
        hooks=[
            hooks.SeedEpochs(options.seed),
            *([teacher] if teacher is not None else []),  # before BestEpoch: the best weights restored win
            best_epoch,
            hooks.Progress(progress),
            hooks.TrainingLog(out / hooks.TRAINING_FILES["log"] if out is not None else None, every=options.log_every),
            *tensorboard,
            checkpoint,
        ],
    )
    trainer.train()
    return TrainResult(
        epochs_completed=len(trainer.history),
        best_epoch=best_epoch.best_epoch,
        best_metric=best_epoch.best_metric,
        stopped_early=trainer.should_stop,
        history=trainer.history,
        last_checkpoint=checkpoint.last,
        best_checkpoint=best,
        wall_time_s=time.perf_counter() - started,
    )
