"""The scores files of a cycle: each scoring stage's ``scores*.npz`` and its shards, and the index files.

A :class:`~activedet.strategies.base.ScoredPool` is saved as flat arrays prefixed by its part (``pool_``,
``labelled_``, ``shard_``): indices, scores, detections per image, embeddings and the pool-level vectors when
present, and ragged per-image extras as one concatenated array with their lengths. Every file is written
atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..strategies.base import ScoredPool

__all__ = ["write_npy", "save_scores", "load_scores", "save_shard", "load_shard"]


def write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array)

    atomic_write(path, write)


def _arrays(prefix: str, part: ScoredPool) -> dict[str, np.ndarray]:
    arrays = {
        f"{prefix}_indices": part.indices,
        f"{prefix}_scores": part.scores,
        f"{prefix}_num_detections": part.num_detections,
    }
    if part.embeddings is not None:
        arrays[f"{prefix}_embeddings"] = part.embeddings
    if part.vectors is not None:  # a shard before the pool-level step
        arrays[f"{prefix}_vectors"] = part.vectors
    for name, values in part.extras.items():  # ragged per-image arrays: concatenated, with their lengths
        arrays[f"{prefix}_extra_{name}"] = np.concatenate(values) if values else np.zeros(0)
        arrays[f"{prefix}_extralen_{name}"] = np.array([len(v) for v in values], np.int64)
    return arrays


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)


def _part(data, prefix: str) -> ScoredPool | None:
    if f"{prefix}_indices" not in data:
        return None
    emb = data[f"{prefix}_embeddings"] if f"{prefix}_embeddings" in data else None
    part = ScoredPool.from_lists(
        data[f"{prefix}_indices"], data[f"{prefix}_scores"], data[f"{prefix}_num_detections"], emb
    )
    if f"{prefix}_vectors" in data:
        part.vectors = data[f"{prefix}_vectors"]
    for key in data.files:
        if key.startswith(f"{prefix}_extralen_"):
            name = key[len(f"{prefix}_extralen_") :]
            bounds = np.cumsum(data[key])[:-1]
            part.extras[name] = list(np.split(data[f"{prefix}_extra_{name}"], bounds)) if len(data[key]) else []
    return part


def save_scores(path: Path, pool: ScoredPool, labelled: ScoredPool | None) -> None:
    _write_npz(path, {**_arrays("pool", pool), **(_arrays("labelled", labelled) if labelled is not None else {})})


def load_scores(path: Path) -> tuple[ScoredPool, ScoredPool | None]:
    with np.load(path, allow_pickle=False) as data:
        return _part(data, "pool"), _part(data, "labelled")


def save_shard(path: Path, shard: ScoredPool) -> None:
    _write_npz(path, _arrays("shard", shard))


def load_shard(path: Path) -> ScoredPool:
    with np.load(path, allow_pickle=False) as data:
        return _part(data, "shard")
