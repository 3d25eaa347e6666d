"""CIFAR-10 and CIFAR-100 binary batches (the official "binary version" downloads): :func:`read_cifar` /
:func:`scan_cifar` read a directory of them into records (one per image: its ``.bin`` file and record number),
:func:`read_cifar_image` decodes one record, :func:`write_cifar` writes images in the same layout. The file
layout and the record conventions: :mod:`activedet.data.classification`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, atomic_write_text
from .classified import _check_class_names, _check_image, _check_labels, classification_record
from .records import DetectionDataset, ImageRecord, Problem
from .validate import check_choice, raise_for_problems

__all__ = ["CIFAR_SPLITS", "CIFAR_VARIANTS", "read_cifar", "scan_cifar", "write_cifar", "read_cifar_image"]

CIFAR_SPLITS = ("train", "test")
_CIFAR_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class _CifarVariant:
    """One official binary CIFAR layout: the class is the last of ``label_bytes`` bytes before the pixels."""

    title: str
    directory: str
    label_bytes: int
    files: dict[str, tuple[str, ...]]
    meta: str

    @property
    def record_size(self) -> int:
        return self.label_bytes + _CIFAR_PIXELS

    def expected(self) -> str:
        files = ", ".join(f for split in CIFAR_SPLITS for f in self.files[split])
        return f"{self.title} ({self.directory}/): {files} and {self.meta}"


CIFAR_VARIANTS: dict[str, _CifarVariant] = {
    "cifar10": _CifarVariant(
        "CIFAR-10",
        "cifar-10-batches-bin",
        1,
        {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
        "batches.meta.txt",
    ),
    "cifar100": _CifarVariant(
        "CIFAR-100", "cifar-100-binary", 2, {"train": ("train.bin",), "test": ("test.bin",)}, "fine_label_names.txt"
    ),
}


def _variant_of_file(path: Path) -> _CifarVariant:
    for variant in CIFAR_VARIANTS.values():
        if path.name in variant.files["train"] + variant.files["test"]:
            return variant
    known = "; ".join(v.expected() for v in CIFAR_VARIANTS.values())
    raise ValueError(f"{path}: not an official CIFAR binary file name, so its record size is unknown; expected {known}")


def read_cifar_image(path: str | os.PathLike, image_index: int) -> np.ndarray:
    """``uint8[32, 32, 3]`` RGB of record ``image_index`` of the CIFAR binary file ``path`` (reads that record only;
    the variant, hence the record size, is told from the file name)."""
    path = Path(path)
    size = _variant_of_file(path).record_size
    data = b""
    if image_index >= 0:
        with open(path, "rb") as fh:
            fh.seek(int(image_index) * size)
            data = fh.read(size)
    if len(data) != size:
        raise ValueError(
            f"{path}: no record {image_index}; the file holds {path.stat().st_size // size} complete "
            f"records of {size} bytes. Re-read the dataset with activedet.data.classification.read_cifar"
        )
    pixels = np.frombuffer(data, np.uint8, offset=size - _CIFAR_PIXELS).reshape(3, 32, 32)  # planes R, G, B
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))


def read_cifar(
    path: str | os.PathLike, *, split: str = "train", class_names: Sequence[str] | None = None
) -> DetectionDataset:
    """Read one split of a binary CIFAR-10 or CIFAR-100 directory (see the module docstring) into a dataset.

    Args:
        path: the ``cifar-10-batches-bin`` or ``cifar-100-binary`` directory; the variant is told from its files.
        split: ``"train"`` or ``"test"``.
        class_names: the class names (label byte ``b`` is ``class_names[b]``); default: the meta file's lines.

    Raises:
        DatasetError: listing every error (missing files, truncated files, label bytes out of range).
    """
    dataset, problems = scan_cifar(path, split=split, class_names=class_names)
    raise_for_problems(problems, f"CIFAR directory {path}")
    return dataset


def scan_cifar(
    path: str | os.PathLike, *, split: str = "train", class_names: Sequence[str] | None = None
) -> tuple[DetectionDataset, list[Problem]]:
    """Like :func:`read_cifar` but never raises for dataset problems: returns ``(dataset, problems)``."""
    check_choice("read_cifar", "split", split, CIFAR_SPLITS)
    names = _check_class_names("read_cifar", class_names)
    directory = Path(os.path.abspath(path))
    variant, problems = _detect_variant(directory)
    if variant is None:
        return DetectionDataset([], names or [], root=directory), problems
    if names is None:
        names = _read_meta(directory, variant, problems)
    missing = [f for f in variant.files[split] if not (directory / f).is_file()]
    if missing:
        problems.append(
            Problem(
                str(directory),
                f"{variant.title} {split} split: missing {', '.join(missing)}",
                f"a complete directory holds {variant.expected()}; extract the download again",
            )
        )
    records = []
    for file in variant.files[split]:
        if file not in missing:
            records += _scan_batch(directory / file, variant, len(names) if names else None, problems)
    return DetectionDataset(records, names or [], root=directory), problems


def _detect_variant(directory: Path) -> tuple[_CifarVariant | None, list[Problem]]:
    if not directory.is_dir():
        found = "is not a directory" if directory.exists() else "does not exist"
        return None, [
            Problem(
                str(directory),
                f"CIFAR path {found}",
                "give the cifar-10-batches-bin or cifar-100-binary directory of the binary download",
            )
        ]
    present = {
        v.title: [f for f in (*v.files["train"], *v.files["test"], v.meta) if (directory / f).is_file()]
        for v in CIFAR_VARIANTS.values()
    }
    found = [v for v in CIFAR_VARIANTS.values() if present[v.title]]
    if len(found) == 1:
        return found[0], []
    if found:
        return None, [
            Problem(
                str(directory),
                "holds files of both " + " and ".join(f"{v.title} ({', '.join(present[v.title])})" for v in found),
                "keep each variant in its own directory",
            )
        ]
    inside = [v.directory for v in CIFAR_VARIANTS.values() if (directory / v.directory).is_dir()]
    hint = (
        f"give {directory / inside[0]} instead"
        if inside
        else "expected " + "; or ".join(v.expected() for v in CIFAR_VARIANTS.values())
    )
    return None, [Problem(str(directory), "no CIFAR binary files found", hint)]


def _read_meta(directory: Path, variant: _CifarVariant, problems: list[Problem]) -> list[str] | None:
    """Class names: the non-empty lines of the meta file (``None`` after reporting a problem)."""
    try:
        names = [line.strip() for line in (directory / variant.meta).read_text("utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(
            Problem(
                variant.meta,
                f"cannot read the class names: {exc}",
                "restore the file (one class name per line) or pass class_names=",
            )
        )
        return None
    if not names:
        problems.append(
            Problem(
                variant.meta,
                "no class names in the file",
                "restore the file (one class name per line) or pass class_names=",
            )
        )
    return names or None


def _scan_batch(
    path: Path, variant: _CifarVariant, num_classes: int | None, problems: list[Problem]
) -> list[ImageRecord]:
    """The records of one binary file; reports a size that is not whole records and label bytes out of range."""
    size, record_size = path.stat().st_size, variant.record_size
    if size % record_size:
        problems.append(
            Problem(
                path.name,
                f"file size {size} bytes is not a multiple of the {record_size}-byte "
                f"{variant.title} record ({variant.label_bytes} label byte(s) + 3072 pixel bytes)",
                f"the file is truncated or not a {variant.title} binary file; extract it again",
            )
        )
        return []
    count = size // record_size
    if count == 0:
        return []
    table = np.memmap(path, np.uint8, mode="r", shape=(count, record_size))
    classes = np.array(table[:, variant.label_bytes - 1])
    del table
    records = []
    for index, byte in enumerate(classes.tolist()):
        if num_classes is not None and byte >= num_classes:
            problems.append(
                Problem(
                    f"{path.name}: record {index}",
                    f"label byte {byte} is not below the number of classes ({num_classes})",
                    "the file is corrupt, or the class names are incomplete",
                )
            )
            continue
        records.append(classification_record(f"{path.stem}/{index}", path, 32, 32, byte + 1, image_index=index))
    return records


def write_cifar(
    images: np.ndarray,
    labels: Sequence[int],
    class_names: Sequence[str],
    directory: str | os.PathLike,
    *,
    variant: str = "cifar10",
    split: str = "train",
) -> Path:
    """Write one split as official binary CIFAR files plus the class names file; return ``directory``.

    Args:
        images: ``uint8[N, 32, 32, 3]`` RGB.
        labels: ``N`` ints in ``1..C`` (written as the byte ``label - 1``).
        class_names: ``C <= 256`` names, written one per line to the meta file (replacing it).
        variant: ``"cifar10"`` (the train split is spread over ``data_batch_1..5.bin`` in order, as evenly as
            possible) or ``"cifar100"`` (the coarse label byte is written as 0).
        split: ``"train"`` or ``"test"``.

    Every file is written atomically.
    """
    check_choice("write_cifar", "variant", variant, tuple(CIFAR_VARIANTS))
    check_choice("write_cifar", "split", split, CIFAR_SPLITS)
    names = _check_class_names("write_cifar", class_names)
    if len(names) > 256:
        raise ValueError(f"write_cifar: a label byte holds at most 256 classes. Got {len(names)} class names.")
    layout = CIFAR_VARIANTS[variant]
    images = (
        np.stack([_check_image(x, i, "write_cifar", (32, 32)) for i, x in enumerate(images)])
        if len(images)
        else np.zeros((0, 32, 32, 3), np.uint8)
    )
    labels = _check_labels("write_cifar", labels, len(images), len(names))
    table = np.zeros((len(images), layout.record_size), np.uint8)
    table[:, layout.label_bytes - 1] = labels - 1
    table[:, layout.label_bytes :] = images.transpose(0, 3, 1, 2).reshape(len(images), _CIFAR_PIXELS)
    directory = Path(directory)
    files = layout.files[split]
    for file, part in zip(files, np.array_split(np.arange(len(images)), len(files))):
        data = table[part].tobytes()
        atomic_write(directory / file, lambda tmp, data=data: tmp.write_bytes(data))
    atomic_write_text(directory / layout.meta, "".join(f"{n}\n" for n in names))
    return directory
