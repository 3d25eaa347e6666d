"""k-means on image embeddings, then one image per cluster per round, least-covered clusters first (methods.md §7).

The embeddings and distances are those of :mod:`.diversity` (``inputs.pool.embeddings`` the candidates,
``inputs.labelled.embeddings`` the images already labelled, Euclidean distances).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from .base import SelectionInput, Strategy
from .checks import choice, number
from .diversity import diversity_strategy, embeddings_of, min_distances
from .registry import register

__all__ = ["KMEANS_ORDERS", "kmeans_select", "kmeans"]

_LLOYD_MAX = 100_000  # full-batch KMeans up to this many pool images, MiniBatchKMeans above


KMEANS_ORDERS = ("coverage", "released")


def kmeans_select(inputs: SelectionInput, *, n_clusters: int | str = 10, order: str = "coverage") -> Iterator[int]:
    """k-means on the pool embeddings, then round-robin over clusters, one member per cluster per round.

    * ``n_clusters``: an int (10 as in med_sslal) or ``"budget"`` for ``inputs.budget_hint``; capped at the pool
      size. scikit-learn ``KMeans(n_init=1)`` (cost ``O(iterations·M·k·D)``, and it copies the pool) up to
      100,000 pool images, ``MiniBatchKMeans(batch_size=4096)`` above (no copy; ~10 s for 1,000,000 x 256 with
      k = 10 on 2 cores, where ``KMeans`` took ~100 s and 2 GB more), both seeded from ``inputs.rng``.
    * Every round visits every non-exhausted cluster once, so all clusters are covered before any repeats.
    * Cluster order within a round: with labelled images, by the mean distance of the cluster's members to the
      nearest labelled image, largest first (least covered first); without, by size, largest first. Ties: by
      cluster number.
    * Member order within a cluster: a random order from ``inputs.rng``, weighted by the distance ``w`` to the
      nearest labelled image (weighted sampling without replacement, key ``log(u) / w``): members far from the
      labelled set tend to come first and members identical to a labelled image come last. Without labelled
      images all weights are equal: a uniform random member per round, as med_sslal.
    """
    pool, labelled = embeddings_of(inputs, "kmeans")
    if len(pool) == 0:
        return
    k = max(1, min(len(pool), inputs.budget_hint if n_clusters == "budget" else int(n_clusters)))
    seed = int(inputs.rng.integers(2**31 - 1))
    if len(pool) <= _LLOYD_MAX:
        labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(pool)
    else:
        labels = MiniBatchKMeans(n_clusters=k, n_init=1, batch_size=4096, random_state=seed).fit_predict(pool)
    covered = min_distances(pool, labelled) if len(labelled) and order == "coverage" else None
    for i in _round_robin(labels, k, covered, inputs.rng, by_number=order == "released"):
        yield int(inputs.pool.indices[i])


def _round_robin(
    labels: np.ndarray, k: int, covered: np.ndarray | None, rng: np.random.Generator, by_number: bool = False
) -> np.ndarray:
    """Positions in pick order for cluster ``labels int[M]`` and distances to the labelled set ``covered
    float[M]`` (``None``: no labelled image); see :func:`kmeans_select` for the order (``by_number``: clusters in
    number order in every round)."""
    weight = np.ones(len(labels)) if covered is None else covered
    with np.errstate(divide="ignore"):
        key = np.log(rng.random(len(labels))) / weight  # -inf for a member identical to a labelled image
    by_cluster = np.lexsort((-key, labels))  # cluster by cluster, best member first
    starts = np.searchsorted(labels[by_cluster], labels[by_cluster], side="left")
    round_of = np.empty(len(labels), np.int64)
    round_of[by_cluster] = np.arange(len(labels)) - starts
    sizes = np.bincount(labels, minlength=k)
    urgency = sizes if covered is None else np.bincount(labels, covered, minlength=k) / np.maximum(sizes, 1)
    rank = np.empty(k, np.int64)
    rank[np.lexsort((np.arange(k), -urgency))] = np.arange(k)
    if by_number:
        rank = np.arange(k)
    return np.lexsort((rank[labels], round_of))


@register("kmeans", needs={"embedding"}, requires={"labelled"})
def kmeans(*, n_clusters: int | str = 10, order: str = "coverage") -> Strategy:
    """k-means on image embeddings, then one image per cluster per round, least-covered clusters first.

    Options:
        n_clusters: number of clusters (10, as med_sslal) or ``"budget"`` for the loop's budget hint.
        order: ``"coverage"`` (default: least-covered clusters first, members far from the labelled set first)
            or ``"released"`` (the medical framework's code: clusters in number order, a uniform random member).
    """
    if n_clusters != "budget":
        number("kmeans", "n_clusters", n_clusters, int, 1, extra=" or 'budget'")
    choice("kmeans", "order", order, KMEANS_ORDERS)
    return diversity_strategy("kmeans", kmeans, functools.partial(kmeans_select, n_clusters=n_clusters, order=order))
