"""Data: the per-image record, readers/writers for Pascal VOC, COCO JSON and YOLO txt, validation, and the
offline benchmark generator."""

from .coco import read_coco, write_coco
from .io import FORMATS, read_dataset, validate_path, write_dataset
from .records import DatasetError, DetectionDataset, ImageRecord, Problem
from .validate import format_problems
from .voc import VOC_CLASSES, read_voc, write_voc
from .yolo import read_yolo, write_yolo

__all__ = ["ImageRecord", "DetectionDataset", "Problem", "DatasetError", "FORMATS", "read_dataset",
           "write_dataset", "validate_path", "format_problems", "read_voc", "write_voc", "VOC_CLASSES",
           "read_coco", "write_coco", "read_yolo", "write_yolo"]
