"""Oracles label the query batches: the pool's ground truth in simulation, people through an annotation tool, or
anything else that can name boxes.

The loop's whole conversation with an oracle (every process of a distributed run takes part)::

    oracle.reveal(run)                  when the run starts or resumes: labels imported earlier go into the pool
    each cycle, once the batch is selected, while some image of it has no imported labels:
        answer = oracle.request(batch)  # a QueryBatch
        Labels(records)  -> committed as ONE import record (cycles/t/oracle_labels.json, then imports/NNNN.json):
                            the same validation and atomic commit as a person's ``activedet import``
        Pending(images)  -> the run stops, persisted; ``activedet import`` brings labels in and resuming the run asks
                            again only while images are still pending
    once no image of the batch is pending:
        oracle.reveal(run)              the imported labels into the pool; the batch joins the ledger

and the annotation cost the budget and the metrics count: :meth:`Oracle.num_boxes` of a labelled image,
:meth:`Oracle.preview_boxes` of an image before it is labelled (``None`` unless :attr:`Oracle.previews_cost`;
without it a ``budget_unit`` of ``boxes`` or ``cost`` spends the figures predicted from the detector's detections,
:mod:`activedet.al.cost`). The loop never asks who labels; a new kind of annotator is a
subclass that implements :meth:`Oracle.request`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._faults import kill_point
from ..data.records import DetectionDataset, ImageRecord
from ..engine import distributed as dist_utils
from .annotation import apply_imports, import_labels, pending_images, read_native_labels, write_native_labels
from .export import BatchExport, export_batch
from .rundir import CycleDir, RunDir

__all__ = [
    "Oracle",
    "SimulatedOracle",
    "HumanOracle",
    "QueryBatch",
    "Labels",
    "Pending",
    "commit_labels",
    "export_query",
]

#: the batch export a simulated oracle writes unless told otherwise (a frozen, shared value): the files of the
#: batch without copies of its images, which nobody will look at; people's (:class:`HumanOracle`) copies them
SIMULATED_EXPORT = BatchExport(images="none")


@dataclass
class QueryBatch:
    """What the loop asks an oracle to label: cycle ``cycle``'s ``picks`` (the selection records of
    ``cycles/t/selection.json``, in rank order: ``index``, ``image_id``, ``rank``, ``score``, ...) from ``pool``, in
    the run ``run``. ``predict()`` returns the model's detections on the batch, one per pick (computed on first
    call, then kept); it runs on every process, so every process calls it or none does."""

    cycle: int
    picks: list[dict]
    run: RunDir
    pool: DetectionDataset
    predict: Callable[[], list] = field(repr=False)
    _predictions: list | None = field(default=None, init=False, repr=False)

    @property
    def indices(self) -> list[int]:
        """The picks' pool indices."""
        return [int(p["index"]) for p in self.picks]

    @property
    def image_ids(self) -> list[str]:
        return [p["image_id"] for p in self.picks]

    @property
    def files(self) -> CycleDir:
        """The cycle's files (:class:`~activedet.al.rundir.CycleDir`)."""
        return self.run.cycle(self.cycle)

    def predictions(self) -> list:
        """The model's :class:`~activedet.models.outputs.Detections` on the batch, in pick order."""
        if self._predictions is None:
            self._predictions = self.predict()
        return self._predictions


@dataclass(frozen=True)
class Labels:
    """An oracle's answer: the labels of (some of) the batch's images. ``records``: pool records of batch images
    with their boxes (xyxy pixels of the original image) and labels (``1..C``, the pool's classes); an image given
    with no box is labelled empty. ``annotator`` is recorded with each image."""

    records: Sequence[ImageRecord]
    annotator: str | None = None


@dataclass(frozen=True)
class Pending:
    """An oracle's answer: the batch's labels come later (by ``activedet import``). ``images``: the ids awaited;
    ``folder``: where the batch was exported for annotation, if it was."""

    images: list[str]
    folder: Path | None = None


class Oracle:
    """Base of every oracle (the protocol: module docstring). ``pool`` is the run's pool (the same object the loop
    trains from); labelled images hold their labels there, so :meth:`num_boxes` and :meth:`class_counts` read it.

    Subclasses implement :meth:`request`; they may override :meth:`reveal` (default: put every imported label into
    the pool) and set :attr:`previews_cost`.
    """

    #: whether an image's labels (so its cost in boxes) are known before it is labelled, as in simulation; without
    #: it a ``budget_unit`` of ``boxes`` or ``cost`` spends predicted figures (:mod:`activedet.al.cost`)
    previews_cost: bool = False

    def __init__(self, pool: DetectionDataset):
        self.pool = pool

    def request(self, batch: QueryBatch) -> Labels | Pending:
        """Label ``batch`` (:class:`Labels`, committed by the loop as an import record) or say it is pending
        (:class:`Pending`). Called on every process, again on each resume while images of the batch are pending."""
        raise NotImplementedError(f"{type(self).__name__} must implement request(batch) -> Labels | Pending")

    def reveal(self, run: RunDir) -> None:
        """Bring the pool up to date with the run's import records (when the run starts, and once a batch is
        complete)."""
        apply_imports(run, self.pool)

    def num_boxes(self, index: int) -> int:
        """The annotation cost of labelled image ``index``, in boxes (difficult ones included: they are drawn too)."""
        return self.pool.records[index].num_boxes

    def count_boxes(self, indices: Sequence[int]) -> int:
        """:meth:`num_boxes` summed over ``indices`` (read from the pool's columns where it has them)."""
        return int(self.pool.subset(indices).box_counts().sum())

    def preview_boxes(self, index: int) -> int | None:
        """The cost of image ``index`` before it is labelled: :meth:`num_boxes` when :attr:`previews_cost`, else
        ``None`` (not known until its labels arrive)."""
        return self.num_boxes(index) if self.previews_cost else None

    def preview_class_counts(self, indices: Sequence[int]) -> np.ndarray:
        """``float64[M, C]``: the boxes per class of each image of ``indices`` before it is labelled (row ``m``,
        column ``l - 1`` for label ``l``); only an oracle that :attr:`previews_cost` can say."""
        if not self.previews_cost:
            raise ValueError(
                f"{type(self).__name__} cannot preview labels: an image's classes are known once it is labelled"
            )
        num_classes = len(self.pool.class_names)
        out = np.zeros((len(indices), num_classes))
        for row, index in enumerate(indices):
            labels = np.asarray(self.pool.records[int(index)].labels, np.int64)
            out[row] = np.bincount(labels - 1, minlength=num_classes)[:num_classes]
        return out

    def class_counts(self, indices: Sequence[int]) -> np.ndarray:
        """``float64[C]`` labelled boxes per class (index ``l - 1`` for label ``l``) over ``indices``."""
        return self.pool.subset(indices).class_counts().astype(np.float64)


class SimulatedOracle(Oracle):
    """The simulation used by every published AL paper: answers each batch at once with the ground truth already
    held by ``pool`` (so the cost of an image is known before it is labelled, and the pool needs no update).

    ``export``: how each batch is exported before it is answered (``cycles/t/query/``, and the predictions kept in
    ``cycles/t/predictions.json`` for reports); ``None``: not exported. ``preview=False``: act as if the labels
    were unknown until the batch is answered (:attr:`previews_cost` false), so that a budget in boxes or cost
    spends predicted figures, as it does with people.
    """

    annotator = "simulated oracle"
    previews_cost = True

    def __init__(self, pool: DetectionDataset, *, export: BatchExport | None = SIMULATED_EXPORT, preview: bool = True):
        super().__init__(pool)
        self.export = export
        self.previews_cost = bool(preview)

    def request(self, batch: QueryBatch) -> Labels:
        if self.export is not None:
            export_query(batch, self.export)
        return Labels([self.pool.records[i] for i in batch.indices], annotator=self.annotator)

    def reveal(self, run: RunDir) -> None:
        """Nothing to do: the pool holds the ground truth from the start."""


class HumanOracle(Oracle):
    """People label the batches: each one is exported for annotation (``export``: format, images, options) and the
    run waits, persisted, until ``activedet import`` has brought labels for every image of it
    (:func:`activedet.al.status.run_status` lists the pending images). Images of ``pool`` not yet labelled hold no
    boxes until their labels are imported."""

    def __init__(self, pool: DetectionDataset, *, export: BatchExport | None = None):
        super().__init__(pool)
        self.export = export or BatchExport()  # the images copied beside the files, for the annotators

    def request(self, batch: QueryBatch) -> Pending:
        folder = export_query(batch, self.export)
        return Pending(pending_images(batch.run, batch.image_ids), folder)


def export_query(batch: QueryBatch, export: BatchExport) -> Path:
    """Export ``batch`` (once: an export whose ``batch.json`` exists is kept) into ``cycles/t/query/``, with the
    model's predictions as pre-annotations, and keep the predictions in ``cycles/t/predictions.json``; returns the
    folder. Every process calls it (the predictions are computed on all of them); rank 0 writes."""
    files = batch.files
    if not dist_utils.main_sees_file(files.query_batch):
        predictions = batch.predictions()
        if dist_utils.is_main_process():
            export_batch(
                files.query,
                batch.pool,
                batch.picks,
                predictions,
                fmt=export.fmt,
                images=export.images,
                predictions_file=files.predictions,
                **export.options,
            )
        dist_utils.barrier()
    kill_point("export", batch.cycle)
    return files.query


def commit_labels(batch: QueryBatch, labels: Labels) -> None:
    """Commit an oracle's ``labels`` as people's are: written as a native label file (``cycles/t/oracle_labels.json``)
    and imported from it as one import record. Boxes are taken as given (no clip tolerance: an oracle's boxes are
    the pool's own). Every process calls it; rank 0 writes."""
    if dist_utils.is_main_process():
        class_names = batch.pool.class_names
        path = write_native_labels(batch.files.oracle_labels, labels.records, class_names, annotator=labels.annotator)
        import_labels(
            batch.run,
            read_native_labels(path, class_names),
            cycle=batch.cycle,
            batch=batch.image_ids,
            pool=batch.pool,
            clip_tolerance=float("inf"),
        )
    dist_utils.barrier()
