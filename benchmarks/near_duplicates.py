"""How well the near-duplicate filter's test tells a generated pool's near-duplicates from its other images.

    python benchmarks/near_duplicates.py --data data/bench [--thresholds 0.8 0.85 0.9]

Reads the pool (``annotations/train.json``) and its near-duplicate groups (``manifest.json``) of data made by
``activedet generate-data``, compares every pair of pool images as :mod:`activedet.strategies.near_duplicates`
does, and prints, per threshold, the same-group pairs found and the pairs of different scenes taken for
near-duplicates; then the time the filter takes per pick against 1,000 references.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from activedet.data.torch_dataset import load_image
from activedet.strategies.near_duplicates import NearDuplicateFilter, _centre, _shifted, thumbnail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder written by activedet generate-data")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.75, 0.8, 0.85, 0.9, 0.95])
    args = parser.parse_args()
    images = json.loads((args.data / "annotations" / "train.json").read_text())["images"]
    groups = json.loads((args.data / "manifest.json").read_text())["splits"]["train"]["near_duplicate_groups"]
    position = {Path(im["file_name"]).stem: k for k, im in enumerate(images)}
    group = np.full(len(images), -1)
    for g, members in enumerate(groups):
        group[[position[m] for m in members]] = g

    started = time.perf_counter()
    thumbs = [thumbnail(load_image(args.data / im["file_name"])) for im in images]
    read = time.perf_counter() - started
    centres = np.stack([_centre(t) for t in thumbs])
    best = np.full((len(thumbs), len(thumbs)), -2.0, np.float32)
    shifted = np.stack([_shifted(t) for t in thumbs])  # [N, 25, D]
    for s in range(shifted.shape[1]):
        np.maximum(best, shifted[:, s] @ centres.T, out=best)  # row: image shifted, column: reference
    np.fill_diagonal(best, -2.0)
    same = (group[:, None] == group[None, :]) & (group[:, None] >= 0)
    np.fill_diagonal(same, False)
    upper = np.triu(np.ones(same.shape, bool), 1)  # each pair once
    pair = np.maximum(best, best.T)  # a pair is met either way round: the filter sees whichever came first
    n_same, n_other = int((same & upper).sum()), int((~same & upper).sum())
    print(
        f"{len(images)} pool images, {len(groups)} near-duplicate groups, {n_same} same-group pairs, "
        f"{n_other} other pairs; thumbnails read in {read:.1f} s"
    )
    print(f"most similar pair of different scenes: {pair[~same & upper].max():.4f}")
    for threshold in args.thresholds:
        found = int(((pair >= threshold) & same & upper).sum())
        false = int(((pair >= threshold) & ~same & upper).sum())
        print(
            f"threshold {threshold:.2f}: same-group pairs found {found} / {n_same} ({100 * found / n_same:.1f}%), "
            f"other pairs taken for near-duplicates {false}"
        )

    refs, picks = list(range(1000)), list(range(1000, min(len(thumbs), 1500)))
    distinct = NearDuplicateFilter(lambda i: thumbs[i], refs, 0.85)
    started = time.perf_counter()
    kept = list(distinct(picks))
    seconds = time.perf_counter() - started
    print(
        f"filter: {len(picks)} picks against 1,000 references and the kept picks: "
        f"{1000 * seconds / len(picks):.2f} ms per pick ({len(kept)} kept)"
    )


if __name__ == "__main__":
    main()
