"""How well the near-duplicate filter's test tells a generated pool's near-duplicates from its other images.

    python benchmarks/near_duplicates.py --data data/bench [--thresholds 0.8 0.85 0.9]

Reads the pool (``annotations/train.json``) and its near-duplicate groups (``manifest.json``) of data made by
``activedet generate-data``, compares every pair of pool images as :mod:`activedet.strategies.near_duplicates`
does, and prints, per threshold, the same-group pairs found and the pairs of different scenes taken for
near-duplicates; then the time the filter takes per pick against 1,000 references. With ``--runs``, for each
folder of runs (records or a bench's ``runs/ARM``) on that pool: how many of the images its cycles picked show a
scene (a near-duplicate group) that was labelled or picked before them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from activedet.data.torch_dataset import load_image
from activedet.strategies.near_duplicates import NearDuplicateFilter, _centre, _shifted, thumbnail


def pair_table(name: str, pair: np.ndarray, group: np.ndarray, thresholds: list[float]) -> None:
    """Print how many same-group pairs and how many other pairs reach each threshold of the similarity ``pair``
    ``[N, N]`` (symmetric)."""
    same = (group[:, None] == group[None, :]) & (group[:, None] >= 0)
    upper = np.triu(np.ones(same.shape, bool), 1)  # each pair once
    n_same, n_other = int((same & upper).sum()), int((~same & upper).sum())
    print(
        f"{name}: {n_same} same-group pairs, {n_other} other pairs; the most similar pair of different scenes: "
        f"{pair[~same & upper].max():.4f}"
    )
    for threshold in thresholds:
        found = int(((pair >= threshold) & same & upper).sum())
        false = int(((pair >= threshold) & ~same & upper).sum())
        print(
            f"  threshold {threshold:.3f}: same-group pairs found {found} / {n_same} ({100 * found / n_same:.1f}%), "
            f"other pairs at or above it {false}"
        )


def embedding_similarity(config: Path, checkpoint: Path) -> np.ndarray:
    """``[N, N]`` cosine similarity of the pool's pooled image embeddings by the detector of ``checkpoint``
    (each dimension standardised over the pool first: raw, every pair of the bench pool is above 0.9)."""
    import torch

    from activedet.config import load_config
    from activedet.engine.checkpoint import load_checkpoint
    from activedet.engine.inference import predict_dataset
    from activedet.workflows import build_model, load_split

    cfg = load_config(config)
    pool = load_split(cfg, "train")
    model = build_model(cfg, pool.num_classes)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    model.eval()
    with torch.no_grad():
        detections = predict_dataset(model, pool, fields=["embedding"], batch_size=32)
    emb = torch.stack([d.embedding.float() for d in detections]).numpy()
    emb = (emb - emb.mean(0)) / (emb.std(0) + 1e-6)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb @ emb.T


def repeated_picks(arm: Path, group: np.ndarray, cycles: int) -> tuple[int, int]:
    """``(picks, picks repeating a scene)`` over the seeds of ``arm`` (``seedN`` folders with ``X_L_<t>.npy``) and
    its cycles 1..``cycles``."""
    picks = repeats = 0
    for run in sorted(arm.glob("seed*")):
        before = np.load(run / "X_L_0.npy")
        seen = {int(group[i]) for i in before if group[i] >= 0}
        for t in range(1, cycles + 1):
            labelled = np.load(run / f"X_L_{t}.npy")
            for i in np.setdiff1d(labelled, before):  # the cycle's picks (their order within it does not matter)
                picks += 1
                if group[i] >= 0:
                    repeats += int(group[i]) in seen
                    seen.add(int(group[i]))
            before = labelled
    return picks, repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder written by activedet generate-data")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.75, 0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="folders of runs (seedN) on this pool")
    parser.add_argument("--cycles", type=int, default=3, help="with --runs: count the picks of cycles 1..N")
    parser.add_argument("--config", type=Path, help="with --checkpoint: the config the detector was trained with")
    parser.add_argument(
        "--checkpoint", type=Path, help="also compare the pool by this detector's pooled image embedding"
    )
    args = parser.parse_args()
    images = json.loads((args.data / "annotations" / "train.json").read_text())["images"]
    groups = json.loads((args.data / "manifest.json").read_text())["splits"]["train"]["near_duplicate_groups"]
    position = {Path(im["file_name"]).stem: k for k, im in enumerate(images)}
    group = np.full(len(images), -1)
    for g, members in enumerate(groups):
        group[[position[m] for m in members]] = g

    for arm in args.runs:
        picks, repeats = repeated_picks(arm, group, args.cycles)
        print(
            f"{arm}: {picks} picks in cycles 1-{args.cycles}, {repeats} ({100 * repeats / picks:.1f}%) show a scene "
            "labelled or picked before"
        )
    started = time.perf_counter()
    thumbs = [thumbnail(load_image(args.data / im["file_name"])) for im in images]
    read = time.perf_counter() - started
    centres = np.stack([_centre(t) for t in thumbs])
    best = np.full((len(thumbs), len(thumbs)), -2.0, np.float32)
    shifted = np.stack([_shifted(t) for t in thumbs])  # [N, 25, D]
    for s in range(shifted.shape[1]):
        np.maximum(best, shifted[:, s] @ centres.T, out=best)  # row: image shifted, column: reference
    pair = np.maximum(best, best.T)  # a pair is met either way round: the filter sees whichever came first
    print(f"{len(images)} pool images, {len(groups)} near-duplicate groups; thumbnails read in {read:.1f} s")
    pair_table("thumbnails", pair, group, args.thresholds)
    if args.checkpoint is not None:
        if args.config is None:
            parser.error("--checkpoint needs --config")
        pair_table("embeddings", embedding_similarity(args.config, args.checkpoint), group, [0.9, 0.95, 0.97, 0.99])

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
