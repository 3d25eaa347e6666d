"""Teacher-student semi-supervised training (in the spirit of Unbiased Teacher), a hook of the one training loop.

With ``semi_supervised: {method: teacher_student}`` in a config (:class:`TeacherStudentOptions`), each cycle's
training (:func:`activedet.engine.train.train_detector`) registers a :class:`TeacherStudent` hook and runs::

    burn-in: the first burn_in_epochs epochs train the student on labelled batches only
    teacher = a frozen copy of the student                  # before the first epoch after the burn-in
    every later step:
        labelled batch   -> the student's supervised loss                     (Trainer.forward_losses)
        unlabelled batch (round(unlabelled_ratio x batch_size) images; weak view: the standard flip)
            teacher(weak view), eval mode, no gradient -> detections with score >= threshold = pseudo boxes
                (with ignore_below: those scoring in [ignore_below, threshold) = ignored boxes, label -1)
            student(strong view of the same pixels, pseudo boxes) -> classification terms x unsup_weight
                                                                              (TeacherStudent.extra_losses)
        one backward pass and optimizer step on the sum
        teacher <- ema_decay * teacher + (1 - ema_decay) * student            (TeacherStudent.after_step)
    end of training: the model takes the teacher's weights                   (TeacherStudent.after_train)

The **teacher** is the cycle's model: validation (best epoch, early stopping) evaluates the teacher once it exists,
and the weights saved as ``cycles/t/model.pt``, evaluated on the test split and used to score the pool are the
teacher's (the student's during the burn-in, when there is no teacher yet).

The strong view only changes pixel values, never their positions (:func:`strong_augmentation`: colour jitter,
grayscale, Gaussian blur, random erasing), so the teacher's boxes on the weak view are valid boxes of the strong
view. The unlabelled images' annotations are never read (only their pixels): in a simulated run the pool's ground
truth stays hidden. An image whose teacher detections all fall below the threshold is trained as background.

Where this departs from Unbiased Teacher (Liu et al., ICLR'21):

* the schedule counts epochs of the labelled set (the burn-in too), not iterations;
* plain cross-entropy / the detector's own classification loss instead of focal loss in the RoI head;
* ``ema_decay`` 0.99 instead of 0.9996: an active-learning cycle runs tens to thousands of steps, not 180,000, and
  with a decay near 1 the teacher would stay the burn-in's student (its weights move by ``1 - decay`` per step);
* detectors without separate objectness/classification terms (RetinaNet, FCOS, SSD) train their one
  classification term on pseudo boxes; FCOS's centre-ness (a box-quality target) is left out with the box terms;
* ``pseudo_losses: all`` also trains the box terms on pseudo boxes (not in the paper, which leaves them out: a
  detection's score says little about how well its box is placed).

Under torchrun each process draws its own unlabelled batches from a stream seeded by its rank (untested there).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from ..data.records import DetectionDataset
from ..data.torch_dataset import DetectionTorchDataset
from ..fields import check_fields, option
from ..models._common import observers_paused
from . import distributed as dist_utils
from .options import OptionError, TrainOptions
from .trainer import HookBase

__all__ = [
    "TeacherStudentOptions",
    "TeacherStudent",
    "CLASSIFICATION_TERMS",
    "IGNORED",
    "strong_augmentation",
    "strong_views",
    "pseudo_targets",
    "ema_update",
    "unsupervised_terms",
    "UnlabelledBatches",
]

#: loss-dict terms that classify (anchors, proposals, RoIs) rather than regress boxes: Faster R-CNN's RoI
#: ``loss_classifier`` and RPN ``loss_objectness`` (what Unbiased Teacher trains on pseudo boxes), the one-stage
#: detectors' ``classification``
CLASSIFICATION_TERMS = ("loss_classifier", "loss_objectness", "classification")
#: the label of a pseudo box the unlabelled loss ignores (``ignore_below``): what it covers is neither object nor
#: background for the detectors whose class sets ``IGNORES_BOXES = True``
IGNORED = -1


def _refuse(name: str, expected: str, got) -> OptionError:
    return OptionError(f"semi_supervised.{name}", expected, got)


@dataclass
class TeacherStudentOptions:
    """The teacher-student procedure's options (``semi_supervised`` in a config; defaults: Unbiased Teacher's
    where it has one). An invalid value raises :class:`OptionError` naming ``semi_supervised.KEY``."""

    method: str = option("teacher_student", "the semi-supervised procedure", choices=("teacher_student",))
    threshold: float = option(
        0.7, "teacher detections with a score >= this become pseudo boxes (Unbiased Teacher: 0.7)", ge=0, le=1
    )
    ema_decay: float = option(
        0.99, "teacher <- decay * teacher + (1 - decay) * student after every step (1: frozen teacher)", ge=0, le=1
    )
    unsup_weight: float = option(4.0, "weight of the unlabelled (pseudo-box) loss (Unbiased Teacher: 4)", ge=0)
    burn_in_epochs: int = option(
        4, "supervised-only epochs before the teacher is copied from the student (fewer than `epochs`)", ge=0
    )
    unlabelled_ratio: float = option(
        1.0, "unlabelled images per labelled image in a step (the unlabelled batch: ratio x batch_size)", gt=0, le=16
    )
    ignore_below: float | None = option(
        None,
        "teacher detections scoring in [ignore_below, threshold) are ignored by the unlabelled loss, neither object "
        "nor background (null: below `threshold` is background; detectors that support it: faster_rcnn)",
        ge=0,
        le=1,
    )
    pseudo_losses: str = option(
        "classification",
        "terms trained on pseudo boxes: `classification` (objectness and class terms, as Unbiased Teacher) or `all`",
        choices=("classification", "all"),
    )

    def __post_init__(self) -> None:
        check_fields(self, _refuse)
        if self.ignore_below is not None and self.ignore_below >= self.threshold:
            raise _refuse(
                "ignore_below",
                f"less than semi_supervised.threshold ({self.threshold}): detections scoring in "
                "[ignore_below, threshold) are ignored; lower it, or set it to null to ignore none",
                self.ignore_below,
            )

    @classmethod
    def from_dict(cls, options: dict) -> TeacherStudentOptions:
        """The options of a config's ``semi_supervised`` mapping (unknown keys are refused, naming the key)."""
        if not isinstance(options, dict):
            raise OptionError("semi_supervised", "a mapping such as {method: teacher_student} or null", options)
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise _refuse(unknown[0], f"one of {valid}", unknown[0])
        return cls(**options)

    def check(self, options: TrainOptions) -> None:
        """The burn-in must leave epochs for the teacher (raises :class:`OptionError`)."""
        if self.burn_in_epochs >= options.epochs:
            raise _refuse(
                "burn_in_epochs",
                f"less than 'epochs' ({options.epochs}), so that the teacher trains for some epochs; "
                "lower semi_supervised.burn_in_epochs or raise epochs",
                self.burn_in_epochs,
            )

    def unlabelled_batch_size(self, batch_size: int) -> int:
        """Unlabelled images per step in one process: ``round(unlabelled_ratio x batch_size)`` (at least 1),
        divided among the torchrun processes as ``batch_size`` is."""
        return max(1, round(self.unlabelled_ratio * batch_size / dist_utils.world_size()))


def strong_augmentation() -> v2.Compose:
    """The strong view's transform (torchvision transforms v2): pixel values only, never positions.

    Unbiased Teacher's recipe: colour jitter (p 0.8), grayscale (p 0.2), Gaussian blur σ in [0.1, 2] (p 0.5), then
    three random erasings of decreasing probability filled with noise. Input and output: ``float32[3, H, W]`` in
    [0, 1]. Every step is photometric (no pixel moves), so the boxes the teacher predicts on the weak view are the
    strong view's targets as they are; pass the image alone.
    """
    return v2.Compose(
        [
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel_size=9, sigma=(0.1, 2.0))], p=0.5),
            v2.RandomErasing(p=0.7, scale=(0.05, 0.2), ratio=(0.3, 3.3), value="random"),
            v2.RandomErasing(p=0.5, scale=(0.02, 0.2), ratio=(0.1, 6.0), value="random"),
            v2.RandomErasing(p=0.3, scale=(0.02, 0.2), ratio=(0.05, 8.0), value="random"),
        ]
    )


def strong_views(images: Sequence[Tensor], seed: int) -> list[Tensor]:
    """The strong view of each image (CPU tensors), drawn from ``seed`` alone (torch's global RNG is left as it
    was, so the rest of training draws what it would draw without this call)."""
    transform = strong_augmentation()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [transform(image) for image in images]


def pseudo_targets(
    detections: Sequence, threshold: float, ignore_below: float | None = None
) -> list[dict[str, Tensor]]:
    """Training targets from the teacher's detections: the boxes (xyxy pixels of the image the teacher saw)
    whose score is ``>= threshold`` and whose width and height are positive (detectors refuse degenerate boxes),
    with their labels. An image with no such box gets an empty target (its anchors train as background).

    With ``ignore_below``, the boxes scoring in ``[ignore_below, threshold)`` follow with the label
    :data:`IGNORED` (-1): a detector that supports it (``IGNORES_BOXES``) trains what they cover as neither
    object nor background."""
    targets = []
    for det in detections:
        boxes = det.boxes.detach().float().reshape(-1, 4)
        scores = det.scores.detach().reshape(-1)
        labels = det.labels.detach().reshape(-1).long()
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        keep = (scores >= threshold) & valid
        target = {"boxes": boxes[keep], "labels": labels[keep]}
        if ignore_below is not None:
            unsure = (scores >= ignore_below) & (scores < threshold) & valid
            target = {
                "boxes": torch.cat([target["boxes"], boxes[unsure]]),
                "labels": torch.cat([target["labels"], torch.full_like(labels[unsure], IGNORED)]),
            }
        targets.append(target)
    return targets


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """``teacher <- decay * teacher + (1 - decay) * student`` for every floating-point entry of the state dicts
    (parameters and BatchNorm statistics); integer buffers (BatchNorm's batch counter) are copied."""
    student_state = student.state_dict()
    for name, value in teacher.state_dict().items():
        source = student_state[name].detach()
        if value.dtype.is_floating_point:
            value.mul_(decay).add_(source.to(value.dtype), alpha=1.0 - decay)
        else:
            value.copy_(source)


def unsupervised_terms(loss_dict: dict[str, Tensor], which: str) -> dict[str, Tensor]:
    """The terms of the student's loss dict on pseudo boxes that train: the classification ones
    (:data:`CLASSIFICATION_TERMS`) or, with ``which="all"``, every term. Raises ValueError naming
    ``semi_supervised.pseudo_losses`` when the detector has no classification term."""
    if which == "all":
        return dict(loss_dict)
    terms = {k: v for k, v in loss_dict.items() if k in CLASSIFICATION_TERMS}
    if not terms:
        raise ValueError(
            f"semi_supervised.pseudo_losses 'classification': the detector's loss terms {sorted(loss_dict)} "
            f"include none of {list(CLASSIFICATION_TERMS)}; set semi_supervised.pseudo_losses: all to train every "
            "term on pseudo boxes"
        )
    return terms


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class UnlabelledBatches:
    """Endless batches of weak views (``float32[3, H, W]`` CPU tensors) of unlabelled images.

    Epoch ``e`` walks permutations of the images drawn from ``(seed, e, k, rank)``, ``k`` = 0, 1, ... (the stream
    wraps around as often as the labelled epoch needs); the weak view is the standard training flip
    (``hflip_prob``, drawn from ``(seed, e, image)``). Only pixels are read, never the records' boxes.
    """

    def __init__(self, dataset: DetectionDataset, batch_size: int, *, hflip_prob: float, seed: int):
        self.data = DetectionTorchDataset(dataset, train=True, hflip_prob=hflip_prob, seed=seed)
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return len(self.data)

    def epoch(self, epoch: int) -> Iterator[list[Tensor]]:
        self.data.set_epoch(epoch)
        batch: list[Tensor] = []
        for k in itertools.count():
            order = np.random.default_rng([self.seed, epoch, k, dist_utils.rank()]).permutation(len(self.data))
            for position in order:
                batch.append(self.data[int(position)][0])
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class TeacherStudent(HookBase):
    """The teacher-student procedure (module docstring) as a :class:`~activedet.engine.trainer.Trainer` hook.

    Register it before :class:`~activedet.engine.hooks.BestEpoch` and give that hook
    ``module=hook.evaluated_model``, so validation sees the teacher and the best weights restored at the end win
    over the teacher copied into the model by :meth:`after_train`. The teacher's weights are part of the
    checkpoint (key ``teacher``): a resumed training continues with the same teacher.

    Args:
        options: :class:`TeacherStudentOptions`.
        unlabelled: the unlabelled images (``None`` or empty: no unlabelled loss; the teacher still follows the
            student and is the model training ends with).
        batch_size: unlabelled images per step in this process (:meth:`TeacherStudentOptions.unlabelled_batch_size`).
        hflip_prob: the weak view's flip probability (the training option).
        seed: the training seed (unlabelled order, weak flips and strong views derive from it).
    """

    def __init__(
        self,
        options: TeacherStudentOptions,
        unlabelled: DetectionDataset | None,
        *,
        batch_size: int,
        hflip_prob: float,
        seed: int,
    ):
        self.options, self.seed = options, seed
        self.stream = (
            UnlabelledBatches(unlabelled, batch_size, hflip_prob=hflip_prob, seed=_seed(seed, 0x55))
            if unlabelled is not None and len(unlabelled)
            else None
        )
        self.teacher: torch.nn.Module | None = None
        self._batches: Iterator[list[Tensor]] | None = None
        self._images = self._boxes = self._ignored = 0

    def evaluated_model(self) -> torch.nn.Module:
        """The teacher once it exists, else the student (the trained model)."""
        return self.teacher if self.teacher is not None else self.trainer.model

    def before_epoch(self) -> None:
        trainer = self.trainer
        if self.teacher is None and trainer.epoch >= self.options.burn_in_epochs:
            self.teacher = _frozen_copy(trainer.model)
            trainer.log(event="teacher_init", epoch=trainer.epoch + 1)
        active = self.teacher is not None and self.stream is not None
        self._batches = self.stream.epoch(trainer.epoch) if active else None
        self._images = self._boxes = self._ignored = 0

    def extra_losses(self) -> dict[str, Tensor]:
        if self._batches is None:
            return {}
        trainer = self.trainer
        weak = next(self._batches)
        detections = self.teacher.predict([image.to(trainer.device) for image in weak])
        targets = pseudo_targets(detections, self.options.threshold, self.options.ignore_below)
        self._images += len(targets)
        self._boxes += sum(int((t["labels"] != IGNORED).sum()) for t in targets)
        self._ignored += sum(int((t["labels"] == IGNORED).sum()) for t in targets)
        strong = strong_views(weak, _seed(self.seed, trainer.iter))
        # pseudo boxes are not ground truth: what observes the labelled samples (e.g. a class-difficulty EMA) skips them
        with torch.autocast(trainer.device.type, enabled=trainer.amp), observers_paused(trainer.model):
            losses = trainer.forward_model([image.to(trainer.device) for image in strong], targets)
        terms = unsupervised_terms(losses, self.options.pseudo_losses)
        return {f"unsup_{name}": self.options.unsup_weight * value for name, value in terms.items()}

    def after_step(self) -> None:
        if self.teacher is not None:
            ema_update(self.teacher, self.trainer.model, self.options.ema_decay)

    def after_epoch(self) -> None:
        if self._images:
            self.trainer.entry["pseudo_boxes_per_image"] = self._boxes / self._images
            if self.options.ignore_below is not None:
                self.trainer.entry["ignored_boxes_per_image"] = self._ignored / self._images

    def after_train(self) -> None:
        if self.teacher is not None:
            self.trainer.model.load_state_dict(self.teacher.state_dict())

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict() if self.teacher is not None else None}

    def load_state_dict(self, state: dict) -> None:
        # a finished training's last.pt (``final``) holds the weights it ended with, the teacher's or the best
        # epoch's: bringing the teacher back would make the resumed training end with other weights
        if state.get("teacher") is not None and not state.get("final"):
            self.teacher = _frozen_copy(self.trainer.model)
            self.teacher.load_state_dict(state["teacher"])
