"""Pseudo labels: a model's confident detections on unlabelled images, trained on with a loss weight λ.

The med_sslal recipe (methods.md §9) in each cycle::

    predictions = iter_predictions(model, pool, unlabelled_indices)        # after selection
    pseudo = pseudo_label_records(predictions, pool, PseudoLabelOptions())  # top-1 box, score >= 0.8, weight λ
    save_pseudo_labels(cycle_dir / "pseudo_labels.json", pseudo)           # the cycle's artefact (resume reloads)
    train_set = with_pseudo_labels(pool.subset(labelled), pseudo)          # labelled + pseudo images

Pseudo-labelled images stay in the unlabelled pool (still queryable, never counted as annotation cost) and are
regenerated each cycle. The training loss of a pseudo image is multiplied by its record's ``loss_weight`` (λ); see
:func:`activedet.engine.train.weighted_loss_dict`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torchvision

from ..atomic import atomic_write_json
from ..data.records import DetectionDataset, ImageRecord
from ..models.outputs import Detections
from .train import OptionError

__all__ = [
    "PseudoLabelOptions",
    "PseudoLabelRecord",
    "pseudo_label_records",
    "with_pseudo_labels",
    "pseudo_label_stats",
    "save_pseudo_labels",
    "load_pseudo_labels",
]

FILE_FORMAT = "activedet-pseudo-labels"
FILE_VERSION = 1


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, name: str, expected: str, got) -> None:
    if not ok:
        raise OptionError(f"pseudo_labels.{name}", expected, got)


@dataclass
class PseudoLabelOptions:
    """Which detections become pseudo labels, and their loss weight (``pseudo_labels`` in a config).

    Attributes:
        score_threshold: a detection is kept when its score is ``>=`` this (0.8: med_sslal; a noised student
            may use 0.5, docs/methods.md §8).
        class_thresholds: per-class thresholds overriding ``score_threshold``: ``None``, a list of ``C`` floats in
            label order, or a dict from class name or label (``1..C``) to threshold (classes not named keep
            ``score_threshold``). Checked against the dataset's classes when used.
        top1_only: keep only the image's best kept detection (med_sslal: one box per image); ``False``: every
            detection above its threshold (docs/methods.md §8's ``--ceal``).
        max_boxes: at most this many boxes per image, best first (``None``: no limit).
        loss_weight: λ, the multiplier of a pseudo image's training loss (1.0: the references' equal weight).
        class_agnostic_nms: IoU threshold of an extra NMS over the kept boxes of all classes together, which
            removes a box that another class's better box overlaps (``None``: off; detectors already apply
            per-class NMS).
        exclude: which unlabelled images are not pseudo-labelled: ``"selected"`` (only the images the previous
            cycle selected, which are labelled by then) or ``"shortlist"`` (also every image of the previous
            cycle's shortlist, the candidates its last stage scored: the medical framework's released code, which
            pseudo-labels only the images outside its ``budget x criteria`` uncertainty shortlist).
    """

    score_threshold: float = 0.8
    class_thresholds: dict | list | None = None
    top1_only: bool = True
    max_boxes: int | None = None
    loss_weight: float = 1.0
    class_agnostic_nms: float | None = None
    exclude: str = "selected"

    def __post_init__(self) -> None:
        _check(
            _is_real(self.score_threshold) and 0 <= self.score_threshold <= 1,
            "score_threshold",
            "a float in [0, 1]",
            self.score_threshold,
        )
        thresholds = self.class_thresholds
        _check(
            thresholds is None or isinstance(thresholds, (dict, list, tuple)),
            "class_thresholds",
            "null, a list of per-class floats or a dict {class name or label: float}",
            thresholds,
        )
        values = thresholds.values() if isinstance(thresholds, dict) else (thresholds or [])
        for value in values:
            _check(
                _is_real(value) and 0 <= value <= 1, "class_thresholds", "thresholds that are floats in [0, 1]", value
            )
        _check(isinstance(self.top1_only, bool), "top1_only", "true or false", self.top1_only)
        _check(
            self.max_boxes is None
            or (isinstance(self.max_boxes, int) and not isinstance(self.max_boxes, bool) and self.max_boxes >= 1),
            "max_boxes",
            "an int >= 1 or null",
            self.max_boxes,
        )
        _check(
            _is_real(self.loss_weight) and self.loss_weight >= 0, "loss_weight", "a finite float >= 0", self.loss_weight
        )
        _check(self.exclude in ("selected", "shortlist"), "exclude", "'selected' or 'shortlist'", self.exclude)
        nms = self.class_agnostic_nms
        _check(
            nms is None or (_is_real(nms) and 0 < nms <= 1),
            "class_agnostic_nms",
            "an IoU threshold in (0, 1] or null",
            nms,
        )

    @classmethod
    def from_dict(cls, options: dict) -> PseudoLabelOptions:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise OptionError(f"pseudo_labels.{unknown[0]}", f"one of {valid}", unknown[0])
        return cls(**options)

    def thresholds(self, class_names: Sequence[str]) -> np.ndarray:
        """``float64[C + 1]``: the score threshold of each label (index 0, background, is unused).

        Raises OptionError when ``class_thresholds`` names a class or label the dataset does not have, or lists
        a number of thresholds other than ``C``.
        """
        table = np.full(len(class_names) + 1, float(self.score_threshold))
        given = self.class_thresholds
        if isinstance(given, (list, tuple)):
            _check(
                len(given) == len(class_names),
                "class_thresholds",
                f"a list of {len(class_names)} thresholds, one per class {list(class_names)}",
                given,
            )
            table[1:] = given
        elif isinstance(given, dict):
            for key, value in given.items():
                if isinstance(key, str) and key in class_names:
                    table[list(class_names).index(key) + 1] = value
                elif isinstance(key, int) and not isinstance(key, bool) and 1 <= key <= len(class_names):
                    table[key] = value
                else:
                    raise OptionError(
                        "pseudo_labels.class_thresholds",
                        f"keys that are class names {list(class_names)} or labels 1..{len(class_names)}",
                        key,
                    )
        return table


@dataclass
class PseudoLabelRecord(ImageRecord):
    """An :class:`ImageRecord` whose boxes are a model's detections (``loss_weight``: λ).

    Attributes:
        pool_index: position of the image in the pool the detections were made on.
        scores: ``float32[N]`` the detections' scores (kept for the artefact and statistics; not trained on).
    """

    pool_index: int = -1
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pool_index = int(self.pool_index)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.scores) != self.num_boxes:
            raise ValueError(f"image {self.image_id!r}: {self.num_boxes} pseudo boxes but {len(self.scores)} scores")


def _clip_to_image(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to ``[0, width] x [0, height]`` and the mask of those with positive width and height."""
    clipped = boxes.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, valid


def _pseudo_record(
    index: int, detections: Detections, record: ImageRecord, thresholds: np.ndarray, options: PseudoLabelOptions
) -> PseudoLabelRecord | None:
    """A copy of pool record ``index`` holding its image's kept detections, best first (``None``: none kept)."""
    boxes = detections.boxes.detach().cpu().numpy().astype(np.float32).reshape(-1, 4)
    scores = detections.scores.detach().cpu().numpy().astype(np.float32).reshape(-1)
    labels = detections.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
    boxes, valid = _clip_to_image(boxes, record.width, record.height)
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError(f"image {record.image_id!r}: non-finite detection boxes or scores; the model diverged")
    if len(labels) and not ((labels >= 1) & (labels < len(thresholds))).all():
        raise ValueError(
            f"image {record.image_id!r}: detection labels must be in 1..{len(thresholds) - 1}. "
            f"Got {sorted(set(labels.tolist()))} instead"
        )
    keep = np.flatnonzero(valid & (scores >= thresholds[labels]))
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if options.class_agnostic_nms is not None and len(keep):
        kept = torchvision.ops.nms(
            torch.from_numpy(boxes[keep]), torch.from_numpy(scores[keep]).float(), float(options.class_agnostic_nms)
        )
        keep = keep[kept.numpy()]
    limit = 1 if options.top1_only else options.max_boxes
    keep = keep[:limit] if limit is not None else keep
    if len(keep) == 0:
        return None
    return PseudoLabelRecord(
        record.image_id,
        record.file_name,
        record.width,
        record.height,
        boxes[keep],
        labels[keep],
        loss_weight=options.loss_weight,
        image_index=record.image_index,
        pool_index=index,
        scores=scores[keep],
    )


def pseudo_label_records(
    predictions: Iterable[tuple[int, Detections]], pool: DetectionDataset, options: PseudoLabelOptions | None = None
) -> list[PseudoLabelRecord]:
    """A new record with the confident detections of each predicted image; images with none give no record.

    Args:
        predictions: ``(pool_index, Detections)`` of the unlabelled images, e.g.
            :func:`activedet.engine.inference.iter_predictions` (under torchrun: gather every rank's first).
        pool: the pool the indices refer to; never modified.
        options: :class:`PseudoLabelOptions`.

    Returns:
        One :class:`PseudoLabelRecord` per image with at least one kept detection, in the order of
        ``predictions``: a copy of the pool record (id, file, image index, size) whose boxes (clipped to the
        image; boxes with no area left are dropped), labels and scores are the kept detections, best first, with
        ``loss_weight = options.loss_weight``.
    """
    options = options or PseudoLabelOptions()
    thresholds = options.thresholds(pool.class_names)
    records, seen = [], set()
    for index, detections in predictions:
        index = int(index)
        if not 0 <= index < len(pool):
            raise IndexError(f"prediction for pool index {index}, but the pool has {len(pool)} images")
        if index in seen:
            raise ValueError(f"two predictions for pool index {index}; give each unlabelled image once")
        seen.add(index)
        pseudo = _pseudo_record(index, detections, pool.records[index], thresholds, options)
        if pseudo is not None:
            records.append(pseudo)
    return records


def with_pseudo_labels(labelled: DetectionDataset, pseudo: Sequence[ImageRecord]) -> DetectionDataset:
    """The training set: ``labelled``'s records followed by ``pseudo``'s (same classes; neither is modified)."""
    if not pseudo:  # ``labelled`` itself (a view of a pool index stays a view: no record is built)
        return labelled
    return DetectionDataset([*labelled.records, *pseudo], labelled.class_names, labelled.category_ids, labelled.root)


def pseudo_label_stats(records: Sequence[PseudoLabelRecord]) -> dict[str, float]:
    """``images``, ``boxes`` and ``mean_score`` (mean over boxes; NaN when there is none) of a cycle's pseudo labels."""
    scores = np.concatenate([r.scores for r in records]) if records else np.zeros(0, np.float32)
    return {
        "images": len(records),
        "boxes": int(len(scores)),
        "mean_score": float(scores.mean()) if len(scores) else float("nan"),
    }


def save_pseudo_labels(path: str | Path, records: Sequence[PseudoLabelRecord]) -> Path:
    """Write ``records`` to the JSON file ``path`` atomically (readable by :func:`load_pseudo_labels`).

    Layout: ``{"format": "activedet-pseudo-labels", "version": 1, "images": [{"index", "image_id", "boxes"
    (xyxy pixels), "labels", "scores", "loss_weight"}, ...]}``.
    """
    images = [
        {
            "index": r.pool_index,
            "image_id": r.image_id,
            "boxes": r.boxes.tolist(),
            "labels": r.labels.tolist(),
            "scores": r.scores.tolist(),
            "loss_weight": r.loss_weight,
        }
        for r in records
    ]
    return atomic_write_json(path, {"format": FILE_FORMAT, "version": FILE_VERSION, "images": images}, allow_nan=False)


def _record_from_item(item, pool: DetectionDataset) -> PseudoLabelRecord:
    """The record of one ``images`` entry, checked against ``pool``; ValueError says what is wrong."""
    if not isinstance(item, dict) or not {"index", "image_id", "boxes", "labels", "scores"} <= set(item):
        raise ValueError("expected an object with index, image_id, boxes, labels and scores")
    index = item["index"]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(pool):
        raise ValueError(f"index {index!r} is not a pool index (the pool has {len(pool)} images)")
    record = pool.records[index]
    if item["image_id"] != record.image_id:
        raise ValueError(
            f"image_id {item['image_id']!r} but pool index {index} is image {record.image_id!r}; "
            "the file was made for another pool"
        )
    boxes = np.asarray(item["boxes"], dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(item["labels"], dtype=np.int64).reshape(-1)
    clipped, valid = _clip_to_image(boxes, record.width, record.height)
    if not (np.array_equal(clipped, boxes) and valid.all()):  # NaN fails array_equal too
        raise ValueError(f"boxes must lie inside the {record.width}x{record.height} image with positive area")
    if len(labels) and not ((labels >= 1) & (labels <= pool.num_classes)).all():
        raise ValueError(f"labels must be in 1..{pool.num_classes}. Got {labels.tolist()} instead")
    return PseudoLabelRecord(
        record.image_id,
        record.file_name,
        record.width,
        record.height,
        boxes,
        labels,
        loss_weight=item.get("loss_weight", 1.0),
        image_index=record.image_index,
        pool_index=index,
        scores=item["scores"],
    )


def load_pseudo_labels(path: str | Path, pool: DetectionDataset) -> list[PseudoLabelRecord]:
    """The records written by :func:`save_pseudo_labels`, checked against ``pool``.

    Raises ValueError naming the file (and the item) when the file is not a pseudo-label file, an index is not
    in the pool, an image id differs from the pool's image at that index, or boxes, labels or scores are invalid.
    """
    try:
        return _load_pseudo_labels(Path(path), pool)
    except ValueError as error:
        raise ValueError(
            f"{error}; delete the file: the run makes it again from the previous cycle's model when it continues"
        ) from None


def _load_pseudo_labels(path: Path, pool: DetectionDataset) -> list[PseudoLabelRecord]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a JSON file ({error})") from error
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: not a pseudo-label file (expected format {FILE_FORMAT!r} and an 'images' list)")
    if data.get("version") != FILE_VERSION:
        raise ValueError(
            f"{path}: pseudo-label file version {data.get('version')!r}; this activedet reads version {FILE_VERSION}"
        )
    records = []
    for i, item in enumerate(data["images"]):
        try:
            records.append(_record_from_item(item, pool))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: images[{i}]: {error}") from error
    if len({r.pool_index for r in records}) != len(records):
        raise ValueError(f"{path}: a pool index appears more than once")
    return records
