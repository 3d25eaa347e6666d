"""The closed lists of names that options and config keys choose from, each defined once.

Torch-free, so the config schema (:mod:`activedet.config`) can import them without loading the models.
"""

from __future__ import annotations

__all__ = [
    "DATA_FORMATS",
    "CLASSIFICATION_FORMATS",
    "BOX_POLICIES",
    "DEFAULT_BOX_POLICY",
    "DEFAULT_CLIP_TOLERANCE",
    "BAD_IMAGES",
    "METRICS",
    "ORACLES",
    "EXPORT_FORMATS",
    "IMAGE_MODES",
    "BUDGET_UNITS",
    "INITIAL_SELECTIONS",
    "VAL_METRICS",
    "OPTIMIZERS",
    "SCHEDULES",
    "EPOCH_CHECKPOINTS",
    "CYCLE_ZERO_KEYS",
    "ARM_KEYS",
    "HEADLINE_METRICS",
]

#: dataset layouts ``data_format`` names
DATA_FORMATS = ("coco", "voc", "yolo", "imagefolder", "cifar")
#: formats whose images carry one class label each (image classification; ``detector: classifier``)
CLASSIFICATION_FORMATS = ("imagefolder", "cifar")
#: what to do with a box that leaves its image: refuse it, or clip it within a tolerance
BOX_POLICIES = ("error", "clip")
#: the defaults of ``box_policy`` and ``clip_tolerance`` (pixels a box may overflow under ``clip``), for the config
#: key and every reader and command that takes them
DEFAULT_BOX_POLICY = "error"
DEFAULT_CLIP_TOLERANCE = 2.0
#: what to do with an image file that cannot be decoded
BAD_IMAGES = ("stop", "skip")
#: evaluation protocols (:func:`activedet.evaluation.evaluate`)
METRICS = ("voc", "coco", "froc", "accuracy")
#: who labels each selected batch
ORACLES = ("simulated", "human")
#: file formats of an exported batch (:func:`activedet.al.export.export_batch`)
EXPORT_FORMATS = ("activedet", "labelstudio", "cvat_coco", "coco", "voc", "cvat_voc", "yolo")
#: how an export places its images: a copy, a hard link, or not at all
IMAGE_MODES = ("copy", "link", "none")
#: what an active-learning budget counts: images, boxes, or labelling cost (:mod:`activedet.al.cost`)
BUDGET_UNITS = ("images", "boxes", "cost")
#: how the initial labelled set is chosen: at random, or from the pool's embeddings (:mod:`activedet.al.coldstart`)
INITIAL_SELECTIONS = ("random", "typiclust", "kmeans_medoids")
#: the validation numbers ``val_metric`` may name, per model task (a detector's VOC mAP, a classifier's accuracy)
VAL_METRICS = {"detection": ("mAP_11pt", "mAP_area"), "classification": ("mean_per_class", "top1")}
#: training optimisers (:func:`activedet.engine.train.build_optimizer`)
OPTIMIZERS = ("sgd", "adamw")
#: learning-rate schedules (:func:`activedet.engine.train.build_lr_lambda`)
SCHEDULES = ("step", "cosine", "constant")
#: what a training directory keeps once training ends (see ``TrainOptions.epoch_checkpoints``)
EPOCH_CHECKPOINTS = ("last_best", "last", "all")
#: the config keys cycle 0 may depend on: arms of a bench that differ in them train their own cycle 0
CYCLE_ZERO_KEYS = ("semi_supervised", "pseudo_labels", "warm_start", "initial_selection")
#: the config keys an arm of a bench may override: those its report label shows (``report.label_extras``); a budget
#: in other units than the others' (``@budget_unit=boxes@budget=320``), spent on predicted figures or not
#: (``@simulated_preview=false``), those calibrated or not (``@cost_calibration=false``), changes what the cycles
#: buy, not cycle 0; so does skipping near-duplicate picks (``@near_duplicates=0.85``)
ARM_KEYS = (*CYCLE_ZERO_KEYS, "budget_unit", "budget", "simulated_preview", "cost_calibration", "near_duplicates")
#: the metric a one-line summary of a cycle shows (its progress line, ``activedet status`` over several runs): the
#: first of these the evaluation gave
HEADLINE_METRICS = ("voc/mAP_area", "coco/AP", "accuracy/top1", "froc/cpm")
