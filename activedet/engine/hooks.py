"""The standard hooks of :class:`~activedet.engine.trainer.Trainer`: seeding, progress, logs, validation, checkpoints.

:func:`activedet.engine.train.train_detector` registers, in this order::

    SeedEpochs, TeacherStudent (with ``semi_supervised``), BestEpoch, Progress, TrainingLog,
    TensorBoard (with ``tensorboard: true``), Checkpoint

Order matters where hooks read each other's results: :class:`BestEpoch` adds the validation metric to the epoch's
entry before :class:`Progress` prints it and :class:`TrainingLog` writes it, and restores the best weights at the end
before :class:`Checkpoint` reduces ``out_dir`` to what ``epoch_checkpoints`` keeps; the teacher-student hook
(:mod:`activedet.engine.teacher`) copies its teacher into the model before :class:`BestEpoch` restores the best
epoch's weights. Only rank 0 writes files.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._faults import kill_point
from . import distributed as dist_utils
from .checkpoint import load_checkpoint, save_checkpoint
from .trainer import HookBase

__all__ = [
    "TRAINING_FILES",
    "output_dir",
    "SeedEpochs",
    "Progress",
    "TrainingLog",
    "TensorBoard",
    "BestEpoch",
    "Checkpoint",
]

#: The names a training writes in its output folder (``out_dir``), in one place: the hooks and the trainers write
#: them and the active-learning run keeps the epoch weights and TensorBoard logs of its cycles' training folders
#: (:func:`activedet.al.bookkeeping.keep_training_logs`). ``epoch`` is formatted with the 1-based epoch number.
TRAINING_FILES = {
    "last": "last.pt",
    "best": "best.pt",
    "log": "train_log.jsonl",
    "tensorboard": "tensorboard",
    "epoch": "epoch_{}.pt",
}


def output_dir(out_dir: str | Path | None) -> Path | None:
    """``out_dir`` as a Path, created by rank 0 (``None``: training keeps everything in memory)."""
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and dist_utils.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    return out


class SeedEpochs(HookBase):
    """Seeds torch's global RNG at the start of every epoch from ``(seed, epoch)``.

    torchvision's RPN/RoI samplers (and DataLoader iterators' base seeds) draw from the global RNG; seeding each
    epoch from its number makes a resumed run draw exactly what an uninterrupted one draws.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def before_epoch(self) -> None:
        torch.manual_seed(self.seed * 100_003 + self.trainer.epoch)


class Progress(HookBase):
    """Progress on stderr (rank 0): a bar per epoch when stderr is a terminal; otherwise (CI, ``nohup``, a log file)
    one plain line per epoch, ``epoch 3/12: loss 0.8123, lr 1.00e-02, val_mAP_area 0.4210 (12.3 s)``, and no
    carriage returns.

    Args:
        enabled: ``False`` prints nothing.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None

    def before_train(self) -> None:
        self.active = self.enabled and dist_utils.is_main_process()
        self.stream = sys.stderr  # read now: the stream in use when training runs, not at import
        self.tty = self.active and hasattr(self.stream, "isatty") and self.stream.isatty()

    def before_epoch(self) -> None:
        self.started = time.perf_counter()
        if self.tty:
            self.bar = tqdm(
                total=self.trainer.iters_per_epoch, desc=self.trainer.describe(), leave=False, file=self.stream
            )

    def _lr(self) -> float:
        return self.trainer.optimizer.param_groups[0]["lr"]

    def after_step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{sum(self.trainer.step_losses.values()):.3f}", lr=f"{self._lr():.2e}")

    def after_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.active:
            entry = self.trainer.entry
            loss = sum(v for k, v in entry.items() if k.startswith("train_"))
            parts = [f"loss {loss:.4f}", f"lr {self._lr():.2e}"]
            parts += [f"{k} {v:.4f}" for k, v in entry.items() if k.startswith("val_")]
            print(
                f"{self.trainer.describe()}: {', '.join(parts)} ({time.perf_counter() - self.started:.1f} s)",
                file=self.stream,
                flush=True,
            )


class TrainingLog(HookBase):
    """The JSON-lines log ``train_log.jsonl`` (rank 0 appends): every record sent through ``trainer.log``.

    Sends an ``iter`` record (epoch, iteration, lr, total and per-term losses) every ``every`` iterations and an
    ``epoch_event`` record (the epoch's history entry) after every epoch.

    Args:
        path: the log file; ``None`` writes nothing (records still reach the other hooks).
        every: iterations between ``iter`` records; ``None``: none.
        epoch_event: the ``event`` of the per-epoch record (``"epoch"``; MI-AOD's units: ``"unit"``).
    """

    def __init__(self, path: Path | None, every: int | None = None, epoch_event: str = "epoch"):
        self.path = path if dist_utils.is_main_process() else None
        self.every, self.epoch_event = every, epoch_event

    def write(self, record: dict) -> None:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")

    def after_step(self) -> None:
        trainer = self.trainer
        if self.every is not None and trainer.step % self.every == 0:
            losses = trainer.step_losses
            trainer.log(
                event="iter",
                epoch=trainer.epoch + 1,
                iter=trainer.step,
                lr=trainer.optimizer.param_groups[0]["lr"],
                loss=sum(losses.values()),
                **losses,
            )

    def after_epoch(self) -> None:
        self.trainer.log(event=self.epoch_event, **self.trainer.entry)


class TensorBoard(HookBase):
    """Every log record's numbers as TensorBoard scalars under ``log_dir`` (tags: :mod:`activedet.tensorboard`).

    Raises :class:`ImportError` with the install hint when tensorboard is missing (on every rank, before training
    starts, so no rank waits at a barrier for one that failed).
    """

    def __init__(self, log_dir: Path, iters_per_epoch: int):
        from ..tensorboard import TrainingScalars, require_tensorboard  # optional dependency: imported on demand

        require_tensorboard()
        self.scalars = TrainingScalars(log_dir, iters_per_epoch) if dist_utils.is_main_process() else None

    @classmethod
    def for_options(cls, options, out: Path | None, iters_per_epoch: int) -> list[TensorBoard]:
        """``[TensorBoard(out / TRAINING_FILES["tensorboard"], ...)]`` when ``options.tensorboard``, else ``[]``."""
        if not options.tensorboard:
            return []
        if out is None:
            raise ValueError(
                "The 'tensorboard' training option needs an out_dir to write to; training with "
                "out_dir=None keeps everything in memory"
            )
        return [cls(out / TRAINING_FILES["tensorboard"], iters_per_epoch)]

    def write(self, record: dict) -> None:
        if self.scalars is not None:
            self.scalars.record(record)

    def after_train(self) -> None:
        if self.scalars is not None:
            self.scalars.close()
            self.scalars = None


class BestEpoch(HookBase):
    """Validation every ``eval_every`` epochs (and after the last), the best epoch, early stopping.

    Adds ``val_<metric>`` to the epoch's entry; saves the best epoch's weights to ``best_path`` (rank 0) and keeps a
    copy in memory; stops training after ``patience`` evaluations without improvement. When training ends the model
    gets the best epoch's weights (from memory, or from ``best_path`` when a resume came after the best epoch).

    Args:
        evaluate: ``model -> float``, larger is better; ``None``: no validation (the hook only keeps its state).
        metric: the metric's name (``val_<metric>`` in the entry).
        eval_every: epochs between validations.
        patience: evaluations without improvement before stopping; ``None``: never stop early.
        best_path: ``best.pt``; ``None`` writes nothing.
        module: ``() -> the module`` that is validated and whose weights are kept as the best (loaded into the
            trained model at the end); ``None``: the trained model itself. The teacher-student procedure passes
            its teacher (:mod:`activedet.engine.teacher`).
    """

    def __init__(
        self,
        evaluate: Callable[[torch.nn.Module], float] | None,
        metric: str,
        eval_every: int = 1,
        patience: int | None = None,
        best_path: Path | None = None,
        module: Callable[[], torch.nn.Module] | None = None,
    ):
        self.evaluate, self.metric, self.eval_every, self.patience = evaluate, metric, eval_every, patience
        self.best_path, self.module = best_path, module
        self.best_metric, self.best_epoch, self.bad_evals = None, None, 0
        self.best_state, self.final = None, False

    def state_dict(self) -> dict:
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        self.best_metric, self.best_epoch = state["best_metric"], state["best_epoch"]
        self.bad_evals = state["bad_evals"]
        self.final = bool(state.get("final"))  # a finished training whose last.pt holds the weights it ended with

    def after_epoch(self) -> None:
        trainer = self.trainer
        epoch = trainer.epoch + 1
        if self.evaluate is None or (epoch % self.eval_every and epoch != trainer.max_epochs):
            return
        model = self.module() if self.module is not None else trainer.model
        metric = self.evaluate(model)
        trainer.entry[f"val_{self.metric}"] = metric
        if self.best_metric is None or metric > self.best_metric:
            self.best_metric, self.best_epoch, self.bad_evals = metric, epoch, 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if self.best_path is not None and dist_utils.is_main_process():
                save_checkpoint(self.best_path, {"model": model.state_dict(), "epoch": epoch, "best_metric": metric})
        else:
            self.bad_evals += 1
            trainer.should_stop = self.patience is not None and self.bad_evals >= self.patience

    def after_train(self) -> None:
        trainer = self.trainer
        if trainer.should_stop:
            trainer.log(event="early_stop", epoch=trainer.epoch + 1, best_epoch=self.best_epoch)
        if self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)
        elif self.final:
            pass
        elif self.best_epoch is not None and self.best_path is not None and dist_utils.main_sees_file(self.best_path):
            trainer.model.load_state_dict(load_checkpoint(self.best_path, map_location=trainer.device)["model"])


class Checkpoint(HookBase):
    """``last.pt`` after every epoch (rank 0, atomically: :meth:`Trainer.state_dict`), then a barrier and the
    ``train_epoch:N`` crash-injection point; with ``resume``, training continues from an existing ``last.pt``.

    Args:
        out: the directory; ``None`` writes nothing and resumes nothing.
        resume: continue from ``out/last.pt`` when it exists.
        policy: ``epoch_checkpoints`` (what ``out`` keeps once training ends, see
            :class:`~activedet.engine.train.TrainOptions`); ``None``: ``last.pt`` is kept as written.
    """

    def __init__(self, out: Path | None, resume: bool = False, policy: str | None = None):
        self.out, self.resume, self.policy = out, resume, policy
        self.last = out / TRAINING_FILES["last"] if out is not None else None
        self.state: dict = {}

    def before_train(self) -> None:
        if self.resume and self.last is not None and dist_utils.main_sees_file(self.last):
            self.state = load_checkpoint(self.last, map_location=self.trainer.device)
            self.trainer.load_state_dict(self.state, source=str(self.last))

    def after_epoch(self) -> None:
        trainer = self.trainer
        if self.out is not None and dist_utils.is_main_process():
            self.state = trainer.state_dict()
            if self.policy == "all":
                save_checkpoint(
                    self.out / TRAINING_FILES["epoch"].format(trainer.epoch + 1),
                    {"model": self.state["model"], "epoch": trainer.epoch + 1},
                )
            save_checkpoint(self.last, self.state)
        dist_utils.barrier()
        kill_point("train_epoch", trainer.epoch + 1)

    def after_train(self) -> None:
        if self.out is not None and self.policy is not None and dist_utils.is_main_process() and self.state:
            self._finish()
        dist_utils.barrier()

    def _finish(self) -> None:
        """Reduce ``out`` to what ``policy`` keeps. Each step leaves a directory from which a resume ends with the
        same model."""
        if self.policy == "all" or "optimizer" not in self.state:
            return
        # the file, not ``state``: its tensors are the model's own, which may now hold the best epoch's weights
        slim = {k: v for k, v in load_checkpoint(self.last).items() if k not in ("optimizer", "scheduler", "scaler")}
        if self.policy == "last":
            slim.update(model=self.trainer.model.state_dict(), final=True)  # the weights training ends with
        save_checkpoint(self.last, slim)
        if self.policy == "last":
            (self.out / TRAINING_FILES["best"]).unlink(missing_ok=True)
