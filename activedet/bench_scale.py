"""``activedet bench-scale``: what a pool of N images costs, measured step by step beside pycocotools.

For each size N it writes a synthetic COCO file (N images without pixels, Poisson-distributed boxes), then runs
each step in a fresh Python process and reports its wall-clock seconds and peak resident memory:

* ``pycocotools COCO()``: the reference reader on the same file;
* ``index build``: the first read of the file by a run: decoded into the columnar pool index
  (:mod:`activedet.data.coco_index`) and saved in the run's ``cache/`` folder;
* ``cached index``: a later read, in a new process: the cached index checked (digests) and memory-mapped.

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


def _step_index(folder: Path) -> dict:
    """The pool as a run's commands read it (``check_images`` off: the file has no pixels): built into
    ``run/cache`` the first time, memory-mapped from there afterwards."""
    from .data.coco_index import scan_coco_index
    from .data.index import cached_index

    index = cached_index(
        "coco",
        folder / "pool.json",
        cache_dir=folder / "run" / "cache",
        scan=scan_coco_index,
        what="COCO file pool.json",
        check_images=False,
    )
    return {"images": len(index), "boxes": int(index.box_counts().sum())}


_STEPS = {"pycocotools": _step_pycocotools, "index": _step_index}


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
