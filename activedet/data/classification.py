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

This module holds ImageFolder and the digits data; the CIFAR reader and writer are in
:mod:`activedet.data.cifar`, :func:`classification_record` and the shared argument checks in
:mod:`activedet.data.classified` (all importable from here).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_write, atomic_write_dir
from .cifar import CIFAR_SPLITS, CIFAR_VARIANTS, read_cifar, read_cifar_image, scan_cifar, write_cifar
from .classified import _check_class_names, _check_image, _check_labels, classification_record
from .records import DetectionDataset, Problem
from .validate import find_duplicates, raise_for_problems, read_image_size

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
