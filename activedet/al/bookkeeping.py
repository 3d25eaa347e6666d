"""The run directory's bookkeeping beside the stage outputs: the files no result depends on.

* the index files of a cycle's start (``labelled_indices``, ``labelled_ids``, ``unlabelled_indices``);
* the stages' wall-clock seconds (``cycles/t/timing.json``), where the cycle's model was trained
  (``cycles/t/environment.json``) and the run's logs rebuilt from the per-cycle files (``metrics.jsonl``,
  ``timing.jsonl``);
* a cycle's training leftovers: TensorBoard logs and per-epoch weights moved into the run directory, older
  cycles' checkpoints pruned;
* the one plain progress line of an evaluated cycle (:func:`cycle_summary`).

Every path is named by :class:`~activedet.al.rundir.RunDir`; every file is written atomically, by rank 0 only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..atomic import atomic_write, atomic_write_json
from ..engine import distributed as dist_utils
from ..engine.hooks import TRAINING_FILES
from .ledger import Ledger
from .rundir import RunDir
from .scores import write_npy
from .status import headline_metric

__all__ = [
    "write_index_files",
    "record_seconds",
    "record_environment",
    "write_metrics_log",
    "keep_training_logs",
    "prune_checkpoints",
    "cycle_summary",
]


def write_index_files(rundir: RunDir, ledger: Ledger, pool_ids: list[str]) -> None:
    """Write the labelled and unlabelled pool indices (and the labelled image ids) at the start of
    ``ledger.cycle``, unless already there (rank 0)."""
    t = ledger.cycle
    if not dist_utils.is_main_process() or rundir.unlabelled_indices(t).is_file():
        return
    labelled = ledger.labelled()
    write_npy(rundir.labelled_indices(t), labelled)
    atomic_write(rundir.labelled_ids(t), lambda tmp: tmp.write_text("".join(f"{pool_ids[i]}\n" for i in labelled)))
    write_npy(rundir.unlabelled_indices(t), ledger.unlabelled())


def record_seconds(rundir: RunDir, t: int, stage: str, seconds: float) -> None:
    """Add a stage's wall-clock seconds to ``cycles/t/timing.json`` (rank 0; written before the stage's output,
    so a stage whose output exists has its time; kept out of every file a result depends on)."""
    path = rundir.cycle(t).timing
    timing = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {**timing, stage: seconds})


def record_environment(rundir: RunDir, t: int, environment: dict) -> None:
    """Write where cycle ``t``'s model was trained (:func:`~activedet.engine.environment.training_environment`) to
    ``cycles/t/environment.json`` (rank 0; like the timing, no result depends on it)."""
    if dist_utils.is_main_process():
        atomic_write_json(rundir.cycle(t).environment, environment)


def write_metrics_log(rundir: RunDir) -> None:
    """``metrics.jsonl``: one line per evaluated cycle, rebuilt from the per-cycle files (idempotent), and
    ``timing.jsonl``: the cycles' wall-clock seconds per stage (``scores``: every scoring stage together) and, where
    recorded, the environment its model was trained in."""
    if not dist_utils.is_main_process():
        return
    lines, timings = [], []
    for expected, t in enumerate(rundir.cycles()):
        path = rundir.cycle(t).metrics
        if t != expected or not path.is_file():
            break
        record = json.loads(path.read_text())
        record.pop("train", None)
        record.pop("seconds", None)  # written by earlier versions
        lines.append(json.dumps(record, sort_keys=True))
        timing_path = rundir.cycle(t).timing
        stages = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
        seconds = {k: v for k, v in stages.items() if not k.startswith("score")}
        if any(k.startswith("score") for k in stages):
            seconds["scores"] = sum(v for k, v in stages.items() if k.startswith("score"))
        timing = {"cycle": t, "seconds": seconds}
        if rundir.cycle(t).environment.is_file():
            timing["environment"] = json.loads(rundir.cycle(t).environment.read_text())
        timings.append(json.dumps(timing, sort_keys=True))
    atomic_write(rundir.metrics_log, lambda tmp: tmp.write_text("".join(f"{x}\n" for x in lines)))
    atomic_write(rundir.timing_log, lambda tmp: tmp.write_text("".join(f"{x}\n" for x in timings)))


def keep_training_logs(rundir: RunDir, train_dir: Path, t: int) -> None:
    """Move the training's TensorBoard logs to ``RUN/tensorboard/train/cycle{t}`` and, with ``epoch_checkpoints:
    all``, its per-epoch weights to ``cycles/t/epochs/`` (``train/`` is deleted)."""
    for weights in sorted(train_dir.glob("**/" + TRAINING_FILES["epoch"].format("*"))):
        target = rundir.cycle(t).epochs_dir / weights.relative_to(train_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        weights.replace(target)
    for logs in sorted(train_dir.glob("**/" + TRAINING_FILES["tensorboard"])):
        part = logs.parent.relative_to(train_dir)
        target = rundir.tensorboard_train(t) / part
        shutil.rmtree(target, ignore_errors=True)  # a killed earlier attempt
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(logs), str(target))


def prune_checkpoints(rundir: RunDir, t: int, keep: int) -> None:
    """Delete the model files of cycles ``1 .. t - keep`` (``keep_checkpoints``)."""
    for old in range(1, t - keep + 1):  # cycle 0 is kept: bench shares it
        rundir.cycle(old).model.unlink(missing_ok=True)


def cycle_summary(record: dict) -> str:
    """The progress line of an evaluated cycle's record (``cycles/t/metrics.json``), e.g. ``cycle 2: 400 labelled
    images, 1508 boxes, voc/mAP_area 0.5420``."""
    headline, boxes = headline_metric(record["metrics"]), record.get("labelled_boxes")
    return (
        f"cycle {record['cycle']}: {record['labelled_images']} labelled images"
        + (f", {boxes} boxes" if boxes is not None else "")
        + (f", {headline[0]} {headline[1]:.4f}" if headline is not None else "")
    )
