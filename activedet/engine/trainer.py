"""The one training loop: a :class:`Trainer` runs epochs of steps, and :class:`HookBase` objects do the rest.

Everything that is not "compute the losses, step the optimizer" (seeding, progress, logging, validation, best epoch,
early stopping, checkpoints, a method's stage switches, the teacher-student procedure's teacher) is a hook;
:mod:`activedet.engine.hooks` has the standard ones. :func:`activedet.engine.train.train_detector` and every
method's training procedure (:data:`activedet.engine.trainers.TRAINERS`) build a :class:`Trainer` and call
:meth:`Trainer.train`.

To customise training, prefer a hook (it composes with the others) to a subclass. Subclass to change what one step
or one epoch is: :meth:`Trainer.batches` (what an epoch iterates over), :meth:`Trainer.forward_losses` (the loss
dicts of one batch), :meth:`Trainer.epoch_entry` (the history record of an epoch) and the checkpoint state.
"""

from __future__ import annotations

import math

import torch

from . import distributed as dist_utils

__all__ = ["HookBase", "Trainer", "reduce_losses"]


def reduce_losses(loss_dict: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss dict as floats, averaged over the torchrun processes (one all-reduce)."""
    values = torch.stack([v.detach().float() for v in loss_dict.values()])
    if dist_utils.is_distributed():
        torch.distributed.all_reduce(values)
        values /= dist_utils.world_size()
    return {k: float(v) for k, v in zip(loss_dict, values)}


class HookBase:
    """Something that runs at fixed points of :meth:`Trainer.train`, which is::

        hook.before_train()                        # for every hook, in registration order
        for trainer.epoch in range(trainer.start_epoch, trainer.max_epochs):
            hook.before_epoch()
            for trainer.step, batch in enumerate(trainer.batches()):
                hook.before_step()
                trainer.run_step(batch)            # the only optimizer step (hooks' extra_losses join its loss)
                hook.after_step()
            trainer.history.append(trainer.entry)  # then hooks may add to the entry (validation metrics)
            hook.after_epoch()
            if trainer.should_stop:                # set by a hook (early stopping)
                break
        hook.after_train()

    A hook reads and changes the trainer through ``self.trainer`` (set by :meth:`Trainer.register_hooks`).
    Records passed to :meth:`Trainer.log` reach every hook's :meth:`write` (the JSON log, TensorBoard). A hook
    with state that a resume needs returns it from :meth:`state_dict` (flat keys of the checkpoint) and takes it
    back in :meth:`load_state_dict`.
    """

    trainer: Trainer = None

    def before_train(self) -> None:
        """Before the first epoch (after the trainer is built)."""

    def before_epoch(self) -> None:
        """Before the batches of ``trainer.epoch`` are drawn."""

    def before_step(self) -> None:
        """Before :meth:`Trainer.run_step` of step ``trainer.step`` (0-based within the epoch)."""

    def extra_losses(self) -> dict[str, torch.Tensor]:
        """Loss terms added to the step's loss dict before its backward pass, e.g. the teacher-student procedure's
        unlabelled loss (:mod:`activedet.engine.teacher`); called once for every loss dict of
        :meth:`Trainer.forward_losses` (one per step in the standard training). Default: none."""
        return {}

    def after_step(self) -> None:
        """After the step; ``trainer.step_losses`` holds its reduced losses."""

    def after_epoch(self) -> None:
        """After the epoch; ``trainer.entry`` is its history record (already in ``trainer.history``)."""

    def after_train(self) -> None:
        """After the last epoch, also when training stopped early."""

    def write(self, record: dict) -> None:
        """Receive one log record (``{"event": ..., ...}``) sent through :meth:`Trainer.log`."""

    def state_dict(self) -> dict:
        """Entries this hook adds to the checkpoint (flat keys)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore from a checkpoint written with :meth:`state_dict`'s entries."""


class Trainer:
    """Trains ``model`` for ``max_epochs`` epochs over ``loader``, with hooks.

    Args:
        model: the module being trained (its weights are what checkpoints hold).
        loader: the training batches, ``(images, targets)`` each (a DataLoader; its sampler's and dataset's
            ``set_epoch``, where they have one, are called before each epoch).
        optimizer: the optimizer (a hook may replace ``trainer.optimizer`` between epochs, as a staged schedule does).
        max_epochs: epochs to run; training starts at ``start_epoch`` (a resume sets it).
        device: where batches go.
        scheduler: stepped once after every step (``None``: the lr is left to a hook).
        scaler: a :class:`torch.amp.GradScaler` (``None``: a disabled one, i.e. plain fp32 steps).
        amp: run the forward under :func:`torch.autocast` on ``device``.
        grad_clip: clip the global gradient L2 norm of the optimizer's parameters (``None``: no clipping).
        forward_model: what the forward runs through (a DistributedDataParallel wrapper of ``model``); ``None``:
            ``model`` itself.
        hooks: :class:`HookBase` objects, run in this order at every point.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loader,
        optimizer: torch.optim.Optimizer | None,
        *,
        max_epochs: int,
        device: torch.device,
        scheduler=None,
        scaler: torch.amp.GradScaler | None = None,
        amp: bool = False,
        grad_clip: float | None = None,
        forward_model: torch.nn.Module | None = None,
        hooks=(),
    ):
        self.model, self.loader, self.optimizer = model, loader, optimizer
        self.forward_model = forward_model if forward_model is not None else model
        self.max_epochs, self.device, self.scheduler = max_epochs, device, scheduler
        self.amp, self.grad_clip = amp, grad_clip
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler(device.type, enabled=False)
        self.start_epoch, self.epoch, self.step, self.iter = 0, 0, 0, 0
        self.history: list[dict] = []
        self.entry: dict = {}
        self.step_losses: dict[str, float] = {}
        self.should_stop = False
        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)

    def register_hooks(self, hooks) -> None:
        """Append ``hooks`` (run after the ones already registered)."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def _call(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)()

    def log(self, **record) -> None:
        """Send one log record to every hook's :meth:`HookBase.write`."""
        for hook in self.hooks:
            hook.write(record)

    @property
    def iters_per_epoch(self) -> int:
        """Iterations (calls of :meth:`run_step`) in one epoch."""
        return len(self.loader)

    def train(self) -> None:
        """Run the loop shown in :class:`HookBase`."""
        self._call("before_train")
        self.iter = self.start_epoch * self.iters_per_epoch
        for epoch in range(self.start_epoch, self.max_epochs):
            self.epoch = epoch
            self._call("before_epoch")
            self.forward_model.train()
            self._sums: dict[str, float] = {}
            for step, batch in enumerate(self.batches()):
                self.step = step
                self._call("before_step")
                self.run_step(batch)
                self.iter += 1
                self._call("after_step")
            self.entry = self.epoch_entry({k: v / max(1, self.iters_per_epoch) for k, v in self._sums.items()})
            self.history.append(self.entry)
            self._call("after_epoch")
            if self.should_stop:
                break
        self._call("after_train")

    def batches(self):
        """The batches of ``self.epoch``: one pass over the loader (its sampler and dataset set to the epoch first,
        so the order and augmentation depend only on the seed and the epoch)."""
        for part in (getattr(self.loader, "sampler", None), getattr(self.loader, "dataset", None)):
            if hasattr(part, "set_epoch"):
                part.set_epoch(self.epoch)
        return self.loader

    def forward_losses(self, batch):
        """Yield the loss dicts of one batch, each a separate backward pass and optimizer step (the next one is
        computed after the previous step). One plain forward: ``model(images, targets)``."""
        images, targets = batch
        images = [img.to(self.device) for img in images]
        targets = [{k: v.to(self.device) for k, v in t.items() if k != "index"} for t in targets]
        with torch.autocast(self.device.type, enabled=self.amp):
            yield self.forward_model(images, targets)

    def run_step(self, batch) -> None:
        """One iteration: for each loss dict of :meth:`forward_losses` (with every hook's
        :meth:`~HookBase.extra_losses` added), check it is finite, backward (scaled under
        AMP), clip, optimizer step; then one scheduler step. ``step_losses`` holds the last dict's reduced values and
        the epoch's sums (``entry``'s ``train_*`` means) collect every dict's."""
        for loss_dict in self.forward_losses(batch):
            for hook in self.hooks:
                loss_dict = {**loss_dict, **hook.extra_losses()}
            reduced = reduce_losses(loss_dict)
            total = sum(reduced.values())
            if not math.isfinite(total):
                raise FloatingPointError(
                    f"training loss is {total} at {self.describe()}, iteration {self.step} "
                    f"({reduced}); lower 'lr', raise 'warmup_iters' or set 'grad_clip'"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(sum(loss_dict.values())).backward()
            if self.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                # the optimizer's parameters: a parameter frozen since an earlier stage keeps a stale gradient
                torch.nn.utils.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]], self.grad_clip
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step_losses = reduced
            for k, v in reduced.items():
                self._sums[k] = self._sums.get(k, 0.0) + v
        if self.scheduler is not None:
            self.scheduler.step()

    def describe(self) -> str:
        """Where training is, for progress and errors: ``epoch 3/12``."""
        return f"epoch {self.epoch + 1}/{self.max_epochs}"

    def epoch_entry(self, means: dict[str, float]) -> dict:
        """The history record of the epoch that just ended, from its mean losses."""
        return {"epoch": self.epoch + 1, **{f"train_{k}": v for k, v in means.items()}}

    def state_dict(self) -> dict:
        """What ``last.pt`` holds: weights, optimizer, scheduler and scaler states, the epochs done, every hook's
        entries and the history."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch + 1,
        }
        for hook in self.hooks:
            state.update(hook.state_dict())
        state["history"] = self.history
        return state

    def load_state_dict(self, state: dict, source: str = "the checkpoint") -> None:
        """Continue from ``state`` (:meth:`state_dict`, read from ``source``): training resumes at the epoch after
        the saved one.

        A state reduced to the weights (``epoch_checkpoints``) can only end a training that had finished: it raises
        :class:`ValueError` when ``max_epochs`` asks for more epochs.
        """
        self.model.load_state_dict(state["model"])
        if "optimizer" not in state:
            if state["epoch"] < self.max_epochs:
                raise ValueError(
                    f"{source} holds only the weights of a training that "
                    f"ended at epoch {state['epoch']}, so it cannot continue to epoch {self.max_epochs}; "
                    "train in a new out_dir (or keep the optimizer state with epoch_checkpoints: all)"
                )
        else:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.history = state["epoch"], list(state["history"])
        for hook in self.hooks:
            hook.load_state_dict(state)
        self.log(event="resume", epoch=self.start_epoch)
