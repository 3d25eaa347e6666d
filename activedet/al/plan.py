"""The loop's settings and the small decisions derived from them: initial set, budgets, stopping, seeds.

Counts given as an ``int`` are numbers of images (or boxes); a ``float`` is a fraction of the pool in (0, 1].
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .ledger import Ledger

__all__ = ["LoopOptions", "derive_seed", "initial_indices", "PlanError"]

BUDGET_UNITS = ("images", "boxes")


class PlanError(ValueError):
    """Settings that cannot work (checked before any work starts). ``name``/``expected``/``got`` are set for
    single-setting errors so the CLI can name the config key."""

    def __init__(self, name: str, expected: str | None = None, got=None, *, key: str | None = None):
        self.name, self.expected, self.got = name, expected, got
        self.key = key if expected is None else name  # the setting at fault
        super().__init__(name if expected is None else
                         f"The '{name}' setting must be {expected}. Got {got!r} instead.")


def derive_seed(seed: int, cycle: int, stage: str) -> int:
    """A 32-bit seed that depends only on the run seed, the cycle and the stage name."""
    return int(np.random.SeedSequence([seed, cycle, zlib.crc32(stage.encode())]).generate_state(1)[0])


def _count(value: int | float, total: int) -> int:
    return int(value) if isinstance(value, int) else int(round(value * total))


@dataclass
class LoopOptions:
    """How the active-learning cycle runs.

    Attributes:
        initial_labelled: images in the initial labelled set (int), or a fraction of the pool (float in (0, 1]).
            Drawn from ``seed`` alone, so every strategy of a seed starts from the same set (paired comparison).
        budget: images (or boxes, see ``budget_unit``) to label per cycle; an int, or a fraction of the pool.
        budget_unit: ``"images"``, or ``"boxes"``: images are taken in pick order until the boxes their revealed
            labels contain reach the budget (the image that crosses it is kept).
        cycles: number of selection rounds; the run ends after evaluating cycle ``cycles``.
        max_labelled: alternatively stop once this many images (int) or this fraction of the pool is labelled.
        score_subset: score only a random subset of the unlabelled pool each cycle (int images or fraction of
            the unlabelled pool), as MI-AOD does on COCO; ``None`` scores all of it.
        warm_start: train each cycle from the previous cycle's weights instead of the initial ones (fine-tuning,
            the medical framework's default).
        pseudo_label_subset: with pseudo labels on, label only a random subset of the unlabelled pool each cycle
            (int images or fraction of the unlabelled pool); ``None`` uses all of it.
        keep_checkpoints: how many recent cycle checkpoints to keep on disk.
        seed: the run seed (initial set, training, subsets, selection).
    """

    initial_labelled: int | float = 0.05
    budget: int | float = 0.025
    budget_unit: str = "images"
    cycles: int | None = 7
    max_labelled: int | float | None = None
    score_subset: int | float | None = None
    warm_start: bool = False
    pseudo_label_subset: int | float | None = None
    keep_checkpoints: int = 2
    seed: int = 0

    def check_values(self) -> None:
        """Raise :class:`PlanError` for values that are wrong whatever the pool (types, ranges, stopping rule)."""
        def fail(name: str, expected: str) -> None:
            raise PlanError(name, expected, getattr(self, name))

        for name in ("initial_labelled", "budget", "max_labelled", "score_subset", "pseudo_label_subset"):
            value = getattr(self, name)
            if isinstance(value, float) and not 0.0 < value <= 1.0:
                fail(name, "a fraction in (0, 1] (float) or a count >= 1 (int)")
            if isinstance(value, int) and value < 1:
                fail(name, "a count >= 1 (int) or a fraction in (0, 1] (float)")
        if self.budget_unit not in BUDGET_UNITS:
            fail("budget_unit", f"one of {list(BUDGET_UNITS)}")
        if self.cycles is None and self.max_labelled is None:
            fail("cycles", "set, or 'max_labelled' set, so that the run stops")
        if self.cycles is not None and self.cycles < 0:
            fail("cycles", "an int >= 0 or null")
        if self.keep_checkpoints < 1:
            fail("keep_checkpoints", "an int >= 1")

    def check(self, pool_size: int) -> None:
        """Raise :class:`PlanError` for settings that cannot work on a pool of ``pool_size`` images."""
        self.check_values()
        initial = _count(self.initial_labelled, pool_size)
        if not 1 <= initial <= pool_size:
            raise PlanError(f"The initial labelled set ({self.initial_labelled!r} -> {initial} images) must hold "
                            f"between 1 and the pool's {pool_size} images; set 'initial_labelled' to a count in "
                            f"1..{pool_size} or a fraction of the pool.", key="initial_labelled")
        selects = self.budget_unit == "images" and (self.cycles or 0) > 0
        if selects and _count(self.budget, pool_size) > pool_size - initial:
            raise PlanError(f"The budget ({self.budget!r} -> {_count(self.budget, pool_size)} images per cycle) is "
                            f"larger than the unlabelled pool ({pool_size - initial} images after the initial "
                            "set); lower 'budget' or 'initial_labelled'.", key="budget")

    def finished(self, ledger: Ledger) -> bool:
        """Whether the run ends after evaluating the current cycle."""
        pool_size = len(ledger.labelled_at)
        if self.cycles is not None and ledger.cycle >= self.cycles:
            return True
        if self.max_labelled is not None and len(ledger.labelled()) >= _count(self.max_labelled, pool_size):
            return True
        return len(ledger.unlabelled()) == 0

    def scoring_subset(self, unlabelled: np.ndarray, cycle: int) -> np.ndarray:
        """The unlabelled images to score at ``cycle`` (sorted pool indices)."""
        return self._subset(unlabelled, cycle, self.score_subset, "score_subset")

    def pseudo_subset(self, unlabelled: np.ndarray, cycle: int) -> np.ndarray:
        """The unlabelled images to pseudo-label for training ``cycle`` (sorted pool indices)."""
        return self._subset(unlabelled, cycle, self.pseudo_label_subset, "pseudo_subset")

    def _subset(self, unlabelled: np.ndarray, cycle: int, count: int | float | None, stage: str) -> np.ndarray:
        if count is None:
            return unlabelled
        size = min(len(unlabelled), _count(count, len(unlabelled)))
        rng = np.random.default_rng(derive_seed(self.seed, cycle, stage))
        return np.sort(rng.choice(unlabelled, size=size, replace=False))

    def budget_hint(self, pool_size: int, ledger: Ledger, oracle) -> int:
        """Images the selection is expected to take (exact for image budgets; from boxes/image for boxes)."""
        budget = _count(self.budget, pool_size)
        if self.budget_unit == "images":
            return budget
        labelled = ledger.labelled()
        per_image = sum(oracle.num_boxes(i) for i in labelled) / max(1, len(labelled))
        return max(1, int(np.ceil(budget / max(per_image, 1e-6))))

    def take_budget(self, picks: Iterator[int], oracle, pool_size: int) -> list[int]:
        """Consume the strategy's picks until the budget is spent (or the candidates run out)."""
        budget, taken, spent = _count(self.budget, pool_size), [], 0
        for index in picks:
            taken.append(int(index))
            spent += 1 if self.budget_unit == "images" else oracle.num_boxes(int(index))
            if spent >= budget:
                break
        if len(set(taken)) != len(taken):
            raise RuntimeError("the strategy selected an image twice; this is a bug in the strategy")
        return taken


def initial_indices(pool_size: int, options: LoopOptions) -> np.ndarray:
    """The initial labelled set: sorted pool indices drawn from ``options.seed`` alone."""
    options.check(pool_size)
    rng = np.random.default_rng(derive_seed(options.seed, 0, "initial"))
    size = _count(options.initial_labelled, pool_size)
    return np.sort(rng.choice(pool_size, size=size, replace=False))
