"""The layout of a run directory: every path and file name of a run, in one place.

Nothing else in activedet spells a run file name; code asks a :class:`RunDir` (``run.ledger``,
``run.cycle(t).selection``, ...). The layout users see::

    RUN/
      config.json              the config the run was started with (``activedet resume`` reads it)
      pool.json                the pool's fingerprint: its sources, image count and digests of the ordered image
                               ids and file names (a changed source is refused, :mod:`activedet.al.fingerprint`)
      ledger.npz               the labelled set: for each pool image the cycle it was labelled at (-1: unlabelled)
      metrics.jsonl            one line per evaluated cycle (rebuilt from cycles/t/metrics.json)
      timing.jsonl             the cycles' wall-clock seconds per stage and where each cycle's model was trained
      X_L_{t}.npy, X_U_{t}.npy, labelled_{t}.txt
                               cycle t's labelled / unlabelled pool indices and labelled image ids
      cache/                   the pool indexes of the run's COCO files (rebuilt whenever stale; safe to delete)
      imports/NNNN.json        the import records: every label that entered the run, one commit per import
      tensorboard/             TensorBoard logs (per-cycle scalars; train/cycle{t}/: each cycle's training)
      cycles/{t}/
        model.pt               cycle t's trained detector
        train/                 its training in progress (removed once model.pt is written)
        epochs/                its per-epoch weights (``epoch_checkpoints: all``)
        metrics.json           its evaluation on the test split
        pseudo_labels.json     the pseudo labels it trained on (from cycle 1 on, when enabled)
        scores.npz             the first scoring stage's per-image scores
        scores.stage{k}.npz    a chained strategy's stage k (k >= 1)
        selection.json         the query batch (picks in rank order)
        predictions.json       the model's detections on the batch (for reports)
        query/                 the batch exported for annotation; query/batch.json is the export's commit point
        oracle_labels.json     the labels an oracle handed in for the batch (imported like people's files)
        timing.json            its stages' wall-clock seconds
        environment.json       where its model was trained (torch version, device, CPU instruction set, threads)

A :class:`RunDir` is path-like (``os.fspath(run)`` is its root), so it goes wherever a run directory path does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["RunDir", "CycleDir", "BATCH_FILE"]

#: the file of an exported batch folder written last (the export's commit point)
BATCH_FILE = "batch.json"


class CycleDir:
    """The files of cycle ``t`` of a run: ``RUN/cycles/{t}/``."""

    def __init__(self, path: str | os.PathLike, t: int):
        self.path, self.t = Path(path), int(t)

    def __repr__(self) -> str:
        return f"CycleDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def model(self) -> Path:
        """The trained detector's checkpoint."""
        return self.path / "model.pt"

    @property
    def train_dir(self) -> Path:
        """The training's working folder (checkpoints to resume from; removed once :attr:`model` exists)."""
        return self.path / "train"

    @property
    def epochs_dir(self) -> Path:
        """The per-epoch weights kept with ``epoch_checkpoints: all``."""
        return self.path / "epochs"

    @property
    def metrics(self) -> Path:
        """The evaluation on the test split (one JSON object)."""
        return self.path / "metrics.json"

    @property
    def pseudo_labels(self) -> Path:
        return self.path / "pseudo_labels.json"

    @property
    def scores(self) -> Path:
        """The first scoring stage's scores (:meth:`scores_stage` ``(0)``)."""
        return self.scores_stage(0)

    def scores_stage(self, k: int) -> Path:
        """Scoring stage ``k``'s scores: ``scores.npz`` for ``k == 0``, ``scores.stage{k}.npz`` after it."""
        return self.path / ("scores.npz" if k == 0 else f"scores.stage{k}.npz")

    def stats(self, k: int, name: str) -> Path:
        """A scoring predictor's own statistics for stage ``k`` (ISAL's ``influence``): ``{name}.json`` for
        ``k == 0``, ``{name}.stage{k}.json`` after it."""
        return self.path / (f"{name}.json" if k == 0 else f"{name}.stage{k}.json")

    def score_shards(self, k: int, part: str) -> Path:
        """The finished shards of scoring stage ``k`` (``part``: ``pool`` or ``labelled``), one ``NNNNN.npz`` each;
        removed once the stage's scores are written."""
        return self.path / f"scores.stage{k}.{part}.shards"

    def score_shard(self, k: int, part: str, j: int) -> Path:
        """Shard ``j`` of :meth:`score_shards`."""
        return self.score_shards(k, part) / f"{int(j):05d}.npz"

    def scored_stages(self) -> list[int]:
        """The stages ``k >= 1`` whose scores exist, in order."""
        prefix, suffix = "scores.stage", ".npz"
        found = [p.name[len(prefix) : -len(suffix)] for p in self.path.glob(f"{prefix}*{suffix}")]
        return sorted(int(k) for k in found if k.isdigit())

    @property
    def selection(self) -> Path:
        """The query batch: the picks, in rank order."""
        return self.path / "selection.json"

    @property
    def predictions(self) -> Path:
        """The model's detections on the query batch (every one, for reports)."""
        return self.path / "predictions.json"

    @property
    def query(self) -> Path:
        """The folder the batch is exported to for annotation."""
        return self.path / "query"

    @property
    def query_batch(self) -> Path:
        """The exported batch's list of images, written last (:data:`BATCH_FILE`): the export is complete once it
        exists."""
        return self.query / BATCH_FILE

    @property
    def oracle_labels(self) -> Path:
        """The label file an oracle handed in for the batch (imported as people's files are)."""
        return self.path / "oracle_labels.json"

    @property
    def timing(self) -> Path:
        """The stages' wall-clock seconds (kept apart from every file a result depends on)."""
        return self.path / "timing.json"

    @property
    def environment(self) -> Path:
        """Where its model was trained: versions, device, CPU instruction set, threads
        (:mod:`activedet.engine.environment`)."""
        return self.path / "environment.json"


class RunDir:
    """The files of the run in ``root`` (module docstring for the layout). Creating one touches no file."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root.root if isinstance(root, RunDir) else root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @property
    def config(self) -> Path:
        """The config the run was started with."""
        return self.root / "config.json"

    @property
    def pool(self) -> Path:
        """The fingerprint of the pool the ledger counts (:mod:`activedet.al.fingerprint`)."""
        return self.root / "pool.json"

    @property
    def ledger(self) -> Path:
        """The labelled set (:class:`~activedet.al.ledger.Ledger`)."""
        return self.root / "ledger.npz"

    @property
    def metrics_log(self) -> Path:
        """One JSON line per evaluated cycle."""
        return self.root / "metrics.jsonl"

    @property
    def timing_log(self) -> Path:
        """One JSON line per evaluated cycle: its stages' wall-clock seconds."""
        return self.root / "timing.jsonl"

    @property
    def cache(self) -> Path:
        """Pool indexes built from the run's source files (rebuilt whenever stale; safe to delete)."""
        return self.root / "cache"

    @property
    def imports(self) -> Path:
        """The folder of import records."""
        return self.root / "imports"

    def import_file(self, number: int) -> Path:
        """Import record ``number`` (1, 2, ...): ``imports/NNNN.json``."""
        return self.imports / f"{int(number):04d}.json"

    def import_files(self) -> list[Path]:
        """Every import record, in import order."""
        return sorted(self.imports.glob("[0-9][0-9][0-9][0-9].json"))

    @property
    def tensorboard(self) -> Path:
        """The run's TensorBoard logs."""
        return self.root / "tensorboard"

    def tensorboard_train(self, t: int) -> Path:
        """Cycle ``t``'s training logs, moved out of its training folder."""
        return self.tensorboard / "train" / f"cycle{int(t)}"

    def labelled_indices(self, t: int) -> Path:
        """Cycle ``t``'s labelled pool indices (``int64`` array)."""
        return self.root / f"X_L_{int(t)}.npy"

    def unlabelled_indices(self, t: int) -> Path:
        """Cycle ``t``'s unlabelled pool indices (``int64`` array)."""
        return self.root / f"X_U_{int(t)}.npy"

    def labelled_ids(self, t: int) -> Path:
        """Cycle ``t``'s labelled image ids, one a line."""
        return self.root / f"labelled_{int(t)}.txt"

    @property
    def cycles_dir(self) -> Path:
        return self.root / "cycles"

    def cycle(self, t: int) -> CycleDir:
        """Cycle ``t``'s files."""
        return CycleDir(self.cycles_dir / str(int(t)), t)

    def cycles(self) -> list[int]:
        """The cycles that have a folder, in order."""
        if not self.cycles_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.cycles_dir.iterdir() if p.is_dir() and p.name.isdigit())

    def metric_records(self) -> list[dict]:
        """The lines of :attr:`metrics_log`, one dict per evaluated cycle in order (none: an empty list)."""
        if not self.metrics_log.is_file():
            return []
        return [json.loads(line) for line in self.metrics_log.read_text().splitlines() if line.strip()]
