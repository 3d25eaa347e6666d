"""Where a strategy's saving comes from: images saved class by class, each class's AP paired with the baseline's.

Usage (prints measured numbers; not a test):

    python benchmarks/per_class.py BASELINE_RUNS ARM_RUNS [--cycle 3] [--metric ap_area]
    python benchmarks/per_class.py --boxes TRAIN_COCO_JSON RUNS... [--cycle 3]

``BASELINE_RUNS`` and ``ARM_RUNS`` are run directories (or folders holding them, e.g. a record of
``benchmarks/results``), one run per seed each, with per-class VOC metrics (``voc/<class>/ap_area`` in
``metrics.jsonl``). For every class and seed, the images the arm used at ``--cycle`` are compared with the
images the same seed's baseline run needed to reach the same AP of that class, exactly as ``activedet report``
pairs the mean AP (:func:`activedet.report.savings.paired_saved`: interpolated on the baseline's own curve, a lower
bound marked ``≥`` where the arm's AP is above every point of it, undefined where it is below the first). The
classes are listed by their test boxes, most first.

With ``--boxes`` it prints what each folder of runs bought instead: the labelled boxes of each class at ``--cycle``,
the mean over its runs (seeds), read from each run's ``X_L_<cycle>.npy`` and the pool's COCO file (the runs'
``train_data``), classes by their pool boxes, most first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from activedet.report.runs import load_runs
from activedet.report.savings import interval_cell, mean_interval, paired_saved


def class_savings(baseline_dirs, arm_dirs, *, cycle: int, metric: str = "ap_area") -> list[dict]:
    """One row per class: its test boxes, the baseline's and the arm's AP at the arm's labelled images (means
    over the seeds), and the images saved per seed with whether each is a bound."""
    baseline = {run.seed: run for run in load_runs(baseline_dirs)}
    arm = {run.seed: run for run in load_runs(arm_dirs)}
    seeds = sorted(set(baseline) & set(arm))
    if not seeds:
        raise ValueError(f"no seed has both a baseline run ({sorted(baseline)}) and an arm run ({sorted(arm)})")
    first = arm[seeds[0]]
    suffix = f"/{metric}"
    classes = [
        key[len("voc/") : -len(suffix)] for key in first.metrics if key.startswith("voc/") and key.endswith(suffix)
    ]
    classes = [name for name in classes if "/" not in name]
    if not classes:
        raise ValueError(f"{first.path}: metrics.jsonl has no per-class voc/<class>{suffix} values")
    rows = []
    for name in classes:
        key, saved, bound, ap_arm, ap_base = f"voc/{name}{suffix}", [], [], [], []
        for seed in seeds:
            a, b = arm[seed], baseline[seed]
            if cycle >= len(a.cycles):
                raise ValueError(f"{a.path} has cycles 0-{len(a.cycles) - 1}, not cycle {cycle}")
            s, is_bound = paired_saved(a.labelled_images, a.metrics[key], b.labelled_images, b.metrics[key])
            saved.append(s[cycle])
            bound.append(is_bound[cycle])
            ap_arm.append(a.metrics[key][cycle])
            ap_base.append(np.interp(a.labelled_images[cycle], b.labelled_images, b.metrics[key]))
        boxes = first.metrics.get(f"voc/{name}/num_gt", np.array([np.nan]))[0]
        rows.append(
            dict(
                name=name,
                test_boxes=boxes,
                baseline_ap=float(np.mean(ap_base)),
                arm_ap=float(np.mean(ap_arm)),
                saved=np.array(saved),
                bound=np.array(bound),
                seeds=seeds,
            )
        )
    return sorted(rows, key=lambda row: -row["test_boxes"] if np.isfinite(row["test_boxes"]) else 0)


def format_rows(rows: list[dict], cycle: int) -> str:
    seeds = rows[0]["seeds"]
    lines = [
        f"| class | test boxes | baseline AP at the arm's images | arm AP at cycle {cycle} | images saved, seeds "
        f"{', '.join(map(str, seeds))} | mean [95% interval] |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        per_seed = ", ".join(
            "n/a" if not np.isfinite(v) else f"{'≥ ' if b else ''}{v:.0f}%" for v, b in zip(row["saved"], row["bound"])
        )
        cell = interval_cell(mean_interval(row["saved"], row["bound"]), len(seeds))
        lines.append(
            f"| {row['name']} | {row['test_boxes']:.0f} | {row['baseline_ap']:.3f} | {row['arm_ap']:.3f} | {per_seed} "
            f"| {cell} |"
        )
    return "\n".join(lines)


def boxes_bought(pool, folders, *, cycle: int) -> str:
    """A table: per folder of runs, its runs' mean labelled boxes of each class at ``cycle``; ``pool`` is the runs'
    pool (a :class:`~activedet.data.records.DetectionDataset` in the runs' pool order)."""
    per_image = np.zeros((len(pool), len(pool.class_names)))
    for i, record in enumerate(pool.records):
        per_image[i] = np.bincount(np.asarray(record.labels, np.int64) - 1, minlength=len(pool.class_names))
    order = np.argsort(-per_image.sum(axis=0), kind="stable")
    lines = [
        f"| runs (seeds) | {' | '.join(pool.class_names[c] for c in order)} | boxes |",
        "|---|" + "---|" * (len(order) + 1),
    ]
    for folder in folders:
        runs = load_runs(folder)
        if not runs:
            raise ValueError(f"{folder}: no runs (folders with metrics.jsonl) found")
        bought = []
        for run in runs:
            labelled = Path(run.path) / f"X_L_{cycle}.npy"
            if not labelled.is_file():
                raise ValueError(f"{run.path} has no {labelled.name}: the run did not reach cycle {cycle}")
            bought.append(per_image[np.load(labelled)].sum(axis=0))
        mean = np.mean(bought, axis=0)
        cells = " | ".join(f"{mean[c]:.0f}" for c in order)
        lines.append(f"| {Path(folder).name} ({', '.join(str(r.seed) for r in runs)}) | {cells} | {mean.sum():,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="BASELINE ARM: runs (one per seed) or folders of them")
    parser.add_argument("--cycle", type=int, default=3, help="the arm's cycle to compare (default 3)")
    parser.add_argument("--metric", default="ap_area", help="per-class VOC value: ap_area (default) or ap_11pt")
    parser.add_argument("--boxes", type=Path, help="the pool's COCO file: print each folder's boxes bought per class")
    args = parser.parse_args()
    if args.boxes is not None:
        from activedet.data.coco import read_coco

        print(boxes_bought(read_coco(args.boxes, check_images=False), args.runs, cycle=args.cycle))
        return
    if len(args.runs) != 2:
        parser.error(f"expected BASELINE ARM (two folders of runs), got {len(args.runs)}")
    print(format_rows(class_savings(*args.runs, cycle=args.cycle, metric=args.metric), args.cycle))


if __name__ == "__main__":
    main()
