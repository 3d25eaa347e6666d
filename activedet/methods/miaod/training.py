"""MI-AOD's per-cycle training schedule (methods.md §3.3) as data, run by the one training loop
(:class:`~activedet.engine.trainer.Trainer`: one epoch per unit).

The schedule is a list of units; one unit is one mmcv "epoch" of the released code, i.e. ``repeat_labelled``
passes over the labelled set::

    label x label_epochs                                  all parameters; labelled batches: L_det + L_img
    repeat outer_loops times:
        min x adversarial_epochs    f1, f2 frozen;  each step pair: a labelled batch (L_det + L_img), then an
                                                    unlabelled batch (λ·discrepancy + pseudo-label L_img)
        max x adversarial_epochs    only f1, f2;    labelled batch (L_det), then unlabelled batch (λ·(1 - discrepancy))
        label x label_epochs        all parameters
    the last ``lr_drop_epochs`` units run at lr x lr_gamma

A fresh optimiser is built at each stage boundary (the released code starts a new runner per stage): the
:class:`MIAODStages` hook does it, with each stage's trainable parameters and learning rate; :class:`MIAODTrainer`
draws the unit's batches and turns each labelled batch (with its unlabelled partner) into one or two steps. The
unlabelled training images are a random subset of the unlabelled pool, as many as the labelled images,
redrawn every cycle from the training seed; their labels are removed before they reach the model. After every
unit ``last.pt`` is written atomically, so a run killed in the middle of any stage resumes at the next unit and
ends with the same weights as an uninterrupted one (CPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ...data.records import DetectionDataset, ImageRecord
from ...engine import distributed as dist_utils
from ...engine import hooks
from ...engine.pseudo import PseudoLabelRecord
from ...engine.train import OptionError, TrainOptions, TrainResult, build_optimizer, train_loader, warmup_multiplier
from ...engine.trainer import HookBase, Trainer

__all__ = [
    "MIAODOptions",
    "miaod_schedule",
    "train_miaod",
    "stage_parameters",
    "MIAODTrainer",
    "MIAODStages",
    "TRAINERS",
    "DETECTOR_TRAINING",
    "REFUSED_KEYS",
]


@dataclass
class MIAODOptions:
    """The MI-AOD schedule (``training_options`` in a config); defaults are the released VOC config's.

    Attributes:
        label_epochs: units of label-set training at the start and closing each outer loop (``epoch_ratio[0]``=3).
        adversarial_epochs: units of each minimising and maximising stage (``epoch_ratio[1]`` = 1).
        outer_loops: repeats of (min, max, label) (``epoch`` = 2).
        repeat_labelled: passes over the labelled set per unit (``X_L_repeat`` = 2).
        lr_drop_epochs: final units run at ``lr * lr_gamma`` (1: the released step at the last mmcv epoch).
        unlabelled_ratio: unlabelled training images per labelled image (1.0: as many, as the released code).
        warmup_per_stage: ``False``: the linear warm-up (``warmup_iters``) runs once, at the start of the cycle;
            ``True``: it restarts with every stage, as the released COCO config does (mmcv's warm-up counts the
            iterations of each new runner, and the released code starts one per stage).
        adversarial_lr_scale: multiplier (in (0, 1]) of the learning rate of the unlabelled steps of the ``min``
            and ``max`` stages (the discrepancy steps, with the pseudo-label MIL loss in ``min``); the labelled steps
            of those stages keep the unit's lr. 1.0 (the default) is the released recipe. Meant for adaptive
            optimisers, whose step does not shrink with the small gradient of the discrepancy sum as SGD's does; on
            its own it did not stop the maximising stage from wrecking f1/f2 with AdamW on the bench data
            (docs/benchmarks.md, MI-AOD section), so it is not on by default; ``warmup_per_stage`` did: a fresh
            Adam's first steps move every weight by about ``lr`` whatever its gradient.
        optimizer_per_stage: ``True`` (the released recipe): a fresh optimiser at every stage, over the stage's
            trainable parameters; ``False``: one optimiser for the whole cycle, over every trainable parameter,
            whose state (Adam's moments, SGD's momentum) carries across the stages; a stage's frozen parameters
            get no gradient, so the optimiser leaves them alone. A deviation for adaptive optimisers, whose
            restarted moment estimates make each stage's first steps large; on the bench data it lowered the
            200-image detector (docs/benchmarks.md, MI-AOD section), so it is off by default.
    """

    label_epochs: int = 3
    adversarial_epochs: int = 1
    outer_loops: int = 2
    repeat_labelled: int = 2
    lr_drop_epochs: int = 1
    unlabelled_ratio: float = 1.0
    warmup_per_stage: bool = False
    adversarial_lr_scale: float = 1.0
    optimizer_per_stage: bool = True

    def __post_init__(self) -> None:
        for name in ("label_epochs", "adversarial_epochs", "repeat_labelled"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise OptionError(f"training_options.{name}", "an int >= 1", value)
        for name in ("outer_loops", "lr_drop_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise OptionError(f"training_options.{name}", "an int >= 0", value)
        for name in ("warmup_per_stage", "optimizer_per_stage"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"training_options.{name}", "true or false", getattr(self, name))
        scale = self.adversarial_lr_scale
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale <= 1:
            raise OptionError("training_options.adversarial_lr_scale", "a float in (0, 1]", scale)
        ratio = self.unlabelled_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 100:
            raise OptionError("training_options.unlabelled_ratio", "a float in (0, 100]", ratio)
        if self.lr_drop_epochs > self.label_epochs:
            raise OptionError(
                "training_options.lr_drop_epochs", f"at most label_epochs ({self.label_epochs})", self.lr_drop_epochs
            )

    @classmethod
    def from_dict(cls, options: dict) -> MIAODOptions:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise OptionError(
                f"training_options.{unknown[0]}", f"one of {valid} (options of training: miaod)", unknown[0]
            )
        return cls(**options)


@dataclass(frozen=True)
class Unit:
    """One unit of the schedule: which stage, which stage instance (for optimiser resets), lr multiplier."""

    stage: str
    block: int
    lr_factor: float


def miaod_schedule(options: MIAODOptions, lr_gamma: float = 0.1) -> list[Unit]:
    """The flat list of units (module docstring)."""
    blocks = [("label", options.label_epochs)]
    for _ in range(options.outer_loops):
        blocks += [
            ("min", options.adversarial_epochs),
            ("max", options.adversarial_epochs),
            ("label", options.label_epochs),
        ]
    units = [Unit(stage, b, 1.0) for b, (stage, n) in enumerate(blocks) for _ in range(n)]
    for k in range(len(units) - options.lr_drop_epochs, len(units)):
        units[k] = Unit(units[k].stage, units[k].block, lr_gamma)
    return units


def stage_parameters(model: torch.nn.Module, stage: str, base: dict[str, bool]) -> None:
    """Set ``requires_grad`` for ``stage``: all (``label``), all but f1/f2 (``min``), only f1/f2 (``max``).

    ``base`` is each parameter's ``requires_grad`` before training (frozen backbone layers stay frozen).
    """
    adversarial = {id(p) for m in model.head.adversarial_classifiers() for p in m.parameters()}
    for name, p in model.named_parameters():
        if stage == "label":
            p.requires_grad_(base[name])
        elif stage == "min":
            p.requires_grad_(base[name] and id(p) not in adversarial)
        else:
            p.requires_grad_(base[name] and id(p) in adversarial)


def _without_labels(record: ImageRecord) -> ImageRecord:
    return ImageRecord(record.image_id, record.file_name, record.width, record.height, image_index=record.image_index)


def _epochs(loader, first_epoch: int):
    """Batches of successive sampler epochs, forever (the unlabelled stream of the adversarial stages)."""
    epoch = first_epoch
    while True:
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


class MIAODTrainer(Trainer):
    """The :class:`~activedet.engine.trainer.Trainer` of one MI-AOD cycle: epoch ``u`` is unit ``units[u]``.

    A unit is ``repeat`` passes over the labelled loader; in the adversarial stages (``min``, ``max``) each labelled
    batch is paired with the next batch of the unlabelled stream, and one iteration is two optimizer steps: the
    labelled batch's losses (``l_*`` in the history), then the unlabelled batch's (``u_*``), each with the model's
    ``stage``. ``last.pt`` holds the weights, the stage's optimizer state, the units done and the history.
    """

    def __init__(
        self,
        model,
        labelled_loader,
        *,
        units: list[Unit],
        repeat: int,
        unlabelled_loader,
        lr: float,
        device: torch.device,
        grad_clip: float | None,
        adversarial_scale: float = 1.0,
        hooks=(),
    ):
        self.units, self.repeat, self.unlabelled_loader, self.lr = units, repeat, unlabelled_loader, lr
        self.adversarial_scale = adversarial_scale
        self.resumed_optimizer: tuple[int, dict] | None = None  # (block, state) of a resumed stage
        super().__init__(
            model, labelled_loader, None, max_epochs=len(units), device=device, grad_clip=grad_clip, hooks=hooks
        )

    @property
    def unit(self) -> Unit:
        return self.units[self.epoch]

    @property
    def iters_per_epoch(self) -> int:
        return self.repeat * len(self.loader)

    def describe(self) -> str:
        return f"miaod {self.epoch + 1}/{len(self.units)} {self.unit.stage}"

    def batches(self):
        """``(images, targets, unlabelled images or None)`` for every labelled batch of the unit's passes."""
        u = self.epoch
        stream = None
        if self.unit.stage != "label" and self.unlabelled_loader is not None:
            stream = _epochs(self.unlabelled_loader, u * self.repeat)
        for r in range(self.repeat):
            self.loader.sampler.set_epoch(u * self.repeat + r)
            self.loader.dataset.set_epoch(u * self.repeat + r)
            for images, targets in self.loader:
                yield images, targets, (next(stream)[0] if stream is not None else None)

    def forward_losses(self, batch):
        images, targets, unlabelled = batch
        targets = [{k: v.to(self.device) for k, v in t.items() if k != "index"} for t in targets]
        parts = [("l_", images, targets)] + ([("u_", unlabelled, None)] if unlabelled is not None else [])
        for prefix, imgs, tgts in parts:
            losses = self.forward_model([img.to(self.device) for img in imgs], tgts, stage=self.unit.stage)
            scale = self.adversarial_scale if prefix == "u_" else 1.0
            for group in self.optimizer.param_groups:  # the step taken on this dict runs at the scaled lr
                group["lr"] *= scale
            yield {prefix + k: v for k, v in losses.items()}
            for group in self.optimizer.param_groups:
                group["lr"] /= scale

    def epoch_entry(self, means: dict[str, float]) -> dict:
        return {
            "unit": self.epoch + 1,
            "stage": self.unit.stage,
            "lr": self.lr * self.unit.lr_factor,
            **(
                {"adversarial_lr": self.lr * self.unit.lr_factor * self.adversarial_scale}
                if self.unit.stage != "label"
                else {}
            ),
            **{f"train_{k}": v for k, v in means.items()},
        }

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "unit": self.epoch + 1,
            "block": self.unit.block,
            "history": self.history,
        }

    def load_state_dict(self, state: dict, source: str = "the checkpoint") -> None:
        self.model.load_state_dict(state["model"])
        self.start_epoch, self.history = state["unit"], list(state["history"])
        self.resumed_optimizer = (state["block"], state["optimizer"])
        self.log(event="resume", unit=self.start_epoch)


class MIAODStages(HookBase):
    """Switches MI-AOD's stages: at each new stage its trainable parameters (:func:`stage_parameters`), a fresh
    optimiser (the resumed one when a resume lands inside the stage it was saved in; with ``optimizer_per_stage``
    false one optimiser over every trainable parameter, built at the first stage and resumed whatever the stage)
    and, under torchrun, a new DDP wrapper; before each iteration the unit's learning rate with the linear warm-up
    (counted from the cycle's start, or from the stage's with ``warmup_per_stage``). At the end every parameter is
    back to its own ``requires_grad``.
    """

    def __init__(self, options: TrainOptions, warmup_per_stage: bool, optimizer_per_stage: bool = True):
        self.options, self.warmup_per_stage = options, warmup_per_stage
        self.optimizer_per_stage = optimizer_per_stage
        self.block = None

    def before_train(self) -> None:
        trainer = self.trainer
        self.base = {name: p.requires_grad for name, p in trainer.model.named_parameters()}
        self.stage_start = {}  # block -> global iteration of its first step (the per-stage warm-up counts from there)
        for k, unit in enumerate(trainer.units):
            self.stage_start.setdefault(unit.block, k * trainer.iters_per_epoch)

    def before_epoch(self) -> None:
        trainer, unit = self.trainer, self.trainer.unit
        if unit.block == self.block:
            return
        first, self.block = self.block is None, unit.block
        if self.optimizer_per_stage or first:
            # per stage: over the stage's parameters; one for the cycle: over all of them (the "label" stage's)
            stage_parameters(trainer.model, unit.stage if self.optimizer_per_stage else "label", self.base)
            trainer.optimizer = build_optimizer(trainer.model, self.options)
            if trainer.resumed_optimizer is not None:
                if not self.optimizer_per_stage or trainer.resumed_optimizer[0] == unit.block:
                    trainer.optimizer.load_state_dict(trainer.resumed_optimizer[1])
                trainer.resumed_optimizer = None
        stage_parameters(trainer.model, unit.stage, self.base)
        trainer.forward_model = trainer.model
        if dist_utils.is_distributed():
            device = trainer.device
            trainer.forward_model = torch.nn.parallel.DistributedDataParallel(
                trainer.model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
            )

    def before_step(self) -> None:
        trainer, unit = self.trainer, self.trainer.unit
        warm_step = trainer.iter - self.stage_start[unit.block] if self.warmup_per_stage else trainer.iter
        lr = self.options.lr * unit.lr_factor * warmup_multiplier(self.options, warm_step)
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr

    def after_train(self) -> None:
        stage_parameters(self.trainer.model, "label", self.base)


def train_miaod(
    model: torch.nn.Module,
    train_set: DetectionDataset,
    *,
    unlabelled: DetectionDataset | None = None,
    val_set: DetectionDataset | None = None,
    options: TrainOptions | None = None,
    training_options: MIAODOptions | dict | None = None,
    out_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train an MI-AOD detector (:class:`~activedet.methods.miaod.model.MIAODRetinaNet`) for one cycle.

    Args:
        model: the detector, trained in place.
        train_set: the labelled images; every ``loss_weight`` must be 1 (pseudo-labelled images are refused: MI-AOD's
            stages use the unlabelled pool their own way).
        unlabelled: the unlabelled pool; the schedule trains on a random subset of it (``unlabelled_ratio``
            times the labelled count, drawn from ``options.seed``). ``None`` or empty: the adversarial stages
            see only labelled batches.
        val_set: accepted for the trainer interface; MI-AOD evaluates only at the end (the released code).
        options: optimiser, lr, warm-up, batch size, augmentation, ``lr_gamma`` (the final drop), ``log_every``
            and ``epoch_checkpoints`` (an epoch is a unit here); ``epochs`` and ``lr_schedule`` are replaced by the
            schedule, and training is in fp32 (``amp`` is not used).
        training_options: :class:`MIAODOptions` (or a dict of its fields).
        out_dir, device, resume, progress: as :func:`~activedet.engine.train.train_detector`.
    """
    options = options or TrainOptions()
    if not isinstance(training_options, MIAODOptions):
        training_options = MIAODOptions.from_dict(dict(training_options or {}))
    if not hasattr(model.head, "adversarial_classifiers"):
        raise ValueError(
            f"training 'miaod' needs the 'miaod' detector (two adversarial classifiers); got "
            f"{type(model).__name__}. Set detector: miaod or training: standard"
        )
    weighted = [r.image_id for r in train_set.records if r.loss_weight != 1.0 or isinstance(r, PseudoLabelRecord)]
    if weighted:
        raise ValueError(
            f"training 'miaod' does not support per-image loss weights (pseudo labels): "
            f"{len(weighted)} training image(s) are pseudo-labelled or weighted, e.g. {weighted[0]!r}. "
            "Train pseudo labels with training: standard, or turn pseudo labelling off"
        )
    device = dist_utils.resolve_device(device)
    started = time.perf_counter()
    labelled_loader, _ = train_loader(train_set, options)  # checks batch_size against the processes
    out = hooks.output_dir(out_dir)
    tensorboard = hooks.TensorBoard.for_options(options, out, len(labelled_loader))
    model.to(device)
    units = miaod_schedule(training_options, options.lr_gamma)

    unlabelled_loader = None
    if unlabelled is not None and len(unlabelled):
        count = min(len(unlabelled), max(1, round(training_options.unlabelled_ratio * len(train_set))))
        rng = np.random.default_rng([options.seed, 0x6D69616F64])  # "miaod": independent of the labelled order
        chosen = np.sort(rng.choice(len(unlabelled), size=count, replace=False))
        images_only = DetectionDataset(
            [_without_labels(unlabelled.records[i]) for i in chosen],
            unlabelled.class_names,
            unlabelled.category_ids,
            unlabelled.root,
        )
        unlabelled_loader, _ = train_loader(images_only, options, options.seed + 1)

    checkpoint = hooks.Checkpoint(out, resume, options.epoch_checkpoints)
    trainer = MIAODTrainer(
        model,
        labelled_loader,
        units=units,
        repeat=training_options.repeat_labelled,
        unlabelled_loader=unlabelled_loader,
        lr=options.lr,
        device=device,
        grad_clip=options.grad_clip,
        adversarial_scale=float(training_options.adversarial_lr_scale),
        hooks=[
            MIAODStages(options, training_options.warmup_per_stage, training_options.optimizer_per_stage),
            hooks.SeedEpochs(options.seed),
            hooks.Progress(progress),
            hooks.TrainingLog(
                out / hooks.TRAINING_FILES["log"] if out is not None else None,
                every=options.log_every,
                epoch_event="unit",
            ),
            *tensorboard,
            checkpoint,
        ],
    )
    trainer.train()
    return TrainResult(
        epochs_completed=len(trainer.history),
        best_epoch=None,
        best_metric=None,
        stopped_early=False,
        history=trainer.history,
        last_checkpoint=checkpoint.last,
        wall_time_s=time.perf_counter() - started,
    )


#: The training procedure this method adds to ``activedet.engine.trainers`` (:mod:`activedet.plugins`):
#: name -> (trainer, the options class ``training_options`` is validated by).
TRAINERS = {"miaod": (train_miaod, MIAODOptions)}

#: ``training: auto`` for the ``miaod`` detector picks this procedure.
DETECTOR_TRAINING = {"miaod": "miaod"}

#: The config keys this procedure cannot be combined with (they must be null), each with the reason the config
#: check gives.
REFUSED_KEYS = {
    "miaod": {
        "pseudo_labels": "MI-AOD trains on the unlabelled images its own way; pseudo labels need training 'standard'"
    }
}
