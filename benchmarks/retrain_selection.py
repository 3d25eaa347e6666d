"""Train another recipe on the labelled set a run reached, and evaluate it: separates what a method selected from
how it trained (e.g. MI-AOD's selections trained as a plain RetinaNet).

Usage (prints measured numbers; not a test):

    python benchmarks/retrain_selection.py configs/bench_retinanet.yaml runs/bench-miaod/runs/miaod/seed0 --cycle 1

The config gives the data, detector and training recipe; the run directory gives ``X_L_{cycle}.npy`` (pool indices
of the same pool). Training is seeded as the loop seeds that cycle (``derive_seed(seed, cycle, "train")`` with the
run's seed), so retraining a run's set with its own config reproduces its model; ``--salt other`` draws another
initialisation and batch order (``derive_seed(seed, cycle, "other")``), to tell what a labelled set is worth from
what one training draw made of it:

    python benchmarks/retrain_selection.py configs/bench.yaml runs/a/seed0 runs/b/seed0 --cycle 3 --salt again
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from activedet.al.plan import derive_seed
from activedet.config import load_config
from activedet.engine.distributed import resolve_device
from activedet.engine.inference import predict_dataset
from activedet.evaluation import evaluate
from activedet.workflows import build_model, load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--cycle", type=int, required=True)
    parser.add_argument("--metric", default="voc/mAP_area")
    parser.add_argument("--salt", default="train", help="training seed: derive_seed(seed, cycle, SALT)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    pool, test = load_split(cfg, "train"), load_split(cfg, "test")
    device = resolve_device(cfg.device)
    for run_dir in map(Path, args.run_dirs):
        seed = json.loads((run_dir / "config.json").read_text())["seed"]
        labelled = np.load(run_dir / f"X_L_{args.cycle}.npy")
        torch.manual_seed(seed if args.salt == "train" else derive_seed(seed, args.cycle, f"{args.salt}/init"))
        model = build_model(cfg, pool.num_classes)
        options = replace(cfg.train_options(), seed=derive_seed(seed, args.cycle, args.salt))
        started = time.perf_counter()
        cfg.trainer()(
            model,
            pool.subset(labelled),
            unlabelled=pool.subset(np.setdiff1d(np.arange(len(pool)), labelled)),
            options=options,
            device=device,
            progress=False,
        )
        seconds = time.perf_counter() - started
        metrics = evaluate(
            test,
            predict_dataset(model, test, device=device, batch_size=cfg.eval_batch_size),
            metrics=tuple(cfg.metrics),
        )
        boxes = sum(pool.records[i].num_boxes for i in labelled)
        print(
            f"{run_dir} cycle {args.cycle}: {len(labelled)} images, {boxes} boxes, trained by {args.config} in "
            f"{seconds:.0f} s: {args.metric} {metrics[args.metric]:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
