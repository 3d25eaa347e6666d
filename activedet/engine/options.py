"""How to train: :class:`TrainOptions`, every field declared once (type, default, allowed values, help).

Torch-free: the CLI's config schema (:mod:`activedet.config`) is composed from these fields, and each is also a
key of the config file.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import EPOCH_CHECKPOINTS, OPTIMIZERS, SCHEDULES, VAL_METRICS
from ..fields import check_fields, option

__all__ = ["OptionError", "TrainOptions"]


class OptionError(ValueError):
    """An invalid training option; ``name``, ``expected`` and ``got`` let the CLI name its config key."""

    def __init__(self, name: str, expected: str, got):
        self.name, self.expected, self.got = name, expected, got
        super().__init__(f"The '{name}' training option must be {expected}. Got {got!r} instead.")


@dataclass
class TrainOptions:
    """How to train; every field is also a key of the CLI config file (its help: ``docs/config.md``).

    An invalid value raises :class:`OptionError` naming the field, what is allowed and what was given.
    """

    epochs: int = option(12, "training epochs (passes over the training images) per cycle", ge=1)
    batch_size: int = option(4, "global images per optimiser step (split across torchrun processes)", ge=1)
    optimizer: str = option(
        "sgd", "`sgd` (momentum, as the detection references) or `adamw` (robust from scratch)", choices=OPTIMIZERS
    )
    lr: float = option(0.01, "peak learning rate after warm-up", gt=0)
    momentum: float = option(0.9, "SGD momentum (ignored by AdamW)")
    weight_decay: float = option(1e-4, "L2 / decoupled weight decay")
    warmup_iters: int = option(100, "linear warm-up iterations (0 disables)", ge=0)
    warmup_factor: float = option(0.001, "warm-up starts at `lr * warmup_factor`", gt=0, le=1)
    lr_schedule: str = option(
        "step",
        "`step` (multiply by `lr_gamma` at each epoch of `lr_steps`), `cosine` (to 0 "
        "at the last iteration) or `constant`",
        choices=SCHEDULES,
    )
    lr_steps: list[int] = option([8, 11], "epochs at which the `step` schedule decays the lr")
    lr_gamma: float = option(0.1, "decay factor of the `step` schedule", gt=0, le=1)
    grad_clip: float | None = option(None, "max global gradient L2 norm (null: no clipping)", gt=0)
    amp: bool = option(True, "mixed precision on CUDA (ignored on CPU, and by `training: miaod`, which trains in fp32)")
    hflip_prob: float = option(0.5, "horizontal-flip probability of training images", ge=0, le=1)
    scale_jitter: float = option(
        0.0,
        "zoom training images in/out by up to this fraction, with a random shift "
        "(0: off; at most 0.4 for `classifier`)",
        ge=0,
        le=0.9,
    )
    color_jitter: float = option(
        0.0, "colour-jitter strength (channel order, brightness, contrast; 0: off)", ge=0, le=1
    )
    ssd_augment: bool = option(
        False,
        "SSD's training augmentation (photometric distortion, zoom-out up to 4x, "
        "random crop) before the flip and jitters, as AL-MDN trains; detectors only",
    )
    repeat_factor_threshold: float | None = option(
        None,
        "repeat-factor sampling for long-tailed classes (LVIS): a class in a fraction `f` of the training images "
        "below this threshold `t` has its images drawn `sqrt(t / f)` times as often; epochs keep their length "
        "(null: off; LVIS used 0.001 for its 1,203 classes)",
        gt=0,
        le=1,
    )
    eval_every: int = option(1, "validate every N epochs (when a validation split is given)", ge=1)
    early_stopping_patience: int | None = option(
        None, "stop after N validations without improvement (null: never)", ge=1
    )
    val_metric: str = option(
        "mAP_area",
        "the validation number that picks the best epoch: `mAP_area` or "
        "`mAP_11pt` (VOC, continuous rules); for `classifier`: `top1` or `mean_per_class`",
        choices=[name for names in VAL_METRICS.values() for name in names],
    )
    num_workers: int = option(0, "DataLoader worker processes", ge=0)
    seed: int = option(0, "run seed: initial set, training order, augmentation, subsets, selection")
    log_every: int = option(10, "iterations between JSON log lines", ge=1)
    tensorboard: bool = option(
        False,
        "also write TensorBoard scalars (`pip install activedet[tensorboard]`): "
        "training losses, lr and validation per cycle under `RUN/tensorboard/train/cycleN`, "
        "and per cycle the test metrics, the selection and the pseudo labels under "
        "`RUN/tensorboard`",
    )
    epoch_checkpoints: str = option(
        "last_best",
        "what a training directory keeps when training ends: `last_best` (`last.pt` and `best.pt`, "
        "weights only), `last` (`last.pt` only: the weights training ends with, the best validation epoch's when "
        "there is one) or `all` (`last.pt` with its optimizer state, `best.pt` and `epoch_N.pt` for every epoch); "
        "while training runs, `last.pt` always holds the optimizer state so a resume is exact. An active-learning "
        "run deletes each cycle's training directory once `cycles/t/model.pt` is written; with `all` it keeps the "
        "epochs' weights in `cycles/t/epochs/`",
        choices=EPOCH_CHECKPOINTS,
    )

    def __post_init__(self) -> None:
        check_fields(self, OptionError)
