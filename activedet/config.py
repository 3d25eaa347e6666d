"""The CLI's one flat configuration file (YAML, or JSON), validated into a typed :class:`Config`.

No inheritance, no includes, no object graphs: every key is a field below. Relative paths are resolved against
the directory of the config file, so a config and its data can move together. An unknown key, a wrong type or
an out-of-range value is a :class:`ConfigError` naming the file, the key, what is allowed and what was found
(with the closest valid key for a typo). The library itself takes keyword arguments; this module only maps the
file onto them (:meth:`Config.train_options`, :meth:`Config.model_kwargs`).
"""

from __future__ import annotations

import dataclasses
import functools
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .engine.train import OptionError, TrainOptions
from .engine.trainers import resolve_training

__all__ = ["Config", "ConfigError", "config_error", "load_config", "config_from_dict", "parse_override"]

DATA_FORMATS = ("coco", "voc", "yolo", "imagefolder", "cifar")
#: formats whose images carry one class label each (image classification; ``detector: classifier``)
CLASSIFICATION_FORMATS = ("imagefolder", "cifar")
BOX_POLICIES = ("error", "clip")
METRICS = ("voc", "coco", "froc", "accuracy")
PATH_KEYS = ("train_data", "unlabelled_data", "val_data", "test_data", "image_root", "val_image_root",
             "test_image_root", "weights", "weights_backbone", "out_dir")


class ConfigError(ValueError):
    """A problem in a config file; the message names the file and key."""


def config_error(cfg: Config, key: str, message: str) -> ConfigError:
    """A :class:`ConfigError` for a problem found after loading (e.g. against the data): ``"FILE: key 'KEY':
    MESSAGE"``, FILE being the file ``cfg`` was read from (``cfg.source``)."""
    return ConfigError(f"{getattr(cfg, 'source', 'config')}: key '{key}': {message}")


@dataclass
class Config:
    """Every key of a config file. Training keys are those of :class:`activedet.engine.train.TrainOptions`.

    Data:
        data_format: ``coco`` (a JSON file per split), ``voc`` (a VOCdevkit directory) or ``yolo`` (a root per split);
            image classification: ``imagefolder`` (a ``root/<class>/<image>`` tree per split) or ``cifar`` (the
            binary CIFAR-10/100 directory for both ``train_data`` and ``test_data``: its train and test batches).
        train_data / val_data / test_data: path of each split (``val_data``/``test_data`` optional). For ``voc``,
            the devkit directory; the ``voc_*_sets`` keys say which year/image-set files form each split.
        image_root: COCO only: directory that ``file_name`` entries are relative to (default: the JSON's folder);
            val_image_root / test_image_root: the same for the other splits (default: ``image_root``), e.g.
            COCO's ``train2017/`` and ``val2017/``.
        voc_train_sets / voc_val_sets / voc_test_sets: ``"YEAR/SET"`` entries combined in the given order, e.g.
            ``["2007/trainval", "2012/trainval"]`` is MI-AOD's VOC07+12 pool.
        class_names: VOC: the class names in label order (default: the 20 Pascal VOC classes); ImageFolder/CIFAR:
            optional, the class names in label order (default: the sorted folder names / the batches' meta file).
        box_policy, clip_tolerance: ``error`` on any out-of-image box, or ``clip`` boxes that overflow by at most
            ``clip_tolerance`` pixels (reported as one warning line per dataset).
        bad_images: ``stop`` (an image file that cannot be decoded ends the command with a message naming it; a run
            keeps every finished stage) or ``skip`` (every image is decoded when a split is read and those that fail
            are left out, with one warning naming them).
    Model:
        detector: a name listed by ``activedet detectors`` (``classifier`` for image classification, with
        ``backbone`` ``small`` or ``resnet18`` and ``min_size`` the input side; then ``metrics: [accuracy]`` and, with a
        validation split, ``val_metric: top1``); backbone, min_size, max_size, norm,
        trainable_backbone_layers, score_thresh, nms_thresh, detections_per_img: builder keywords
        (``null`` = the detector's own default); weights / weights_backbone: a local file or a torchvision enum
        name (downloaded by torchvision when online); detector_options: any other keyword of the detector's
        builder (e.g. ``anchor_sizes``, MI-AOD's ``lambda_dis``, MC-dropout's ``dropout``); ensemble_size: train
        that many independently initialised detectors per cycle (deep ensemble; the ``ensemble`` strategy scores
        with all of them, evaluation uses member 0).
    Training: the keys of :class:`~activedet.engine.train.TrainOptions`, plus training: the per-cycle procedure
        (``auto`` = the detector's own: ``miaod`` for the ``miaod`` detector, else ``standard``) and
        training_options: its options (see :mod:`activedet.engine.trainers`).
    Active learning (``activedet run``; see :class:`activedet.al.plan.LoopOptions`):
        strategy: a name listed by ``activedet strategies``, or a list of them applied in order (``compose``:
            e.g. ``[localization_tightness, kmeans]``); strategy_options: its keyword options (for a list, those
            of ``compose``: ``factors`` and one mapping of options per criterion name).
        initial_labelled, budget: an int count or a float fraction of the pool in (0, 1];
        budget_unit: ``images`` or ``boxes``; cycles / max_labelled: when to stop; score_subset: score only a
        random part of the unlabelled pool per cycle; warm_start: start each cycle from the previous weights
        (fine-tuning); keep_checkpoints: recent cycle checkpoints kept on disk.
        oracle: ``simulated`` (the ground truth of ``train_data`` labels each batch) or ``human`` (people do:
        ``activedet query`` exports a batch, ``activedet import`` brings its labels; ``train_data`` is then the
        labelled start and ``unlabelled_data`` a folder of images nobody has labelled); export_format /
        export_images: how each batch is exported (``activedet``, ``labelstudio``, ``cvat_coco``, ``coco``, ``voc``,
        ``cvat_voc``, ``yolo``: :data:`~activedet.al.export.EXPORT_FORMATS`; ``copy``, ``link`` or ``none`` for the
        images); export_min_score: the lowest detection score written as a pre-annotation;
        labelstudio_url_prefix / labelstudio_document_root: Label Studio tasks name each image as the prefix + its
        path relative to the root (Label Studio's local files storage).
        pseudo_labels: ``null`` (off) or a mapping of :class:`~activedet.engine.pseudo.PseudoLabelOptions`
        (``{}`` = med_sslal's defaults): train each cycle also on the previous model's confident detections on the
        unlabelled images; pseudo_label_subset: pseudo-label only a random part of the unlabelled pool.
    Evaluation and run:
        metrics: any of ``voc`` (mAP@0.5, 11-point and area), ``coco`` (pycocotools AP), ``froc``, ``accuracy``
            (``detector: classifier``). metric_options: keyword options per metric (:func:`activedet.evaluation.
            evaluate`), e.g. ``{voc: {rules: continuous}, froc: {matching: centre}}``; ``voc`` uses the devkit's rules
            on ``data_format: voc`` data and the continuous ones otherwise unless ``rules`` is given.
        eval_batch_size: images per inference batch. out_dir: run directory. device: ``auto``, ``cpu``, ``cuda``.
    """

    train_data: str
    data_format: str = "coco"
    val_data: str | None = None
    test_data: str | None = None
    image_root: str | None = None
    val_image_root: str | None = None
    test_image_root: str | None = None
    voc_train_sets: list[str] = field(default_factory=lambda: ["2007/trainval"])
    voc_val_sets: list[str] = field(default_factory=list)
    voc_test_sets: list[str] = field(default_factory=lambda: ["2007/test"])
    class_names: list[str] | None = None
    box_policy: str = "error"
    clip_tolerance: float = 2.0
    bad_images: str = "stop"

    detector: str = "retinanet"
    backbone: str | None = None
    min_size: int | None = None
    max_size: int | None = None
    weights: str | None = None
    weights_backbone: str | None = None
    norm: str | None = None
    trainable_backbone_layers: int | None = None
    score_thresh: float | None = None
    nms_thresh: float | None = None
    detections_per_img: int | None = None
    detector_options: dict[str, Any] = field(default_factory=dict)
    ensemble_size: int = 1

    epochs: int = 12
    batch_size: int = 4
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    lr_schedule: str = "step"
    lr_steps: list[int] = field(default_factory=lambda: [8, 11])
    lr_gamma: float = 0.1
    grad_clip: float | None = None
    amp: bool = True
    hflip_prob: float = 0.5
    scale_jitter: float = 0.0
    color_jitter: float = 0.0
    ssd_augment: bool = False
    eval_every: int = 1
    early_stopping_patience: int | None = None
    val_metric: str = "mAP_area"
    num_workers: int = 0
    seed: int = 0
    log_every: int = 10
    tensorboard: bool = False
    epoch_checkpoints: str = "last_best"
    training: str = "auto"
    training_options: dict[str, Any] = field(default_factory=dict)

    strategy: str | list[str] = "random"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    initial_labelled: int | float = 0.05
    budget: int | float = 0.025
    budget_unit: str = "images"
    cycles: int | None = 7
    max_labelled: int | float | None = None
    score_subset: int | float | None = None
    warm_start: bool = False
    pseudo_labels: dict[str, Any] | None = None
    pseudo_label_subset: int | float | None = None
    keep_checkpoints: int = 2
    oracle: str = "simulated"
    unlabelled_data: str | None = None
    export_format: str = "activedet"
    export_images: str = "copy"
    export_min_score: float = 0.3
    labelstudio_url_prefix: str = "/data/local-files/?d="
    labelstudio_document_root: str | None = "/"

    metrics: list[str] = field(default_factory=lambda: ["voc", "coco"])
    metric_options: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int = 8
    out_dir: str = "runs/train"
    device: str = "auto"

    def train_options(self) -> TrainOptions:
        names = {f.name for f in dataclasses.fields(TrainOptions)}
        return TrainOptions(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    def model_kwargs(self) -> dict[str, Any]:
        """Builder keywords that the file sets (``null`` ones are left to the detector's defaults)."""
        keys = ("backbone", "min_size", "max_size", "weights", "weights_backbone", "norm",
                "trainable_backbone_layers", "score_thresh", "nms_thresh", "detections_per_img")
        given = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        return {**given, **self.detector_options}

    def trainer(self):
        """The per-cycle training procedure (:mod:`activedet.engine.trainers`) with its options bound; with
        ``ensemble_size`` > 1, that procedure applied to each member in turn."""
        from .engine.trainers import get_trainer, train_ensemble

        trainer = get_trainer(self.training, self.detector, self.training_options)
        return trainer if self.ensemble_size == 1 else functools.partial(train_ensemble, member_trainer=trainer)

    def pseudo_label_options(self):
        """:class:`~activedet.engine.pseudo.PseudoLabelOptions` of ``pseudo_labels``, or ``None`` when off."""
        from .engine.pseudo import PseudoLabelOptions

        return None if self.pseudo_labels is None else PseudoLabelOptions.from_dict(self.pseudo_labels)

    def loop_options(self):
        from .al.plan import LoopOptions

        names = {f.name for f in dataclasses.fields(LoopOptions)}
        return LoopOptions(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    def evaluation_options(self) -> dict[str, dict[str, Any]]:
        """``metric_options`` with the VOC rules filled in: the devkit's for ``data_format: voc``, else continuous."""
        options = {name: dict(given) if isinstance(given, dict) else given
                   for name, given in self.metric_options.items()}
        if "voc" in self.metrics and isinstance(options.get("voc", {}), dict):
            default = "devkit" if self.data_format == "voc" else "continuous"
            options["voc"] = {"rules": default, **options.get("voc", {})}
        return options

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_name(tp) -> str:
    text = tp.__name__ if isinstance(tp, type) else str(tp)
    return text.replace("NoneType", "null")


def _matches(value: Any, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _check_choices(cfg: Config, where: str) -> None:
    def fail(key, allowed, got):
        raise ConfigError(f"{where}: key '{key}' must be {allowed}; found {got!r}")

    if cfg.data_format not in DATA_FORMATS:
        fail("data_format", f"one of {list(DATA_FORMATS)}", cfg.data_format)
    _check_task(cfg, fail)
    if cfg.box_policy not in BOX_POLICIES:
        fail("box_policy", f"one of {list(BOX_POLICIES)}", cfg.box_policy)
    if cfg.bad_images not in ("stop", "skip"):
        fail("bad_images", "'stop' or 'skip'", cfg.bad_images)
    if cfg.clip_tolerance < 0:
        fail("clip_tolerance", "a number >= 0", cfg.clip_tolerance)
    bad = [m for m in cfg.metrics if m not in METRICS]
    if bad or not cfg.metrics:
        fail("metrics", f"a non-empty list of {list(METRICS)}", cfg.metrics)
    _check_metric_options(cfg, where)
    if cfg.eval_batch_size < 1:
        fail("eval_batch_size", "an int >= 1", cfg.eval_batch_size)
    if cfg.ensemble_size < 1:
        fail("ensemble_size", "an int >= 1 (the number of independently trained detectors; 1 = no ensemble)",
             cfg.ensemble_size)
    for key in ("voc_train_sets", "voc_val_sets", "voc_test_sets"):
        for entry in getattr(cfg, key):
            if entry.count("/") != 1:
                fail(key, "a list of 'YEAR/SET' strings such as '2007/trainval'", entry)
    try:
        cfg.train_options()
        cfg.trainer()
        cfg.pseudo_label_options()
    except OptionError as exc:
        fail(exc.name, exc.expected, exc.got)
    if cfg.pseudo_labels is not None and resolve_training(cfg.training, cfg.detector) == "miaod":
        fail("pseudo_labels", "null with training 'miaod' (MI-AOD trains on the unlabelled images its own way; "
             "pseudo labels need training 'standard')", cfg.pseudo_labels)
    clash = sorted(k for k in cfg.detector_options if k in dataclasses.asdict(cfg))
    if clash:
        fail(f"detector_options.{clash[0]}", f"absent: '{clash[0]}' is a top-level key", cfg.detector_options)
    _check_active_learning(cfg, fail)
    _check_oracle(cfg, fail)
    try:
        strategy = _strategy(cfg)
    except ValueError as exc:
        raise ConfigError(f"{where}: key 'strategy'/'strategy_options': {exc}") from None
    needs_val = [stage.name for stage in strategy.stages if stage.needs_val]
    if needs_val and cfg.val_data is None:
        fail("val_data", f"the path of a validation split disjoint from the test split (strategy "
             f"'{strategy.name}' computes its validation-loss gradient there)", None)


def _check_metric_options(cfg: Config, where: str) -> None:
    from .evaluation import check_options

    try:
        check_options(cfg.metrics, cfg.evaluation_options())
    except ValueError as exc:
        raise ConfigError(f"{where}: key 'metric_options': {exc}") from None


def _check_oracle(cfg: Config, fail) -> None:
    from .al.export import EXPORT_FORMATS, IMAGE_MODES

    if cfg.oracle not in ("simulated", "human"):
        fail("oracle", "'simulated' or 'human'", cfg.oracle)
    if cfg.export_format not in EXPORT_FORMATS:
        fail("export_format", f"one of {list(EXPORT_FORMATS)}", cfg.export_format)
    if cfg.export_images not in IMAGE_MODES:
        fail("export_images", f"one of {list(IMAGE_MODES)}", cfg.export_images)
    if not 0 <= cfg.export_min_score <= 1:
        fail("export_min_score", "a number in [0, 1] (the lowest detection score written as a pre-annotation)",
             cfg.export_min_score)
    if cfg.labelstudio_document_root is not None and not os.path.isabs(cfg.labelstudio_document_root):
        fail("labelstudio_document_root", "an absolute folder path (Label Studio's "
             "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, '/' by default) or null", cfg.labelstudio_document_root)
    if cfg.oracle == "simulated" and cfg.unlabelled_data is not None:
        fail("unlabelled_data", "null with oracle 'simulated' (the simulation labels images from train_data's "
             "annotations; set oracle: human to label a folder of unlabelled images)", cfg.unlabelled_data)
    if cfg.oracle == "human" and cfg.budget_unit != "images":
        fail("budget_unit", "'images' with oracle 'human' (the boxes of an unlabelled image are unknown until it is "
             "labelled)", cfg.budget_unit)


def _check_task(cfg: Config, fail) -> None:
    """Classification (``detector: classifier``) and detection keys must not mix."""
    classifier = cfg.detector == "classifier"
    if cfg.data_format in CLASSIFICATION_FORMATS and not classifier:
        fail("detector", f"'classifier' with data_format '{cfg.data_format}' (one class label per image, no boxes)",
             cfg.detector)
    if classifier:
        if any(m != "accuracy" for m in cfg.metrics):
            fail("metrics", "[accuracy] for detector 'classifier' (box metrics need boxes)", cfg.metrics)
        if cfg.val_data is not None and cfg.val_metric not in ("top1", "mean_per_class"):
            fail("val_metric", "'top1' or 'mean_per_class' for detector 'classifier' (the best epoch is chosen on the "
                 "validation accuracy)", cfg.val_metric)
    elif "accuracy" in cfg.metrics:
        fail("metrics", f"a list of {[m for m in METRICS if m != 'accuracy']} for detector '{cfg.detector}' "
             "('accuracy' is for detector 'classifier')", cfg.metrics)
    if cfg.data_format == "cifar" and cfg.val_data is not None:
        fail("val_data", "null with data_format 'cifar' (the binary CIFAR release has a train and a test split only; "
             "write a validation split as an ImageFolder tree and use data_format imagefolder)", cfg.val_data)


def _strategy(cfg: Config):
    from .strategies import get_strategy

    if isinstance(cfg.strategy, list):  # criteria in order: uncertainty ones narrow the pool, the last picks
        return get_strategy("compose", criteria=cfg.strategy, **cfg.strategy_options)
    return get_strategy(cfg.strategy, **cfg.strategy_options)


def _check_active_learning(cfg: Config, fail) -> None:
    from .al.plan import PlanError

    try:
        cfg.loop_options().check_values()
    except PlanError as exc:
        fail(exc.name, exc.expected, exc.got)


def config_from_dict(data: dict[str, Any], *, where: str = "config", base_dir: Path | None = None) -> Config:
    """Validate a mapping into a :class:`Config`; ``base_dir`` resolves relative paths."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of key: value at the top level; found "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(Config)
    for key, value in data.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), hints, n=1)
            tip = f"; did you mean '{close[0]}'?" if close else f"; valid keys are {sorted(hints)}"
            raise ConfigError(f"{where}: unknown key '{key}'{tip}")
        if not _matches(value, hints[key]):
            raise ConfigError(f"{where}: key '{key}' must be of type {_type_name(hints[key])}; found "
                              f"{value!r} ({type(value).__name__})")
    if "train_data" not in data:
        raise ConfigError(f"{where}: missing required key 'train_data' (path of the training/pool split)")
    values = {k: (float(v) if hints[k] in (float, float | None) and isinstance(v, int) else v)
              for k, v in data.items()}
    if base_dir is not None:
        for key in PATH_KEYS:
            raw = values.get(key)
            if not isinstance(raw, str) or Path(raw).is_absolute():
                continue
            # weights may also be a torchvision enum name ("DEFAULT"): only an existing file is a path
            if key in ("weights", "weights_backbone") and not (base_dir / raw).exists():
                continue
            values[key] = str((base_dir / raw).resolve())
    cfg = Config(**values)
    cfg.source = where  # not a key: the file later errors name
    _check_choices(cfg, where)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` from the command line, the value read as YAML (``epochs=3``, ``lr_steps=[4, 6]``)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value; found {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read and validate a YAML or JSON config file, applying ``key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    data = {} if data is None else data
    if isinstance(data, dict):
        data = dict(data, **dict(parse_override(o) for o in overrides or []))
    return config_from_dict(data, where=str(path), base_dir=path.parent)
