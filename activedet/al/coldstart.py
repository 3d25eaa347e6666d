"""Cold start: the initial labelled set chosen from the images themselves instead of at random.

Before anything is labelled there is no trained model to be uncertain with, but a backbone's pretrained features
already tell similar images apart. The pool is embedded once (the run's detector before any training: its
``embedding``, the pooled backbone/FPN features, so with ImageNet backbone weights the features are ImageNet's),
clustered into as many clusters as images to label (k-means; mini-batch above 100,000 images), and one image is
taken from each cluster:

* ``kmeans_medoids``: the member nearest to its cluster's centre, a representative of each region of the pool;
* ``typiclust``: the member with the highest *typicality*, the inverse of its mean distance to its ``K = 20``
  nearest neighbours within the cluster (Hacohen et al., "Active learning on a budget", ICML 2022: dense, typical
  images first, as a low budget favours).

Both are deterministic given the embeddings and the seed, so every strategy of a seed starts from the same set,
as with ``random``. Measured against a random start: docs/benchmarks.md.
"""

from __future__ import annotations

import numpy as np

from ..constants import INITIAL_SELECTIONS

__all__ = ["INITIAL_SELECTIONS", "cold_start_indices", "TYPICALITY_NEIGHBOURS"]

#: neighbours in TypiClust's typicality (as the paper)
TYPICALITY_NEIGHBOURS = 20
_LLOYD_MAX = 100_000  # full-batch k-means up to this many images, mini-batch above (as the kmeans strategy)


def cold_start_indices(embeddings: np.ndarray, size: int, *, method: str, seed: int) -> np.ndarray:
    """``size`` sorted pool indices (rows of ``embeddings`` ``[N, D]``) chosen by ``method``, one per k-means
    cluster (``k = size``); see the module notes. Raises ``ValueError`` for an unknown method, a size outside
    ``1..N`` or non-finite embeddings (naming the first such row)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if method not in INITIAL_SELECTIONS or method == "random":
        raise ValueError(
            f"cold_start_indices: method must be one of {[m for m in INITIAL_SELECTIONS if m != 'random']}. "
            f"Got {method!r} instead."
        )
    points = np.asarray(embeddings, np.float64)
    if points.ndim != 2 or not 1 <= size <= len(points):
        raise ValueError(
            f"cold_start_indices: size must be in 1..{len(points)} for embeddings of shape {points.shape}. "
            f"Got {size} instead."
        )
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        raise ValueError(f"cold_start_indices: pool index {int(np.argmin(finite))} has a non-finite embedding")
    if size == len(points):
        return np.arange(len(points))
    if len(points) <= _LLOYD_MAX:
        clustering = KMeans(n_clusters=size, n_init=1, random_state=seed)
    else:
        clustering = MiniBatchKMeans(n_clusters=size, n_init=1, batch_size=4096, random_state=seed)
    labels = clustering.fit_predict(points)
    chosen = []
    for c in range(size):
        members = np.flatnonzero(labels == c)
        if len(members) == 0:  # k-means may leave a cluster empty: it contributes nobody
            continue
        own = points[members]
        if method == "kmeans_medoids":
            distance = np.linalg.norm(own - clustering.cluster_centers_[c], axis=1)
            chosen.append(int(members[np.argmin(distance)]))
        else:
            chosen.append(int(members[np.argmax(_typicality(own))]))
    missing = size - len(chosen)
    if missing:  # k-means left clusters empty: the missing images are drawn from the rest (from the seed)
        rest = np.setdiff1d(np.arange(len(points)), chosen)
        chosen += np.random.default_rng(seed).choice(rest, size=missing, replace=False).tolist()
    return np.sort(np.asarray(chosen, np.int64))


def _typicality(points: np.ndarray) -> np.ndarray:
    """``1 / mean distance to the K nearest other points`` (``K = min(20, n - 1)``); all ones for one point."""
    n = len(points)
    if n == 1:
        return np.ones(1)
    k = min(TYPICALITY_NEIGHBOURS, n - 1)
    typical = np.empty(n)
    for lo in range(0, n, 1024):  # blocks of rows: memory O(1024 x n) for large clusters
        block = points[lo : lo + 1024]
        distances = np.sqrt(np.maximum(_sq(block)[:, None] + _sq(points)[None, :] - 2 * block @ points.T, 0))
        distances[np.arange(len(block)), np.arange(lo, lo + len(block))] = np.inf  # not its own neighbour
        nearest = np.partition(distances, k - 1, axis=1)[:, :k]
        typical[lo : lo + len(block)] = 1.0 / (nearest.mean(axis=1) + 1e-12)
    return typical


def _sq(points: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", points, points)
