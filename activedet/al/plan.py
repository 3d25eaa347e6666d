"""The loop's settings and the small decisions derived from them: initial set, budgets, stopping, seeds.

Counts given as an ``int`` are numbers of images (or boxes); a ``float`` is a fraction of the pool in (0, 1].
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..constants import BUDGET_UNITS, INITIAL_SELECTIONS
from ..fields import Count, check_fields, option
from .ledger import Ledger

__all__ = ["LoopOptions", "derive_seed", "initial_indices", "PlanError"]


class PlanError(ValueError):
    """Settings that cannot work (checked before any work starts). ``name``/``expected``/``got`` are set for
    single-setting errors so the CLI can name the config key."""

    def __init__(self, name: str, expected: str | None = None, got=None, *, key: str | None = None):
        self.name, self.expected, self.got = name, expected, got
        self.key = key if expected is None else name  # the setting at fault
        super().__init__(name if expected is None else f"The '{name}' setting must be {expected}. Got {got!r} instead.")


def derive_seed(seed: int, cycle: int, stage: str) -> int:
    """A 32-bit seed that depends only on the run seed, the cycle and the stage name."""
    return int(np.random.SeedSequence([seed, cycle, zlib.crc32(stage.encode())]).generate_state(1)[0])


def _count(value: int | float, total: int) -> int:
    return int(value) if isinstance(value, int) else int(round(value * total))


@dataclass
class LoopOptions:
    """How the active-learning cycle runs; every field is also a key of the CLI config file (its help:
    ``docs/config.md``). :meth:`check_values` (or :meth:`check` against a pool) raises :class:`PlanError` for
    settings that cannot work.

    The initial set is drawn from ``seed`` alone, so every strategy of a seed starts from the same set (paired
    comparison). With ``budget_unit: boxes`` (or ``cost``) images are taken in pick order until their boxes (or
    labelling cost, :mod:`activedet.al.cost`) reach the budget (the image that crosses it is kept): the revealed
    figure when the oracle previews labels (simulation), else the one predicted from the detector's detections.
    """

    initial_labelled: Count = option(
        0.05, "initial labelled images: int count or float fraction of the pool in (0, 1]; drawn from `seed` only"
    )
    initial_selection: str = option(
        "random",
        "how the initial set is chosen: `random` (from `seed`), or from the pool's embeddings by the untrained "
        "detector (use pretrained backbone weights): `typiclust` (the most typical image of each of k-means' "
        "clusters) or `kmeans_medoids` (the image nearest each cluster centre)",
        choices=INITIAL_SELECTIONS,
    )
    budget: Count = option(
        0.025, "images (or boxes, or cost) to label per cycle: int, or float fraction of the pool (not for cost)"
    )
    budget_unit: str = option(
        "images",
        "`images`, `boxes` or `cost` (images taken in pick order until their boxes / labelling cost reach the "
        "budget: the revealed figure in simulation, the predicted one with people labelling; see docs/cost.md)",
        choices=BUDGET_UNITS,
    )
    near_duplicates: float | None = option(
        None,
        "skip a pick that nearly duplicates a labelled image or an earlier pick: its 32 px grey thumbnail "
        "correlates at least this much with the other's at the best shift of up to 1/16 of the image (0.85 found "
        "97% of the bench data's shifted, re-exposed copies and no other pair); the budget goes to the next pick. "
        "null: keep every pick",
        gt=0,
        le=1,
    )
    cycles: int | None = option(
        7, "selection rounds (the run evaluates cycles 0..N); null: stop at `max_labelled`", ge=0
    )
    max_labelled: Count | None = option(None, "or stop at this many labelled images (int) / fraction of the pool")
    score_subset: Count | None = option(
        None,
        "score only a random subset of the unlabelled pool per cycle (int "
        "images or fraction of the unlabelled pool), as MI-AOD on COCO; null: all",
    )
    warm_start: bool = option(
        False,
        "fine-tune: start each cycle from the previous cycle's weights instead of the "
        "initial ones (tqxli/semi_supervised_active_learning's default)",
    )
    pseudo_label_subset: Count | None = option(
        None,
        "with pseudo labels on, pseudo-label only a random subset of "
        "the unlabelled pool per cycle (int or fraction); null: all",
    )
    score_shard_size: int = option(
        50_000,
        "images scored per shard: each finished shard is saved, so a run stopped while scoring resumes at the "
        "first unfinished one (stochastic passes are seeded per shard)",
        ge=1,
    )
    keep_checkpoints: int = option(2, "recent cycle checkpoints kept on disk (cycle 0's is always kept)", ge=1)
    seed: int = option(0, "run seed: initial set, training order, augmentation, subsets, selection")

    def check_values(self) -> None:
        """Raise :class:`PlanError` for values that are wrong whatever the pool (types, ranges, stopping rule)."""
        check_fields(self, PlanError)
        if self.cycles is None and self.max_labelled is None:
            raise PlanError("cycles", "set, or 'max_labelled' set, so that the run stops", self.cycles)
        if self.budget_unit == "cost" and not isinstance(self.budget, int):
            raise PlanError(
                "budget", "an int (labelling cost per cycle, in cost units) with budget_unit 'cost'", self.budget
            )

    def check(self, pool_size: int) -> None:
        """Raise :class:`PlanError` for settings that cannot work on a pool of ``pool_size`` images."""
        self.check_values()
        initial = _count(self.initial_labelled, pool_size)
        if not 1 <= initial <= pool_size:
            raise PlanError(
                f"The initial labelled set ({self.initial_labelled!r} -> {initial} images) must hold "
                f"between 1 and the pool's {pool_size} images; set 'initial_labelled' to a count in "
                f"1..{pool_size} or a fraction of the pool.",
                key="initial_labelled",
            )
        selects = self.budget_unit == "images" and (self.cycles or 0) > 0
        if selects and _count(self.budget, pool_size) > pool_size - initial:
            raise PlanError(
                f"The budget ({self.budget!r} -> {_count(self.budget, pool_size)} images per cycle) is "
                f"larger than the unlabelled pool ({pool_size - initial} images after the initial "
                "set); lower 'budget' or 'initial_labelled'.",
                key="budget",
            )

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

    def budget_hint(self, pool_size: int, ledger: Ledger, oracle, cost_per_image: float | None = None) -> int:
        """Images the selection is expected to take (exact for image budgets; from the labelled images' boxes per
        image for boxes, from ``cost_per_image`` (their mean labelling cost) for cost)."""
        budget = _count(self.budget, pool_size)
        if self.budget_unit == "images":
            return budget
        labelled = ledger.labelled()
        if self.budget_unit == "cost" and cost_per_image is not None:
            per_image = cost_per_image
        else:
            per_image = oracle.count_boxes(labelled) / max(1, len(labelled))
        return max(1, int(np.ceil(budget / max(per_image, 1e-6))))

    def budget_count(self, pool_size: int) -> int:
        """The budget per cycle as a number (a fraction counts the pool's images)."""
        return _count(self.budget, pool_size)

    def take_budget(self, picks: Iterator[int], spend: Callable[[int], float], pool_size: int) -> list[int]:
        """Consume the strategy's picks until the budget is spent (or the candidates run out). ``spend(index)``:
        what a picked image costs in ``budget_unit`` (not called for an image budget)."""
        budget, taken, spent = self.budget_count(pool_size), [], 0.0
        for index in picks:
            taken.append(int(index))
            spent += 1 if self.budget_unit == "images" else spend(int(index))
            if spent >= budget:
                break
        if len(set(taken)) != len(taken):
            raise RuntimeError("the strategy selected an image twice; this is a bug in the strategy")
        return taken


def initial_size(pool_size: int, options: LoopOptions) -> int:
    """The number of images in the initial labelled set."""
    return _count(options.initial_labelled, pool_size)


def initial_indices(pool_size: int, options: LoopOptions) -> np.ndarray:
    """The initial labelled set: sorted pool indices drawn from ``options.seed`` alone."""
    options.check(pool_size)
    rng = np.random.default_rng(derive_seed(options.seed, 0, "initial"))
    size = _count(options.initial_labelled, pool_size)
    return np.sort(rng.choice(pool_size, size=size, replace=False))
