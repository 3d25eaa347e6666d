"""Checks and file helpers shared by the Pascal VOC, COCO and YOLO readers and writers.

Every check *returns* :class:`~activedet.data.records.Problem` objects instead of raising, so that a reader can
collect every problem of a dataset and raise one :class:`~activedet.data.records.DatasetError` listing all of
them (:func:`raise_for_problems`). Warnings (fixes applied under an explicit policy, e.g. a clipped box) never
raise; readers report them with one :class:`DatasetWarning`.

Locations are relative to the dataset path the user gave and name the element in the notation of its file
type: ``VOC2007/Annotations/000005.xml: object[2]/bndbox`` (XPath, 1-based), ``train.json:
annotations[17].bbox`` (JSON, 0-based) and ``labels/a.txt:3`` (text line, 1-based).

Box policy (the ``box_policy`` / ``clip_tolerance`` arguments of every reader):

* ``"error"`` (default): a box that leaves the image ``[0, width] x [0, height]`` is an error.
* ``"clip"``: a box that leaves the image by at most ``clip_tolerance`` pixels is clipped to it and reported as a
  warning; a box further outside, or one that is empty after clipping, is still an error.

Boxes that are not finite or have zero or negative width or height are errors under both policies. Nothing is
ever dropped silently.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..constants import BOX_POLICIES, DEFAULT_BOX_POLICY, DEFAULT_CLIP_TOLERANCE, IMAGE_MODES
from .records import DatasetError, Problem, _file_of, group_problem_lines

__all__ = [
    "BOX_POLICIES",
    "IMAGE_MODES",
    "DatasetWarning",
    "check_choice",
    "check_options",
    "read_image_size",
    "check_image_file",
    "check_boxes",
    "find_duplicates",
    "raise_for_problems",
    "format_problems",
    "warning_summary",
    "shortest_float",
    "place_image",
]


class DatasetWarning(UserWarning):
    """Issued by a reader whose dataset has warnings (e.g. clipped boxes) but no errors: one line per dataset,
    one part per kind of warning; ``problems`` holds every warning."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)


def check_choice(caller: str, name: str, value: object, choices: Sequence[object]) -> None:
    """Raise ``ValueError("The 'name' parameter of caller must be one of (...). Got ... instead.")``."""
    if value not in choices:
        raise ValueError(f"The {name!r} parameter of {caller} must be one of {tuple(choices)}. Got {value!r} instead.")


def check_options(
    caller: str, *, box_policy: str = DEFAULT_BOX_POLICY, clip_tolerance: float = DEFAULT_CLIP_TOLERANCE
) -> None:
    """Raise ``ValueError`` in the library's message shape when a reader's box options are invalid."""
    check_choice(caller, "box_policy", box_policy, BOX_POLICIES)
    if not (isinstance(clip_tolerance, (int, float)) and 0 <= clip_tolerance < float("inf")):
        raise ValueError(
            f"The 'clip_tolerance' parameter of {caller} must be a finite number of pixels >= 0. "
            f"Got {clip_tolerance!r} instead."
        )


# ---------------------------------------------------------------------------------------------------------- images


def read_image_size(
    path: Path,
    location: str,
    *,
    hint: str = "",
    unreadable_hint: str = "replace it with a valid image file, or remove the image from the annotations",
) -> tuple[tuple[int, int] | None, Problem | None]:
    """``((width, height), None)`` read from the image header (no pixel decoding), or ``(None, problem)`` whose
    hint is ``hint`` for a missing file and ``unreadable_hint`` for one that is not an image.

    Only the header is read, so a file truncated after its header is not detected here.
    """
    try:
        with Image.open(path) as image:
            return (int(image.size[0]), int(image.size[1])), None
    except FileNotFoundError:
        return None, Problem(
            location,
            f"image file not found: {path}",
            hint or "put the image at that path or fix the path in the annotations",
        )
    except (UnidentifiedImageError, OSError) as exc:
        return None, Problem(
            location,
            f"cannot read image file {path}: {exc}",
            unreadable_hint,
        )


def check_image_file(path: Path, width: int, height: int, location: str, *, hint: str = "") -> list[Problem]:
    """Problems with the image at ``path``: missing, unreadable, or not ``width x height`` pixels."""
    size, problem = read_image_size(path, location, hint=hint)
    if problem is not None:
        return [problem]
    if size != (width, height):
        return [
            Problem(
                location,
                f"annotation says the image is {width}x{height} (width x height) but "
                f"{path} is {size[0]}x{size[1]} pixels",
                "fix the size in the annotation (boxes must be in the pixels of the actual image file)",
            )
        ]
    return []


# ----------------------------------------------------------------------------------------------------------- boxes


def check_boxes(
    boxes: np.ndarray,
    width: int,
    height: int,
    locate: Callable[[int], str],
    *,
    box_policy: str = DEFAULT_BOX_POLICY,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE,
    quote: Callable[[int], str] | None = None,
) -> tuple[np.ndarray, list[Problem]]:
    """Check ``boxes`` (``[N, 4]`` xyxy pixels) against a ``width x height`` image under the box policy.

    The check is done on the ``float32`` values that will be stored. ``locate(i)`` names where box ``i`` came
    from; ``quote(i)``, when given, is box ``i`` as the file writes it (``"xmin=0, ymin=42, ..."``): messages show
    it first, with the converted xyxy pixels beside it. Returns the ``float32[N, 4]`` boxes (clipped ones replaced
    when ``box_policy="clip"``) and the problems: errors for invalid boxes, one warning per clipped box.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4).astype(np.float32)
    values = boxes.astype(np.float64)
    finite = np.isfinite(values).all(axis=1)
    positive = (values[:, 2] > values[:, 0]) & (values[:, 3] > values[:, 1])
    inside = (values[:, :2] >= 0).all(axis=1) & (values[:, 2] <= width) & (values[:, 3] <= height)
    problems = []
    for i in np.flatnonzero(~(finite & positive & inside)):
        fixed, problem = _check_box(
            values[i],
            width,
            height,
            locate(int(i)),
            box_policy,
            clip_tolerance,
            None if quote is None else quote(int(i)),
        )
        boxes[i] = fixed
        problems.append(problem)
    return boxes, problems


def _check_box(
    box: np.ndarray,
    width: int,
    height: int,
    location: str,
    box_policy: str,
    clip_tolerance: float,
    quoted: str | None = None,
) -> tuple[np.ndarray, Problem]:
    shown = f"xyxy={_format_box(box)}" if quoted is None else f"{quoted} (xyxy={_format_box(box)} in 0-based pixels)"
    if not np.isfinite(box).all():
        return box, Problem(
            location,
            f"box coordinates must be finite numbers; found {shown}",
            "fix or remove this annotation",
            kind="box with a non-finite coordinate",
        )
    box_w, box_h = box[2] - box[0], box[3] - box[1]
    if box_w <= 0 or box_h <= 0:
        return box, Problem(
            location,
            f"box must have a positive width and height; found {shown} (width {box_w:g}, height {box_h:g} px)",
            "fix the coordinates (x2 > x1 and y2 > y1) or remove this annotation",
            kind="box without area",
        )
    excess = float(max(-box[0], -box[1], box[2] - width, box[3] - height))
    edges = [
        edge
        for edge, out in zip(
            ("left", "top", "right", "bottom"), (box[0] < 0, box[1] < 0, box[2] > width, box[3] > height)
        )
        if out
    ]
    outside = (
        f"box {shown} extends {excess:g} px beyond the {' and '.join(edges)} edge{'s' * (len(edges) > 1)} "
        f"of the {width}x{height} image"
    )
    if box_policy == "error":
        return box, Problem(
            location,
            outside,
            "fix the coordinates, or pass box_policy='clip' (config key "
            "box_policy: clip; CLI --box-policy clip) to clip boxes that exceed "
            f"the image by at most clip_tolerance={clip_tolerance:g} px",
            kind="box outside the image",
        )
    if excess > clip_tolerance:
        return box, Problem(
            location,
            f"{outside}, more than clip_tolerance={clip_tolerance:g} px",
            "fix the coordinates; this is too far outside to be a rounding error",
            kind="box too far outside the image to clip",
        )
    clipped = np.clip(box, 0, [width, height, width, height])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return box, Problem(
            location,
            f"{outside}; clipped to the image it is empty: xyxy={_format_box(clipped)}",
            "fix or remove this annotation",
            kind="box empty once clipped",
        )
    return clipped, Problem(
        location,
        f"clipped box {shown} to xyxy={_format_box(clipped)}: it extended "
        f"{excess:g} px beyond the {' and '.join(edges)} edge{'s' * (len(edges) > 1)} "
        f"of the {width}x{height} image",
        "fix the annotation to silence this warning",
        severity="warning",
        kind="box clipped to the image",
    )


def _format_box(box: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"


# ------------------------------------------------------------------------------------------------------ duplicates


def find_duplicates(items: Iterable[tuple[Hashable, str]], what: str, hint: str) -> list[Problem]:
    """One error per repeated key in ``(key, location)`` pairs, naming where the key was first seen."""
    first: dict[Hashable, str] = {}
    problems = []
    for key, location in items:
        if key in first:
            problems.append(Problem(location, f"duplicate {what} {str(key)!r} (first seen at {first[key]})", hint))
        else:
            first[key] = location
    return problems


# --------------------------------------------------------------------------------------------------------- reports


def raise_for_problems(problems: Sequence[Problem], what: str) -> None:
    """Raise one :class:`DatasetError` listing every error; otherwise issue one :class:`DatasetWarning`
    summing the warnings (if any) up in one line (:func:`warning_summary`)."""
    if any(p.severity == "error" for p in problems):
        raise DatasetError(problems, what)
    if problems:
        warnings.warn(DatasetWarning(warning_summary(problems, what), problems), stacklevel=3)


def warning_summary(problems: Sequence[Problem], what: str) -> str:
    """One line: ``"WHAT: box clipped to the image: 311 (e.g. LOCATION: MESSAGE); ..."``, a lone warning in
    full. ``activedet validate`` lists every one."""
    groups: dict[str, list[Problem]] = {}
    for p in problems:
        groups.setdefault(p.kind or p.message, []).append(p)
    parts = [
        str(group[0]) if len(group) == 1 else f"{kind}: {len(group)} (e.g. {group[0].location}: {group[0].message})"
        for kind, group in groups.items()
    ]
    more = " (activedet validate --verbose lists every one)" if len(problems) > 1 else ""
    return f"{what}: " + "; ".join(parts) + more


def format_problems(
    problems: Sequence[Problem], source: str | os.PathLike | None = None, *, examples: int | None = None, more: str = ""
) -> str:
    """A readable multi-line report: errors, then warnings, then a summary line.

    ``examples=None`` lists every problem; an int groups problems by kind (:func:`group_problem_lines`: one title
    line per kind with its count and the distinct values found, that many examples, the shared hint once;
    ``more`` follows the count of those not shown). The summary reads ``"3 errors, 1 warning in SOURCE"``;
    without ``source`` it names the file of the problems (or how many files they are in), and an empty list gives
    ``"0 errors, 0 warnings"``.
    """
    errors = [p for p in problems if p.severity == "error"]
    warns = [p for p in problems if p.severity != "error"]
    lines = []
    for title, group in (("errors", errors), ("warnings", warns)):
        if group:
            lines.append(f"{title}:")
            if examples is None:
                lines.extend(f"  {p}" for p in group)
            else:
                lines.extend(group_problem_lines(group, examples=examples, more=more))
    if source is None and problems:
        files = Counter(_file_of(p.location) for p in problems)
        source = next(iter(files)) if len(files) == 1 else f"{len(files)} files"
    where = "" if source is None else f" in {source}"
    lines.append(f"{_plural(len(errors), 'error')}, {_plural(len(warns), 'warning')}{where}")
    return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --------------------------------------------------------------------------------------------------------- numbers


def shortest_float(target: float, guess: float, read: Callable[[float], float]) -> float:
    """The number with the fewest significant decimal digits near ``guess`` that a reader turns back into
    ``target``: ``float32(read(value)) == float32(target)``. Integers come out as integral floats.

    Writers use it so that files hold ``30.1`` rather than ``30.100000381469727`` while reading them back
    reproduces the ``float32`` coordinates exactly. ``guess`` itself (17 digits) is the fallback.
    """
    target = np.float32(target)
    if guess.is_integer() and np.float32(read(guess)) == target:
        return guess
    for digits in range(1, 18):
        value = float(f"{guess:.{digits}g}")
        if np.float32(read(value)) == target:
            return value
    return guess


# ----------------------------------------------------------------------------------------------------------- files


def place_image(src: Path, dst: Path, mode: str) -> None:
    """Put image ``src`` at ``dst``: ``"link"`` hard-links (copying where linking fails, e.g. across file
    systems), ``"copy"`` copies, ``"none"`` does nothing. An existing ``dst`` is replaced."""
    if mode == "none":
        return
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(
            f"image {src} does not exist, so it cannot be put at {dst}; fix the record's "
            "file_name or pass images='none' to write the annotations only"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and os.path.samefile(src, dst):
        return
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:  # cross-device or unsupported: fall back to a copy, the result is the same file content
            pass
    shutil.copy2(src, dst)
