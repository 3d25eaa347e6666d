"""Detector training in the shape of torchvision's ``references/detection/engine.py``, ready for torchrun.

The loop, in one process or many::

    for epoch in range(start_epoch, epochs):
        seed the epoch (sampler permutation, augmentation, torchvision's samplers)
        for images, targets in loader:              # DistributedSampler: this rank's share of the batch
            loss = sum(model(images, targets).values())    # images of loss weight != 1: weighted_loss_dict
            backward (AMP on CUDA), clip, step, per-iteration lr schedule, log a JSON line
        evaluate on the validation split (every `eval_every` epochs), keep the best, stop early on a plateau
        save last.pt atomically (rank 0), barrier

``batch_size`` is the **global** batch: each of W processes takes ``batch_size / W`` images, and DDP's gradient
average makes a step equal to the one-process step on the same images (exactly so for losses that average over
images and for frozen/group normalisation; BatchNorm statistics are per process).

Each record's ``loss_weight`` (1 for human labels, λ for pseudo labels, see :mod:`activedet.engine.pseudo`) scales
its image's loss: see :func:`weighted_loss_dict`. Images of weight 0 are left out of the epochs altogether.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._faults import kill_point
from ..data.records import DetectionDataset
from ..data.torch_dataset import DetectionTorchDataset, collate_detection
from ..models._common import unwrap_ddp
from . import distributed as dist_utils
from .checkpoint import load_checkpoint, save_checkpoint
from .inference import predict_dataset
from .options import OptionError, TrainOptions

__all__ = ["OptionError", "TrainOptions", "TrainResult", "train_detector", "build_optimizer", "build_lr_lambda",
           "weighted_loss_dict"]

#: the keys ``val_metric`` may name, per model ``task`` (a model without a ``task`` attribute is a detector)
VAL_METRICS = {"detection": ("mAP_11pt", "mAP_area"), "classification": ("mean_per_class", "top1")}
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
        return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum,
                               weight_decay=options.weight_decay)
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


def _output_dir(out_dir: str | Path | None) -> tuple[Path | None, "_JsonLog"]:
    """``out_dir`` as a Path (created by rank 0) and the ``train_log.jsonl`` log in it (``None``: in memory)."""
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and dist_utils.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    return out, _JsonLog(out / "train_log.jsonl" if out is not None else None)


class _JsonLog:
    """Append-only JSON-lines log written by rank 0 only; ``tensorboard`` also receives every record."""

    def __init__(self, path: Path | None):
        self.path = path if dist_utils.is_main_process() else None
        self.tensorboard = None

    def write(self, **record) -> None:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.record(record)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def _attach_tensorboard(log: _JsonLog, out: Path | None, options: "TrainOptions", iters_per_epoch: int) -> None:
    """With ``options.tensorboard``, send the log's records to ``out/tensorboard`` too (rank 0 writes)."""
    if not options.tensorboard:
        return
    from ..tensorboard import TrainingScalars, require_tensorboard  # optional dependency: imported on demand

    if out is None:
        raise ValueError("The 'tensorboard' training option needs an out_dir to write to; training with "
                         "out_dir=None keeps everything in memory")
    require_tensorboard()  # on every rank, so no rank waits at a barrier for one that failed
    if dist_utils.is_main_process():
        log.tensorboard = TrainingScalars(out / "tensorboard", iters_per_epoch)


def _loader(train_set: DetectionDataset, options: TrainOptions, seed: int | None = None
            ) -> tuple[torch.utils.data.DataLoader, object]:
    """This rank's shuffled, augmented loader of ``train_set`` and its sampler (``seed``: ``options.seed``)."""
    world = dist_utils.world_size()
    seed = options.seed if seed is None else seed
    if options.batch_size % world:
        raise ValueError(f"The 'batch_size' training option ({options.batch_size}) must be divisible by the number "
                         f"of processes ({world}); it is the global batch size")
    # weight 0 images would only dilute their batch's mean loss; leaving them out keeps training exactly as
    # without them (same sampler order and schedule)
    weighted = [i for i, record in enumerate(train_set.records) if record.loss_weight > 0]
    if train_set.records and not weighted:
        raise ValueError(f"all {len(train_set)} training images have loss_weight 0; nothing to train on")
    if world > 1 and any(record.loss_weight not in (0.0, 1.0) for record in train_set.records):
        # a weighted batch runs one forward per weight group, and processes whose shares hold different groups
        # would run different numbers of DDP forwards (mismatched collectives: a hang)
        raise ValueError("per-image loss weights other than 0 and 1 (pseudo_labels.loss_weight) are not supported "
                         f"under torchrun ({world} processes); set pseudo_labels.loss_weight to 1.0 or run in one "
                         "process")
    data = DetectionTorchDataset(train_set, weighted, train=True, hflip_prob=options.hflip_prob,
                                 scale_jitter=options.scale_jitter, color_jitter=options.color_jitter,
                                 ssd_augment=options.ssd_augment, seed=seed)
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=world, rank=dist_utils.rank(),
                                                  shuffle=True, seed=seed, drop_last=False)
    loader = torch.utils.data.DataLoader(data, batch_size=options.batch_size // world, sampler=sampler,
                                         num_workers=options.num_workers, collate_fn=collate_detection)
    return loader, sampler


def _reduce_losses(loss_dict: dict[str, torch.Tensor]) -> dict[str, float]:
    values = torch.stack([v.detach().float() for v in loss_dict.values()])
    if dist_utils.is_distributed():
        torch.distributed.all_reduce(values)
        values /= dist_utils.world_size()
    return {k: float(v) for k, v in zip(loss_dict, values)}


def weighted_loss_dict(model, images: list[torch.Tensor], targets: list[dict], weights: list[float]
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


def _loss_weights(loader, targets: list[dict]) -> list[float]:
    """The ``loss_weight`` of each target's record (``index`` is the position in the training set)."""
    records = loader.dataset.dataset.records
    return [records[int(t["index"])].loss_weight for t in targets]


def _train_one_epoch(model, loader, optimizer, scheduler, scaler, options, epoch, device, log, progress):
    model.train()
    use_amp = options.amp and device.type == "cuda"
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{options.epochs}", leave=False,
               disable=not (progress and dist_utils.is_main_process()))
    sums: dict[str, float] = {}
    for step, (images, targets) in enumerate(bar):
        weights = _loss_weights(loader, targets)
        images = [img.to(device) for img in images]
        targets = [{k: v.to(device) for k, v in t.items() if k != "index"} for t in targets]
        with torch.autocast(device.type, enabled=use_amp):
            if all(w == 1.0 for w in weights):  # human labels only: exactly the unweighted step
                loss_dict = model(images, targets)
            else:
                loss_dict = weighted_loss_dict(model, images, targets, weights)
            loss = sum(loss_dict.values())
        reduced = _reduce_losses(loss_dict)
        total = sum(reduced.values())
        if not math.isfinite(total):
            raise FloatingPointError(f"training loss is {total} at epoch {epoch + 1}, iteration {step} "
                                     f"({reduced}); lower 'lr', raise 'warmup_iters' or set 'grad_clip'")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if options.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        for k, v in reduced.items():
            sums[k] = sums.get(k, 0.0) + v
        if step % options.log_every == 0:
            lr = optimizer.param_groups[0]["lr"]
            log.write(event="iter", epoch=epoch + 1, iter=step, lr=lr, loss=total, **reduced)
            bar.set_postfix(loss=f"{total:.3f}", lr=f"{lr:.2e}")
    return {k: v / max(1, len(loader)) for k, v in sums.items()}


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
        raise OptionError("scale_jitter", f"a float in [0, {CLASSIFICATION_MAX_SCALE_JITTER}] for a classifier "
                          "(a larger zoom crops away the whole-image box that carries the label)", options.scale_jitter)
    if task == "classification" and options.ssd_augment:
        raise OptionError("ssd_augment", "false for a classifier (its random crop can cut away the whole-image box "
                          "that carries the label)", options.ssd_augment)


def _validate(model, val_set, options, device, batch_size) -> float:
    """``options.val_metric`` on ``val_set``: accuracy for a classifier, VOC mAP for a detector (the name was
    checked by :func:`_check_task_options`)."""
    # evaluation imports nothing from engine; kept local to avoid a cycle
    from ..evaluation import accuracy, voc_map

    predictions = predict_dataset(model, val_set, device=device, batch_size=batch_size)
    metrics = (accuracy if _task(model) == "classification" else voc_map)(val_set, predictions)
    return float(metrics[options.val_metric])


def _restore(path: Path, model, optimizer, scheduler, scaler, device, epochs: int) -> dict:
    state = load_checkpoint(path, map_location=device)
    model.load_state_dict(state["model"])
    if "optimizer" not in state:  # reduced to the weights when training ended (epoch_checkpoints)
        if state["epoch"] < epochs:
            raise ValueError(f"{path} holds only the weights of a training that ended at epoch {state['epoch']}, so "
                             f"it cannot continue to epoch {epochs}; train in a new out_dir (or keep the optimizer "
                             "state with epoch_checkpoints: all)")
        return state
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state


def _state(model, optimizer, scheduler, scaler, epoch, best_metric, best_epoch, bad_evals, history) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch, "best_metric": best_metric, "best_epoch": best_epoch,
            "bad_evals": bad_evals, "history": history}


def _finish_checkpoints(out: Path, state: dict, model, options: TrainOptions) -> None:
    """Reduce ``out`` to what ``options.epoch_checkpoints`` keeps (rank 0, once training has ended). Each step
    leaves a directory from which a resume ends with the same model."""
    if options.epoch_checkpoints == "all" or "optimizer" not in state:
        return
    # the file, not ``state``: its tensors are the model's own, which may now hold the best epoch's weights
    slim = {k: v for k, v in load_checkpoint(out / "last.pt").items() if k not in ("optimizer", "scheduler", "scaler")}
    if options.epoch_checkpoints == "last":
        slim.update(model=model.state_dict(), final=True)  # the weights training ends with: best.pt is not needed
    save_checkpoint(out / "last.pt", slim)
    if options.epoch_checkpoints == "last":
        (out / "best.pt").unlink(missing_ok=True)


def train_detector(model: torch.nn.Module, train_set: DetectionDataset, *,
                   unlabelled: DetectionDataset | None = None, val_set: DetectionDataset | None = None,
                   options: TrainOptions | None = None, out_dir: str | Path | None = None,
                   device: str | torch.device = "auto", resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``model`` (a torchvision-style detector returning a loss dict in train mode) on ``train_set``.

    Args:
        model: detector built by :func:`activedet.models.build_detector`, the ``classifier`` included (validated
            with :func:`activedet.evaluation.accuracy` instead of VOC mAP); trained in place.
        train_set: training records (e.g. ``pool.subset(labelled_indices)``).
        unlabelled: ignored (supervised training); part of the interface of :mod:`activedet.engine.trainers`.
        val_set: optional validation records: enables best-epoch selection and early stopping. When given, the
            model ends with the weights of the best validation epoch. Never pass the test split here.
        options: :class:`TrainOptions`.
        out_dir: where ``last.pt``, ``best.pt`` and ``train_log.jsonl`` go (rank 0 writes); ``None`` keeps
            everything in memory (no resume possible).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... chosen now, not at import.
        resume: continue from ``out_dir/last.pt`` if it exists (same options required).
        progress: show a progress bar (rank 0).
    """
    options = options or TrainOptions()
    _check_task_options(model, options, validating=val_set is not None)
    device = dist_utils.resolve_device(device)
    started = time.perf_counter()
    out, log = _output_dir(out_dir)
    model.to(device)
    ddp_model = model
    if dist_utils.is_distributed():
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    loader, sampler = _loader(train_set, options)
    _attach_tensorboard(log, out, options, len(loader))
    optimizer = build_optimizer(model, options)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_lr_lambda(options, len(loader)))
    scaler = torch.amp.GradScaler(device.type, enabled=options.amp and device.type == "cuda")

    start_epoch, best_metric, best_epoch, bad_evals, history = 0, None, None, 0, []
    last = out / "last.pt" if out is not None else None
    best = out / "best.pt" if out is not None else None
    state: dict = {}
    if resume and last is not None and last.is_file():
        state = _restore(last, model, optimizer, scheduler, scaler, device, options.epochs)
        start_epoch, best_metric, best_epoch = state["epoch"], state["best_metric"], state["best_epoch"]
        bad_evals, history = state["bad_evals"], list(state["history"])
        log.write(event="resume", epoch=start_epoch)

    stopped_early, best_state = False, None
    for epoch in range(start_epoch, options.epochs):
        if stopped_early:
            break
        sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        # torchvision's RPN/RoI samplers draw from the global RNG; seeding per epoch makes resume exact.
        torch.manual_seed(options.seed * 100_003 + epoch)
        losses = _train_one_epoch(ddp_model, loader, optimizer, scheduler, scaler, options, epoch, device, log,
                                  progress)
        entry = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in losses.items()}}
        is_best = False
        if val_set is not None and ((epoch + 1) % options.eval_every == 0 or epoch + 1 == options.epochs):
            metric = _validate(model, val_set, options, device, max(1, options.batch_size))
            entry[f"val_{options.val_metric}"] = metric
            is_best = best_metric is None or metric > best_metric
            if is_best:
                best_metric, best_epoch, bad_evals = metric, epoch + 1, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                bad_evals += 1
                stopped_early = (options.early_stopping_patience is not None
                                 and bad_evals >= options.early_stopping_patience)
        history.append(entry)
        log.write(event="epoch", **entry)
        if out is not None and dist_utils.is_main_process():
            state = _state(model, optimizer, scheduler, scaler, epoch + 1, best_metric, best_epoch, bad_evals,
                           history)
            if is_best:
                save_checkpoint(best, {"model": state["model"], "epoch": epoch + 1, "best_metric": best_metric})
            if options.epoch_checkpoints == "all":
                save_checkpoint(out / f"epoch_{epoch + 1}.pt", {"model": state["model"], "epoch": epoch + 1})
            save_checkpoint(last, state)
        dist_utils.barrier()
        kill_point("train_epoch", epoch + 1)
        if stopped_early:
            log.write(event="early_stop", epoch=epoch + 1, best_epoch=best_epoch)

    log.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    elif state.get("final"):  # resumed a finished training whose last.pt holds the weights it ended with
        pass
    elif best_epoch is not None and best is not None and best.is_file():  # resumed after the best epoch
        model.load_state_dict(load_checkpoint(best, map_location=device)["model"])
    if out is not None and dist_utils.is_main_process() and state:
        _finish_checkpoints(out, state, model, options)
    dist_utils.barrier()
    return TrainResult(epochs_completed=len(history), best_epoch=best_epoch, best_metric=best_metric,
                       stopped_early=stopped_early, history=history, last_checkpoint=last, best_checkpoint=best,
                       wall_time_s=time.perf_counter() - started)
