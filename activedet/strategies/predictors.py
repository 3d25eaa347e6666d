"""Small adapters from a trained model to the predictor of a strategy's scoring pass (``Strategy.predictor``).

A predictor is built as ``predictor(model, context=None)`` (:class:`~activedet.strategies.base.ScoringContext`);
these adapters bind a method's options with ``functools.partial`` so that the loop never knows which one it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..models.views import ViewPredictor, noise_views, parse_views

__all__ = ["model_only", "view_predictor"]


def model_only(model: Any, context: Any = None, *, build: Callable) -> Any:
    """``build(model)``: a predictor that needs nothing from the scoring context."""
    return build(model)


def view_predictor(
    model: Any, context: Any = None, *, views: str | tuple[int, float], references: Callable
) -> ViewPredictor:
    """A :class:`~activedet.models.views.ViewPredictor`: ``views`` is a string of view letters or
    ``(noise_levels, noise_step)`` (noisy copies); ``references`` picks each image's tracked detections."""
    built = parse_views(views) if isinstance(views, str) else noise_views(*views)
    seed = getattr(context, "seed", None)  # the scoring seed: a resumed stage draws the same views
    return ViewPredictor(model, built, references=references, seed=seed)
