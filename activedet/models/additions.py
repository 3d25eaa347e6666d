"""Model additions: builder keywords that a method package adds to every detector offering its hook point.

A detector adapter offers named *hook points*, places where something outside the detector family may attach
(its builder is marked with :func:`offers`). A method package declares what it attaches in its ``model.py``
(``MODEL_ADDITIONS``, collected by :func:`activedet.plugins.collect`), so the adapter never names the method:

* ``"training_samples"``: the adapter gathers, in every training forward pass, its positive training samples
  (the ground-truth class of each, the predicted probability of that class and the IoU of the predicted box with
  the ground-truth box) and gives them to the observers attached with ``model.add_sample_observer(name, module)``
  (``observer.observe(labels int64[P], probs [P], ious [P])``, without gradients). The observer is a submodule
  under ``name``: its buffers are in the state dict and in checkpoints.

An addition is off at its keywords' defaults; a builder given one of its keywords checks them (messages naming
the builder) and attaches it once the builder's weights are loaded (what it keeps belongs to one training run).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = [
    "HOOK_POINTS",
    "ModelAddition",
    "offers",
    "forwards",
    "model_additions",
    "take_additions",
    "attach_additions",
    "builder_keywords",
]

#: every hook point an adapter may offer (module docstring)
HOOK_POINTS = frozenset({"training_samples"})


@dataclass(frozen=True)
class ModelAddition:
    """What a method attaches at one hook point.

    Args:
        point: one of :data:`HOOK_POINTS`.
        keywords: the builder keywords it takes, each with its default (at which nothing is attached).
        attach: ``attach(model, *, func, num_classes, **keywords)``: checks the keywords (errors naming the builder
            ``func``) and changes ``model`` through the hook point.
        summary: one line for ``activedet detectors``.
    """

    point: str
    keywords: Mapping[str, Any]
    attach: Callable[..., None]
    summary: str = field(default="")


def offers(*points: str) -> Callable[[Callable], Callable]:
    """Mark a builder as taking the keywords of the additions at ``points`` (``build_detector`` reads it)."""
    unknown = sorted(set(points) - HOOK_POINTS)
    if unknown:
        raise ValueError(f"Unknown hook point(s) {unknown}; the hook points are {sorted(HOOK_POINTS)}")

    def mark(builder: Callable) -> Callable:
        builder.hook_points = frozenset(points)
        return builder

    return mark


def forwards(*targets: Callable, sets: Iterable[str] = (), additions: bool = True) -> Callable[[Callable], Callable]:
    """Mark a wrapper builder whose ``**kwargs`` go on to ``targets``: it takes their keywords except ``sets``
    (which it sets itself), and with ``additions=False`` not the keywords of their model additions."""

    def mark(builder: Callable) -> Callable:
        builder.forwards_to = (tuple(targets), frozenset(sets), additions)
        return builder

    return mark


def _keyword_only(builder: Callable) -> set[str]:
    params = inspect.signature(builder).parameters
    return {k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def builder_keywords(builder: Callable) -> tuple[list[str], bool]:
    """``(the keywords builder takes, sorted; whether it takes any other keyword too)``: its keyword-only
    parameters, its additions' keywords and, for a wrapper (:func:`forwards`), its targets' keywords. A builder
    whose variable keywords are named ``additions`` takes no keyword beyond these."""
    params = inspect.signature(builder).parameters
    accepted = _keyword_only(builder) | addition_keywords(builder)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD and k != "additions" for k, p in params.items())
    forwarded = getattr(builder, "forwards_to", None)
    if forwarded is not None:
        targets, hidden, with_additions = forwarded
        for target in targets:
            accepted |= _keyword_only(target) | (addition_keywords(target) if with_additions else set())
        accepted -= hidden
        accepts_any = False
    return sorted(accepted), accepts_any


def model_additions(points: Iterable[str] | None = None) -> dict[str, ModelAddition]:
    """The declared additions (name -> addition), those at ``points`` only when given."""
    from ..plugins import collect

    found = collect("model", "MODEL_ADDITIONS")
    wanted = None if points is None else frozenset(points)
    return {name: a for name, a in found.items() if wanted is None or a.point in wanted}


def addition_keywords(builder: Callable) -> set[str]:
    """The keywords the additions at ``builder``'s hook points add to it."""
    points = getattr(builder, "hook_points", frozenset())
    return {k for a in model_additions(points).values() for k in a.keywords} if points else set()


def take_additions(func: str, builder: Callable, given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pop the additions' keywords from ``given`` (a builder's ``**kwargs``): addition name -> its keywords, for
    each addition given at least one of them (the others at their defaults). What is left in ``given`` is for the
    builder itself."""
    taken = {}
    for name, addition in model_additions(getattr(builder, "hook_points", frozenset())).items():
        if any(k in given for k in addition.keywords):
            taken[name] = {k: given.pop(k, default) for k, default in addition.keywords.items()}
    return taken


def attach_additions(func: str, model: nn.Module, num_classes: int, taken: dict[str, dict[str, Any]]) -> None:
    """Attach the additions :func:`take_additions` took, in declaration order."""
    additions = model_additions()
    for name, values in taken.items():
        additions[name].attach(model, func=func, num_classes=num_classes, **values)


def refuse_unknown(func: str, builder: Callable, given: dict[str, Any]) -> None:
    """``TypeError`` for keywords left in ``given`` once the additions took theirs, listing what ``func`` takes."""
    if given:
        params = inspect.signature(builder).parameters
        own = [k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        raise TypeError(
            f"{func}() got unexpected keyword argument(s) {sorted(given)}; "
            f"it takes {sorted(set(own) | addition_keywords(builder))}"
        )
