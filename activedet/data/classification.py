"""Image classification data: ImageFolder trees and CIFAR binary batches, read into the detection records.

Convention: a classified image is an ordinary :class:`~activedet.data.records.ImageRecord` with exactly one box
covering the whole image, ``[0, 0, width, height]``, and ``labels = [c]`` with ``c`` in ``1..C`` (class
``class_names[c - 1]``). The active-learning loop, the ledger, the oracle (one box = one label) and class counts
therefore work on classification data unchanged. :func:`classification_record` builds such a record.

ImageFolder (torchvision's layout): ``root/<class>/<image>``, images possibly in nested folders of a class folder.

* Classes are the sorted names of the class folders, or ``class_names`` when given (it fixes the label order and
  must name every class folder; a class without a folder or images is then allowed, with a warning).
* ``image_id`` is ``"<class>/<path below the class folder without suffix>"``, e.g. ``"cat/2019/img_001"``.
* Sizes come from the image headers (no pixel decoding), so a file truncated after its header is found only
  when training reads it. Records are sorted by (label, relative path). Hidden files and folders (a name starting
  with ``.``) are ignored.

CIFAR binary (the official "binary version" downloads):

* CIFAR-10, directory ``cifar-10-batches-bin/``: ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train),
  ``test_batch.bin`` (test), ``batches.meta.txt`` (class names). A record is 1 label byte + 3072 pixel bytes.
* CIFAR-100, directory ``cifar-100-binary/``: ``train.bin``, ``test.bin``, ``fine_label_names.txt``. A record is
  1 coarse label byte + 1 fine label byte + 3072 pixel bytes; the fine label is used, the coarse one ignored.
* Pixels are the red plane, then green, then blue, each 32x32 row-major. The variant is told from the file names
  (in a directory and in :func:`read_cifar_image`), so the files must keep their official names.
* A record's ``file_name`` is the ``.bin`` file, ``image_index`` its record number in that file, ``image_id``
  ``"<file stem>/<record number>"`` (e.g. ``"data_batch_1/17"``), its size 32x32 and its label the label
  byte + 1. Class names are the non-empty lines of the meta file, or ``class_names``.

:func:`generate_digits_classification` writes the offline classification benchmark (``activedet generate-data
digits-classification``) as ImageFolder trees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_write, atomic_write_dir, atomic_write_text
from .records import DetectionDataset, ImageRecord, Problem
from .validate import check_choice, find_duplicates, raise_for_problems, read_image_size

__all__ = [
    "IMAGEFOLDER_EXTENSIONS",
    "CIFAR_SPLITS",
    "CIFAR_VARIANTS",
    "DIGITS_SPLITS",
    "classification_record",
    "read_imagefolder",
    "scan_imagefolder",
    "write_imagefolder",
    "read_cifar",
    "scan_cifar",
    "write_cifar",
    "read_cifar_image",
    "generate_digits_classification",
]

IMAGEFOLDER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp")
CIFAR_SPLITS = ("train", "test")
_CIFAR_PIXELS = 3 * 32 * 32


def classification_record(
    image_id: str, file_name: str | os.PathLike, width: int, height: int, label: int, *, image_index: int | None = None
) -> ImageRecord:
    """The record of an image of class ``label`` (``1..C``): one box ``[0, 0, width, height]`` with that label."""
    return ImageRecord(image_id, file_name, width, height, [[0, 0, width, height]], [label], image_index=image_index)


def _check_class_names(caller: str, class_names: Sequence[str] | None) -> list[str] | None:
    if class_names is None:
        return None
    names = list(class_names) if not isinstance(class_names, str) else None
    if (
        not names
        or not all(isinstance(n, str) and n.strip() and n == n.strip() and "\n" not in n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(
            f"The 'class_names' parameter of {caller} must be a non-empty list of distinct, non-blank "
            f"strings without surrounding spaces. Got {class_names!r} instead."
        )
    return names


# ----------------------------------------------------------------------------------------------------- ImageFolder


def read_imagefolder(
    root: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGEFOLDER_EXTENSIONS,
) -> DetectionDataset:
    """Read an ImageFolder tree ``root/<class>/<image>`` (see the module docstring) into a dataset.

    Args:
        root: the directory holding one folder per class.
        class_names: the classes in label order (label ``l`` is ``class_names[l - 1]``); default: the sorted
            names of the class folders. Every class folder must be one of them.
        extensions: file suffixes (case-insensitive) read as images; other files are reported as warnings.

    Raises:
        DatasetError: listing every error (unreadable images, unknown class folders, no images at all);
            warnings (empty classes, skipped files) are issued as one ``DatasetWarning``.
    """
    dataset, problems = scan_imagefolder(root, class_names=class_names, extensions=extensions)
    raise_for_problems(problems, f"ImageFolder dataset {root}")
    return dataset


def scan_imagefolder(
    root: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGEFOLDER_EXTENSIONS,
) -> tuple[DetectionDataset, list[Problem]]:
    """Like :func:`read_imagefolder` but never raises for dataset problems: returns ``(dataset, problems)``.

    The dataset is only trustworthy when no problem has ``severity == "error"``.
    """
    names = _check_class_names("read_imagefolder", class_names)
    suffixes = tuple(str(e).lower() for e in extensions)
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        found = "is not a directory" if root.exists() else "does not exist"
        return DetectionDataset([], names or [], root=root), [
            Problem(str(root), f"ImageFolder root {found}", "give the directory that holds one folder per class")
        ]
    folders, problems = _class_folders(root, suffixes)
    names = names if names is not None else folders
    problems += [
        Problem(
            f"{f}/",
            f"class folder {f!r} is not one of class_names {names}",
            "add it to class_names, or move it out of the dataset root",
        )
        for f in folders
        if f not in names
    ]
    records, seen = [], 0
    for label, name in enumerate(names, start=1):
        if name not in folders:
            problems.append(
                Problem(
                    f"{name}/",
                    f"class {name!r} has no folder {root / name}, so it has no images",
                    "add images of this class, or leave it out of class_names",
                    "warning",
                )
            )
            continue
        images = _class_images(root, name, suffixes, problems)
        seen += len(images)
        for path in images:
            where = path.relative_to(root).as_posix()
            size, problem = read_image_size(path, where)
            if problem is not None:
                problems.append(problem)
                continue
            image_id = f"{name}/{path.relative_to(root / name).with_suffix('').as_posix()}"
            records.append(classification_record(image_id, path, size[0], size[1], label))
    problems += find_duplicates(
        ((r.image_id, r.file_name.relative_to(root).as_posix()) for r in records),
        "image id",
        "rename one of the files: images may not differ only by suffix",
    )
    if not seen:
        problems.append(
            Problem(
                str(root),
                f"no images found; expected root/<class>/<image> with a suffix in {suffixes}",
                "put each class's images in a folder named after the class",
            )
        )
    return DetectionDataset(records, names, root=root), problems


def _class_folders(root: Path, suffixes: tuple[str, ...]) -> tuple[list[str], list[Problem]]:
    """Sorted names of the visible folders of ``root``, and warnings for images lying directly in ``root``."""
    entries = sorted(e for e in os.listdir(root) if not e.startswith("."))
    problems = [
        Problem(e, "image is not inside a class folder; it is ignored", "move it into its class's folder", "warning")
        for e in entries
        if (root / e).is_file() and Path(e).suffix.lower() in suffixes
    ]
    return [e for e in entries if (root / e).is_dir()], problems


def _class_images(root: Path, name: str, suffixes: tuple[str, ...], problems: list[Problem]) -> list[Path]:
    """Image files below ``root/name`` (nested folders included), sorted by relative path; warns about the rest."""
    found = []
    for folder, dirs, files in os.walk(root / name, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, f) for f in files if not f.startswith(".")]
    images = []
    for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
        if path.suffix.lower() in suffixes:
            images.append(path)
        else:
            problems.append(
                Problem(
                    path.relative_to(root).as_posix(),
                    f"suffix {path.suffix!r} is not one of {suffixes}; file ignored",
                    "remove it, or pass it in extensions=",
                    "warning",
                )
            )
    if not images:
        problems.append(
            Problem(
                f"{name}/",
                f"class folder {name!r} has no images",
                "add images of this class, or remove the folder (and the class)",
                "warning",
            )
        )
    return images


def write_imagefolder(
    images: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int],
    class_names: Sequence[str],
    root: str | os.PathLike,
    *,
    stems: Sequence[str] | None = None,
    atomic: bool = True,
) -> Path:
    """Write images as PNG files ``root/<class_names[label - 1]>/<stem>.png`` and return ``root``.

    Args:
        images: ``uint8[N, H, W, 3]`` RGB, or a sequence of ``uint8[H, W, 3]`` (sizes may differ).
        labels: ``N`` ints in ``1..C``.
        class_names: ``C`` class names, used as folder names; every class gets a folder (an empty one when it
            has no image), so that :func:`read_imagefolder` finds the same classes in the same order.
        stems: file names without suffix, one per image, distinct within a class (default ``"img_{i:05d}"``).
        atomic: write each file atomically (:func:`activedet.atomic.atomic_write`, several times slower);
            ``False`` writes them in place, for a tree that is itself renamed into place when complete.

    Existing files of the same names are replaced.
    """
    names = _check_class_names("write_imagefolder", class_names)
    for name in names:
        if name.startswith(".") or "/" in name or "\\" in name:
            raise ValueError(
                f"class name {name!r} cannot be a folder name: it may not start with '.' or contain a slash"
            )
    images = [_check_image(image, i, "write_imagefolder") for i, image in enumerate(images)]
    labels = _check_labels("write_imagefolder", labels, len(images), len(names))
    stems = [f"img_{i:05d}" for i in range(len(images))] if stems is None else [str(s) for s in stems]
    if len(stems) != len(images) or any(not s or s.startswith(".") or "/" in s or "\\" in s for s in stems):
        raise ValueError(
            f"stems must be {len(images)} file names (one per image) without a slash or leading "
            f"'.'. Got {len(stems)} of them: {stems[:5]}..."
        )
    paths = [Path(root) / names[label - 1] / f"{stem}.png" for label, stem in zip(labels, stems)]
    if len(set(paths)) != len(paths):
        raise ValueError("stems must be distinct within each class: two images would share one file")
    for name in names:
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
    for image, path in zip(images, paths):
        if atomic:
            atomic_write(path, lambda tmp, image=image: Image.fromarray(image).save(tmp, format="PNG"))
        else:
            Image.fromarray(image).save(path, format="PNG")
    return Path(root)


def _check_image(image, index: int, caller: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or (shape and image.shape[:2] != shape):
        want = f"{shape[0]}x{shape[1]}x3" if shape else "HxWx3"
        raise ValueError(
            f"{caller}: image {index} must be a uint8 {want} RGB array. Got {image.dtype} of shape "
            f"{image.shape} instead."
        )
    return image


def _check_labels(caller: str, labels: Sequence[int], count: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if (
        labels.shape != (count,)
        or not np.issubdtype(labels.dtype, np.integer)
        or (count and not (labels.min() >= 1 and labels.max() <= num_classes))
    ):
        raise ValueError(
            f"The 'labels' parameter of {caller} must be {count} ints in 1..{num_classes} (one per "
            f"image). Got {labels.dtype} of shape {labels.shape} with values "
            f"{sorted(set(labels.ravel().tolist()))[:10]} instead."
        )
    return labels.astype(np.int64)


# ----------------------------------------------------------------------------------------------------------- CIFAR


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


# ---------------------------------------------------------------------------------------- offline benchmark data

DIGITS_SPLITS = {"train": 1197, "val": 300, "test": 300}


def generate_digits_classification(out_dir: str | os.PathLike, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the offline classification benchmark into ``out_dir`` and return it as a Path.

    The 1,797 real 8x8 handwritten digits bundled with scikit-learn (:func:`sklearn.datasets.load_digits`):
    the 0..16 grey values are scaled to 0..255 (white ink on black), upscaled bilinearly to 32x32 and
    replicated to RGB. A stratified split drawn from ``seed`` gives :data:`DIGITS_SPLITS` images
    (train = the pool 1197, val 300, test 300; each class's share of a split is its share of the data, rounded
    by largest remainder). Layout: ``out_dir/{train,val,test}/<digit>/digit_<sample>.png`` (class folders
    ``"0"`` .. ``"9"``, label ``l`` is digit ``l - 1``; ``<sample>`` is the 4-digit ``load_digits`` index) and
    ``manifest.json`` with the per-split class counts.

    Args:
        out_dir: destination directory (written atomically, see :func:`activedet.atomic.atomic_write_dir`).
        seed: non-negative int; the same seed gives byte-identical files.
        overwrite: replace an existing non-empty ``out_dir``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            f"The 'seed' parameter of generate_digits_classification must be a non-negative int. Got {seed!r} instead."
        )
    return atomic_write_dir(out_dir, lambda tmp: _write_digits(tmp, int(seed)), overwrite=overwrite)


def _write_digits(root: Path, seed: int) -> None:
    from sklearn.datasets import load_digits  # imported here: no import-time cost for users of other modules

    digits = load_digits()
    grey = [Image.fromarray(np.round(x * 255 / 16).astype(np.uint8)) for x in digits.images]
    images = np.stack([np.asarray(g.resize((32, 32), Image.Resampling.BILINEAR)) for g in grey])
    images = np.repeat(images[..., None], 3, axis=3)
    names = [str(d) for d in range(10)]
    splits = _stratified_split(digits.target, seed)
    for split, indices in splits.items():
        write_imagefolder(
            images[indices],
            digits.target[indices] + 1,
            names,
            root / split,
            stems=[f"digit_{i:04d}" for i in indices],
            atomic=False,
        )  # the tree is atomic
    manifest = {
        "name": "digits-classification",
        "seed": seed,
        "generator": "activedet.data.classification",
        "classes": names,
        "image_size": 32,
        "source": "sklearn.datasets.load_digits (1797 samples)",
        "splits": {
            s: {
                "images": len(i),
                "class_counts": dict(zip(names, np.bincount(digits.target[i], minlength=10).tolist())),
            }
            for s, i in splits.items()
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _stratified_split(targets: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Sorted sample indices of each split of :data:`DIGITS_SPLITS`; per class a random order from ``seed``."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(targets)
    test = _largest_remainder(counts, DIGITS_SPLITS["test"])
    val = _largest_remainder(counts - test, DIGITS_SPLITS["val"])
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for digit in range(len(counts)):
        order = rng.permutation(np.flatnonzero(targets == digit))
        parts["test"] += order[: test[digit]].tolist()
        parts["val"] += order[test[digit] : test[digit] + val[digit]].tolist()
        parts["train"] += order[test[digit] + val[digit] :].tolist()
    return {split: np.array(sorted(indices), np.int64) for split, indices in parts.items()}


def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """``int[K]`` shares of ``total`` proportional to ``counts`` (floors, then +1 by largest remainder)."""
    exact = counts * total / counts.sum()
    shares = np.floor(exact).astype(np.int64)
    shares[np.argsort(shares - exact, kind="stable")[: total - shares.sum()]] += 1
    return shares
