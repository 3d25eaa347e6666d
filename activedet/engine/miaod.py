"""MI-AOD's per-cycle training schedule (methods.md §3.3) as data, run by one plain PyTorch loop.

The schedule is a list of units; one unit is one mmcv "epoch" of the released code, i.e. ``repeat_labelled``
passes over the labelled set::

    label x label_epochs                                  all parameters; labelled batches: L_det + L_img
    repeat outer_loops times:
        min x adversarial_epochs    f1, f2 frozen;  each step pair: a labelled batch (L_det + L_img), then an
                                                    unlabelled batch (λ·discrepancy + pseudo-label L_img)
        max x adversarial_epochs    only f1, f2;    labelled batch (L_det), then unlabelled batch (λ·(1 - discrepancy))
        label x label_epochs        all parameters
    the last ``lr_drop_epochs`` units run at lr x lr_gamma

A fresh optimiser is built at each stage boundary (the released code starts a new runner per stage). The
unlabelled training images are a random subset of the unlabelled pool, as many as the labelled images,
redrawn every cycle from the training seed; their labels are removed before they reach the model. After every
unit ``last.pt`` is written atomically, so a run killed in the middle of any stage resumes at the next unit and
ends with the same weights as an uninterrupted one (CPU).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._faults import kill_point
from ..data.records import DetectionDataset, ImageRecord
from .pseudo import PseudoLabelRecord
from . import distributed as dist_utils
from .checkpoint import load_checkpoint, save_checkpoint
from .train import (OptionError, TrainOptions, TrainResult, _attach_tensorboard, _loader, _output_dir,
                    _reduce_losses, build_optimizer, warmup_multiplier)

__all__ = ["MIAODOptions", "miaod_schedule", "train_miaod", "stage_parameters"]


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
    """

    label_epochs: int = 3
    adversarial_epochs: int = 1
    outer_loops: int = 2
    repeat_labelled: int = 2
    lr_drop_epochs: int = 1
    unlabelled_ratio: float = 1.0
    warmup_per_stage: bool = False

    def __post_init__(self) -> None:
        for name in ("label_epochs", "adversarial_epochs", "repeat_labelled"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise OptionError(f"training_options.{name}", "an int >= 1", value)
        for name in ("outer_loops", "lr_drop_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise OptionError(f"training_options.{name}", "an int >= 0", value)
        if not isinstance(self.warmup_per_stage, bool):
            raise OptionError("training_options.warmup_per_stage", "true or false", self.warmup_per_stage)
        ratio = self.unlabelled_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 100:
            raise OptionError("training_options.unlabelled_ratio", "a float in (0, 100]", ratio)
        if self.lr_drop_epochs > self.label_epochs:
            raise OptionError("training_options.lr_drop_epochs", f"at most label_epochs ({self.label_epochs})",
                              self.lr_drop_epochs)

    @classmethod
    def from_dict(cls, options: dict) -> "MIAODOptions":
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise OptionError(f"training_options.{unknown[0]}", f"one of {valid} (options of training: miaod)",
                              unknown[0])
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
        blocks += [("min", options.adversarial_epochs), ("max", options.adversarial_epochs),
                   ("label", options.label_epochs)]
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
    return ImageRecord(record.image_id, record.file_name, record.width, record.height,
                       image_index=record.image_index)


def _epochs(loader, sampler, first_epoch: int):
    """Batches of successive sampler epochs, forever (the unlabelled stream of the adversarial stages)."""
    epoch = first_epoch
    while True:
        sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def train_miaod(model: torch.nn.Module, train_set: DetectionDataset, *, unlabelled: DetectionDataset | None = None,
                val_set: DetectionDataset | None = None, options: TrainOptions | None = None,
                training_options: MIAODOptions | dict | None = None, out_dir: str | Path | None = None,
                device: str | torch.device = "auto", resume: bool = False, progress: bool = True) -> TrainResult:
    """Train an MI-AOD detector (:class:`~activedet.models.miaod.MIAODRetinaNet`) for one cycle.

    Args:
        model: the detector, trained in place.
        train_set: the labelled images; every ``loss_weight`` must be 1 (pseudo-labelled images are refused: MI-AOD's
            stages use the unlabelled pool their own way).
        unlabelled: the unlabelled pool; the schedule trains on a random subset of it (``unlabelled_ratio``
            times the labelled count, drawn from ``options.seed``). ``None`` or empty: the adversarial stages
            see only labelled batches.
        val_set: accepted for the trainer interface; MI-AOD evaluates only at the end (the released code).
        options: optimiser, lr, warm-up, batch size, augmentation, ``lr_gamma`` (the final drop); ``epochs``
            and ``lr_schedule`` are replaced by the schedule.
        training_options: :class:`MIAODOptions` (or a dict of its fields).
        out_dir, device, resume, progress: as :func:`~activedet.engine.train.train_detector`.
    """
    options = options or TrainOptions()
    if not isinstance(training_options, MIAODOptions):
        training_options = MIAODOptions.from_dict(dict(training_options or {}))
    if not hasattr(model.head, "adversarial_classifiers"):
        raise ValueError(f"training 'miaod' needs the 'miaod' detector (two adversarial classifiers); got "
                         f"{type(model).__name__}. Set detector: miaod or training: standard")
    weighted = [r.image_id for r in train_set.records if r.loss_weight != 1.0 or isinstance(r, PseudoLabelRecord)]
    if weighted:
        raise ValueError(f"training 'miaod' does not support per-image loss weights (pseudo labels): "
                         f"{len(weighted)} training image(s) are pseudo-labelled or weighted, e.g. {weighted[0]!r}. "
                         "Train pseudo labels with training: standard, or turn pseudo labelling off")
    device = dist_utils.resolve_device(device)
    started = time.perf_counter()
    labelled_loader, labelled_sampler = _loader(train_set, options)  # checks batch_size against the processes
    out, log = _output_dir(out_dir)
    _attach_tensorboard(log, out, options, len(labelled_loader))
    model.to(device)
    units = miaod_schedule(training_options, options.lr_gamma)
    repeat = training_options.repeat_labelled

    unlabelled_stream = None
    if unlabelled is not None and len(unlabelled):
        count = min(len(unlabelled), max(1, round(training_options.unlabelled_ratio * len(train_set))))
        rng = np.random.default_rng([options.seed, 0x6D69616F64])  # "miaod": independent of the labelled order
        chosen = np.sort(rng.choice(len(unlabelled), size=count, replace=False))
        images_only = DetectionDataset([_without_labels(unlabelled.records[i]) for i in chosen],
                                       unlabelled.class_names, unlabelled.category_ids, unlabelled.root)
        unlabelled_loader, unlabelled_sampler = _loader(images_only, options, options.seed + 1)
    base = {name: p.requires_grad for name, p in model.named_parameters()}

    start, history, optimizer_state = 0, [], None
    last = out / "last.pt" if out is not None else None
    if resume and last is not None and last.is_file():
        state = load_checkpoint(last, map_location=device)
        model.load_state_dict(state["model"])
        start, history = state["unit"], list(state["history"])
        optimizer_state = state["optimizer"] if start < len(units) and units[start].block == state["block"] else None
        log.write(event="resume", unit=start)

    optimizer, ddp_model, block, global_step = None, model, None, start * repeat * len(labelled_loader)
    stage_start = {}  # block -> global step of its first iteration (the per-stage warm-up counts from there)
    for k, unit in enumerate(units):
        stage_start.setdefault(unit.block, k * repeat * len(labelled_loader))
    for u in range(start, len(units)):
        unit = units[u]
        if unit.block != block:  # a new stage: its trainable parameters and a fresh optimiser
            block = unit.block
            stage_parameters(model, unit.stage, base)
            optimizer = build_optimizer(model, options)
            if optimizer_state is not None:
                optimizer.load_state_dict(optimizer_state)
                optimizer_state = None
            ddp_model = model
            if dist_utils.is_distributed():
                ddp_model = torch.nn.parallel.DistributedDataParallel(
                    model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
        torch.manual_seed(options.seed * 100_003 + u)
        if unit.stage != "label" and unlabelled is not None and len(unlabelled):
            unlabelled_stream = _epochs(unlabelled_loader, unlabelled_sampler, u * repeat)
        else:
            unlabelled_stream = None
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(total=repeat * len(labelled_loader), desc=f"miaod {u + 1}/{len(units)} {unit.stage}",
                   leave=False, disable=not (progress and dist_utils.is_main_process()))
        for r in range(repeat):
            labelled_sampler.set_epoch(u * repeat + r)
            labelled_loader.dataset.set_epoch(u * repeat + r)
            for images, targets in labelled_loader:
                batches = [(images, targets)]
                if unlabelled_stream is not None:
                    batches.append((next(unlabelled_stream)[0], None))
                for imgs, tgts in batches:
                    imgs = [img.to(device) for img in imgs]
                    if tgts is not None:
                        tgts = [{k: v.to(device) for k, v in t.items() if k != "index"} for t in tgts]
                    warm_step = global_step - stage_start[unit.block] if training_options.warmup_per_stage \
                        else global_step
                    lr = options.lr * unit.lr_factor * warmup_multiplier(options, warm_step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss_dict = ddp_model(imgs, tgts, stage=unit.stage)
                    reduced = _reduce_losses(loss_dict)
                    total = sum(reduced.values())
                    if not math.isfinite(total):
                        raise FloatingPointError(f"MI-AOD loss is {total} in unit {u + 1} ({unit.stage}): {reduced}; "
                                                 "lower 'lr' or set 'grad_clip'")
                    optimizer.zero_grad(set_to_none=True)
                    sum(loss_dict.values()).backward()
                    if options.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                       options.grad_clip)
                    optimizer.step()
                    prefix = "l_" if tgts is not None else "u_"
                    for k, v in reduced.items():
                        sums[prefix + k] = sums.get(prefix + k, 0.0) + v
                global_step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{total:.3f}", lr=f"{lr:.2e}")
        bar.close()
        steps = max(1, repeat * len(labelled_loader))
        entry = {"unit": u + 1, "stage": unit.stage, "lr": options.lr * unit.lr_factor,
                 **{f"train_{k}": v / steps for k, v in sums.items()}}
        history.append(entry)
        log.write(event="unit", **entry)
        if last is not None and dist_utils.is_main_process():
            save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "unit": u + 1,
                                   "block": unit.block, "history": history})
        dist_utils.barrier()
        kill_point("train_epoch", u + 1)

    log.close()
    stage_parameters(model, "label", base)
    return TrainResult(epochs_completed=len(history), best_epoch=None, best_metric=None, stopped_early=False,
                       history=history, last_checkpoint=last, wall_time_s=time.perf_counter() - started)

