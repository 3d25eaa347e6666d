"""Random sampling (methods.md §1.1): a uniform random sample of the unlabelled pool, no inference at all."""

from __future__ import annotations

from collections.abc import Iterator

from .base import SelectionInput, Strategy
from .checks import summary
from .registry import register

__all__ = ["random", "random_select"]


def random_select(inputs: SelectionInput) -> Iterator[int]:
    """Yield the pool indices in a uniform random order drawn from ``inputs.rng`` (scores are ignored)."""
    for position in inputs.rng.permutation(len(inputs.pool)):
        yield int(inputs.pool.indices[position])


@register("random")
def random() -> Strategy:
    """Uniform random sample of the unlabelled pool; no inference at all (methods.md §1.1)."""
    return Strategy("random", summary(random), score=None, select=random_select, needs_inference=False)
