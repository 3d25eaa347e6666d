"""Training cost of detector variants relative to a reference: images per second of training steps.

Usage (prints measured numbers; not a test):

    python benchmarks/bench_training.py --data data/bench --backbone efficientnet_lite0 \
        --variant retinanet --variant almdn_retinanet --variant retinanet:dropout=0.25 --variant ssd

Each variant trains ``--steps`` AdamW steps of ``--batch-size`` images at ``--size`` px (after ``--warmup`` untimed
steps) on the same images; the first variant is the reference (1.00x). An ensemble of M members costs M times its
member (they train one after the other), so it needs no row of its own.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from activedet.data import read_coco
from activedet.data.torch_dataset import DetectionTorchDataset, collate_detection
from activedet.models import build_detector


def parse_variant(text: str) -> tuple[str, dict]:
    """``name[:key=value,...]`` (values parsed as float when they look numeric)."""
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            options[key] = float(value) if "." in value else int(value)
        except ValueError:
            options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return name, options


def time_training(name: str, options: dict, pool, args) -> float:
    torch.manual_seed(0)
    kwargs = {"backbone": args.backbone, "min_size": args.size, **options}
    if "ssd" not in name:
        kwargs["max_size"] = args.size
    model = build_detector(name, pool.num_classes, **kwargs).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    data = DetectionTorchDataset(pool, list(range(args.batch_size * (args.steps + args.warmup))), train=True)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, collate_fn=collate_detection)
    started = None
    for step, (images, targets) in enumerate(loader):
        if step == args.warmup:
            started = time.perf_counter()
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return args.batch_size * args.steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/bench", help="a dataset written by activedet generate-data")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--variant", action="append", required=True, help="detector[:key=value,...]; first = 1.00x")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    pool = read_coco(Path(args.data) / "annotations" / "train.json", image_root=args.data)
    print(
        f"{args.backbone} {args.size}px, batch {args.batch_size}, {args.steps} timed steps, "
        f"{torch.get_num_threads()} threads"
    )
    reference = None
    for text in args.variant:
        name, options = parse_variant(text)
        speed = time_training(name, options, pool, args)
        reference = reference or speed
        print(f"{text:<40s} {speed:7.1f} img/s  cost {reference / speed:.2f}x")


if __name__ == "__main__":
    main()
