"""Pascal VOC XML annotations (VOCdevkit layout): reader, writer and validation.

Layout: ``VOCdevkit/VOC{year}/{Annotations/*.xml, ImageSets/Main/{set}.txt, JPEGImages/*}``.

Conventions:

* VOC XML coordinates are 1-based inclusive pixel indices. Records hold continuous 0-based pixel coordinates:
  ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (so a box covering the whole image is
  ``(0, 0, width, height)``). :func:`write_voc` inverts this exactly.
* ``image_id`` is ``f"{year}/{stem}"``, unique across years; several ``(year, set)`` pairs are concatenated in
  the order given, records in ImageSets-file order within each (VOC07+12 trainval: pool indices 0..5010 are
  VOC2007, 5011..16550 VOC2012, as in MI-AOD).
* ``<difficult>`` is kept. ``<iscrowd>`` (not standard VOC) is read when present and written when set.
* The image is ``JPEGImages/<filename>`` (``<filename>`` element), or ``JPEGImages/{stem}.jpg`` without one.
* Locations in problems use XPath's 1-based indices: ``object[2]`` is the second ``<object>``.

This module reads and validates devkits; one annotation file's elements are read by
:mod:`activedet.data.voc_xml` and :func:`write_voc` lives in :mod:`activedet.data.voc_write` (both importable
from here).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..constants import DEFAULT_BOX_POLICY, DEFAULT_CLIP_TOLERANCE
from .records import DetectionDataset, ImageRecord, Problem, likely_meant, unparsable
from .validate import (
    check_boxes,
    check_image_file,
    check_options,
    find_duplicates,
    raise_for_problems,
    read_image_size,
)
from .voc_write import write_voc

# the offsets are re-exported: activedet.interop.folders reads them from here
from .voc_xml import ONE_BASED_OFFSETS as ONE_BASED_OFFSETS
from .voc_xml import VOC_CLASSES, _describe_classes, _text, read_object, read_size
from .voc_xml import ZERO_BASED_OFFSETS as ZERO_BASED_OFFSETS

__all__ = ["VOC_CLASSES", "read_voc", "scan_voc", "write_voc", "find_image_sets", "validate_voc"]


def read_voc(
    devkit_root: str | os.PathLike,
    *,
    sets: Sequence[tuple[str, str]] = (("2007", "trainval"),),
    class_names: Sequence[str] = VOC_CLASSES,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    check_images: bool = True,
) -> DetectionDataset:
    """Read one or several Pascal VOC ``(year, image set)`` pairs into one :class:`DetectionDataset`.

    Args:
        devkit_root: a ``VOCdevkit`` directory holding ``VOC{year}/`` directories, or a single ``VOC{year}``
            directory (one that has ``Annotations/``), in which case every pair in ``sets`` must use that year.
        sets: ``(year, image_set)`` pairs, e.g. ``(("2007", "trainval"), ("2012", "trainval"))``; combined in
            this order.
        class_names: the ``C`` class names; label ``l`` is ``class_names[l - 1]``. Default: the 20 VOC classes.
        box_policy, clip_tolerance: what to do with boxes outside the image (see :mod:`activedet.data.validate`);
            ``clip_tolerance`` is in pixels.
        check_images: open every image header to check that it exists, is readable, and has the annotated size.
            Images whose ``<size>`` is missing or zero are opened regardless (with a warning).

    Raises:
        DatasetError: listing every error found (warnings are issued as one ``DatasetWarning``).
    """
    dataset, problems = scan_voc(
        devkit_root,
        sets=sets,
        class_names=class_names,
        box_policy=box_policy,
        clip_tolerance=clip_tolerance,
        check_images=check_images,
    )
    image_sets = ", ".join(f"{year}/{name}" for year, name in _normalise_sets(sets, Path(devkit_root)))
    raise_for_problems(problems, f"Pascal VOC dataset {devkit_root} ({image_sets})")
    return dataset


def scan_voc(
    devkit_root: str | os.PathLike,
    *,
    sets: Sequence[tuple[str, str]] = (("2007", "trainval"),),
    class_names: Sequence[str] = VOC_CLASSES,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    check_images: bool = True,
) -> tuple[DetectionDataset, list[Problem]]:
    """Like :func:`read_voc` but never raises for dataset problems: returns ``(dataset, problems)``.

    The dataset is only trustworthy when no problem has ``severity == "error"``.
    """
    check_options("read_voc", box_policy=box_policy, clip_tolerance=clip_tolerance)
    root = Path(os.path.abspath(devkit_root))
    options = {
        "class_index": {n: i + 1 for i, n in enumerate(class_names)},
        "box_policy": box_policy,
        "clip_tolerance": clip_tolerance,
        "check_images": check_images,
        "known": _describe_classes(class_names),
    }
    records, problems, listed, files = [], [], {}, []
    for year, image_set in _normalise_sets(sets, root):
        voc_dir, prefix = _year_dir(root, year)
        if not voc_dir.is_dir():
            problems.append(
                Problem(
                    prefix.rstrip("/") or str(root),
                    f"directory not found: {voc_dir}",
                    "pass a VOCdevkit directory holding VOC{year}/, or a single VOC{year} directory",
                )
            )
            continue
        stems, set_problems = _read_image_set(voc_dir, prefix, image_set)
        problems += set_problems
        for stem, listed_at in stems:
            if f"{year}/{stem}" in listed:
                problems.append(
                    Problem(
                        listed_at,
                        f"image id {stem!r} of VOC{year} is listed again (first at {listed[f'{year}/{stem}']})",
                        "list every image once",
                    )
                )
                continue
            listed[f"{year}/{stem}"] = listed_at
            record, record_problems = _read_record(voc_dir, prefix, year, stem, listed_at, **options)
            problems += record_problems
            if record is not None:
                records.append(record)
                files.append((str(record.file_name), f"{prefix}Annotations/{stem}.xml: filename"))
    problems += find_duplicates(files, "image file", "give every annotation its own image (<filename>)")
    dataset = DetectionDataset(records, list(class_names), root=root)
    return dataset, _with_class_fix(problems, class_names, _used_names(dataset), devkit_root)


def _used_names(dataset: DetectionDataset) -> set[str]:
    return {dataset.class_names[label - 1] for r in dataset.records for label in r.labels.tolist()}


def _with_class_fix(
    problems: list[Problem], class_names: Sequence[str], used: set[str], path: str | os.PathLike
) -> list[Problem]:
    """Give every unknown-class problem the same exact fix: the class list that covers every name found."""
    unknown = sorted({p.value for p in problems if p.kind == "unknown class name"})
    if not unknown:
        return problems
    names = sorted(used | set(unknown)) if tuple(class_names) == VOC_CLASSES else [*class_names, *unknown]
    flags = " ".join(shlex.quote(n) for n in names)
    # guessed only against names the user gave, not the 20 default ones
    close = {name: likely_meant(name, class_names) for name in unknown if tuple(class_names) != VOC_CLASSES}
    guesses = ", ".join(f"'{match}' for '{name}'" for name, match in close.items() if match)
    fix = (
        (f"did you mean {guesses}? " if guesses else "")
        + f"fix misspelt names, or list every class in label order: config key class_names: {json.dumps(names)} "
        f"(CLI: activedet validate voc {shlex.quote(str(path))} --class-names {flags}; "
        f"Python: class_names={names!r})"
    )
    return [dataclasses.replace(p, hint=fix) if p.kind == "unknown class name" else p for p in problems]


def find_image_sets(devkit_root: str | os.PathLike) -> tuple[list[tuple[str, str]], list[str]]:
    """Every ``(year, image set)`` under a VOCdevkit (or single ``VOC{year}``) directory, from the
    ``ImageSets/Main/*.txt`` files, and the files skipped: per-class lists such as ``aeroplane_trainval.txt``."""
    root = Path(devkit_root)
    if (root / "Annotations").is_dir():
        single = re.fullmatch(r"VOC(\d{4})", root.name)
        dirs = [(single[1] if single else "2007", root, "")]
    else:
        dirs = [(d.name[3:], d, f"{d.name}/") for d in sorted(root.glob("VOC[0-9][0-9][0-9][0-9]")) if d.is_dir()]
    sets, skipped = [], []
    for year, voc_dir, prefix in dirs:
        for file in sorted((voc_dir / "ImageSets" / "Main").glob("*.txt")):
            if "_" in file.stem:
                skipped.append(f"{prefix}ImageSets/Main/{file.name}")
            else:
                sets.append((year, file.stem))
    return sets, skipped


def validate_voc(
    devkit_root: str | os.PathLike,
    *,
    sets: Sequence[tuple[str, str]] | None = None,
    class_names: Sequence[str] = VOC_CLASSES,
    **options,
) -> tuple[list[str], list[str], list[Problem]]:
    """Check image sets one at a time (every set :func:`find_image_sets` finds when ``sets`` is ``None``), so that
    sets which overlap (train, val, trainval) are not reported as listing an image twice.

    Returns ``(checked, skipped, problems)``: ``"2007/trainval (400 images)"`` per set checked, the files skipped,
    and every problem once. ``options`` are :func:`scan_voc`'s, and ``decode=True`` decodes every image in full.
    """
    root = Path(devkit_root)
    if not root.is_dir():
        return (
            [],
            [],
            [
                Problem(
                    str(devkit_root),
                    f"directory not found: {os.path.abspath(root)}",
                    "give a VOCdevkit directory holding VOC{year}/, or one directory holding "
                    "Annotations/, ImageSets/Main/ and JPEGImages/",
                )
            ],
        )
    skipped: list[str] = []
    if sets is None:
        sets, skipped = find_image_sets(root)
    if not sets:
        return (
            [],
            skipped,
            [
                Problem(
                    str(devkit_root),
                    "no image sets found (ImageSets/Main/*.txt lists the image ids of each split)",
                    "write ImageSets/Main/trainval.txt with one image id (an "
                    "annotation file name without .xml) per line, e.g. in the folder holding "
                    "Annotations/: ls Annotations | sed 's/\\.xml$//' > ImageSets/Main/trainval.txt",
                )
            ],
        )
    decode = options.pop("decode", False)
    single = (root / "Annotations").is_dir()
    checked, problems, used, files = [], [], set(), {}
    for year, image_set in _normalise_sets(sets, root):
        dataset, found = scan_voc(root, sets=((year, image_set),), class_names=class_names, **options)
        checked.append(f"{image_set if single else f'{year}/{image_set}'} ({len(dataset)} images)")
        problems += found
        used |= _used_names(dataset)
        files.update((str(r.file_name), None) for r in dataset.records)
    if decode:  # the whole of every image file, not only its header (those already reported are left out)
        from .images import decode_problems

        reported = "\n".join(p.message for p in problems)
        problems += decode_problems(
            [(f, os.path.relpath(f, root)) for f in files if f not in reported and Path(f).is_file()]
        )
    return checked, skipped, list(dict.fromkeys(_with_class_fix(problems, class_names, used, devkit_root)))


def _normalise_sets(sets: Sequence, root: Path) -> list[tuple[str, str]]:
    if isinstance(sets, str):
        raise ValueError(
            f"The 'sets' parameter of read_voc must hold (year, image_set) pairs such as "
            f"(('2007', 'trainval'),). Got {sets!r} instead."
        )
    if len(sets) == 2 and all(isinstance(s, (str, int)) for s in sets):
        sets = (tuple(sets),)  # a single ("2007", "trainval") pair
    pairs = []
    for pair in sets:
        if len(pair) != 2:
            raise ValueError(
                f"The 'sets' parameter of read_voc must hold (year, image_set) pairs such as "
                f"('2007', 'trainval'). Got {pair!r} instead."
            )
        pairs.append((str(pair[0]), str(pair[1])))
    years = sorted({year for year, _ in pairs})
    single = re.fullmatch(r"VOC(\d{4})", root.name)
    if (root / "Annotations").is_dir() and (len(years) > 1 or (single and years != [single[1]])):
        raise ValueError(
            f"{root} is a single VOC directory but 'sets' asks for years {years}; pass the "
            "VOCdevkit directory that holds a VOC{year} directory for each"
        )
    return pairs


def _year_dir(root: Path, year: str) -> tuple[Path, str]:
    """The ``VOC{year}`` directory and the location prefix used in problems (relative to ``root``)."""
    if (root / "Annotations").is_dir():
        return root, ""
    return root / f"VOC{year}", f"VOC{year}/"


def _read_image_set(voc_dir: Path, prefix: str, image_set: str) -> tuple[list[tuple[str, str]], list[Problem]]:
    """``(stem, location)`` pairs listed in ``ImageSets/Main/{image_set}.txt``, in file order."""
    relative = f"ImageSets/Main/{image_set}.txt"
    path = voc_dir / relative
    if not path.is_file():
        existing = sorted(p.stem for p in (voc_dir / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        return [], [
            Problem(
                prefix + relative,
                f"image set file not found: {path}",
                f"choose one of the existing sets {existing}"
                if existing
                else "create it with one image id (annotation file stem) per line",
            )
        ]
    stems, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if len(fields) == 1:
            stems.append((fields[0], f"{prefix}{relative}:{number}"))
        elif fields:
            problems.append(
                Problem(
                    f"{prefix}{relative}:{number}",
                    f"expected one image id per line; found {len(fields)} fields {line.strip()!r}",
                    "use a Main/ image list such as trainval.txt (class files such as "
                    "aeroplane_trainval.txt are not image lists)",
                )
            )
    return stems, problems


def _read_record(
    voc_dir: Path,
    prefix: str,
    year: str,
    stem: str,
    listed_at: str,
    *,
    class_index: dict[str, int],
    box_policy: str,
    clip_tolerance: float,
    check_images: bool,
    known: str,
) -> tuple[ImageRecord | None, list]:
    """One annotation file -> record (``None`` when the XML cannot be used at all) and its problems."""
    where = f"{prefix}Annotations/{stem}.xml"
    try:
        tree = ET.parse(voc_dir / "Annotations" / f"{stem}.xml")
    except FileNotFoundError:
        return None, [
            Problem(
                where,
                f"annotation file not found (image id listed at {listed_at})",
                "add the XML file or remove the id from the ImageSets file",
            )
        ]
    except ET.ParseError as exc:
        line, column = exc.position
        path = voc_dir / "Annotations" / f"{stem}.xml"
        return None, [unparsable(f"{where}:{line}:{column}", path, "XML", str(exc), "fix the XML syntax")]
    xml = tree.getroot()
    image_path = Path(voc_dir / "JPEGImages" / (_text(xml, "filename") or f"{stem}.jpg"))
    problems: list[Problem] = []
    rows = [
        read_object(obj, f"{where}: object[{k}]", class_index, problems, known=known)
        for k, obj in enumerate(xml.findall("object"), start=1)
    ]
    rows = [row for row in rows if row is not None]
    size = _image_size(xml, where, image_path, check_images, problems)
    if size is None:
        return None, problems
    boxes, box_problems = check_boxes(
        np.array([r[1] for r in rows], np.float64),
        size[0],
        size[1],
        lambda i: f"{rows[i][0]}/bndbox",
        box_policy=box_policy,
        clip_tolerance=clip_tolerance,
        quote=lambda i: rows[i][5],
    )
    record = ImageRecord(
        f"{year}/{stem}",
        image_path,
        size[0],
        size[1],
        boxes,
        [r[2] for r in rows],
        difficult=[r[3] for r in rows],
        iscrowd=[r[4] for r in rows],
    )
    return record, problems + [_zero_based_hint(p, rows) for p in box_problems]


def _zero_based_hint(problem: Problem, rows: list) -> Problem:
    """A box outside the image because its file writes ``xmin=0``/``ymin=0``: say why (VOC counts from 1)."""
    written = {f"{row[0]}/bndbox": row[5] for row in rows}.get(problem.location, "")
    if problem.kind != "box outside the image" or not re.search(r"\b[xy]min=0(\.0*)?(,|$)", written):
        return problem
    return dataclasses.replace(
        problem,
        hint="VOC pixel coordinates start at 1, so xmin=0 or ymin=0 lies 1 px outside "
        "the image (tools that write 0-based coordinates do this): " + problem.hint,
    )


def _image_size(
    xml: ET.Element, where: str, image_path: Path, check_images: bool, problems: list[Problem]
) -> tuple[int, int] | None:
    """``(width, height)`` from ``<size>``, else from the image header (with a warning); checks the image."""
    count = len(problems)
    size = read_size(xml, where, problems)
    if size is not None:
        if check_images:
            problems += check_image_file(image_path, size[0], size[1], f"{where}: filename")
        return size
    if len(problems) > count:  # a malformed <size> is an error, not a missing one
        return None
    size, problem = read_image_size(image_path, f"{where}: filename")
    if problem is not None:
        problems.append(problem)
        return None
    problems.append(
        Problem(
            f"{where}: size",
            f"<size> is missing or zero; used {size[0]}x{size[1]} from the image header of {image_path}",
            "add <size><width>/<height> to the XML",
            severity="warning",
        )
    )
    return size
