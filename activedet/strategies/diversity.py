"""Diversity selection on image embeddings (methods.md §7): greedy k-centre (``coreset``) and k-means++ D² seeding
(``kmeanspp``); k-means round-robin (``kmeans``) is in :mod:`.kmeans` and shares the helpers here.

Every selector here is a generator over pool indices driven by :class:`~activedet.strategies.base.SelectionInput`:
``inputs.pool.embeddings`` ``float32[M, D]`` are the candidates, ``inputs.labelled.embeddings`` ``float32[L, D]``
(``L`` may be 0) the images already labelled. Distances are Euclidean on the embeddings as given.

Core-set and k-means++ share :class:`_NearestCentre`, an **exact** nearest-centre assignment of the pool points that
is updated lazily with the triangle inequality, so that picking ``B`` of ``M`` points does not cost ``B·M·D``:

* every pool point ``x`` belongs to the cluster of its nearest centre ``a`` (labelled images and picks so far) and
  stores ``δ(x) = ||x - a||``; every cluster stores ``r_a = max δ`` over its members;
* a new centre ``c`` is only *recorded*. A cluster is brought up to date ("synced") only when it matters: when it
  holds the current maximum ``r`` (core-set) or when one of its points was drawn (k-means++). Centres with
  ``||a - c|| >= 2 r_a`` cannot be nearer to any member (``||x - c|| >= ||a - c|| - ||x - a|| >= δ(x)``) and are
  skipped, as are members with ``2 δ(x) <= ||a - c||``;
* since ``δ`` only decreases, a stale ``δ`` or ``r`` is an upper bound. Core-set: the largest bound is checked
  alone first (its exact ``δ`` against the unsynced centres); if it still beats every other bound it is the exact
  ``argmax δ``, otherwise its cluster is synced and the search repeats. k-means++: a point drawn ``∝ δ_stored²``
  is accepted with probability ``δ²/δ_stored²`` (exact ``δ``), so accepted draws are exactly ``∝ δ²``; a
  rejection syncs its cluster.

Exact means: the same picks as the brute-force loop, up to float32 rounding of exact ties (checked against brute
force in the tests). The work is proportional to the point-centre distances the pruning cannot rule out: small for
clustered embeddings, about ``M·(L + B)`` for structureless ones (isotropic noise, where every centre is about
equally far from every point); the labelled set's share is at most ``M·L`` of them. ``projection_dim`` trades
exactness for speed there: the same algorithm on a Gaussian random projection (Johnson-Lindenstrauss) of pool and
labelled embeddings to ``k = projection_dim`` dimensions, which distorts distances by ``1 ± O(1/sqrt(k))``.

Measured with ``benchmarks/bench_selection.py`` (2 shared CPU cores, 1,000 labelled images, 10,000 picks, CPU
seconds over the last two runs): 1,000,000 x 256 clustered embeddings, exact, 16-24 s (core-set) and 29-38 s
(k-means++), ~110 MiB beyond the pool; isotropic noise, exact, 100,000 images: 11-16 s / 9-11 s; 1,000,000 with
``projection_dim=32``: 27 s / 15 s.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import numpy as np
from threadpoolctl import ThreadpoolController

from .base import ScoredPool, SelectionInput, Strategy
from .checks import number, summary
from .registry import register

__all__ = [
    "coreset_select",
    "kmeanspp_select",
    "embeddings_of",
    "random_projection",
    "min_distances",
    "coreset",
    "kmeanspp",
    "diversity_strategy",
]

_REL = 1e-5  # relative slack on every pruning test, so float32 rounding can never wrongly prune
_WORK = 1 << 22  # members x centres per sync block: a large cluster is synced against few centres at a time
_ROWS = 1 << 14  # rows per gathered block of pool embeddings
_CACHE = 1 << 18  # rows x centres per distance matrix (1 MiB): it stays in cache for the passes after the GEMM
_SMALL = 1 << 20  # matrix products with fewer rows x centres run on one BLAS thread (see _blas_threads)
_CHECK_ONE = 1 << 16  # check one point alone against at most this many unsynced centres before syncing all
_NEVER = np.iinfo(np.int64).max  # "synced" value of an empty cluster: nothing to update


def embeddings_of(inputs: SelectionInput, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """``(pool float32[M, D], labelled float32[L, D])`` from ``inputs``, checked to be present and finite.

    Raises ``ValueError`` naming the first pool (or labelled) index with a non-finite embedding.
    """
    if len(inputs.pool) == 0:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    pool = _checked(inputs.pool, strategy, "pool")
    dim = pool.shape[1]
    labelled = np.zeros((0, dim), np.float32)
    if inputs.labelled is not None and len(inputs.labelled):
        labelled = _checked(inputs.labelled, strategy, "labelled")
        if labelled.shape[1] != dim:
            raise ValueError(
                f"{strategy}: labelled embeddings have {labelled.shape[1]} dimensions, pool embeddings {dim}"
            )
    return pool, labelled


def _checked(part: ScoredPool, strategy: str, what: str) -> np.ndarray:
    emb = part.embeddings
    if emb is None:
        raise ValueError(f"{strategy} needs {what} embeddings (Detections.embedding); got none")
    emb = np.ascontiguousarray(emb, dtype=np.float32).reshape(len(part), -1)
    for lo in range(0, len(emb), _ROWS):  # blocks: a [M, D] boolean temporary would be as large as the input
        bad = ~np.isfinite(emb[lo : lo + _ROWS]).all(axis=1)
        if bad.any():
            index = int(part.indices[lo + int(bad.argmax())])
            raise ValueError(f"{strategy}: non-finite embedding for {what} index {index}")
    return emb


def random_projection(arrays: list[np.ndarray], dim: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Project each ``float32[n, D]`` array with one Gaussian matrix ``float32[D, dim] / sqrt(dim)`` from ``rng``.

    Johnson-Lindenstrauss: pairwise distances are preserved up to ``1 ± O(1/sqrt(dim))`` with high probability,
    independent of ``n`` and ``D``.
    """
    proj = (rng.standard_normal((arrays[0].shape[1], dim)) / np.sqrt(dim)).astype(np.float32)
    out = []
    for a in arrays:
        res = np.empty((a.shape[0], dim), np.float32)
        for lo in range(0, a.shape[0], _ROWS * 4):
            np.matmul(a[lo : lo + _ROWS * 4], proj, out=res[lo : lo + _ROWS * 4])
        out.append(res)
    return out


def _sqdist_rows(rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Exact ``float32[n]`` squared distances of ``rows [n, D]`` to ``centres`` (``[D]`` or one per row ``[n, D]``).

    Computed from the difference, so a row identical to its centre gets exactly 0.
    """
    diff = rows - centres
    return np.einsum("ij,ij->i", diff, diff)


def _sqnorms(a: np.ndarray) -> np.ndarray:
    out = np.empty(len(a), np.float32)
    for lo in range(0, len(a), _ROWS):
        out[lo : lo + _ROWS] = np.einsum("ij,ij->i", a[lo : lo + _ROWS], a[lo : lo + _ROWS])
    return out


def _nearest_sq(
    rows: np.ndarray, rows_sq: np.ndarray, centres: np.ndarray, centres_sq: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(squared distance float32[n], argmin int64[n])`` of ``rows [n, D]`` to the nearest of ``centres [k, D]``.

    One matrix product on the expanded form ``|x|² - 2 x·c + |c|²`` (``rows_sq``, ``centres_sq`` are the squared
    norms), so the values carry float32 cancellation error (absolute, ``~1e-7 (|x|² + |c|²)``); callers that keep
    a value recompute it with :func:`_sqdist_rows`.
    """
    if len(centres) == 1:
        return _sqdist_rows(rows, centres[0]), np.zeros(len(rows), np.int64)
    with _blas_threads(len(rows) * len(centres)):
        prod = rows @ (-2 * centres).T
    prod += centres_sq
    arg = prod.argmin(axis=1)
    best = prod[np.arange(len(rows)), arg] + rows_sq
    return np.maximum(best, 0, out=best), arg


@functools.lru_cache(maxsize=1)
def _controller() -> tuple[ThreadpoolController, int]:
    """The BLAS thread controller and the BLAS's own thread count, inspected once on first use (not at import)."""
    controller = ThreadpoolController()
    threads = [lib.num_threads for lib in controller.select(user_api="blas").lib_controllers]
    return controller, max(threads, default=1)


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """Run the greedy loops' many small products on one BLAS thread: a multi-threaded small GEMM costs ~1-2 ms
    instead of ~20 µs when the cores are shared (the thread hand-off waits for a time slice)."""
    return _controller()[0].limit(limits=1, user_api="blas")


def _blas_threads(pairs: int) -> contextlib.AbstractContextManager:
    """All BLAS threads again for a large product (``pairs`` = rows x centres) inside :func:`_one_blas_thread`."""
    controller, threads = _controller()
    return controller.limit(limits=threads, user_api="blas") if pairs >= _SMALL else contextlib.nullcontext()


def min_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``float64[n]`` distance of each of ``points [n, D]`` to its nearest of ``centres [k, D]`` (inf if k == 0).

    Brute force in blocks (``O(n·k·D)`` work, bounded memory); used where every distance is needed anyway.
    """
    out = np.full(points.shape[0], np.inf)
    if centres.shape[0] == 0:
        return out
    centres_sq = _sqnorms(centres)
    step = max(64, min(_ROWS, _CACHE // centres.shape[0]))
    for lo in range(0, points.shape[0], step):
        rows = points[lo : lo + step]
        arg = _nearest_sq(rows, _sqnorms(rows), centres, centres_sq)[1]
        out[lo : lo + step] = np.sqrt(_sqdist_rows(rows, centres[arg]))
    return out


class _NearestCentre:
    """Exact nearest-centre assignment of pool points ``X [M, D]``, kept up to date lazily (module docstring).

    Cluster ``a`` (the centre added ``a``-th) has ``members[a]`` (pool positions), ``r[a] = max δ`` over them
    (``-1`` when empty), ``s2[a] = Σ δ²`` and ``synced[a]``: its members are exact w.r.t. centres ``< synced[a]``.
    """

    def __init__(self, X: np.ndarray, first_centre: np.ndarray, capacity: int):
        self.X = X
        self.C = np.empty((max(2, capacity), X.shape[1]), np.float32)
        self.C[0] = first_centre
        self.K = 1
        self.csq = np.zeros(len(self.C), np.float32)
        self.csq[0] = np.dot(first_centre, first_centre)
        self.xsq = _sqnorms(X)
        self.delta = np.empty(X.shape[0], np.float32)
        for lo in range(0, X.shape[0], _ROWS):
            self.delta[lo : lo + _ROWS] = np.sqrt(_sqdist_rows(X[lo : lo + _ROWS], first_centre))
        self.owner = np.zeros(X.shape[0], np.int64)
        self.members = [np.arange(X.shape[0])]
        self.r = np.full(len(self.C), -1.0, np.float32)
        self.s2 = np.zeros(len(self.C))
        self.synced = np.full(len(self.C), _NEVER)
        self.synced[0] = 1
        self._refresh(0)
        self.remaining = X.shape[0]

    def add_centres(self, vectors: np.ndarray) -> None:
        """Record new centres ``[k, D]``; no pool point is touched until its cluster is synced."""
        need = self.K + len(vectors)
        if need > len(self.C):
            grow = max(need, 2 * len(self.C)) - len(self.C)
            self.C = np.concatenate([self.C, np.empty((grow, self.C.shape[1]), np.float32)])
            self.r = np.concatenate([self.r, np.full(grow, -1.0, np.float32)])
            self.csq = np.concatenate([self.csq, np.zeros(grow, np.float32)])
            self.s2 = np.concatenate([self.s2, np.zeros(grow)])
            self.synced = np.concatenate([self.synced, np.full(grow, _NEVER)])
        self.C[self.K : need] = vectors
        self.csq[self.K : need] = _sqnorms(vectors)
        self.members.extend(np.zeros(0, np.int64) for _ in range(len(vectors)))
        self.K = need

    def take(self, i: int, as_centre: bool = True) -> None:
        """Remove pool position ``i`` from the candidates and (by default) make it a centre."""
        a = int(self.owner[i])
        self.members[a] = self.members[a][self.members[a] != i]
        self.delta[i] = 0.0
        self.remaining -= 1
        self._refresh(a)
        if as_centre:
            self.add_centres(self.X[i : i + 1])

    def is_synced(self, a: int) -> bool:
        return self.synced[a] >= self.K

    def sync(self, a: int) -> None:
        """Bring every member of cluster ``a`` up to date with the centres added since its last sync."""
        start, end = int(self.synced[a]), self.K
        while start < end and len(self.members[a]):
            # fewer centres per block while the cluster is large (the first block usually empties most of it),
            # but at least 64 so each gathered row serves enough distance computations, at most 8192 (memory)
            stop = min(end, start + min(8192, max(64, _WORK // len(self.members[a]))))
            self._sync_block(a, start, stop)
            start = stop
        self.synced[a] = end if len(self.members[a]) else _NEVER

    def _sync_block(self, a: int, start: int, stop: int) -> None:
        """Sync cluster ``a`` with centres ``start..stop-1``."""
        reach = 2 * self.r[a] * (1 + _REL)
        # expanded-form squared gaps on a contiguous slice (one matrix-vector product); the float32 cancellation
        # error is absorbed by the slack, and the few centres within reach get exact gaps below
        approx = self.C[start:stop] @ (-2 * self.C[a])
        approx += self.csq[start:stop] + self.csq[a]
        slack = _REL * (self.csq[start:stop] + self.csq[a])
        ids = start + np.flatnonzero(approx < reach * reach + slack)
        if len(ids) == 0:
            return
        gap = np.sqrt(_sqdist_rows(self.C[ids], self.C[a]))
        near = gap < reach
        if not near.any():
            return
        ids, gap = ids[near], gap[near]
        m = self.members[a]
        cand = np.flatnonzero(self.delta[m] * 2 * (1 + _REL) > gap.min())
        if len(cand) == 0:
            return
        moved_pos, moved_to, moved_d = self._closer(m[cand], ids)
        if len(moved_pos) == 0:
            return
        moved_pos = cand[moved_pos]
        points = m[moved_pos]
        self.delta[points] = moved_d
        keep = np.ones(len(m), bool)
        keep[moved_pos] = False
        self.members[a] = m[keep]
        self._refresh(a)
        self._receive(points, moved_to, clean_until=stop)

    def _closer(self, points: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(positions in points, centre, exact distance)`` of the ``points`` nearer to one of centres ``ids``
        than their ``δ``, in blocks of bounded size."""
        found = []
        step = max(64, min(_ROWS, _CACHE // len(ids)))
        for lo in range(0, len(points), step):
            rows, old = self.X[points[lo : lo + step]], self.delta[points[lo : lo + step]]
            d2, arg = _nearest_sq(rows, self.xsq[points[lo : lo + step]], self.C[ids], self.csq[ids])
            maybe = np.flatnonzero(d2 < np.square(old) * (1 + _REL))
            exact = np.sqrt(_sqdist_rows(rows[maybe], self.C[ids[arg[maybe]]]))
            better = exact < old[maybe]  # the kept distances are exact (0 for identical rows)
            found.append((lo + maybe[better], ids[arg[maybe[better]]], exact[better]))
        return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))

    def _receive(self, points: np.ndarray, targets: np.ndarray, clean_until: int) -> None:
        """Append ``points`` to clusters ``targets``; they are exact w.r.t. centres ``< clean_until``."""
        order = np.argsort(targets, kind="stable")
        points, targets = points[order], targets[order]
        starts = np.flatnonzero(np.diff(targets, prepend=-1))
        clusters, d = targets[starts], self.delta[points]
        self.owner[points] = targets
        self.r[clusters] = np.maximum(self.r[clusters], np.maximum.reduceat(d, starts))
        self.s2[clusters] += np.add.reduceat(np.square(d, dtype=np.float64), starts)
        self.synced[clusters] = np.minimum(self.synced[clusters], clean_until)
        ends = starts.tolist()[1:] + [len(points)]
        for b, lo, hi in zip(clusters.tolist(), starts.tolist(), ends, strict=True):
            self.members[b] = np.concatenate([self.members[b], points[lo:hi]])

    def _refresh(self, a: int) -> None:
        d = self.delta[self.members[a]]
        self.r[a] = d.max() if len(d) else -1.0
        self.s2[a] = float(np.dot(d.astype(np.float64), d))

    def exact_delta(self, i: int) -> float:
        """The current ``δ`` of pool position ``i`` (its stored value may be stale), without changing any state."""
        start = int(self.synced[self.owner[i]])
        if start >= self.K:
            return float(self.delta[i])
        approx = self.C[start : self.K] @ (-2 * self.X[i])
        approx += self.csq[start : self.K]
        j = start + int(np.argmin(approx))
        return min(float(self.delta[i]), float(np.sqrt(_sqdist_rows(self.X[i : i + 1], self.C[j])[0])))

    def farthest(self) -> int | None:
        """Pool position of the exact ``argmax δ`` over the remaining points, or ``None``.

        The largest stored ``δ`` (an upper bound) is checked alone first: if its exact value still beats every
        other bound it is the answer; otherwise its cluster is synced. Exact ties are broken deterministically
        but not by pool index: by cluster (oldest centre first), then by the cluster's member order.
        """
        with _one_blas_thread():
            while self.remaining:
                a = int(np.argmax(self.r[: self.K]))
                m = self.members[a]
                i = int(m[np.argmax(self.delta[m])])
                if self.is_synced(a) or (
                    self.K - self.synced[a] <= _CHECK_ONE and self.exact_delta(i) >= self._rival(a)
                ):
                    return i
                self.sync(a)
        return None

    def _rival(self, a: int) -> float:
        """The largest bound outside the top member of cluster ``a``: other clusters' ``r``, and ``a``'s second."""
        top, self.r[a] = self.r[a], -np.inf
        rival = float(self.r[: self.K].max())
        self.r[a] = top
        m = self.members[a]
        return max(rival, float(np.partition(self.delta[m], -2)[-2])) if len(m) > 1 else rival

    def sample_d2(self, rng: np.random.Generator) -> int | None:
        """Pool position drawn with probability ``∝ δ²`` (exact), or ``None`` when none remain.

        Draws from the stored ``δ`` (upper bounds, possibly stale) and accepts with probability
        ``δ²/δ_stored²`` using the drawn point's exact ``δ``; a rejection syncs the point's cluster so the bounds
        tighten. If every remaining point coincides with a centre, draws uniformly among them.
        """
        with _one_blas_thread():
            return self._sample_d2(rng)

    def _sample_d2(self, rng: np.random.Generator) -> int | None:
        while self.remaining:
            cum = np.cumsum(self.s2[: self.K])
            if cum[-1] <= 0:
                return int(rng.choice(np.concatenate(self.members)))
            a = _draw(cum, rng)
            m = self.members[a]
            i = int(m[_draw(np.cumsum(self.delta[m].astype(np.float64) ** 2), rng)])
            if self.is_synced(a):
                return i
            stored = float(self.delta[i])
            if self.K - self.synced[a] <= _CHECK_ONE:
                exact = self.exact_delta(i)
            else:  # too many unsynced centres to check one point alone: sync, following i if it moves
                while not self.is_synced(int(self.owner[i])):
                    self.sync(int(self.owner[i]))
                exact = float(self.delta[i])
            if rng.random() * stored**2 < exact**2:
                return i
            if not self.is_synced(a):
                self.sync(a)
        return None


def _draw(cum: np.ndarray, rng: np.random.Generator) -> int:
    """Index ``j`` with probability ``(cum[j] - cum[j-1]) / cum[-1]``; zero-weight entries are never returned."""
    j = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
    return min(j, int(np.flatnonzero(np.diff(cum, prepend=0.0) > 0)[-1]))


def coreset_select(inputs: SelectionInput, *, projection_dim: int | None = None) -> Iterator[int]:
    """Greedy k-centre (Sener & Savarese 2018): pick the pool image farthest from labelled ∪ picked, repeatedly.

    ``δ(x) = min distance to labelled ∪ picked``; each step yields ``argmax δ`` (ties: see
    :meth:`_NearestCentre.farthest`). With no labelled image the first pick is uniform from ``inputs.rng``.
    Exact on the given embeddings; with ``projection_dim`` exact on their random projection (approximate).
    """
    yield from _centre_loop(inputs, "coreset", projection_dim, lambda nc: nc.farthest())


def kmeanspp_select(inputs: SelectionInput, *, projection_dim: int | None = None) -> Iterator[int]:
    """k-means++ D² seeding as a batch selector, the labelled images being the initial centres.

    Each step draws a pool image with probability ``∝ δ(x)²`` (``δ`` as in :func:`coreset_select`), so an image
    identical to a labelled or picked one (``δ = 0``) is drawn only when all remaining images are. With no
    labelled image the first pick is uniform. All randomness from ``inputs.rng``.
    """
    yield from _centre_loop(inputs, "kmeanspp", projection_dim, lambda nc: nc.sample_d2(inputs.rng))


def _centre_loop(
    inputs: SelectionInput, name: str, projection_dim: int | None, pick: Callable[[_NearestCentre], int | None]
) -> Iterator[int]:
    pool, labelled = embeddings_of(inputs, name)
    if len(pool) == 0:
        return
    if projection_dim is not None:
        pool, labelled = random_projection([pool, labelled], projection_dim, inputs.rng)
    capacity = len(labelled) + min(len(pool), max(1, inputs.budget_hint)) + 1
    if len(labelled):
        index = _NearestCentre(pool, labelled[0], capacity)
        index.add_centres(labelled[1:])
    else:
        first = int(inputs.rng.integers(len(pool)))
        index = _NearestCentre(pool, pool[first], capacity)
        index.take(first, as_centre=False)
        yield int(inputs.pool.indices[first])
    while (i := pick(index)) is not None:
        index.take(i)
        yield int(inputs.pool.indices[i])


# ------------------------------------------------------------------------------------------------ strategies


def projection_check(strategy: str, projection_dim: int | None) -> None:
    """``projection_dim`` must be ``None`` or an int >= 1."""
    if projection_dim is not None:
        number(strategy, "projection_dim", projection_dim, int, 1, extra=" or None")


def diversity_strategy(name: str, factory: Callable, select: Callable) -> Strategy:
    """A selection-only strategy on the embeddings of the pool and of the labelled images."""
    return Strategy(
        name, summary(factory), score=None, select=select, needs=frozenset({"embedding"}), needs_labelled=True
    )


@register("coreset", needs={"embedding"}, requires={"labelled"})
def coreset(*, projection_dim: int | None = None) -> Strategy:
    """Core-set greedy k-centre on image embeddings: the image farthest from labelled and picked ones, in turn.

    Options:
        projection_dim: ``None`` (default) = exact; an int = greedy on a Gaussian random projection of the
            embeddings to that many dimensions (approximate, much faster on structureless embeddings; see
            :mod:`.diversity`).
    """
    projection_check("coreset", projection_dim)
    return diversity_strategy("coreset", coreset, functools.partial(coreset_select, projection_dim=projection_dim))


@register("kmeanspp", needs={"embedding"}, requires={"labelled"})
def kmeanspp(*, projection_dim: int | None = None) -> Strategy:
    """k-means++ D² sampling on image embeddings, the labelled images being the initial centres.

    Options:
        projection_dim: as for ``coreset``.
    """
    projection_check("kmeanspp", projection_dim)
    return diversity_strategy("kmeanspp", kmeanspp, functools.partial(kmeanspp_select, projection_dim=projection_dim))
