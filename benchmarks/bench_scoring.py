"""Pool-scoring cost of each single-pass strategy, relative to plain inference, and peak memory vs pool size.

Usage (prints measured numbers; not a test):

    python benchmarks/bench_scoring.py --data data/quickstart --detector faster_rcnn \
        --backbone efficientnet_lite0 --checkpoint runs/quickstart-train/best.pt
    python benchmarks/bench_scoring.py ... --rss 400 1600
    python benchmarks/bench_scoring.py --data data/bench --detector miaod --backbone efficientnet_lite0 \
        --checkpoint RUN/cycles/0/model.pt --strategies miaod entropy --compare-detectors retinanet
    python benchmarks/bench_scoring.py --data data/bench --detector retinanet --backbone efficientnet_lite0 \
        --checkpoint RUN/cycles/0/model.pt --dropout 0.25 --strategies mc_dropout entropy
    python benchmarks/bench_scoring.py --data data/bench --detector almdn_retinanet --backbone efficientnet_lite0 \
        --checkpoint RUN/cycles/0/model.pt --strategies almdn --compare-detectors retinanet=PLAIN_RUN/cycles/0/model.pt
    python benchmarks/bench_scoring.py --data data/bench --detector faster_rcnn --backbone efficientnet_lite0 \
        --checkpoint RUN/cycles/0/model.pt --strategies influence entropy --labelled 200 --val-images 500
    python benchmarks/bench_scoring.py --data data/digits --format imagefolder --detector classifier \
        --backbone small --size 32 --checkpoint RUN/cycles/1/model.pt --strategies influence least_confidence

* throughput: the same model and images, run once as plain inference (``predict`` with no optional fields, each
  output dropped) and once per strategy (its fields requested, each output reduced by ``ScoredPool.collect``;
  a chained strategy's later stages score the shortlist of a ``--budget``-image query, as in the loop);
  best of ``--repeats`` timings each, reported as pool images/s and as a ratio to plain inference.
* a strategy that needs a validation split (``influence``) gets the first ``--labelled`` pool images as its labelled
  set and the first ``--val-images`` of ``annotations/val.json``; its one-off set-up per query (the validation
  gradient and the inverse-HVP recursion) is timed once and printed apart from the per-image rate.
* ``--rss N ...``: for each N, a fresh process scores N pool images (the pool's indices repeated as needed) with
  the strategy needing the most fields, and reports its peak resident memory (``ru_maxrss``). Streaming
  reduction keeps it flat in N.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_training import parse_variant

from activedet.data import read_coco, read_imagefolder
from activedet.engine.checkpoint import load_checkpoint
from activedet.engine.inference import iter_predictions
from activedet.models import EnsembleDetector, build_detector
from activedet.strategies import STRATEGIES, get_strategy
from activedet.strategies.base import ScoredPool, ScoringContext, SelectionInput, shortlist


def load(args, detector: str | None = None):
    """The pool and the model: ``--detector`` with ``--checkpoint`` (and ``--dropout``/``--ensemble-size``), or the
    plain ``detector`` when given."""
    pool = read_split(args, "train")
    torch.manual_seed(0)
    name = detector or args.detector
    kwargs = {"backbone": args.backbone, "min_size": args.size}
    if "ssd" not in name and name != "classifier":
        kwargs["max_size"] = args.size
    main = detector is None  # --dropout, --ensemble-size and --checkpoint describe the main model only
    if args.dropout and main:
        kwargs["dropout"] = args.dropout
    if main:
        kwargs.update(parse_variant(f"x:{','.join(args.option)}")[1])
    if args.ensemble_size > 1 and main:
        model = EnsembleDetector([build_detector(name, pool.num_classes, **kwargs) for _ in range(args.ensemble_size)])
    else:
        model = build_detector(name, pool.num_classes, **kwargs)
    model.eval()
    if args.checkpoint and main:
        model.load_state_dict(load_checkpoint(args.checkpoint)["model"])
    return pool, model


def read_split(args, split: str):
    """``--data``'s split: ``annotations/{split}.json`` (COCO) or the ``{split}/`` ImageFolder tree."""
    if args.format == "imagefolder":
        return read_imagefolder(Path(args.data) / split)
    return read_coco(Path(args.data) / "annotations" / f"{split}.json", image_root=args.data)


def indices_for(pool, count: int) -> list[int]:
    return [i % len(pool) for i in range(count)]


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def throughput(args) -> None:
    pool, model = load(args)
    indices = indices_for(pool, args.images)
    run = lambda fields: iter_predictions(model, pool, indices, batch_size=args.batch_size, fields=fields)
    plain = timed(lambda: [None for _ in run(())], args.repeats)
    print(
        f"{args.detector}/{args.backbone} {args.size}px, {len(indices)} images, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'plain inference':<20s} {len(indices) / plain:8.1f} img/s  1.00x")
    for other in args.compare_detectors or []:  # plain inference of another detector with the same backbone
        other, _, weights = other.partition("=")
        _, reference = load(args, other)
        if weights:
            reference.load_state_dict(load_checkpoint(weights)["model"])
        seconds = timed(
            lambda: [None for _ in iter_predictions(reference, pool, indices, batch_size=args.batch_size)], args.repeats
        )
        print(f"{'plain ' + other:<20s} {len(indices) / seconds:8.1f} img/s  {plain / seconds:.2f}x")
    for name in args.strategies or sorted(STRATEGIES):
        strategy = get_strategy(name, **({"passes": args.passes} if name == "mc_dropout" else {}))
        try:
            provider = strategy.predictor(model) if strategy.predictor is not None else model
        except ValueError:
            continue  # e.g. mc_dropout on a model without dropout
        if not strategy.needs_inference or not strategy.needs <= getattr(provider, "PROVIDES", frozenset()):
            continue
        setup = ""
        if strategy.needs_val:
            started = time.perf_counter()
            provider = strategy.predictor(model, scoring_context(args, pool))
            setup = f"  + {time.perf_counter() - started:.1f} s set-up per query"
            stream = lambda: iter_predictions(
                provider,
                pool,
                indices,
                batch_size=args.batch_size,  # noqa: E731
                fields=strategy.needs,
            )
            seconds = timed(lambda: ScoredPool.collect(stream(), strategy), args.repeats)
            print(f"{name:<20s} {len(indices) / seconds:8.1f} img/s  {plain / seconds:.2f}x{setup}")
            continue
        try:
            seconds = timed(lambda: score_chain(strategy, model, pool, indices, args), args.repeats)
        except ValueError as exc:  # a later stage the model cannot serve
            print(f"{name:<20s} skipped: {exc}")
            continue
        stages = f" ({len(strategy.stages)} stages, budget {args.budget})" if strategy.then is not None else ""
        print(
            f"{name:<20s} {len(indices) / seconds:8.1f} img/s  {plain / seconds:.2f}x  "
            f"needs={sorted(set().union(*(s.needs for s in strategy.stages)))}{stages}"
        )


def scoring_context(args, pool) -> ScoringContext:
    """The labelled and validation images a strategy with ``needs_val`` (influence) uses."""
    val = read_split(args, "val")
    return ScoringContext(
        labelled=pool.subset(range(args.labelled)), val=val.subset(range(min(args.val_images, len(val)))), seed=0
    )


def score_chain(strategy, model, pool, indices, args) -> ScoredPool:
    """Score ``indices`` as the loop does: each later stage of a chain scores the previous stage's shortlist for a
    budget of ``--budget`` images (the labelled set is left empty: no stage timed here needs it)."""
    rng = np.random.default_rng(0)
    for stage in strategy.stages:
        provider = stage.predictor(model) if stage.predictor is not None else model
        stream = iter_predictions(provider, pool, indices, batch_size=args.batch_size, fields=stage.needs)
        scored = ScoredPool.collect(stream, stage).finalize(stage)
        if stage.then is not None:
            indices = shortlist(stage, SelectionInput(scored, None, args.budget, rng)).tolist()
    return scored


def peak_rss(args) -> None:
    for count in args.rss:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--data",
                args.data,
                "--detector",
                args.detector,
                "--backbone",
                args.backbone,
                "--size",
                str(args.size),
                "--rss-child",
                str(count),
            ]
            + (["--checkpoint", args.checkpoint] if args.checkpoint else []),
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout.strip())


def rss_child(args) -> None:
    pool, model = load(args)
    strategy = get_strategy("hybrid")  # entropy scores + embeddings: the most per-image state kept
    indices = indices_for(pool, args.rss_child)
    started = time.perf_counter()
    scored = ScoredPool.collect(
        iter_predictions(model, pool, indices, batch_size=args.batch_size, fields=strategy.needs), strategy
    )
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"pool of {len(indices):6d} images: peak RSS {rss_mb:7.1f} MB, scored in {seconds:6.1f} s, "
        f"kept {scored.embeddings.nbytes / 1024:.0f} kB of embeddings + {scored.scores.nbytes / 1024:.0f} kB scores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/quickstart", help="a dataset written by activedet generate-data")
    parser.add_argument("--detector", default="retinanet")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument(
        "--format",
        choices=["coco", "imagefolder"],
        default="coco",
        help="coco: DATA/annotations/{train,val}.json; imagefolder: DATA/{train,val}/ (classifiers)",
    )
    parser.add_argument("--checkpoint", help="trained weights (a checkpoint of `activedet train` for this detector)")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", nargs="*", help="strategies to time (default: every one the detector serves)")
    parser.add_argument(
        "--compare-detectors",
        nargs="*",
        metavar="NAME[=CHECKPOINT]",
        help="also time plain inference of these detectors (same backbone and size; untrained "
        "unless a checkpoint is given)",
    )
    parser.add_argument("--dropout", type=float, default=0.0, help="head dropout of --detector (for mc_dropout)")
    parser.add_argument("--passes", type=int, default=20, help="MC-dropout passes")
    parser.add_argument(
        "--budget",
        type=int,
        default=100,
        help="images per query: a chained strategy's later stages score its shortlist for it",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another builder keyword of --detector, e.g. separable=false",
    )
    parser.add_argument("--ensemble-size", type=int, default=1, help="members of --detector (for ensemble)")
    parser.add_argument("--labelled", type=int, default=200, help="labelled images of a strategy with needs_val")
    parser.add_argument("--val-images", type=int, default=500, help="validation images of a strategy with needs_val")
    parser.add_argument("--rss", type=int, nargs="*", help="pool sizes for the peak-memory measurement")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args)
    elif args.rss:
        peak_rss(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
