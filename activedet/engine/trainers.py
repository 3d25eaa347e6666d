"""The flat map of per-cycle training procedures a config's ``training`` key names.

Every trainer has one signature, so the active-learning loop calls whichever the config chose without knowing it::

    trainer(model, labelled, *, unlabelled, val_set, options, out_dir, device, resume, progress) -> TrainResult

``unlabelled`` is the current unlabelled pool (semi-supervised procedures train on part of it; the standard one
ignores it).
"""

from __future__ import annotations

import functools
from typing import Callable

from .miaod import MIAODOptions, train_miaod
from .train import OptionError, train_detector

__all__ = ["TRAINERS", "resolve_training", "get_trainer"]

#: name -> (trainer, options class or None when it takes no ``training_options``)
TRAINERS: dict[str, tuple[Callable, type | None]] = {
    "standard": (train_detector, None),
    "miaod": (train_miaod, MIAODOptions),
}

#: detectors whose own procedure is not the standard one (``training: auto`` picks it)
DETECTOR_TRAINING = {"miaod": "miaod"}


def resolve_training(training: str, detector: str) -> str:
    """``"auto"`` -> the detector's own procedure; any other name is checked against :data:`TRAINERS`."""
    if training == "auto":
        return DETECTOR_TRAINING.get(detector, "standard")
    if training not in TRAINERS:
        raise OptionError("training", f"'auto' or one of {list(TRAINERS)}", training)
    if training in DETECTOR_TRAINING.values() and DETECTOR_TRAINING.get(detector) != training:
        needed = [d for d, t in DETECTOR_TRAINING.items() if t == training]
        raise OptionError("training", f"'standard' or 'auto' for detector '{detector}' (training '{training}' "
                          f"needs detector {needed})", training)
    return training


def get_trainer(training: str, detector: str, training_options: dict | None = None) -> Callable:
    """The trainer for ``training`` (resolved for ``detector``) with its validated ``training_options`` bound."""
    name = resolve_training(training, detector)
    trainer, options_class = TRAINERS[name]
    given = dict(training_options or {})
    if options_class is None:
        if given:
            raise OptionError(f"training_options.{sorted(given)[0]}",
                              f"absent: training '{name}' takes no training_options", given[sorted(given)[0]])
        return trainer
    return functools.partial(trainer, training_options=options_class.from_dict(given))
