"""The pool ledger: the whole state of an active-learning run, saved atomically.

State is one integer per pool image, ``labelled_at[i]``: the cycle at which image ``i`` was labelled —
``0`` for the initial labelled set, ``t >= 1`` for images selected at the end of cycle ``t - 1`` — or
:data:`UNLABELLED` (``-1``). Everything else (labelled/unlabelled index arrays, counts) is derived from it.

Each selected image also carries its provenance: the strategy, its score and rank in the query, the cycle of the
query and the hash of the checkpoint that scored it. The ledger is written to one ``.npz`` file by write-then-
rename, so a run killed at any moment finds either the previous ledger or the new one, never half of one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write

__all__ = ["Ledger", "LedgerError", "UNLABELLED"]

#: ``labelled_at`` value of an image nobody has labelled yet.
UNLABELLED = -1


class LedgerError(ValueError):
    """A ledger file is missing, corrupt, or belongs to another pool."""


@dataclass
class Ledger:
    """Labelled-at-cycle per pool image plus per-selection provenance.

    Attributes:
        labelled_at: ``int64[N]``, see the module docstring.
        pool_ids: the pool's image ids, in pool order (checked on load against the dataset of the run).
        picks: one dict per selected image: ``index``, ``cycle`` (the cycle whose model selected it; it is
            labelled at ``cycle + 1``), ``rank`` (0 = first pick), ``score`` (``None`` for score-free strategies),
            ``strategy``, ``checkpoint`` (short SHA-256 of the model file that scored it), ``boxes`` (its labelled
            boxes); with a cost model also ``predicted_boxes``, ``predicted_cost`` (at selection) and ``cost``,
            ``accepted``, ``shown`` (once labelled).
    """

    labelled_at: np.ndarray
    pool_ids: list[str]
    picks: list[dict] = field(default_factory=list)

    @classmethod
    def initial(cls, pool_ids: Sequence[str], initial: Sequence[int]) -> Ledger:
        labelled_at = np.full(len(pool_ids), UNLABELLED, np.int64)
        labelled_at[np.asarray(initial, np.int64)] = 0
        return cls(labelled_at, list(pool_ids))

    @property
    def cycle(self) -> int:
        """The current cycle: the number of selections already labelled."""
        return int(self.labelled_at.max(initial=0))

    def labelled(self, upto: int | None = None) -> np.ndarray:
        """Sorted pool indices labelled at or before cycle ``upto`` (default: now)."""
        upto = self.cycle if upto is None else upto
        return np.flatnonzero((self.labelled_at != UNLABELLED) & (self.labelled_at <= upto))

    def unlabelled(self, upto: int | None = None) -> np.ndarray:
        """Sorted pool indices not labelled at cycle ``upto`` (default: now)."""
        upto = self.cycle if upto is None else upto
        return np.flatnonzero((self.labelled_at == UNLABELLED) | (self.labelled_at > upto))

    def label(self, picks: list[dict]) -> Ledger:
        """A new ledger with ``picks`` (dicts as in :attr:`picks`) labelled at ``cycle + 1``."""
        indices = np.asarray([p["index"] for p in picks], np.int64)
        if len(indices) and (self.labelled_at[indices] != UNLABELLED).any():
            already = indices[self.labelled_at[indices] != UNLABELLED][:5].tolist()
            raise LedgerError(f"images {already} are already labelled; a selection must come from the unlabelled pool")
        labelled_at = self.labelled_at.copy()
        labelled_at[indices] = self.cycle + 1
        return Ledger(labelled_at, self.pool_ids, self.picks + [dict(p) for p in picks])

    def save(self, path: str | Path) -> Path:
        # sorted keys: picks read back from selection.json (on a resume) give the same bytes as those made in memory
        meta = json.dumps({"pool_ids": self.pool_ids, "picks": self.picks}, sort_keys=True)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, labelled_at=self.labelled_at, meta=np.array(meta))

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path, *, pool_ids: Sequence[str] | None = None) -> Ledger:
        """Read and check a ledger; ``pool_ids`` (the run's dataset) must match the one it was made for."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                labelled_at = np.asarray(data["labelled_at"])
                meta = json.loads(str(data["meta"][()]))  # not str(array): numpy prints it first
            ledger = cls(labelled_at, list(meta["pool_ids"]), list(meta["picks"]))
        except FileNotFoundError:
            raise LedgerError(
                f"{path} does not exist: this is not an activedet run directory (or it was never "
                "started); start a run with `activedet run CONFIG`"
            ) from None
        except Exception as exc:
            raise LedgerError(
                f"{path} is corrupt ({type(exc).__name__}: {exc}); restore it from a backup or "
                "start the run again in a new directory"
            ) from None
        ledger.check(path, pool_ids)
        return ledger

    def check(self, where: str | Path, pool_ids: Sequence[str] | None = None) -> None:
        """Raise :class:`LedgerError` when the ledger is inconsistent or made for another pool."""
        problems = []
        if self.labelled_at.dtype != np.int64 or self.labelled_at.ndim != 1:
            found = f"{self.labelled_at.dtype}{list(self.labelled_at.shape)}"
            problems.append(f"labelled_at must be int64[N], found {found}")
        elif len(self.labelled_at) != len(self.pool_ids):
            problems.append(f"{len(self.labelled_at)} labelled_at entries for {len(self.pool_ids)} pool images")
        elif (self.labelled_at < UNLABELLED).any():
            problems.append("labelled_at has values below -1")
        else:
            selected = [p["index"] for p in self.picks]
            expected = np.flatnonzero(self.labelled_at > 0)
            if sorted(selected) != expected.tolist():
                problems.append("the picks do not match the images labelled after cycle 0")
        if not problems and pool_ids is not None and list(pool_ids) != self.pool_ids:
            problems.append(
                f"it was made for another pool ({len(self.pool_ids)} images, first {self.pool_ids[:2]}) "
                f"than this run's ({len(pool_ids)} images, first {list(pool_ids)[:2]})"
            )
        if problems:
            raise LedgerError(
                f"{where}: invalid ledger: {'; '.join(problems)}; restore it from a backup or start "
                "the run again in a new directory"
            )
