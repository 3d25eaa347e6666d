"""Checks that involve more than one key, or the library behind a key (strategies, trainers, metrics).

Each key's own type and allowed values are checked by the schema (:mod:`activedet.config.schema`) first; what is
here imports the heavy parts of the library lazily, so ``import activedet.config`` stays torch-free.
"""

from __future__ import annotations

import os

from ..constants import CLASSIFICATION_FORMATS, METRICS, VAL_METRICS
from .schema import Config, key_fields

__all__ = ["check_config", "strategy_of"]


class _Refused(Exception):
    """A key's value refused by a check: ``key``, what is allowed, what was found."""

    def __init__(self, key: str, expected: str, got):
        self.key, self.expected, self.got = key, expected, got


class _Explained(Exception):
    """A library factory's own message about the value of ``keys`` (e.g. ``'strategy'/'strategy_options'``)."""

    def __init__(self, keys: str, message: str):
        self.keys, self.message = keys, message


def _fail(key: str, expected: str, got) -> None:
    raise _Refused(key, expected, got)


def check_config(cfg: Config, where: str, error: type[Exception]) -> None:
    """Raise ``error("WHERE: key 'KEY' must be ...; found ...")`` for the first combination of keys that cannot
    work; strategy and metric options are checked by the library's own factories."""
    from ..al.plan import PlanError
    from ..engine.options import OptionError

    try:
        _check_task(cfg)
        _check_class_names(cfg)
        _check_metric_options(cfg)
        _check_training(cfg)
        try:
            cfg.loop_options().check_values()
        except PlanError as exc:
            _fail(exc.name, exc.expected, exc.got)
        _check_oracle(cfg)
        _check_strategy(cfg)
    except OptionError as exc:
        raise error(f"{where}: key '{exc.name}' must be {exc.expected}; found {exc.got!r}") from None
    except _Refused as exc:
        raise error(f"{where}: key '{exc.key}' must be {exc.expected}; found {exc.got!r}") from None
    except _Explained as exc:
        raise error(f"{where}: key {exc.keys}: {exc.message}") from None


def _check_class_names(cfg: Config) -> None:
    """A COCO or YOLO dataset names its classes itself: a ``class_names`` beside it would be ignored, so it is
    refused rather than silently overridden."""
    where = {"coco": "the COCO file's 'categories'", "yolo": "its classes.txt or data.yaml"}.get(cfg.data_format)
    if where is not None and cfg.class_names is not None:
        _fail(
            "class_names",
            f"null with data_format '{cfg.data_format}' ({where} name the classes; "
            f"`activedet validate {cfg.data_format} PATH` lists them): remove the key",
            cfg.class_names,
        )


def _check_task(cfg: Config) -> None:
    """Classification (``detector: classifier``) and detection keys must not mix."""
    classifier = cfg.detector == "classifier"
    if cfg.data_format in CLASSIFICATION_FORMATS and not classifier:
        _fail(
            "detector",
            f"'classifier' with data_format '{cfg.data_format}' (one class label per image, no boxes)",
            cfg.detector,
        )
    if classifier:
        if any(m != "accuracy" for m in cfg.metrics):
            _fail("metrics", "[accuracy] for detector 'classifier' (box metrics need boxes)", cfg.metrics)
        if cfg.val_data is not None and cfg.val_metric not in VAL_METRICS["classification"]:
            _fail(
                "val_metric",
                "'top1' or 'mean_per_class' for detector 'classifier' (the best epoch is chosen on "
                "the validation accuracy)",
                cfg.val_metric,
            )
    elif "accuracy" in cfg.metrics:
        _fail(
            "metrics",
            f"a list of {[m for m in METRICS if m != 'accuracy']} for detector '{cfg.detector}' "
            "('accuracy' is for detector 'classifier')",
            cfg.metrics,
        )
    if cfg.data_format == "cifar" and cfg.val_data is not None:
        _fail(
            "val_data",
            "null with data_format 'cifar' (the binary CIFAR release has a train and a test split "
            "only; write a validation split as an ImageFolder tree and use data_format imagefolder)",
            cfg.val_data,
        )


def _check_metric_options(cfg: Config) -> None:
    from ..evaluation import check_options

    try:
        check_options(cfg.metrics, cfg.evaluation_options())
    except ValueError as exc:
        raise _Explained("'metric_options'", str(exc)) from None


def _check_training(cfg: Config) -> None:
    """Trainer and pseudo-label options (their factories raise ``OptionError`` naming the key)."""
    from ..engine.trainers import refused_keys, resolve_training

    cfg.train_options()
    cfg.trainer()
    cfg.pseudo_label_options()
    training = resolve_training(cfg.training, cfg.detector)
    for key, why in refused_keys(training).items():
        if getattr(cfg, key) is not None:
            _fail(key, f"null with training '{training}' ({why})", getattr(cfg, key))
    _check_semi_supervised(cfg)
    clash = sorted(k for k in cfg.detector_options if k in key_fields())
    if clash:
        _fail(f"detector_options.{clash[0]}", f"absent: '{clash[0]}' is a top-level key", cfg.detector_options)


def _check_semi_supervised(cfg: Config) -> None:
    """The teacher-student procedure is a hook of the standard training of a detector."""
    from ..engine.teacher import TeacherStudentOptions
    from ..engine.trainers import resolve_training

    if cfg.semi_supervised is None:
        return
    options = TeacherStudentOptions.from_dict(cfg.semi_supervised)
    if resolve_training(cfg.training, cfg.detector) != "standard":
        _fail(
            "semi_supervised",
            f"null with training '{resolve_training(cfg.training, cfg.detector)}' (detector '{cfg.detector}' "
            "trains on the unlabelled images its own way; the teacher-student procedure is a hook of training "
            "'standard': choose another detector, or set semi_supervised: null)",
            cfg.semi_supervised,
        )
    if cfg.detector == "classifier":
        _fail(
            "semi_supervised",
            "null with detector 'classifier' (pseudo boxes need a detector; use a detector or semi_supervised: null)",
            cfg.semi_supervised,
        )
    if options.ignore_below is not None and cfg.detector != "faster_rcnn":
        _fail(
            "semi_supervised.ignore_below",
            f"null with detector '{cfg.detector}' (ignored regions need a detector that can train a region as "
            "neither object nor background: faster_rcnn)",
            options.ignore_below,
        )
    if cfg.pseudo_labels is not None:
        _fail(
            "semi_supervised",
            "null when pseudo_labels is set (two semi-supervised procedures; keep one: set pseudo_labels: null "
            "or semi_supervised: null)",
            cfg.semi_supervised,
        )
    options.check(cfg.train_options())


def _check_oracle(cfg: Config) -> None:
    if cfg.labelstudio_document_root is not None and not os.path.isabs(cfg.labelstudio_document_root):
        _fail(
            "labelstudio_document_root",
            "an absolute folder path (Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, '/' by default) or null",
            cfg.labelstudio_document_root,
        )
    if cfg.oracle == "simulated" and cfg.unlabelled_data is not None:
        _fail(
            "unlabelled_data",
            "null with oracle 'simulated' (the simulation labels images from train_data's "
            "annotations; set oracle: human to label a folder of unlabelled images)",
            cfg.unlabelled_data,
        )

    if cfg.oracle == "human" and not cfg.simulated_preview:
        _fail(
            "simulated_preview",
            "true with oracle 'human' (people's labels are never known before they label, so a budget in boxes "
            "or cost always spends predicted figures; remove the key)",
            cfg.simulated_preview,
        )


def strategy_of(cfg: Config):
    """The configured strategy (a list of names composes criteria in order)."""
    from ..strategies import get_strategy

    if isinstance(cfg.strategy, list):  # criteria in order: uncertainty ones narrow the pool, the last picks
        return get_strategy("compose", criteria=cfg.strategy, **cfg.strategy_options)
    return get_strategy(cfg.strategy, **cfg.strategy_options)


def _check_strategy(cfg: Config) -> None:
    try:
        strategy = strategy_of(cfg)
    except ValueError as exc:
        raise _Explained("'strategy'/'strategy_options'", str(exc)) from None
    from ..al.cost import CostError, check_cost_aware

    try:
        check_cost_aware(cfg.cost_model(), strategy)
    except CostError as exc:
        _fail(exc.name, exc.expected, exc.got)
    previewing = [stage.name for stage in strategy.stages if stage.needs_preview]
    if previewing and (cfg.oracle == "human" or not cfg.simulated_preview):
        human = cfg.oracle == "human"
        _fail(
            "oracle" if human else "simulated_preview",
            ("'simulated'" if human else "true")
            + f" for strategy '{strategy.name}' ({', '.join(previewing)} reads the candidates' classes before "
            "they are bought, a simulation-only diagnostic; with people, use the predicted classes)",
            cfg.oracle if human else cfg.simulated_preview,
        )
    if any(stage.needs_val for stage in strategy.stages) and cfg.val_data is None:
        _fail(
            "val_data",
            f"the path of a validation split disjoint from the test split (strategy "
            f"'{strategy.name}' computes its validation-loss gradient there)",
            None,
        )
