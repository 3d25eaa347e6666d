"""Config-driven workflows behind the CLI: load the splits, build the detector, train, evaluate.

Each function takes a validated :class:`~activedet.config.Config`; the library underneath takes keyword arguments.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .al.rundir import RunDir
from .al.status import run_status as run_status  # re-exported: its home is torch-free
from .config import Config, config_error
from .data.images import ImageDecodeError
from .data.records import DetectionDataset
from .engine import distributed as dist_utils
from .engine.checkpoint import atomic_write_json, load_checkpoint
from .engine.inference import predict_dataset
from .engine.train import TrainResult
from .evaluation import evaluate
from .models import EnsembleDetector, build_detector
from .splits import (
    check_classification_labels,
    check_run_pool,
    load_split,
    pool_fingerprint,
    run_pool,
    with_unlabelled_images,
)
from .splits import without_bad_images as without_bad_images  # re-exported: the splits' home is torch-free

__all__ = ["load_split", "build_model", "train_from_config", "evaluate_from_config"]


def build_model(cfg: Config, num_classes: int) -> torch.nn.Module:
    """The config's detector, or an :class:`~activedet.models.EnsembleDetector` of
    ``ensemble_size`` of them built one after the other (member 0 is the model a single build gives with the same
    torch seed)."""
    try:
        if cfg.ensemble_size == 1:
            return build_detector(cfg.detector, num_classes, **cfg.model_kwargs())
        return EnsembleDetector(
            [build_detector(cfg.detector, num_classes, **cfg.model_kwargs()) for _ in range(cfg.ensemble_size)]
        )
    except (TypeError, ValueError) as exc:  # a builder keyword from the config: name the file and the key
        raise config_error(cfg, _builder_key(str(exc)), str(exc)) from None


def _builder_key(message: str) -> str:
    """The config key behind a detector builder's error (its parameter name, or ``detector_options.NAME``)."""
    import re

    found = re.search(r"The '(\w+)' parameter|unexpected keyword argument '(\w+)'|does not take \['(\w+)'", message)
    name = found and (found[1] or found[2] or found[3])
    if not name:
        return "detector"
    return name if name in Config.model_fields else f"detector_options.{name}"


def _check_same_classes(cfg: Config, train: DetectionDataset, other: DetectionDataset | None, split: str) -> None:
    if other is not None and other.class_names != train.class_names:
        raise config_error(
            cfg,
            f"{split}_data",
            f"the {split} split's classes {other.class_names} differ from the "
            f"training split's {train.class_names}; both must list the same classes in the same order",
        )


def train_from_config(
    cfg: Config, *, resume: bool = False, progress: bool = True
) -> tuple[torch.nn.Module, TrainResult]:
    """Train on the config's train split (validating on ``val_data`` when set) and write ``out_dir``."""
    device = dist_utils.resolve_device(cfg.device)
    dist_utils.init_distributed(device)
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    _check_same_classes(cfg, train, val, "val")
    for data, split in ((train, "train"), (val, "val")):
        check_classification_labels(cfg, data, split)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train.num_classes)  # weights files are read here: before anything is written
    out = Path(cfg.out_dir)
    if dist_utils.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
    try:
        result = cfg.trainer()(
            model,
            train,
            val_set=val,
            options=cfg.train_options(),
            out_dir=out,
            device=device,
            resume=resume,
            progress=progress,
        )
    except ImageDecodeError as exc:
        if exc.path is None:
            raise
        raise ImageDecodeError(
            exc.path,
            f"{exc.reason}. Training stopped with its finished epochs saved in {out}; "
            "after fixing the file, `activedet train CONFIG --resume` continues from there",
        ) from None
    return model, result


def evaluate_from_config(
    cfg: Config,
    model: torch.nn.Module | None = None,
    *,
    checkpoint: str | Path | None = None,
    split: str = "test",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` (or the weights in ``checkpoint``) on a split with the config's metrics.

    Writes ``out_dir/metrics_{split}.json`` (rank 0) and returns the metrics dict, which also holds
    ``num_images``, ``seconds`` and ``images_per_second`` of the inference.
    """
    device = dist_utils.resolve_device(cfg.device)
    dist_utils.init_distributed(device)
    data = load_split(cfg, split)
    if data is None:
        raise config_error(
            cfg,
            f"{split}_data",
            f"the config has no {split} split: set '{split}_data'"
            + (f" and 'voc_{split}_sets'" if cfg.data_format == "voc" else ""),
        )
    if len(data) == 0:
        raise config_error(
            cfg,
            f"{split}_data",
            f"the {split} split ({getattr(cfg, f'{split}_data')}) has no images; evaluation needs some",
        )
    if model is None:
        model = build_model(cfg, data.num_classes)
        model.load_state_dict(load_checkpoint(checkpoint)["model"])
    model.to(device)
    started = time.perf_counter()
    predictions = predict_dataset(model, data, device=device, batch_size=cfg.eval_batch_size, progress=progress)
    seconds = time.perf_counter() - started
    metrics = evaluate(data, predictions, metrics=tuple(cfg.metrics), options=cfg.evaluation_options())
    metrics.update(num_images=len(data), seconds=seconds, images_per_second=len(data) / max(seconds, 1e-9))
    if dist_utils.is_main_process():
        atomic_write_json(Path(cfg.out_dir) / f"metrics_{split}.json", json.loads(json.dumps(metrics, default=float)))
    return metrics


# keys that may differ when a run directory is continued: they change how (or how far), not what, is computed
RESUMABLE_KEYS = frozenset(
    {
        "device",
        "num_workers",
        "log_every",
        "eval_batch_size",
        "out_dir",
        "cycles",
        "max_labelled",
        "keep_checkpoints",
        "export_format",
        "export_images",
        "export_min_score",
        "labelstudio_url_prefix",
        "labelstudio_document_root",
        "epoch_checkpoints",
    }
)


def config_defaults() -> dict[str, Any]:
    """Every config key's default (``train_data`` has none and is left out)."""
    return {
        name: f.get_default(call_default_factory=True) for name, f in Config.model_fields.items() if not f.is_required()
    }


def check_run_dir(cfg: Config, run_dir: Path) -> None:
    """A run directory continues only the config that started it; name the keys that differ otherwise."""
    saved_path = RunDir(run_dir).config
    if not saved_path.is_file():
        if RunDir(run_dir).ledger.is_file():
            raise ValueError(f"{run_dir} has a ledger but no config.json; it was not written by activedet run")
        return
    # a key the saved config lacks was added to activedet after the run started: it had the key's default
    defaults = config_defaults()
    saved = {**{k: v for k, v in defaults.items() if k not in RESUMABLE_KEYS}, **json.loads(saved_path.read_text())}
    current = cfg.to_dict()
    diffs = [
        f"'{k}' is {saved.get(k)!r} there but {current.get(k)!r} here"
        for k in sorted(set(saved) | set(current))
        if k not in RESUMABLE_KEYS and saved.get(k) != current.get(k)
    ]
    if diffs:
        raise ValueError(
            f"{getattr(cfg, 'source', 'config')}: run directory {run_dir} was started with a different "
            f"config: {'; '.join(diffs[:8])}. Use a new out_dir for a new experiment, or `activedet resume "
            f"{run_dir}` to continue it with its own config"
        )


def check_strategy_supported(strategy, model: torch.nn.Module, detector: str) -> None:
    """Fail before any work when a stage of the strategy needs outputs the detector cannot produce."""
    for stage in strategy.stages:
        predictor = stage.predictor(model) if stage.predictor is not None else model  # raises naming what to change
        provides = getattr(predictor, "PROVIDES", frozenset())
        missing = sorted(set(stage.needs) - set(provides))
        if missing:
            what = f"strategy '{strategy.name}'" + (f" (stage '{stage.name}')" if stage is not strategy else "")
            raise ValueError(
                f"{what} needs {missing} from the detector, but '{detector}' provides only "
                f"{sorted(provides)}; choose another detector or strategy"
            )


def run_from_config(cfg: Config, run_dir: str | Path | None = None, *, progress: bool = True):
    """Start or continue the active-learning run of ``cfg`` in ``run_dir`` (default ``cfg.out_dir``)."""
    from .al.export import BatchExport
    from .al.fingerprint import save_fingerprint
    from .al.loop import ActiveLearningRun
    from .al.oracle import HumanOracle, SimulatedOracle
    from .al.plan import PlanError
    from .config import ConfigError, _strategy

    run_dir = Path(run_dir or cfg.out_dir)
    device = dist_utils.resolve_device(cfg.device)
    dist_utils.init_distributed(device)
    check_run_dir(cfg, run_dir)
    deferred: list = []  # the pool index caches and pool.json: written with config.json, once all is validated
    train, test, val = (load_split(cfg, split, deferred=deferred) for split in ("train", "test", "val"))
    pool, initial = train, None
    if cfg.oracle == "human":  # the annotated images are the labelled start, the folder the unlabelled pool
        initial = np.arange(len(pool))
        try:
            pool = with_unlabelled_images(pool, cfg.unlabelled_data)
        except ValueError as exc:
            raise config_error(cfg, "unlabelled_data", str(exc)) from None
    fingerprint = pool_fingerprint(cfg, train, pool)
    check_run_pool(cfg, run_dir, fingerprint, pool)  # the ledger counts the images the run started with
    deferred.append(lambda: save_fingerprint(run_dir, fingerprint))
    if test is None or len(test) == 0:
        raise config_error(
            cfg,
            "test_data",
            "an active-learning run needs a non-empty test split: set 'test_data'"
            + (" and 'voc_test_sets'" if cfg.data_format == "voc" else ""),
        )
    _check_same_classes(cfg, pool, test, "test")
    _check_same_classes(cfg, pool, val, "val")
    for data, split in ((pool, "train"), (test, "test"), (val, "val")):
        check_classification_labels(cfg, data, split)
    options, strategy = cfg.loop_options(), _strategy(cfg)
    try:
        options.check(len(pool))
    except PlanError as exc:
        raise config_error(cfg, exc.key or exc.name, str(exc)) from None
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, pool.num_classes)
    try:
        check_strategy_supported(strategy, model, cfg.detector)
    except ConfigError:
        raise
    except ValueError as exc:
        raise config_error(cfg, "strategy", str(exc)) from None
    if cfg.initial_selection != "random":  # a cold start clusters the untrained detector's image embeddings
        if cfg.oracle == "human":
            raise config_error(
                cfg,
                "initial_selection",
                f"'{cfg.initial_selection}' chooses the initial set of a simulated run, but with oracle: human "
                "the labelled start is the annotated images of train_data; remove 'initial_selection'",
            )
        if "embedding" not in getattr(model, "PROVIDES", frozenset()):
            raise config_error(
                cfg,
                "initial_selection",
                f"'{cfg.initial_selection}' needs image embeddings, but '{cfg.detector}' provides only "
                f"{sorted(getattr(model, 'PROVIDES', frozenset()))}; choose another detector or "
                "initial_selection: random",
            )
    if dist_utils.is_main_process():
        atomic_write_json(RunDir(run_dir).config, cfg.to_dict())
        for save in deferred:
            save()
    dist_utils.barrier()
    export = BatchExport(
        cfg.export_format,
        cfg.export_images,
        {
            "min_score": cfg.export_min_score,
            "labelstudio_url_prefix": cfg.labelstudio_url_prefix,
            "labelstudio_document_root": cfg.labelstudio_document_root,
        },
    )
    run = ActiveLearningRun(
        run_dir=run_dir,
        pool=pool,
        test=test,
        val=val,
        build_model=lambda: build_model(cfg, pool.num_classes),
        strategy=strategy,
        options=options,
        train_options=cfg.train_options(),
        trainer=cfg.trainer(),
        pseudo_labels=cfg.pseudo_label_options(),
        metrics=tuple(cfg.metrics),
        metric_options=cfg.evaluation_options(),
        device=device,
        batch_size=cfg.eval_batch_size,
        progress=progress,
        oracle=HumanOracle(pool, export=export)
        if cfg.oracle == "human"
        else SimulatedOracle(pool, export=export, preview=cfg.simulated_preview),
        initial=initial,
        cost=cfg.cost_model(),
    )
    try:
        return run.run()
    except ImageDecodeError as exc:  # every finished stage is on disk (training: up to its last epoch)
        if exc.path is None:
            raise
        raise ImageDecodeError(
            exc.path,
            f"{exc.reason}. The run stopped with every finished stage saved; after "
            f"fixing the file, `activedet resume {run_dir}` continues from there",
        ) from None


def resume_run(run_dir: str | Path, *, overrides: list[str] | None = None, progress: bool = True):
    """Continue the run in ``run_dir`` with the config saved there (``device``-like keys may be overridden)."""
    from .config import load_config

    run_dir = Path(run_dir)
    if not RunDir(run_dir).config.is_file():
        raise FileNotFoundError(f"{run_dir} has no config.json: it is not an activedet run directory")
    cfg = load_config(RunDir(run_dir).config, overrides)
    return run_from_config(cfg, run_dir, progress=progress)


def import_into_run(
    run_dir: str | Path,
    file: str | Path,
    *,
    fmt: str = "auto",
    annotator: str | None = None,
    empty_means_labelled: bool = False,
    replace: bool = False,
):
    """Validate the labels in ``file`` against the run's pending batch and commit them (one import record);
    ``replace``: labels that differ from an earlier import of the same image take its place instead of being refused.

    Raises ``ValueError`` (nothing merged) when the run awaits no labels, the file is malformed, or any image, class
    or box is wrong; returns :class:`~activedet.al.annotation.ImportResult`.
    """
    from .al.annotation import ImportRefused, import_labels, read_labels
    from .config import load_config

    run_dir, run = Path(run_dir), RunDir(run_dir)
    status = run_status(run_dir)
    exported = run.cycle(status["cycle"]).query_batch
    if not exported.is_file():  # (a complete batch still takes the same labels again: nothing changes)
        raise ValueError(
            f"{run_dir} is not awaiting labels (state: {status['state']}, cycle {status['cycle']}); "
            f"`activedet query {run_dir}` exports the next batch to label"
        )
    cfg = load_config(run.config)
    pool = run_pool(cfg, run_dir=run_dir)
    t = status["cycle"]
    picks = json.loads(run.cycle(t).selection.read_text())["picks"]
    sizes = {r.image_id: (r.width, r.height) for r in pool.records}
    try:
        labels = read_labels(fmt, file, pool.class_names, sizes=sizes, empty_means_labelled=empty_means_labelled)
    except ValueError as exc:  # a file that cannot be read as labels: the same header as every refused import
        raise ImportRefused.listing(file, str(exc).splitlines()) from None
    return import_labels(
        run_dir,
        labels,
        cycle=t,
        batch=[p["image_id"] for p in picks],
        pool=pool,
        clip_tolerance=cfg.clip_tolerance,
        annotator=annotator,
        replace=replace,
    )
