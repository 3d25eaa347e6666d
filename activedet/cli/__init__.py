"""The ``activedet`` command line: the parser and ``main``. Every command is a thin layer over a library function
(:mod:`.commands`, one handler per command); :mod:`.reference` renders ``docs/cli.md`` from the parser.

Run ``activedet COMMAND --help`` for each command's options. Errors in user input (config, data, arguments) are
printed as one clear message and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..constants import (
    ARM_KEYS,
    BOX_POLICIES,
    CYCLE_ZERO_KEYS,
    DATA_FORMATS,
    DEFAULT_BOX_POLICY,
    DEFAULT_CLIP_TOLERANCE,
    EXPORT_FORMATS,
)
from . import commands

__all__ = ["main", "build_parser", "shown_default"]


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


def shown_default(action: argparse.Action) -> str | None:
    """An option's default as ``--help`` and docs/cli.md show it; None where there is none to show (a flag, an
    option whose absence means 'the config's value' or 'not at all')."""
    default = action.default
    if action.required or default is None or default is False or default == argparse.SUPPRESS or default == []:
        return None
    if isinstance(default, list | tuple):
        return " ".join(str(value) for value in default)
    return str(default)


class _HelpFormatter(argparse.HelpFormatter):
    """Help with each option's default, as :func:`shown_default` gives it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = shown_default(action)
        return action.help if default is None else f"{action.help} (default: {default.replace('%', '%%')})"


def _baseline_cycles(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of cycles or 'auto'; found {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``activedet`` parser. Each command's ``description`` and each argument's ``help`` are its documentation:
    ``activedet COMMAND --help`` prints them, and ``docs/cli.md`` is generated from them
    (``python -m activedet.cli.reference``)."""
    parser = argparse.ArgumentParser(
        prog="activedet",
        description="Active learning for object detection.",
        epilog="Multi-GPU: torchrun --nproc_per_node 8 -m activedet run CONFIG.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help, description=f"{help[0].upper()}{help[1:]}. {description}", formatter_class=_HelpFormatter
        )

    def with_config(p):
        p.add_argument("config", help="YAML or JSON config file")
        with_set(p, "override a config key (value read as YAML), repeatable")
        with_quiet(p)

    def with_set(p, help: str):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)

    def with_quiet(p, help: str = "no progress bars and no dataset warnings"):
        p.add_argument("--quiet", action="store_true", help=help)

    # ------------------------------------------------------------------------------------------ data and the demo
    p = command(
        "demo",
        "the quickstart: generate data, compare random and entropy with a CPU-sized detector, print the report",
        "What `make demo` runs: generates the `quickstart` data, runs the paired `random` / `entropy` comparison of "
        "`configs/quickstart.yaml` at 8 epochs per cycle without its validation split, and prints the report. "
        "One CPU thread by default, so a machine prints the same table on every run.",
    )
    p.add_argument("--out", default="runs/quickstart", help="where the data, the runs and the report go")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the runs, and of the data when OUT has none yet (else reused)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (1: the same table on every run; 0: torch's default, faster on many "
        "cores, the figures then depend on the core count)",
    )
    with_quiet(p, "no progress bars")
    p.set_defaults(func=commands.cmd_demo)

    p = command(
        "generate-data",
        "write the offline benchmark data",
        "Detection scenes of real handwritten digits (`tiny`, `quickstart`, `bench`, `bench-balanced`) as COCO JSON, "
        "VOC XML, images and a manifest; `digits-classification`: 32x32 digits as ImageFolder `train/` (1197), "
        "`val/` (300) and `test/` (300) trees. Nothing is downloaded.",
    )
    p.add_argument(
        "name",
        help="tiny, quickstart, bench or bench-balanced (detection scenes, COCO + VOC), or digits-classification "
        "(32x32 digits as ImageFolder train/val/test trees)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated scenes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=commands.cmd_generate)

    p = command(
        "validate",
        "check a VOC, COCO, YOLO, ImageFolder or CIFAR dataset and report every problem",
        "Problems are grouped by kind: count, values found, a few examples with file and field, and the fix "
        "(`--verbose`: every one). VOC: every image set found unless `--sets`. Exit status 1 on errors.",
    )
    p.add_argument("format", choices=DATA_FORMATS, help="the dataset's layout")
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
    p.add_argument(
        "--box-policy",
        choices=BOX_POLICIES,
        default=DEFAULT_BOX_POLICY,
        help="VOC/COCO/YOLO: a box that leaves its image is an error, or is clipped within --clip-tolerance",
    )
    p.add_argument(
        "--clip-tolerance",
        type=float,
        default=DEFAULT_CLIP_TOLERANCE,
        help="VOC/COCO/YOLO: pixels a box may overflow under 'clip'",
    )
    p.add_argument("--verbose", action="store_true", help="list every problem (default: a few of each kind)")
    p.add_argument(
        "--decode",
        action="store_true",
        help="decode every image file in full, in parallel (finds truncated or corrupt files; slower)",
    )
    p.set_defaults(func=commands.cmd_validate)

    # ------------------------------------------------------------------------------------------- one detector
    p = command(
        "train",
        "train a detector from a config file and evaluate it on test_data",
        "Works under torchrun (DistributedSampler; `batch_size` is the global batch; rank 0 writes).",
    )
    with_config(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if present")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation after training")
    p.set_defaults(func=commands.cmd_train)

    p = command(
        "eval",
        "evaluate a checkpoint with the config's metrics",
        "On the config's test_data, or its val_data or train_data with --split.",
    )
    with_config(p)
    p.add_argument("--checkpoint", required=True, help="a .pt file written by `activedet train`")
    p.add_argument(
        "--split", choices=("test", "val", "train"), default="test", help="the config's split to evaluate on"
    )
    p.set_defaults(func=commands.cmd_eval)

    p = command(
        "predict",
        "the boxes of single images with class, score and uncertainty, and the image's score",
        "Each box's uncertainty is the method's own (MI-AOD: the f1/f2 disagreement at its anchor; entropy, margin, "
        "least confidence: its per-box value); the image's score is the config's strategy's.",
    )
    with_config(p)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--checkpoint", required=True, help="a .pt file (activedet train, or RUN/cycles/T/model.pt)")
    p.add_argument("--min-score", type=float, default=0.3, help="list boxes with at least this score")
    p.add_argument("--draw", metavar="DIR", help="also write a PNG per image with the boxes and uncertainties")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="every per-box uncertainty the model gives: those of the method its detector comes from "
        "(AL-MDN's aleatoric and epistemic localization and classification; for dropout models and ensembles the "
        "agreement of the passes: semantic, spatial and occurrence certainty), the score's entropy "
        "(drawn on the image with --draw)",
    )
    p.set_defaults(func=commands.cmd_predict)

    # ----------------------------------------------------------------------------------------- active learning
    p = command(
        "run",
        "run active learning from a config",
        "Starts the run, or continues one started with the same config. Under torchrun training is distributed, "
        "pool scoring sharded and gathered, and rank 0 writes.",
    )
    with_config(p)
    p.add_argument("--out", help="run directory (default: the config's out_dir)")
    p.set_defaults(func=commands.cmd_run)

    p = command(
        "resume",
        "continue an interrupted run with the config saved in its directory",
        "May extend `cycles`. Refused, naming the file and what changed, when the train split's images are no longer "
        "those the run started with (`RUN/pool.json`).",
    )
    p.add_argument("run_dir", help="the run directory")
    with_set(p, "override a key that does not change results (device, num_workers, cycles, ...), repeatable")
    with_quiet(p)
    p.set_defaults(func=commands.cmd_resume)

    p = command(
        "query",
        "people as the oracle: train if needed, score, select and export the next batch for annotation",
        "Writes the batch to `RUN/cycles/t/query/`; the run then waits for its labels (persisted; the process "
        "exits). See docs/human-loop.md.",
    )
    p.add_argument("run_dir", help="the run directory (config `oracle: human`)")
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        help="pre-annotation format of the export (default: the config's export_format)",
    )
    p.add_argument(
        "--min-score",
        type=float,
        help="lowest detection score written as a pre-annotation (default: the config's export_min_score, 0.3)",
    )
    with_set(p, "override a key that does not change results, repeatable")
    with_quiet(p)
    p.set_defaults(func=commands.cmd_query)

    p = command(
        "import",
        "validate the labels people made for the pending batch and commit them atomically",
        "Accepts only images of the pending batch, known classes and boxes inside the image (an image with no box is "
        "a valid empty label); commits them as `RUN/imports/NNNN.json`. A partial batch leaves the rest pending, "
        "the same file twice changes nothing, and labels that differ from an earlier import are refused with their "
        "list (--replace corrects them).",
    )
    p.add_argument("run_dir", help="the run directory")
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
        "at and has nothing to box (say so for a finished job only; otherwise such images stay pending)",
    )
    p.add_argument("--annotator", help="recorded for images whose file names no annotator")
    p.add_argument(
        "--replace",
        action="store_true",
        help="labels that differ from an earlier import of the same image replace them (a correction of the "
        "pending batch, before the next query trains on it); the earlier import is kept in RUN/imports",
    )
    p.set_defaults(func=commands.cmd_import)

    p = command(
        "status",
        "cycle, state, labelled images and boxes, pending images, imports and last metrics of a run",
        "Per labelled batch: its images and boxes beside the boxes and cost predicted when it was selected, and their "
        "actual / predicted ratios (the factors `cost_calibration` spends the next predictions at). Read from the "
        "run's files without torch, in about half a second for a million-image pool (about a second right after "
        "the train file changed); a train file whose images differ from those the run started with is an error, "
        "edited labels are not (docs/scale.md). Several runs, or a folder holding runs (a bench's OUT): one "
        "line each, with the last evaluated cycle's headline metric.",
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="a run directory: its status in full; several, or a folder holding runs (a bench's OUT): one line each",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON (a list for several runs)")
    p.set_defaults(func=commands.cmd_status)

    p = command("strategies", "list the registered query strategies", "One line each.")
    p.set_defaults(func=commands.cmd_strategies)

    p = command("detectors", "list the detectors that configs can name", "One line each.")
    p.set_defaults(func=commands.cmd_detectors)

    # ---------------------------------------------------------------------------------------------- comparisons
    p = command(
        "report",
        "tables and plots comparing runs: mean ± std over seeds, AUC, labels saved against random",
        "`--html` adds `OUT/index.html`, a self-contained page that opens from disk: SVG curves, per-class AP or "
        "accuracy of each run's last cycle (with `--cycles N`: at cycle N), and each cycle's queried images with "
        "the ground-truth boxes, the predicted boxes when `RUN/cycles/t/predictions.json` exists, and the "
        "strategy's rank and score.",
    )
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
    with_quiet(p, "no dataset warnings (e.g. clipped boxes)")
    p.set_defaults(func=commands.cmd_report)

    p = command(
        "bench",
        "the paired comparison of strategies over seeds from one config, then the report",
        "An arm is `STRATEGY[:key=value,...][@KEY=VALUE...]`: strategy options (values are YAML: "
        "`compose:criteria=[entropy,coreset]`) and config overrides of its own, of the keys "
        f"{', '.join(ARM_KEYS)} (`entropy@semi_supervised={{}}`; `hybrid@initial_selection=typiclust`: a cold "
        "start; `entropy@budget_unit=boxes@budget=320`: 320 boxes per cycle). Arms share each seed's cycle 0 "
        f"unless they differ in {', '.join(CYCLE_ZERO_KEYS)}. Each run is `OUT/runs/ARM/seedN` (ARM: the arm's label "
        "as a file name any common file system accepts), its log `OUT/logs/ARM.seedN.log` (with --jobs: a line per "
        "epoch and per cycle, to follow it by); the same command resumes "
        "every unfinished run. A failed run stops only itself and is named with its log.",
    )
    with_config(p)
    p.add_argument(
        "--strategies", nargs="+", required=True, metavar="ARM", help="arms: NAME[:key=value,...][@KEY=VALUE...]"
    )
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="SEED", help="one run per strategy and seed"
    )
    p.add_argument("--out", required=True, help="directory holding one run per strategy and seed, and the report")
    p.add_argument("--metric", default="voc/mAP_area", help="metric key of metrics.jsonl the report compares")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run up to N strategy x seed runs at once, each its own process (one GPU or many cores)",
    )
    p.add_argument(
        "--baseline-cycles",
        type=_baseline_cycles,
        default=None,
        metavar="N|auto",
        help="run the plain random arm for N cycles (>= the config's cycles) so that every arm's last point is on "
        "random's curve and its labels saved are measured, not bounded; raise it and rerun to continue. auto: "
        "once the runs have finished, each seed's random run goes on a cycle at a time until it reaches the best "
        "metric another arm's run of the seed reached (or has labelled 4 times that run's images, or the whole "
        "pool: the saving is then a bound)",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=1,
        metavar="N",
        help="training draws per run: N > 1 trains every run's labelled sets again under N-1 other draws "
        "(OUT/draws/, as retrain does) and writes each seed's labels saved averaged over the draws "
        "(OUT/report/draws.txt, as draws does)",
    )
    p.set_defaults(func=commands.cmd_bench)

    p = command(
        "retrain",
        "train runs' labelled sets again under another training draw (or recipe) and evaluate them",
        "Each set is trained from scratch with the config's recipe, seeded `derive_seed(seed, cycle, SALT)`, into "
        "run directories `OUT/ARM/seedN` whose `metrics.jsonl` keeps the labelled counts and cost and carries the "
        "retrained metrics. A cycle already in OUT is kept (a stopped retrain continues), and a set met twice under "
        "one training (the same images, seed, cycle, salt and training keys) is trained once. A config with "
        "`warm_start` or `pseudo_labels` (applied by the loop between cycles) is refused.",
    )
    with_config(p)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="runs whose labelled sets (X_L_<t>.npy) to train")
    p.add_argument("--out", help="retrain every cycle into run directories under OUT that report and draws read")
    p.add_argument("--cycle", type=int, metavar="T", help="instead of --out: print cycle T's retrained metric")
    p.add_argument(
        "--salt",
        default="again",
        help="training draw: seeds derive_seed(seed, cycle, SALT); 'train' is the runs' own, which reproduces "
        "their models",
    )
    p.add_argument("--last-cycle", type=int, metavar="N", help="with --out: cycles 0..N only (default: every cycle)")
    p.add_argument("--metric", default="voc/mAP_area", help="the metric printed with --cycle")
    p.set_defaults(func=commands.cmd_retrain)

    p = command(
        "draws",
        "labels saved by the same runs under several training draws, and each seed's mean over them",
        "Each draw's folders hold its own random runs; each arm is paired as `activedet report` pairs it, and each "
        "seed's saving averaged over the draws is given with the 95% interval over the seeds (a seed counted once). "
        "`≥` marks a lower bound.",
    )
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
    p.add_argument("--metric", default="voc/mAP_area", help="metric key of metrics.jsonl to compare")
    p.add_argument("--baseline", default="random", help="strategy the label savings are measured against")
    p.set_defaults(func=commands.cmd_draws)

    p = command(
        "bench-scale",
        "time and memory of a pool of N images, step by step, beside pycocotools",
        "A synthetic COCO file (N images without pixels) is read by pycocotools and by the pool index, first and "
        "cached; then one cycle of the loop with a stand-in detector, its resume, and `activedet status` are timed, "
        "each step in a fresh process (docs/scale.md).",
    )
    p.add_argument(
        "--images",
        type=_sizes,
        default=[100_000],
        metavar="N[,N...]",
        help="pool sizes to measure, e.g. 100000,300000,1000000",
    )
    p.add_argument("--boxes-per-image", type=float, default=2.0, help="mean boxes per image (Poisson)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic pool")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep the files in this folder (default: a temporary folder, removed afterwards)",
    )
    p.set_defaults(func=commands.cmd_bench_scale)
    return parser


def _show_dataset_warnings(command: str, quiet: bool) -> None:
    """Dataset warnings (e.g. clipped boxes: one line per dataset) as plain lines on stderr without Python's source
    line; none with --quiet. Call inside ``warnings.catch_warnings()``."""
    from ..data.validate import DatasetWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DatasetWarning):
            print(f"activedet {command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("ignore" if quiet else "default", DatasetWarning)


#: What an interrupted command leaves, for the commands that continue where they stopped.
_RESUMES = {
    command: "; every finished step is saved: the same command continues the run where it stopped"
    for command in ("run", "resume", "query")
}


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
        except KeyboardInterrupt:
            if args.debug:
                raise
            print(f"activedet {args.command}: interrupted{_RESUMES.get(args.command, '')}", file=sys.stderr)
            return 130
        finally:
            distributed = sys.modules.get("activedet.engine.distributed")  # loaded only by commands that use torch
            if distributed is not None:
                distributed.shutdown()
