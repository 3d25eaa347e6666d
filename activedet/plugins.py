"""What the method packages declare, collected on first lookup (standard library only).

A method that adds to the model or trains differently is a package ``activedet/methods/<method>/``; it declares
what it contributes as module-level mappings, plain definitions that importing the module does nothing with:

=================  ======================  ==========================================================================
module             mapping                 read by
=================  ======================  ==========================================================================
``model.py``       ``DETECTORS``           :func:`activedet.models.build_detector` (name -> builder)
``model.py``       ``EXTRA_FIELDS``        :data:`activedet.models.EXTRA_FIELDS` (the ``Detections.extras`` keys)
``model.py``       ``MODEL_ADDITIONS``     the detector builders (:mod:`activedet.models.additions`)
``model.py``       ``PER_DETECTION_...``   ``PER_DETECTION_EXTRAS``: extras keys with one row per detection
``training.py``    ``TRAINERS``            :mod:`activedet.engine.trainers` (name -> (trainer, options class))
``training.py``    ``DETECTOR_TRAINING``   ``training: auto`` (detector name -> its own procedure)
``training.py``    ``REFUSED_KEYS``        the config check (procedure -> {key that must be null: why})
``scoring.py``     ``BOX_COLUMNS``         ``activedet predict`` (extras key -> :class:`BoxColumns`)
``scoring.py``     ``PREDICTORS``          ``activedet predict --uncertainty`` (name -> ``(model, options) ->
                                           predictor or None``: the first that applies to the model predicts)
=================  ======================  ==========================================================================

The generic modules (models, engine) never name a method: they call :func:`collect` the first time they look a
name up, which imports every method package's module of that name (in folder order) and merges the mappings.
Adding a method is writing its package; nothing else is edited.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

__all__ = ["method_packages", "method_modules", "collect", "BoxColumns"]

#: the folder of the method packages
METHODS_DIR = Path(__file__).resolve().parent / "methods"


def method_packages() -> list[str]:
    """The names of the method packages (``activedet/methods/<name>/``), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules([str(METHODS_DIR)]) if m.ispkg and not m.name.startswith("_"))


def method_modules(module: str) -> list[ModuleType]:
    """Every method package's module ``module`` (e.g. ``"model"``), imported, in :func:`method_packages` order;
    packages without that module are skipped."""
    found = []
    for package in method_packages():
        name = f"activedet.methods.{package}.{module}"
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name))
    return found


def collect(module: str, attribute: str, builtin: dict[str, Any] | None = None) -> dict[str, Any]:
    """``builtin`` followed by the mapping ``attribute`` of every method package's ``module``.

    Raises ``ValueError`` when two places declare the same name (naming both), since the second would silently
    replace the first.
    """
    merged = dict(builtin or {})
    origin = dict.fromkeys(merged, "the built-in ones")
    for found in method_modules(module):
        for name, value in getattr(found, attribute, {}).items():
            if name in merged:
                raise ValueError(
                    f"{attribute} name '{name}' is declared twice: by {origin[name]} and by {found.__name__}; "
                    f"rename one of them"
                )
            merged[name], origin[name] = value, found.__name__
    return merged


class BoxColumns(NamedTuple):
    """Per-box columns ``activedet predict`` shows when a prediction carries a method's ``Detections.extras`` key.

    Attributes:
        fields: the ``Detections`` fields to request for them (those the predictor provides are requested).
        columns: ``columns(det) -> {column name: Tensor[N]}``, one value per detection.
        short: ``{column name: short label}`` drawn on images.
        always: shown for every prediction (``True``) or only with ``--uncertainty`` (``False``).
    """

    fields: frozenset[str]
    columns: Callable[[Any], dict[str, Any]]
    short: dict[str, str]
    always: bool = False
