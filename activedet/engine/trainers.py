"""The flat map of per-cycle training procedures a config's ``training`` key names.

Every trainer has one signature, so the active-learning loop calls whichever the config chose without knowing it::

    trainer(model, labelled, *, unlabelled, val_set, options, out_dir, device, resume, progress) -> TrainResult

``unlabelled`` is the current unlabelled pool (semi-supervised procedures train on part of it; the standard one
ignores it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import distributed as dist_utils
from .checkpoint import load_checkpoint, save_checkpoint
from .train import OptionError, TrainOptions, TrainResult, train_detector

__all__ = [
    "TRAINERS",  # noqa: F822 (a module __getattr__ attribute)
    "resolve_training",
    "get_trainer",
    "refused_keys",
    "train_ensemble",
]

#: The procedures of this package; :data:`TRAINERS` adds those the method packages declare.
BUILTIN_TRAINERS: dict[str, tuple[Callable, type | None]] = {"standard": (train_detector, None)}


def __getattr__(name: str):
    """``TRAINERS`` and ``DETECTOR_TRAINING``, collected from the method packages' ``training`` modules the first
    time one is read (:mod:`activedet.plugins`), then kept as plain module attributes.

    * ``TRAINERS``: name -> (trainer, options class or None when it takes no ``training_options``).
    * ``DETECTOR_TRAINING``: detectors whose own procedure is not the standard one (``training: auto`` picks it).
    """
    if name not in ("TRAINERS", "DETECTOR_TRAINING"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ..plugins import collect

    values = {
        "TRAINERS": collect("training", "TRAINERS", BUILTIN_TRAINERS),
        "DETECTOR_TRAINING": collect("training", "DETECTOR_TRAINING"),
    }
    globals().update(values)
    return values[name]


def _registries() -> tuple[dict, dict]:
    """``(TRAINERS, DETECTOR_TRAINING)``, collected when not yet."""
    if "TRAINERS" not in globals():
        __getattr__("TRAINERS")
    return globals()["TRAINERS"], globals()["DETECTOR_TRAINING"]


def resolve_training(training: str, detector: str) -> str:
    """``"auto"`` -> the detector's own procedure; any other name is checked against :data:`TRAINERS`."""
    TRAINERS, DETECTOR_TRAINING = _registries()  # noqa: N806 (the module attributes, collected on first use)
    if training == "auto":
        return DETECTOR_TRAINING.get(detector, "standard")
    if training not in TRAINERS:
        raise OptionError("training", f"'auto' or one of {list(TRAINERS)}", training)
    if training in DETECTOR_TRAINING.values() and DETECTOR_TRAINING.get(detector) != training:
        needed = [d for d, t in DETECTOR_TRAINING.items() if t == training]
        raise OptionError(
            "training",
            f"'standard' or 'auto' for detector '{detector}' (training '{training}' needs detector {needed})",
            training,
        )
    return training


def refused_keys(training: str) -> dict[str, str]:
    """The config keys procedure ``training`` cannot be combined with (they must be null), each with the reason:
    the ``REFUSED_KEYS`` a method package's ``training`` module declares for it (:mod:`activedet.plugins`)."""
    from ..plugins import collect

    return dict(collect("training", "REFUSED_KEYS").get(training, {}))


def get_trainer(training: str, detector: str, training_options: dict | None = None) -> Callable:
    """The trainer for ``training`` (resolved for ``detector``) with its validated ``training_options`` bound."""
    name = resolve_training(training, detector)
    trainer, options_class = _registries()[0][name]
    given = dict(training_options or {})
    if options_class is None:
        if given:
            raise OptionError(
                f"training_options.{sorted(given)[0]}",
                f"absent: training '{name}' takes no training_options",
                given[sorted(given)[0]],
            )
        return trainer
    return functools.partial(trainer, training_options=options_class.from_dict(given))


def train_ensemble(
    model,
    labelled,
    *,
    member_trainer: Callable,
    unlabelled=None,
    val_set=None,
    options=None,
    out_dir=None,
    device="auto",
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train every member of an :class:`~activedet.models.EnsembleDetector` independently with ``member_trainer``.

    Member 0 trains with ``options.seed`` (so it is exactly the model the plain detector would be), member ``m``
    with a seed derived from ``(options.seed, m)``: different data order and augmentation as well as a different
    initialisation. Each finished member is saved to ``out_dir/member{m}/member.pt``, so a killed run resumes at
    the member it was training (and inside it, from that member's ``last.pt``). Training cost is ``M`` times the
    member's. Returns member 0's result with the wall time of all members.
    """
    options = options or TrainOptions()
    results = []
    for m, member in enumerate(model.members):
        member_dir = Path(out_dir) / f"member{m}" if out_dir is not None else None
        done = member_dir / "member.pt" if member_dir is not None else None
        if resume and done is not None and dist_utils.main_sees_file(done):
            saved = load_checkpoint(done)
            member.load_state_dict(saved["model"])
            results.append(TrainResult(**saved["result"]))
            continue
        seed = options.seed if m == 0 else int(np.random.SeedSequence([options.seed, m]).generate_state(1)[0])
        result = member_trainer(
            member,
            labelled,
            unlabelled=unlabelled,
            val_set=val_set,
            options=replace(options, seed=seed),
            out_dir=member_dir,
            device=device,
            resume=resume,
            progress=progress,
        )
        results.append(result)
        if done is not None and dist_utils.is_main_process():
            summary = {
                k: getattr(result, k)
                for k in ("epochs_completed", "best_epoch", "best_metric", "stopped_early", "history", "wall_time_s")
            }
            save_checkpoint(done, {"model": member.state_dict(), "result": summary})
        dist_utils.barrier()
    return replace(
        results[0], wall_time_s=sum(r.wall_time_s for r in results), last_checkpoint=None, best_checkpoint=None
    )
