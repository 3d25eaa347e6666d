"""Data: the per-image record, readers/writers for Pascal VOC, COCO JSON and YOLO txt, classification data
(ImageFolder, CIFAR binary) as one whole-image box per image, validation, and the offline benchmark generators."""

from .classification import read_cifar, read_imagefolder, write_cifar, write_imagefolder
from .coco import read_coco, write_coco
from .io import FORMATS, read_dataset, validate_path, write_dataset
from .records import DatasetError, DetectionDataset, ImageRecord, Problem
from .validate import format_problems
from .voc import VOC_CLASSES, read_voc, write_voc
from .yolo import read_yolo, write_yolo

__all__ = [
    "ImageRecord",
    "DetectionDataset",
    "Problem",
    "DatasetError",
    "FORMATS",
    "read_dataset",
    "write_dataset",
    "validate_path",
    "format_problems",
    "read_voc",
    "write_voc",
    "VOC_CLASSES",
    "read_coco",
    "write_coco",
    "read_yolo",
    "write_yolo",
    "read_imagefolder",
    "write_imagefolder",
    "read_cifar",
    "write_cifar",
]
