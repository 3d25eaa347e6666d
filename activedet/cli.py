"""The ``activedet`` command line. Every command is a thin layer over a library function.

Run ``activedet COMMAND --help`` for each command's options. Errors in user input (config, data, arguments) are
printed as one clear message and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from . import cli_commands as commands
from .constants import BOX_POLICIES, DATA_FORMATS

__all__ = ["main", "build_parser"]


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
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on the test (or val) split")
    with_config(p)
    p.add_argument("--checkpoint", required=True, help="a .pt file written by `activedet train`")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.set_defaults(func=commands.cmd_eval)

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
        help="every per-box uncertainty the model gives: those of the method its detector comes from "
        "(a mixture head's four, the agreement across passes or trained models), the score's entropy "
        "(drawn on the image with --draw)",
    )
    p.set_defaults(func=commands.cmd_predict)

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
    p.set_defaults(func=commands.cmd_validate)

    p = sub.add_parser(
        "generate-data",
        help="write the offline benchmark data (detection: tiny, quickstart, "
        "bench; classification: digits-classification)",
    )
    p.add_argument(
        "name",
        help="tiny, quickstart, bench or bench-balanced (detection scenes, COCO + VOC), or digits-classification "
        "(32x32 digits as ImageFolder train/val/test trees)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=commands.cmd_generate)

    p = sub.add_parser("run", help="run active learning from a config (start, or continue the same config)")
    with_config(p)
    p.add_argument("--out", help="run directory (default: the config's out_dir)")
    p.set_defaults(func=commands.cmd_run)

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
    p.set_defaults(func=commands.cmd_resume)

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
    p.set_defaults(func=commands.cmd_query)

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
    p.set_defaults(func=commands.cmd_import)

    p = sub.add_parser("status", help="cycle, state, labelled images and boxes, pending images, last metrics")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_status)

    p = sub.add_parser("strategies", help="list the query strategies with a one-line description")
    p.set_defaults(func=commands.cmd_strategies)

    p = sub.add_parser("report", help="tables and plots comparing runs (mean +- std over seeds)")
    p.add_argument("runs", nargs="+", help="run directories, or directories containing runs")
    p.add_argument("--out", default="report", help="where report.md, summary.json, the PNGs (and index.html) go")
    p.add_argument("--metric", default="voc/mAP_area", help="metric key of metrics.jsonl to compare")
    p.add_argument("--baseline", default="random", help="strategy the label savings are measured against")
    p.add_argument(
        "--cycles",
        type=int,
        default=None,
        metavar="N",
        help="compare cycles 0..N only (the HTML page too); a baseline that went on (bench --baseline-cycles) keeps "
        "its whole curve for the labels saved",
    )
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
    p.set_defaults(func=commands.cmd_report)

    p = sub.add_parser("retrain", help="train runs' labelled sets again under another draw (or recipe); evaluate")
    with_config(p)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="runs whose labelled sets (X_L_<t>.npy) to train")
    p.add_argument("--out", help="retrain every cycle into run directories under OUT that report and draws read")
    p.add_argument("--cycle", type=int, metavar="T", help="instead of --out: print cycle T's retrained metric")
    p.add_argument(
        "--salt",
        default="again",
        help="training draw: seeds derive_seed(seed, cycle, SALT); 'train' is the runs' own (default: again)",
    )
    p.add_argument("--last-cycle", type=int, metavar="N", help="with --out: cycles 0..N only (default: every cycle)")
    p.add_argument("--metric", default="voc/mAP_area", help="the metric printed")
    p.set_defaults(func=commands.cmd_retrain)

    p = sub.add_parser("draws", help="labels saved under several training draws, and each seed's mean over them")
    p.add_argument(
        "--draw",
        dest="draws",
        nargs="+",
        action="append",
        required=True,
        metavar="DIR",
        help="the runs of one draw (a bench's runs or records, or retrain's output), its random runs among them; "
        "once per draw",
    )
    p.add_argument("--cycles", type=int, required=True, metavar="N", help="compare cycles 0..N, as report does")
    p.add_argument("--metric", default="voc/mAP_area")
    p.add_argument("--baseline", default="random", help="strategy the label savings are measured against")
    p.set_defaults(func=commands.cmd_draws)

    p = sub.add_parser("bench", help="paired comparison: every strategy x seed from one config, then the report")
    with_config(p)
    p.add_argument("--strategies", nargs="+", required=True, help="arms: NAME[:key=value,...][@KEY=VALUE...]")
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
    p.add_argument(
        "--baseline-cycles",
        type=int,
        default=None,
        metavar="N",
        help="run the plain random arm for N cycles (>= the config's cycles) so that every arm's last point is on "
        "random's curve and its labels saved are measured, not bounded; raise it and rerun to continue",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=1,
        metavar="N",
        help="training draws per run: N > 1 trains every run's labelled sets again under N-1 other draws "
        "(OUT/draws/) and writes each seed's labels saved averaged over the draws (OUT/report/draws.txt)",
    )
    p.set_defaults(func=commands.cmd_bench)

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
    p.set_defaults(func=commands.cmd_bench_scale)

    p = sub.add_parser("detectors", help="list the detectors that configs can name")
    p.set_defaults(func=commands.cmd_detectors)

    p = sub.add_parser("demo", help="the quickstart: generate data, train a CPU-sized detector, evaluate")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1: the same table on every run; 0: torch's default, faster on many "
        "cores, the figures then depend on the core count)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=commands.cmd_demo)
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
