"""The quickstart demo behind ``make demo`` / ``activedet demo``.

Generates the offline ``quickstart`` dataset (real handwritten digits composed into detection scenes), trains the
CPU-sized detector of ``configs/quickstart.yaml`` on its training split, and evaluates it on the test split,
printing VOC mAP@0.5 and COCO AP. Everything lands in the output directory.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from .config import config_from_dict
from .data.synth import generate_dataset

__all__ = ["run_demo", "QUICKSTART_CONFIG"]

#: The shipped preset (paths in it are relative to the ``configs`` directory of a source checkout).
QUICKSTART_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"


def _preset() -> dict:
    if QUICKSTART_CONFIG.is_file():
        return yaml.safe_load(QUICKSTART_CONFIG.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"{QUICKSTART_CONFIG} is missing; run the demo from a source checkout of activedet")


def run_demo(out: Path, *, seed: int = 0, progress: bool = True) -> dict:
    """Generate data (once), train and evaluate; returns the test metrics."""
    from .workflows import evaluate_from_config, train_from_config

    data_dir = out / "data"
    started = time.perf_counter()
    if not (data_dir / "manifest.json").is_file():
        generate_dataset("quickstart", data_dir, seed=seed)
    preset = _preset()
    preset.update(train_data=str(data_dir / "annotations" / "train.json"),
                  val_data=None, test_data=str(data_dir / "annotations" / "test.json"),
                  out_dir=str(out / "train"), seed=seed)
    cfg = config_from_dict(preset, where=str(QUICKSTART_CONFIG))
    print(f"training {cfg.detector} ({cfg.backbone}, {cfg.min_size} px) for {cfg.epochs} epochs on "
          f"{data_dir / 'annotations' / 'train.json'}")
    model, result = train_from_config(cfg, progress=progress)
    metrics = evaluate_from_config(cfg, model, progress=progress)
    total = time.perf_counter() - started
    print(f"\ntest split: {metrics['num_images']} images")
    print(f"  VOC mAP@0.5 (area)     {metrics['voc/mAP_area']:.3f}")
    print(f"  VOC mAP@0.5 (11-point) {metrics['voc/mAP_11pt']:.3f}")
    if "coco/AP" in metrics:
        print(f"  COCO AP@[.5:.95]       {metrics['coco/AP']:.3f}   AP50 {metrics['coco/AP50']:.3f}")
    print(f"training {result.wall_time_s:.0f} s, total {total:.0f} s; outputs in {out}")
    return metrics
