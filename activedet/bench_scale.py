"""``activedet bench-scale``: what a pool of N images costs, measured step by step beside pycocotools.

For each size N it writes a synthetic COCO file (N images without pixels, Poisson-distributed boxes), then runs
each step in a fresh Python process and reports its wall-clock seconds and peak resident memory:

* ``pycocotools COCO()``: the reference reader on the same file;
* ``index build``: the first read of the file by a run: decoded into the columnar pool index
  (:mod:`activedet.data.coco_index`) and saved in the run's ``cache/`` folder;
* ``cached index``: a later read, in a new process: the cached index checked (digests) and memory-mapped;
* ``one cycle``: one cycle of the real loop on that pool with a stand-in detector that costs nothing and reads no
  pixels (scoring, selection, labelling, the artefacts), then ``resume``: the same call on the finished run;
* ``status``: ``activedet status`` on that run.

Every figure is a whole process, from interpreter start to exit.

Each step runs alone in its own process, so the figures do not include each other's memory; ratios are between
steps measured in the same run. Nothing here downloads anything; the files go to ``--out`` (a temporary folder by
default, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["write_synthetic_coco", "bench_scale", "main"]


def write_synthetic_coco(
    path: str | os.PathLike, n_images: int, *, boxes_per_image: float = 2.0, n_classes: int = 20, seed: int = 0
) -> int:
    """Write a COCO detection file of ``n_images`` images (320-1279 x 240-959 px, no pixel files) with a
    Poisson(``boxes_per_image``) number of valid boxes each; returns the number of boxes. Deterministic in ``seed``.
    Written in blocks, so memory stays small whatever ``n_images``."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(boxes_per_image, n_images)
    width, height = rng.integers(320, 1280, n_images), rng.integers(240, 960, n_images)
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"info": {"description": "activedet bench-scale synthetic pool"}, "categories": [')
        f.write(", ".join(f'{{"id": {c}, "name": "class{c}"}}' for c in range(1, n_classes + 1)))
        f.write('], "images": [')
        for start in range(0, n_images, 100_000):
            rows = range(start, min(n_images, start + 100_000))
            f.write(
                (", " if start else "")
                + ", ".join(
                    f'{{"id": {i + 1}, "file_name": "images/{i:08d}.jpg", "width": {width[i]}, "height": {height[i]}}}'
                    for i in rows
                )
            )
        f.write('], "annotations": [')
        next_id = 1
        for start in range(0, n_images, 100_000):
            owner = np.repeat(np.arange(start, min(n_images, start + 100_000)), counts[start : start + 100_000])
            w = rng.uniform(0.05, 0.5, len(owner)) * width[owner]
            h = rng.uniform(0.05, 0.5, len(owner)) * height[owner]
            x, y = (
                rng.uniform(0, 1, len(owner)) * (width[owner] - w),
                rng.uniform(0, 1, len(owner)) * (height[owner] - h),
            )
            cat = rng.integers(1, n_classes + 1, len(owner))
            f.write(
                (", " if next_id > 1 and len(owner) else "")
                + ", ".join(
                    f'{{"id": {next_id + k}, "image_id": {owner[k] + 1}, "category_id": {cat[k]}, '
                    f'"bbox": [{x[k]:.2f}, {y[k]:.2f}, {w[k]:.2f}, {h[k]:.2f}], '
                    f'"area": {w[k] * h[k]:.2f}, "iscrowd": 0}}'
                    for k in range(len(owner))
                )
            )
            next_id += len(owner)
        f.write("]}")
    return int(counts.sum())


# ------------------------------------------------------------------------------------------------ the steps
def _step_pycocotools(folder: Path) -> dict:
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(folder / "pool.json"))
    return {"images": len(coco.imgs), "boxes": len(coco.anns)}


def _pool_index(folder: Path):
    """The pool index of ``folder/pool.json`` as a run's commands read it (``check_images`` off: the file has no
    pixels): built into ``run/cache`` the first time, memory-mapped from there afterwards."""
    from .data.coco_index import scan_coco_index
    from .data.index import cached_index

    return cached_index(
        "coco",
        folder / "pool.json",
        cache_dir=folder / "run" / "cache",
        scan=scan_coco_index,
        what="COCO file pool.json",
        check_images=False,
    )


def _step_index(folder: Path) -> dict:
    """The first read of the pool (the index built), or a later one (memory-mapped): :func:`_pool_index`."""
    index = _pool_index(folder)
    return {"images": len(index), "boxes": int(index.box_counts().sum())}


def _write_test_split(folder: Path) -> Path:
    """Four 32 x 32 images with one box each: the stand-in's evaluation split."""
    from PIL import Image

    (folder / "test").mkdir(exist_ok=True)
    images, annotations = [], []
    for i in range(4):
        Image.new("RGB", (32, 32), (40 * i, 90, 160)).save(folder / "test" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"test/{i}.png", "width": 32, "height": 32})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 16, 16]})
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, 21)]
    path = folder / "test.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _stand_in_model(num_classes: int):
    """A detector that costs nothing: no detection on images; on pool indices (no image read), one box whose
    class probabilities are a fixed function of the index, so every image has a distinct score."""
    import torch

    from .models.outputs import Detections

    class StandIn(torch.nn.Module):
        prob_kind = "sigmoid"

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def predict(self, images, fields=()):
            return [Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64)) for _ in images]

        def predict_indices(self, indices, fields=()):
            p = torch.as_tensor(indices, dtype=torch.float64).mul(0.6180339887).remainder(1.0).float() * 0.9 + 0.05
            box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
            label = torch.ones(1, dtype=torch.int64)
            return [Detections(box, p[k : k + 1], label) for k in range(len(indices))]

    return StandIn()


def _stand_in_trainer(model, labelled, *, unlabelled=None, val_set=None, options=None, out_dir=None, **_):
    from .engine.train import TrainResult

    return TrainResult(epochs_completed=0, best_epoch=None, best_metric=None, stopped_early=False)


def _step_cycle(folder: Path) -> dict:
    """One active-learning cycle of the real loop on the cached pool, model cost excluded: a stand-in detector
    scores every unlabelled image (no pixel read) with entropy, the top 1% is selected, the simulated oracle labels
    it (exported without images), and cycle 1 is evaluated. Run again, the same call resumes a finished run."""
    from .al.loop import ActiveLearningRun
    from .al.oracle import SimulatedOracle
    from .al.plan import LoopOptions
    from .data.coco import read_coco
    from .engine.train import TrainOptions
    from .strategies import get_strategy

    index = _pool_index(folder)
    pool = index.dataset()
    test_path = folder / "test.json"
    test = read_coco(test_path if test_path.is_file() else _write_test_split(folder), image_root=folder)
    budget = max(1, len(pool) // 100)
    run = ActiveLearningRun(
        run_dir=folder / "run",
        pool=pool,
        test=test,
        build_model=lambda: _stand_in_model(pool.num_classes),
        strategy=get_strategy("entropy"),
        options=LoopOptions(initial_labelled=budget, budget=budget, cycles=1, seed=0),
        train_options=TrainOptions(),
        trainer=_stand_in_trainer,
        oracle=SimulatedOracle(pool, export=None),  # no pre-annotated export: the images have no pixels
        batch_size=4096,
    )
    ledger = run.run()
    return {"images": len(pool), "labelled": int(len(ledger.labelled()))}


def _step_status(folder: Path) -> dict:
    """``activedet status`` on the finished run: a later command's start (the ledger of every pool image read)."""
    import contextlib
    import io

    from .cli import main

    with contextlib.redirect_stdout(io.StringIO()) as shown:
        code = main(["status", str(folder / "run")])
    if code != 0 or "finished" not in shown.getvalue():
        raise RuntimeError(f"activedet status exited {code}:\n{shown.getvalue()}")
    return {"torch_imported": "torch" in sys.modules}


_STEPS = {"pycocotools": _step_pycocotools, "index": _step_index, "cycle": _step_cycle, "status": _step_status}


def _child(step: str, folder: Path) -> None:
    start = time.perf_counter()
    result = _STEPS[step](folder)
    result["inside_seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _run(step: str, folder: Path) -> dict:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "activedet.bench_scale", "--step", step, str(folder)], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"bench-scale step {step!r} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]), seconds=seconds)


def bench_scale(
    sizes: list[int], *, out: Path | None = None, boxes_per_image: float = 2.0, seed: int = 0, echo=print
) -> list[dict]:
    """Measure every step for every size (see the module notes); returns one row per (size, step)."""
    base = Path(tempfile.mkdtemp(prefix="activedet-bench-scale-")) if out is None else Path(out)
    rows = []
    try:
        for n in sizes:
            folder = base / f"pool-{n}"
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            start = time.perf_counter()
            boxes = write_synthetic_coco(folder / "pool.json", n, boxes_per_image=boxes_per_image, seed=seed)
            size_mb = (folder / "pool.json").stat().st_size / 2**20
            echo(
                f"{n:,} images, {boxes:,} boxes: wrote pool.json ({size_mb:,.0f} MB) in "
                f"{time.perf_counter() - start:.1f} s"
            )
            for label, step in (
                ("pycocotools COCO()", "pycocotools"),
                ("index build (first read)", "index"),
                ("cached index (later read)", "index"),
                ("one cycle (stand-in model)", "cycle"),
                ("resume (finished run)", "cycle"),
                ("status (later command)", "status"),
            ):
                row = dict(_run(step, folder), size=n, step=label)
                rows.append(row)
                echo(f"  {label:<30} {row['seconds']:7.2f} s   peak RSS {row['peak_rss_mb']:7.0f} MB")
    finally:
        if out is None:
            shutil.rmtree(base, ignore_errors=True)
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows, with each step's time as a ratio of pycocotools' on the same file."""
    lines = ["| images | step | seconds | x COCO() | peak RSS (MB) |", "|---:|---|---:|---:|---:|"]
    reference = {r["size"]: r["seconds"] for r in rows if r["step"].startswith("pycocotools")}
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['step']} | {r['seconds']:.2f} | {r['seconds'] / reference[r['size']]:.2f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """One step in this process (the benchmark runs each step as ``python -m activedet.bench_scale --step S DIR``);
    the command is ``activedet bench-scale``."""
    parser = argparse.ArgumentParser(prog="python -m activedet.bench_scale")
    parser.add_argument("--step", required=True, choices=sorted(_STEPS))
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    _child(args.step, Path(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
