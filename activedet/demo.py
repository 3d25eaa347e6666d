"""The quickstart demo behind ``make demo`` / ``activedet demo``: a small active-learning experiment on CPU.

1. generates the offline ``quickstart`` dataset (real handwritten digits composed into detection scenes);
2. runs the paired comparison of ``configs/quickstart.yaml`` (one seed, the same initial labelled set for every
   strategy, cycle 0 trained once and shared) for the strategies in :data:`DEMO_STRATEGIES`;
3. prints the report table (mAP per cycle against labelled images and boxes) and writes its plots.

Everything lands in the output directory; running it again resumes or reuses what is there. Training runs on one
CPU thread by default: the order in which torch's CPU kernels sum depends on the thread count, so with one thread
the demo prints the same table on every run of a machine, whatever its core count.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .bench import run_bench
from .data.synth import generate_dataset

__all__ = ["run_demo", "QUICKSTART_CONFIG", "DEMO_STRATEGIES"]

#: The shipped preset (in the ``configs`` directory of a source checkout).
QUICKSTART_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
DEMO_STRATEGIES = ("random", "entropy")


def run_demo(out: Path, *, seed: int = 0, threads: int = 1, progress: bool = True):
    """Generate data (once) and run the demo experiment; returns the report summary.

    ``threads``: torch's CPU threads while the demo runs (restored afterwards); 0 keeps torch's default (faster on
    many cores; the figures then depend on the core count)."""
    if threads < 0:
        raise ValueError(f"threads: expected 0 (torch's default) or a positive count, got {threads}")
    if not QUICKSTART_CONFIG.is_file():
        raise FileNotFoundError(f"{QUICKSTART_CONFIG} is missing; run the demo from a source checkout of activedet")
    started = time.perf_counter()
    out = Path(out).resolve()  # config overrides are read relative to the config file, so pass absolute paths
    data = out / "data"
    if not (data / "manifest.json").is_file():
        generate_dataset("quickstart", data, seed=seed)
    overrides = [
        f"train_data={data / 'annotations' / 'train.json'}",
        "val_data=null",
        "epochs=8",
        f"test_data={data / 'annotations' / 'test.json'}",
        f"image_root={data}",
    ]
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        summary = run_bench(
            QUICKSTART_CONFIG,
            strategies=list(DEMO_STRATEGIES),
            seeds=[seed],
            out=out,
            overrides=overrides,
            metric="voc/mAP_area",
            progress=progress,
        )
    finally:
        torch.set_num_threads(before)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; report and plots in {out / 'report'}")
    return summary
