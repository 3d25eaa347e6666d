"""TensorBoard scalars next to the JSON-lines logs (optional: ``pip install tensorboard``).

TensorBoard is imported only when a writer is opened, so ``import activedet`` never imports it. Only rank 0
writes. Tags and steps:

* training, in ``out_dir/tensorboard`` (``TrainOptions.tensorboard``): ``train/<term>`` for every loss term,
  ``train/loss`` (their sum) and ``train/lr`` at each logged iteration (step: iteration counted over the whole
  run, ``(epoch - 1) * iters_per_epoch + iter``); ``epoch/train_<term>`` (epoch means) and ``val/<metric>`` at each
  epoch (step: epoch, 1-based); MI-AOD's ``unit/<key>`` per unit (step: unit, 1-based).
* active learning, in ``run_dir/tensorboard`` (:func:`log_cycle`, step: cycle): ``metrics/<family>/<key>``
  (e.g. ``metrics/voc/mAP_area``), ``selection/<key>`` (e.g. ``selection/images``) and ``pseudo/<key>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Real
from pathlib import Path

from .al.rundir import RunDir
from .engine import distributed as dist_utils

__all__ = ["INSTALL_HINT", "require_tensorboard", "summary_writer", "TrainingScalars", "log_cycle"]

INSTALL_HINT = "pip install tensorboard (or pip install activedet[tensorboard])"


def require_tensorboard() -> None:
    """Raise an ImportError with the install hint when the ``tensorboard`` package is missing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it; importing it first names the culprit)
        import torch.utils.tensorboard  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"TensorBoard logging needs the 'tensorboard' package, which is not installed: {INSTALL_HINT}"
        ) from error


def summary_writer(log_dir: str | Path):
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir`` (ImportError with the install hint if missing)."""
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _scalars(prefix: str, values: dict) -> Iterator[tuple[str, float]]:
    """``(prefix/key, value)`` for every real number in ``values``, nested dicts flattened with ``/``.

    Booleans, strings, lists (e.g. per-class AP) and ``None`` are not scalars and are left out.
    """
    for key, value in values.items():
        tag = f"{prefix}/{key}"
        if isinstance(value, dict):
            yield from _scalars(tag, value)
        elif isinstance(value, Real) and not isinstance(value, bool):
            yield tag, float(value)


class TrainingScalars:
    """Turns the training log's records (:mod:`activedet.engine.hooks`) into TensorBoard scalars (tags: module
    docstring).

    Args:
        log_dir: the event files' directory (``out_dir/tensorboard``).
        iters_per_epoch: this run's iterations per epoch, to count iterations over the run.
    """

    def __init__(self, log_dir: str | Path, iters_per_epoch: int):
        self.writer = summary_writer(log_dir)
        self.iters_per_epoch = iters_per_epoch

    def record(self, record: dict) -> None:
        """Write the scalars of one log record; events other than iter, epoch and unit have none."""
        event = record.get("event")
        if event == "iter":
            step = (record["epoch"] - 1) * self.iters_per_epoch + record["iter"]
            values = {k: v for k, v in record.items() if k not in ("event", "epoch", "iter")}
            self._write("train", values, step)
        elif event == "epoch":
            values = {k: v for k, v in record.items() if k not in ("event", "epoch")}
            self._write("epoch", {k: v for k, v in values.items() if not k.startswith("val_")}, record["epoch"])
            self._write("val", {k[4:]: v for k, v in values.items() if k.startswith("val_")}, record["epoch"])
            self.writer.flush()  # a killed run keeps every finished epoch
        elif event == "unit":
            self._write("unit", {k: v for k, v in record.items() if k not in ("event", "unit")}, record["unit"])
            self.writer.flush()

    def _write(self, prefix: str, values: dict, step: int) -> None:
        for tag, value in _scalars(prefix, values):
            self.writer.add_scalar(tag, value, global_step=step)

    def close(self) -> None:
        self.writer.close()


def log_cycle(
    run_dir: str | Path, cycle: int, metrics: dict, selection_stats: dict, pseudo_stats: dict | None = None
) -> None:
    """Write one active-learning cycle's scalars to ``run_dir/tensorboard`` at step ``cycle`` (rank 0 only).

    Args:
        run_dir: the run directory.
        cycle: the cycle number (0-based, as ``cycles/t``).
        metrics: the cycle's evaluation, e.g. ``{"voc": {"mAP_area": 0.41, ...}, "coco": {...}}`` ->
            ``metrics/voc/mAP_area``; nested dicts are flattened with ``/``, non-numbers (lists of per-class APs,
            strings) left out.
        selection_stats: e.g. ``{"images": 20, "boxes": 53, "mean_score": 0.7}`` -> ``selection/images`` ...
        pseudo_stats: e.g. :func:`activedet.engine.pseudo.pseudo_label_stats` -> ``pseudo/images``,
            ``pseudo/boxes``, ``pseudo/mean_score``; ``None``: none written.

    Non-finite values are written as they are (TensorBoard shows NaN), never replaced.
    """
    if not dist_utils.is_main_process():
        return
    writer = summary_writer(RunDir(run_dir).tensorboard)
    try:
        for prefix, values in (("metrics", metrics), ("selection", selection_stats), ("pseudo", pseudo_stats or {})):
            for tag, value in _scalars(prefix, values):
                writer.add_scalar(tag, value, global_step=int(cycle))
    finally:
        writer.close()
