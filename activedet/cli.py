"""The ``activedet`` command line. Every command is a thin layer over a library function.

Run ``activedet COMMAND --help`` for each command's options. Errors in user input (config, data, arguments) are
printed as one clear message and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .constants import BOX_POLICIES, DATA_FORMATS

__all__ = ["main", "build_parser"]


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
    from .config import load_config
    from .workflows import evaluate_from_config, train_from_config

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
    from .config import load_config
    from .workflows import evaluate_from_config

    cfg = load_config(args.config, args.set)
    metrics = evaluate_from_config(cfg, checkpoint=args.checkpoint, split=args.split, progress=not args.quiet)
    _print_metrics(metrics, f"{args.split} metrics")
    return 0


def cmd_predict(args) -> int:
    from .config import load_config
    from .predict import draw_predictions, format_predictions, predict_images

    cfg = load_config(args.config, args.set)
    results = predict_images(cfg, args.checkpoint, args.images, min_score=args.min_score, uncertainty=args.uncertainty)
    print(format_predictions(results))
    if args.json:
        from .atomic import atomic_write_json

        atomic_write_json(Path(args.json), results)
    if args.draw:
        for path in draw_predictions(results, args.draw):
            print(f"wrote {path}")
    return 0


def cmd_validate(args) -> int:
    from .data.io import format_problems, validate_path

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
    if args.format == "cifar":  # both splits unless one is named; a problem of the shared files is listed once
        splits = [args.split] if args.split else ["train", "test"]
        problems = list(
            dict.fromkeys(p for split in splits for p in validate_path("cifar", args.path, split=split, **options))
        )
    elif args.format == "voc":  # every image set found unless --sets names some
        from .data.voc import validate_voc

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
    from .data.classification import generate_digits_classification
    from .data.synth import SYNTH_SIZES, generate_dataset

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
    from .config import load_config
    from .workflows import run_from_config

    cfg = load_config(args.config, args.set)
    run_from_config(cfg, args.out, progress=not args.quiet)
    _print_status(args.out or cfg.out_dir)
    return 0


def cmd_resume(args) -> int:
    from .workflows import resume_run

    resume_run(args.run_dir, overrides=args.set, progress=not args.quiet)
    _print_status(args.run_dir)
    return 0


def _print_status(run_dir) -> None:
    from .al.status import run_status

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
    from .al.status import run_status

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
    from .workflows import resume_run  # torch: only once there is work to do

    resume_run(args.run_dir, overrides=overrides, progress=not args.quiet)
    _print_status(args.run_dir)
    return 0


def cmd_import(args) -> int:
    from .workflows import import_into_run

    result = import_into_run(
        args.run_dir,
        args.file,
        fmt=args.format,
        annotator=args.annotator,
        empty_means_labelled=args.empty_means_labelled,
    )
    print(
        f"imported {len(result.labelled)} images from {args.file}"
        + (f" ({len(result.unchanged)} unchanged)" if result.unchanged else "")
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
    from .al.status import run_status

    status = run_status(args.run_dir)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for key in ("cycle", "state", "labelled_images", "labelled_boxes", "imports"):
        print(f"{key:16s} {status[key]}")
    print(
        f"{'pending':16s} {len(status['pending'])}" + (f" (in {status['query_folder']})" if status["pending"] else "")
    )
    metrics = status["last_metrics"] or {}
    shown = {k: v for k, v in metrics.items() if k.count("/") <= 1 and isinstance(v, float)}
    print(f"{'last metrics':16s} " + ", ".join(f"{k} {v:.4f}" for k, v in list(shown.items())[:6]))
    return 0


def cmd_strategies(args) -> int:
    from .strategies import METHODS

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
    from .report import format_table, write_report

    summary = write_report(args.runs, args.out, metric=args.metric, baseline=args.baseline)
    print(format_table(summary))
    print(f"\nwrote {args.out}/report.md, summary.json and the plots")
    if args.html:
        from .html_report import write_html_report

        page = write_html_report(args.runs, args.out, metric=args.metric, thumbnails_per_cycle=args.thumbnails)
        print(f"wrote {page} (open it in a browser; thumbnails in {page.parent / 'thumbs'})")
    return 0


def cmd_bench(args) -> int:
    from .bench import BenchRunsFailed, run_bench

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
    from .bench_scale import bench_scale, format_table

    rows = bench_scale(args.images, out=args.out, boxes_per_image=args.boxes_per_image, seed=args.seed)
    print(format_table(rows))
    return 0


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(part)) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected image counts >= 1 separated by commas (e.g. 100000,1000000); found {text!r}"
        )
    return sizes


def cmd_detectors(args) -> int:
    from .models import DETECTORS

    for name, builder in DETECTORS.items():
        print(f"{name:<34s} {(builder.__doc__ or '').strip().splitlines()[0]}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), seed=args.seed, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="activedet", description="Active learning for object detection.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p):
        p.add_argument("config", help="YAML or JSON config file")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key (value read as YAML), repeatable",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars and no dataset warnings")

    p = sub.add_parser("train", help="train a detector from a config file (works under torchrun)")
    with_config(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if present")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation after training")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on the test (or val) split")
    with_config(p)
    p.add_argument("--checkpoint", required=True, help="a .pt file written by `activedet train`")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="boxes of single images with their uncertainty and the image's score")
    with_config(p)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--checkpoint", required=True, help="a .pt file (activedet train, or RUN/cycles/T/model.pt)")
    p.add_argument("--min-score", type=float, default=0.3, help="list boxes with at least this score (default 0.3)")
    p.add_argument("--draw", metavar="DIR", help="also write a PNG per image with the boxes and uncertainties")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="every per-box uncertainty the model gives: AL-MDN's four, MC-dropout/ensemble agreement "
        "across passes, the score's entropy (drawn on the image with --draw)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("validate", help="check a VOC/COCO/YOLO/ImageFolder/CIFAR dataset and report every problem")
    p.add_argument("format", choices=DATA_FORMATS)
    p.add_argument(
        "path",
        help="VOCdevkit (or VOC<year>) dir, COCO JSON file, YOLO root, ImageFolder root "
        "(ROOT/<class>/<image>), or CIFAR binary dir (cifar-10-batches-bin, cifar-100-binary)",
    )
    p.add_argument(
        "--sets",
        nargs="*",
        metavar="YEAR/SET",
        help="VOC image sets, e.g. 2007/trainval 2012/trainval (default: every ImageSets/Main/*.txt found)",
    )
    p.add_argument(
        "--class-names",
        nargs="*",
        metavar="NAME",
        help="class names in label order (VOC default: the 20 VOC classes; ImageFolder default: the sorted "
        "class folders; CIFAR default: the meta file)",
    )
    p.add_argument("--image-root", help="COCO: directory file_name entries are relative to")
    p.add_argument("--split", choices=("train", "test"), help="CIFAR: check only this split (default: both)")
    p.add_argument("--box-policy", choices=BOX_POLICIES, default="error", help="VOC/COCO/YOLO")
    p.add_argument(
        "--clip-tolerance", type=float, default=2.0, help="VOC/COCO/YOLO: pixels a box may overflow under 'clip'"
    )
    p.add_argument("--verbose", action="store_true", help="list every problem (default: a few of each kind)")
    p.add_argument(
        "--decode",
        action="store_true",
        help="decode every image file in full, in parallel (finds truncated or corrupt files; slower)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "generate-data",
        help="write the offline benchmark data (detection: tiny, quickstart, "
        "bench; classification: digits-classification)",
    )
    p.add_argument(
        "name",
        help="tiny, quickstart or bench (detection scenes, COCO + VOC), or digits-classification "
        "(32x32 digits as ImageFolder train/val/test trees)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("run", help="run active learning from a config (start, or continue the same config)")
    with_config(p)
    p.add_argument("--out", help="run directory (default: the config's out_dir)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue an interrupted run with the config saved in its directory")
    p.add_argument("run_dir")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key that does not change results (device, num_workers, ...)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("query", help="train if needed, score, select and export the next batch for annotation")
    p.add_argument("run_dir")
    p.add_argument("--format", help="pre-annotation format of the export (default: the config's export_format)")
    p.add_argument(
        "--min-score",
        type=float,
        help="lowest detection score written as a pre-annotation (default: the config's export_min_score, 0.3)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a resumable key")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("import", help="import the labels people made for the pending batch")
    p.add_argument("run_dir")
    p.add_argument("file", help="the annotation file (or folder) exported by the annotation tool")
    p.add_argument(
        "--format",
        default="auto",
        help="auto (told from the file), activedet, labelstudio (JSON), "
        "labelstudio_min, labelstudio_coco, labelstudio_voc, labelstudio_yolo, cvat_xml, coco, voc (1-based), "
        "cvat_voc (0-based), yolo, or datumaro:NAME (any dataset format Datumaro reads; "
        "pip install activedet[datumaro])",
    )
    p.add_argument(
        "--empty-means-labelled",
        action="store_true",
        help="cvat_xml, coco, voc, cvat_voc, yolo, datumaro: an image the file lists without boxes was looked "
        "at and has nothing "
        "to box (say so for a finished job only; otherwise such images stay pending)",
    )
    p.add_argument("--annotator", help="recorded for images whose file names no annotator")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("status", help="cycle, state, labelled images and boxes, pending images, last metrics")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("strategies", help="list the query strategies with a one-line description")
    p.set_defaults(func=cmd_strategies)

    p = sub.add_parser("report", help="tables and plots comparing runs (mean +- std over seeds)")
    p.add_argument("runs", nargs="+", help="run directories, or directories containing runs")
    p.add_argument("--out", default="report", help="where report.md, summary.json, the PNGs (and index.html) go")
    p.add_argument("--metric", default="voc/mAP_area", help="metric key of metrics.jsonl to compare")
    p.add_argument("--baseline", default="random", help="strategy the label savings are measured against")
    p.add_argument(
        "--html",
        action="store_true",
        help="also write OUT/index.html: SVG curves, per-class table, each cycle's queried images",
    )
    p.add_argument(
        "--thumbnails",
        type=int,
        default=12,
        metavar="N",
        help="with --html: queried images shown per cycle (the first N by rank)",
    )
    p.add_argument("--quiet", action="store_true", help="no dataset warnings (e.g. clipped boxes)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench", help="paired comparison: every strategy x seed from one config, then the report")
    with_config(p)
    p.add_argument("--strategies", nargs="+", required=True, help="strategy names (options via NAME:key=value,...)")
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="one run per strategy and seed (default: 5 seeds)"
    )
    p.add_argument("--out", required=True, help="directory holding one run per strategy and seed, and the report")
    p.add_argument("--metric", default="voc/mAP_area")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run up to N strategy x seed runs at once, each its own process (one GPU or many cores)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-scale", help="time and memory of a pool of N images, step by step, beside pycocotools")
    p.add_argument(
        "--images",
        type=_sizes,
        default=[100_000],
        metavar="N[,N...]",
        help="pool sizes to measure, e.g. 100000,300000,1000000 (default 100000)",
    )
    p.add_argument("--boxes-per-image", type=float, default=2.0, help="mean boxes per image (Poisson; default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic pool")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep the files in this folder (default: a temporary folder, removed afterwards)",
    )
    p.set_defaults(func=cmd_bench_scale)

    p = sub.add_parser("detectors", help="list the detectors that configs can name")
    p.set_defaults(func=cmd_detectors)

    p = sub.add_parser("demo", help="the quickstart: generate data, train a CPU-sized detector, evaluate")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def _show_dataset_warnings(command: str, quiet: bool) -> None:
    """Dataset warnings (e.g. clipped boxes: one line per dataset) as plain lines on stderr without Python's source
    line; none with --quiet. Call inside ``warnings.catch_warnings()``."""
    from .data.validate import DatasetWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DatasetWarning):
            print(f"activedet {command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("ignore" if quiet else "default", DatasetWarning)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        _show_dataset_warnings(args.command, getattr(args, "quiet", False))
        try:
            return args.func(args)
        except (ValueError, FileNotFoundError, FileExistsError) as exc:
            if args.debug:
                raise
            print(f"activedet {args.command}: error: {exc}", file=sys.stderr)
            return 2
        finally:
            distributed = sys.modules.get("activedet.engine.distributed")  # loaded only by commands that use torch
            if distributed is not None:
                distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
