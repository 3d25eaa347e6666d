"""Per-class difficulty maintained during training, for PPAL's difficulty-calibrated uncertainty (methods.md §7.4).

A detector built with ``difficulty_ema=True`` owns one :class:`ClassDifficultyEMA`. During every training forward
pass, for each positive training sample (Faster R-CNN: a sampled positive RoI; RetinaNet: a positive anchor) with
ground-truth class ``c`` it computes, without gradients,

    q = p_c^ξ · IoU(predicted box, matched GT box)^(1 - ξ)

(``p_c`` the predicted probability of the GT class, the predicted box decoded from the sample's regression output
for class ``c``), averages ``q`` per class over the batch (over all processes when torch.distributed is
initialised: per-class sums and counts are all-reduced) and updates the per-class quality ``Q_c`` and momentum
``m_c``:

* class present in the batch: ``Q_c ← m_c Q_c + (1 - m_c) q̄_c``, then ``m_c ← m_base``;
* class absent, ``absent="decay"`` (the official PPAL code): the same update with ``q̄_c = 0``, then
  ``m_c ← m_c · m_base``. ``Q_c`` of a class absent for ``k`` iterations is multiplied by about ``m_base^(k(k+1)/2)``
  (0.99 and 30 iterations: 0.009), so a class missing from the last few dozen batches looks maximally hard
  whatever its quality;
* class absent, ``absent="keep"`` (default, our fix): ``Q_c`` and ``m_c`` are unchanged, so ``Q_c`` is an EMA of
  the class's own qualities only.

``Q`` starts at 0 (every class "hard" until seen), ``m`` at ``m_base``. Both are registered buffers (``quality``,
``momentum``, plus the update count ``updates``), so they are in the state dict and in checkpoints. The update
consumes no random numbers and touches no parameter or gradient, so training is exactly the same with and
without it.

:class:`DifficultyPredictor` fills, on request, the ``Detections.extras`` key (:data:`EXTRA_FIELDS`):

* ``class_quality``: ``float32[C]`` the model's per-class quality ``Q_c`` learned during training (index ``c - 1``
  for class ``c``; 0 = hard, 1 = easy), the same tensor for every image.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ...models._common import broadcast_iou, check_choice, check_float
from ...models.additions import ModelAddition
from ...models.outputs import Detections
from ..stochastic.model import predicting_detector

#: The ``Detections.extras`` keys this module fills (module docstring).
EXTRA_FIELDS = frozenset({"class_quality"})

__all__ = [
    "EXTRA_FIELDS",
    "MODEL_ADDITIONS",
    "ClassDifficultyEMA",
    "ABSENT_POLICIES",
    "aligned_iou",
    "difficulty_module",
    "find_difficulty",
    "DifficultyPredictor",
    "RELEASED_DCUS_POSTPROCESS",
    "overridden_postprocessing",
]

ABSENT_POLICIES = ("keep", "decay")


def aligned_iou(a: Tensor, b: Tensor) -> Tensor:
    """``[N]`` IoU of ``a[i]`` with ``b[i]`` for xyxy boxes ``a``, ``b`` ``[N, 4]`` (0 where the union is empty)."""
    return broadcast_iou(a, b)


class ClassDifficultyEMA(nn.Module):
    """The per-class quality EMA of the module docstring, for classes ``1..C`` (buffer index ``c - 1``).

    Args:
        num_classes: ``C``.
        momentum: ``m_base`` (0.99, PPAL's active-learning configs).
        xi: ``ξ``, the weight of the class probability against the IoU in ``q`` (0.6).
        absent: ``"keep"`` (default) or ``"decay"``, what happens to classes absent from a batch.
    """

    def __init__(self, num_classes: int, *, momentum: float = 0.99, xi: float = 0.6, absent: str = "keep"):
        super().__init__()
        check_float("ClassDifficultyEMA", "momentum", momentum, 0.0, 1.0)
        check_float("ClassDifficultyEMA", "xi", xi, 0.0, 1.0)
        check_choice("ClassDifficultyEMA", "absent", absent, ABSENT_POLICIES)
        self.base_momentum, self.xi, self.absent = float(momentum), float(xi), absent
        self.register_buffer("quality", torch.zeros(num_classes))
        self.register_buffer("momentum", torch.full((num_classes,), float(momentum)))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"num_classes={self.quality.numel()}, momentum={self.base_momentum}, xi={self.xi}, absent={self.absent}"

    @torch.no_grad()
    def observe(self, labels: Tensor, probs: Tensor, ious: Tensor) -> None:
        """One training iteration's positives: GT ``labels`` ``int64[P]`` in ``1..C``, the predicted probability of
        that class ``probs`` ``[P]`` and the IoU of the predicted box with the GT box ``ious`` ``[P]``."""
        quality = probs.float().clamp(0, 1) ** self.xi * ious.float().clamp(0, 1) ** (1 - self.xi)
        self.update(*self.class_sums(labels, quality))

    def class_sums(self, labels: Tensor, quality: Tensor) -> tuple[Tensor, Tensor]:
        """``(sum of q, count)`` per class, ``[C]`` each, summed over processes when distributed is initialised."""
        index = (labels.long() - 1).to(self.quality.device)
        quality = quality.to(self.quality)
        sums = torch.zeros_like(self.quality).index_add_(0, index, quality)
        counts = torch.zeros_like(self.quality).index_add_(0, index, torch.ones_like(quality))
        if dist.is_available() and dist.is_initialized():
            both = torch.stack([sums, counts])
            dist.all_reduce(both)
            sums, counts = both[0], both[1]
        return sums, counts

    @torch.no_grad()
    def update(self, sums: Tensor, counts: Tensor) -> None:
        """The EMA step of the module docstring from per-class sums and counts of ``q`` ``[C]``."""
        present = counts > 0
        mean = torch.where(present, sums / counts.clamp(min=1), torch.zeros_like(sums))
        updated = self.momentum * self.quality + (1 - self.momentum) * mean
        base = torch.full_like(self.momentum, self.base_momentum)
        if self.absent == "decay":
            self.quality.copy_(updated)
            self.momentum.copy_(torch.where(present, base, self.momentum * self.base_momentum))
        else:
            self.quality.copy_(torch.where(present, updated, self.quality))
            self.momentum.copy_(torch.where(present, base, self.momentum))
        self.updates += 1


def difficulty_module(
    func: str, num_classes: int, enabled: bool, momentum: float, xi: float, absent: str
) -> ClassDifficultyEMA | None:
    """The builders' ``difficulty_*`` options checked (messages naming ``func``) and turned into a module."""
    if not isinstance(enabled, bool):
        raise ValueError(f"The 'difficulty_ema' parameter of {func} must be a bool. Got {enabled!r} instead.")
    check_float(func, "difficulty_momentum", momentum, 0.0, 1.0)
    check_float(func, "difficulty_xi", xi, 0.0, 1.0)
    check_choice(func, "difficulty_absent", absent, ABSENT_POLICIES)
    return ClassDifficultyEMA(num_classes, momentum=momentum, xi=xi, absent=absent) if enabled else None


def attach_difficulty(
    model: nn.Module,
    *,
    func: str,
    num_classes: int,
    difficulty_ema: bool,
    difficulty_momentum: float,
    difficulty_xi: float,
    difficulty_absent: str,
) -> None:
    """The builders' ``difficulty_*`` keywords: with ``difficulty_ema=True`` a :class:`ClassDifficultyEMA` becomes
    the sample observer ``difficulty`` of ``model`` (``model.difficulty`` for RetinaNet, ``model.roi_heads.difficulty``
    for Faster R-CNN), its buffers in the state dict. Gradients and training are unchanged. It is attached after the
    builder's ``weights`` are loaded and starts fresh (a difficulty belongs to one training run)."""
    module = difficulty_module(func, num_classes, difficulty_ema, difficulty_momentum, difficulty_xi, difficulty_absent)
    if module is not None:
        model.add_sample_observer("difficulty", module)


#: What this method adds to the detectors offering the ``"training_samples"`` hook point (retinanet, faster_rcnn):
#: the builder keywords ``difficulty_ema`` (off), ``difficulty_momentum`` (``m_base``), ``difficulty_xi`` (``ξ``) and
#: ``difficulty_absent`` (``"keep"``, our fix, or ``"decay"``, the official code), see the module docstring.
MODEL_ADDITIONS = {
    "class_difficulty": ModelAddition(
        point="training_samples",
        keywords={
            "difficulty_ema": False,
            "difficulty_momentum": 0.99,
            "difficulty_xi": 0.6,
            "difficulty_absent": "keep",
        },
        attach=attach_difficulty,
        summary="PPAL's per-class difficulty kept during training (difficulty_ema: true; the ppal strategy)",
    )
}


def find_difficulty(model: nn.Module) -> ClassDifficultyEMA | None:
    """The model's :class:`ClassDifficultyEMA` (through DDP/ensemble wrappers), or ``None``."""
    for module in model.modules():
        if isinstance(module, ClassDifficultyEMA):
            return module
    return None


#: PPAL's released DCUS inference (``configs/*_active_learning/al_inference/retinanet_uncertainty.py`` with its
#: ``RetinaHeadUncertainty``): no score threshold before NMS, 3000 candidates per level, 200 detections per image.
RELEASED_DCUS_POSTPROCESS = {"score_thresh": 0.0, "topk_candidates": 3000, "detections_per_img": 200}


@contextmanager
def overridden_postprocessing(model: nn.Module, values: dict[str, float] | None) -> Iterator[None]:
    """The postprocessing attributes ``values`` (``score_thresh``, ``topk_candidates``, ``detections_per_img``)
    temporarily set on ``model`` and its ``roi_heads`` wherever they exist; restored on exit."""
    holders = [m for m in (model, getattr(model, "roi_heads", None)) if m is not None]
    saved = [(h, name, getattr(h, name)) for h in holders for name in (values or {}) if hasattr(h, name)]
    try:
        for h, name, _ in saved:
            setattr(h, name, values[name])
        yield
    finally:
        for h, name, value in saved:
            setattr(h, name, value)


class DifficultyPredictor:
    """``predict(images, fields)`` of ``model`` that also attaches the model's ``class_quality`` (PPAL's DCUS), an
    extras key (module docstring).

    ``postprocess``: detector postprocessing used while predicting (``None``: the detector's own;
    :data:`RELEASED_DCUS_POSTPROCESS`: the released DCUS inference).

    Raises ``ValueError`` saying which ``detector_options`` to set when the model keeps no class difficulty (at
    construction, so a run fails before any training), and from ``predict`` when the difficulty was never updated
    (a model built with ``difficulty_ema`` but not trained).
    """

    def __init__(self, model: nn.Module, *, strategy: str = "ppal", postprocess: dict[str, float] | None = None):
        difficulty = find_difficulty(model)
        if difficulty is None:
            raise ValueError(
                f"strategy '{strategy}' needs the per-class difficulty learned during training, and "
                f"{type(model).__name__} keeps none: set detector_options: {{difficulty_ema: true}} "
                "(detector faster_rcnn or retinanet) and train again"
            )
        self.model, self.difficulty, self.strategy = model, difficulty, strategy
        self.postprocess = dict(postprocess) if postprocess else None
        self.prob_kind = getattr(model, "prob_kind", "sigmoid")
        self.PROVIDES = frozenset(getattr(model, "PROVIDES", frozenset()) | EXTRA_FIELDS)

    def class_quality(self) -> Tensor:
        """``float32[C]`` the learned ``Q`` (a copy); raises ``ValueError`` if it was never updated."""
        if int(self.difficulty.updates) == 0:
            raise ValueError(
                f"strategy '{self.strategy}': the model's class difficulty was never updated (0 training "
                "iterations with detector_options: {difficulty_ema: true}); train the model first"
            )
        return self.difficulty.quality.detach().float().clone()

    def predict(self, images: Sequence[Tensor], fields: Iterable[str] = ()) -> list[Detections]:
        fields = Detections.check_fields(fields)
        quality = self.class_quality() if "class_quality" in fields else None
        with overridden_postprocessing(predicting_detector(self.model), self.postprocess):
            detections = self.model.predict(images, fields - {"class_quality"})
        if quality is None:
            return detections
        return [det.with_extras(class_quality=quality.to(det.scores.device)) for det in detections]
