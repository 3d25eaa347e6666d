"""The ``activedet`` commands: one handler per command, each a thin layer over a library function.

:mod:`activedet.cli` parses the arguments and calls ``args.func(args)``, one of these; each returns the exit
status. Heavy imports happen inside the handlers, so ``activedet status`` and ``--help`` stay torch-free.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = [
    "cmd_train",
    "cmd_eval",
    "cmd_predict",
    "cmd_validate",
    "cmd_generate",
    "cmd_run",
    "cmd_resume",
    "cmd_query",
    "cmd_import",
    "cmd_status",
    "cmd_strategies",
    "cmd_report",
    "cmd_bench",
    "cmd_bench_scale",
    "cmd_detectors",
    "cmd_demo",
    "cmd_draws",
    "cmd_retrain",
]


def _print_metrics(metrics: dict, title: str) -> None:
    print(f"{title}:")
    for key, value in metrics.items():
        if key.count("/") > 1:  # per-class entries stay in the JSON file
            continue
        if isinstance(value, float):
            print(f"  {key:>22s}  {value:.4f}")
        elif isinstance(value, int):
            print(f"  {key:>22s}  {value}")


def cmd_train(args) -> int:
    from ..config import load_config
    from ..workflows import evaluate_from_config, train_from_config

    cfg = load_config(args.config, args.set)
    model, result = train_from_config(cfg, resume=args.resume, progress=not args.quiet)
    print(
        f"trained {result.epochs_completed} epoch(s) in {result.wall_time_s:.1f} s"
        + (
            f"; best validation {cfg.val_metric} {result.best_metric:.4f} at epoch {result.best_epoch}"
            if result.best_metric is not None
            else ""
        )
    )
    if cfg.test_data is not None and not args.no_eval:
        _print_metrics(evaluate_from_config(cfg, model, progress=not args.quiet), "test metrics")
    return 0


def cmd_eval(args) -> int:
    from ..config import load_config
    from ..workflows import evaluate_from_config

    cfg = load_config(args.config, args.set)
    metrics = evaluate_from_config(cfg, checkpoint=args.checkpoint, split=args.split, progress=not args.quiet)
    _print_metrics(metrics, f"{args.split} metrics")
    return 0


def cmd_predict(args) -> int:
    from ..config import load_config
    from ..predict import draw_predictions, format_predictions, predict_images

    cfg = load_config(args.config, args.set)
    results = predict_images(cfg, args.checkpoint, args.images, min_score=args.min_score, uncertainty=args.uncertainty)
    print(format_predictions(results))
    if args.json:
        from ..atomic import atomic_write_json

        atomic_write_json(Path(args.json), results)
    if args.draw:
        for path in draw_predictions(results, args.draw):
            print(f"wrote {path}")
    return 0


def cmd_validate(args) -> int:
    from ..data.io import format_problems, validate_path

    detection = args.format in ("voc", "coco", "yolo")
    options = {"box_policy": args.box_policy, "clip_tolerance": args.clip_tolerance} if detection else {}
    if args.format == "voc" and args.sets:
        options["sets"] = tuple(tuple(s.split("/")) for s in args.sets)
    if args.format in ("voc", "imagefolder", "cifar") and args.class_names:
        options["class_names"] = args.class_names
    if args.format == "coco" and args.image_root:
        options["image_root"] = args.image_root
    checked = None
    options["decode"] = args.decode
    if args.format == "cifar":  # both splits unless one is named
        problems = validate_path("cifar", args.path, split=args.split, **options)
    elif args.format == "voc":  # every image set found unless --sets names some (the sets checked are said)
        from ..data.voc import validate_voc

        checked, skipped, problems = validate_voc(args.path, **options)
    else:
        problems = validate_path(args.format, args.path, **options)
    source = args.path
    if checked is not None:
        source = f"{args.path}, image sets {', '.join(checked)}" if checked else f"{args.path} (no image set)"
        if skipped:
            print(
                f"skipped {len(skipped)} per-class list{'s' * (len(skipped) > 1)} ({skipped[0]}"
                f"{', ...' * (len(skipped) > 1)}): each lists the images of one class, not a split"
            )
    print(
        format_problems(
            problems, source=source, examples=None if args.verbose else 3, more=" (--verbose lists every one)"
        )
    )
    return 1 if any(p.severity == "error" for p in problems) else 0


def cmd_generate(args) -> int:
    from ..data.classification import generate_digits_classification
    from ..data.synth import SYNTH_SIZES, generate_dataset

    names = sorted([*SYNTH_SIZES, "digits-classification"])
    if args.name not in names:
        raise ValueError(f"The 'name' argument of generate-data must be one of {names}. Got {args.name!r} instead.")
    if args.name == "digits-classification":
        out = generate_digits_classification(args.out, seed=args.seed, overwrite=args.overwrite)
    else:
        out = generate_dataset(args.name, args.out, seed=args.seed, overwrite=args.overwrite)
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    print(f"wrote the '{args.name}' dataset (seed {args.seed}) to {out}")
    for split, info in manifest.get("splits", {}).items():
        boxes = f", {info['boxes']} boxes" if "boxes" in info else ""
        print(f"  {split:>5s}: {info.get('images')} images{boxes}")
    return 0


def cmd_run(args) -> int:
    from ..config import load_config
    from ..workflows import run_from_config

    cfg = load_config(args.config, args.set)
    run_from_config(cfg, args.out, progress=not args.quiet)
    _print_status(args.out or cfg.out_dir)
    return 0


def cmd_resume(args) -> int:
    from ..workflows import resume_run

    resume_run(args.run_dir, overrides=args.set, progress=not args.quiet)
    _print_status(args.run_dir)
    return 0


def _print_status(run_dir) -> None:
    from ..al.status import run_status

    status = run_status(run_dir)
    if status["pending"]:
        print(
            f"cycle {status['cycle']}: awaiting labels for {len(status['pending'])} images exported to "
            f"{status['query_folder']}; label them, then `activedet import {run_dir} FILE`"
        )
    else:
        print(
            f"run {status['state']} at cycle {status['cycle']} with {status['labelled_images']} labelled images; "
            f"artefacts in {run_dir}"
        )


def cmd_query(args) -> int:
    """Train if needed, score, select and export the next batch; the run then waits for its labels."""
    from ..al.status import run_status

    status = run_status(args.run_dir)
    if status["pending"]:
        print(
            f"cycle {status['cycle']} is still awaiting labels for {len(status['pending'])} images exported to "
            f"{status['query_folder']}; import them first (`activedet import {args.run_dir} FILE`)"
        )
        return 1
    overrides = (
        list(args.set)
        + ([f"export_format={args.format}"] if args.format else [])
        + ([f"export_min_score={args.min_score}"] if args.min_score is not None else [])
    )
    from ..workflows import resume_run  # torch: only once there is work to do

    resume_run(args.run_dir, overrides=overrides, progress=not args.quiet)
    _print_status(args.run_dir)
    return 0


def cmd_import(args) -> int:
    from ..workflows import import_into_run

    result = import_into_run(
        args.run_dir,
        args.file,
        fmt=args.format,
        annotator=args.annotator,
        empty_means_labelled=args.empty_means_labelled,
        replace=args.replace,
    )
    print(
        f"imported {len(result.labelled)} images from {args.file}"
        + (f" ({len(result.unchanged)} unchanged)" if result.unchanged else "")
        + (f"; replaced the labels of {len(result.replaced)} images" if result.replaced else "")
        + (
            f"; {len(result.pending)} images still pending"
            if result.pending
            else f"; the batch is complete: `activedet query {args.run_dir}` continues"
        )
    )
    if result.not_labelled:
        print(
            f"{len(result.not_labelled)} images in the file are not labelled there (skipped, or listed with no box "
            "or tag) and stay pending; for a finished job (CVAT, COCO, VOC, YOLO), --empty-means-labelled imports "
            "them as images with nothing to box"
        )
    return 0


def cmd_status(args) -> int:
    from ..al.status import find_runs, run_status, status_line

    runs = find_runs(args.run_dirs)
    if runs != [Path(p) for p in args.run_dirs] or len(runs) > 1:  # a folder of runs, or several: a line each
        statuses = [run_status(run) for run in runs]
        if args.json:
            print(json.dumps(statuses, indent=2))
        else:
            print("\n".join(status_line(status) for status in statuses))
        return 0
    status = run_status(runs[0])
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    hints = {
        "in progress": f" (running, or stopped: if no command is working on it, `activedet resume {runs[0]}` "
        "continues it)",
        "labelled, ready for the next query": " (the batch joins labelled_images then)",
    }
    for key in ("cycle", "state", "labelled_images", "labelled_boxes", "imports"):
        print(f"{key:16s} {status[key]}" + (hints.get(status[key], "") if key == "state" else ""))
    print(
        f"{'pending':16s} {len(status['pending'])}" + (f" (in {status['query_folder']})" if status["pending"] else "")
    )
    metrics = status["last_metrics"] or {}
    shown = {k: v for k, v in metrics.items() if k.count("/") <= 1 and isinstance(v, float)}
    print(f"{'last metrics':16s} " + ", ".join(f"{k} {v:.4f}" for k, v in list(shown.items())[:6]))
    for batch in status["batches"]:
        print(f"{'batch':16s} {_batch_line(batch)}")
    if status["calibration"] is not None:
        ratio = status["calibration"]
        print(
            f"{'actual/predicted':16s} boxes {ratio['boxes']:.3f}, cost {ratio['cost']:.3f} over the labelled batches "
            "(cost_calibration scales the next batch's predictions by these)"
        )
    return 0


def _batch_line(batch: dict) -> str:
    """``cycle 0: 65 images, 306 boxes (322.3 predicted), cost 2,411 (2,500.0 predicted)``: a labelled batch and,
    where recorded, the figures predicted when it was selected."""
    line = f"cycle {batch['cycle']}: {batch['images']} images"
    if batch["boxes"] is not None:
        line += f", {batch['boxes']:,.0f} boxes"
        if batch["predicted_boxes"] is not None:
            line += f" ({batch['predicted_boxes']:,.1f} predicted)"
    if batch["cost"] is not None:
        line += f", cost {batch['cost']:,.0f}"
        if batch["predicted_cost"] is not None:
            line += f" ({batch['predicted_cost']:,.1f} predicted)"
    return line


def cmd_strategies(args) -> int:
    from ..strategies import METHODS

    for method in METHODS.values():
        print(f"{method.name:<24s}{method.description}")
        wants = [
            f"{key}: {', '.join(sorted(values))}"
            for key, values in (("needs", method.needs), ("requires", method.requires))
            if values
        ]
        if wants:
            print(f"{'':<24s}  {'; '.join(wants)}")
    return 0


def cmd_report(args) -> int:
    from ..report import format_table, write_report

    summary = write_report(args.runs, args.out, metric=args.metric, baseline=args.baseline, cycles=args.cycles)
    print(format_table(summary))
    print(f"\nwrote {args.out}/report.md, summary.json and the plots")
    if args.html:
        from ..report.html import write_html_report

        page = write_html_report(
            args.runs, args.out, metric=args.metric, cycles=args.cycles, thumbnails_per_cycle=args.thumbnails
        )
        print(f"wrote {page} (open it in a browser; thumbnails in {page.parent / 'thumbs'})")
    return 0


def cmd_retrain(args) -> int:
    import numpy as np

    from ..al.rundir import RunDir
    from ..retrain import Retrainer, retrain_run, run_seed

    if (args.cycle is None) == (args.out is None):
        raise ValueError("retrain: pass --out DIR (every cycle, as run directories) or --cycle T (print one cycle)")
    retrain = Retrainer(args.config, salt=args.salt, overrides=args.set)
    for run_dir in args.run_dirs:
        if args.out is not None:
            retrain_run(retrain, run_dir, args.out, last_cycle=args.last_cycle, metric=args.metric)
            continue
        labelled = np.load(RunDir(run_dir).labelled_indices(args.cycle))
        metrics, seconds = retrain(labelled, run_seed(run_dir), args.cycle)
        boxes = sum(retrain.pool.records[i].num_boxes for i in labelled)
        print(
            f"{run_dir} cycle {args.cycle}: {len(labelled)} images, {boxes} boxes, trained in {seconds:.0f} s: "
            f"{args.metric} {metrics.get(args.metric, float('nan')):.4f}"
        )
    return 0


def cmd_draws(args) -> int:
    from ..report.draws import draw_savings, format_draws

    arms = draw_savings(args.draws, cycles=args.cycles, metric=args.metric, baseline=args.baseline)
    print(format_draws(args.draws, arms, cycles=args.cycles))
    return 0


def cmd_bench(args) -> int:
    from ..bench import BenchRunsFailed, run_bench

    try:
        run_bench(
            args.config,
            strategies=args.strategies,
            seeds=args.seeds,
            out=args.out,
            overrides=args.set,
            metric=args.metric,
            progress=not args.quiet,
            jobs=args.jobs,
            baseline_cycles=args.baseline_cycles,
            draws=args.draws,
        )
    except BenchRunsFailed as exc:
        print(f"activedet bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "activedet bench: interrupted; run the same command again to resume every unfinished run", file=sys.stderr
        )
        return 130
    return 0


def cmd_bench_scale(args) -> int:
    from ..bench_scale import bench_scale, format_table

    rows = bench_scale(args.images, out=args.out, boxes_per_image=args.boxes_per_image, seed=args.seed)
    print(format_table(rows))
    return 0


def cmd_detectors(args) -> int:
    """Every detector (with the keywords the methods' model additions give it) and every training procedure
    (with its ``training_options``): the lists the config's ``detector``, ``detector_options``, ``training`` and
    ``training_options`` keys choose from."""
    import dataclasses

    from ..engine.trainers import DETECTOR_TRAINING, TRAINERS
    from ..models import DETECTORS, detector_additions

    for name, builder in DETECTORS.items():
        print(f"{name:<34s} {(builder.__doc__ or '').strip().splitlines()[0]}")
        for summary in dict.fromkeys(detector_additions(name).values()):
            keys = [k for k, s in detector_additions(name).items() if s == summary]
            print(f"{'':<34s}   detector_options {', '.join(keys)}: {summary}")
    print("\ntraining procedures (training: auto picks the detector's own, else standard):")
    for name, (trainer, options_class) in TRAINERS.items():
        own = [detector for detector, training in DETECTOR_TRAINING.items() if training == name]
        print(f"{name:<34s} {(trainer.__doc__ or '').strip().splitlines()[0]}" + (f" (auto for {own})" if own else ""))
        if options_class is not None:
            fields = [f"{f.name} ({f.default})" for f in dataclasses.fields(options_class)]
            print(f"{'':<34s}   training_options: {', '.join(fields)}")
    return 0


def cmd_demo(args) -> int:
    from ..demo import run_demo

    run_demo(Path(args.out), seed=args.seed, threads=args.threads, progress=not args.quiet)
    return 0
