"""The one place image files are decoded: every training, scoring, prediction and drawing path reads pixels here.

:func:`read_image_array` returns ``H x W x 3`` pixels: ``uint8`` for 8-bit images (any PIL mode that converts to RGB
without loss of range: ``1``, ``L``, ``P``, ``RGB``, ``RGBA``, ``CMYK``, ...), ``float32`` in [0, 1] for
high-bit-depth grayscale, scaled by the range of its storage type:

* 16-bit (PIL modes ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``; 16-bit PNG and TIFF): divided by 65535;
* 32-bit integer (mode ``I``) whose values lie in [0, 65535] (how some PIL versions open 16-bit files): divided
  by 65535; other ``I`` images and floating-point (``F``) images outside [0, 1] are refused, since their range
  is unknown;
* floating-point (``F``) in [0, 1]: as they are.

A file that cannot be decoded in full (missing, truncated, not an image, an unknown mode) raises
:class:`ImageDecodeError` naming the file; :func:`decode_problems` checks many files in parallel for
``activedet validate --decode``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .records import Problem

__all__ = ["ImageDecodeError", "read_image_array", "decode_problems"]

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_HINT = (
    "replace the file with a valid image, or remove the image from the annotations (`activedet validate FORMAT "
    "PATH --decode` lists every such file)"
)


class ImageDecodeError(ValueError):
    """An image file that cannot be read in full; ``path`` names it."""

    def __init__(self, path: str | os.PathLike, reason: str | None = None):
        if reason is None:  # re-raised with its message only (a DataLoader worker's, after the worker's traceback)
            last = (str(path).strip().splitlines() or [""])[-1].split("ImageDecodeError: ", 1)[-1]
            found = re.fullmatch(rf"image (.+?) cannot be used: (.*); {re.escape(_HINT)}", last)
            if found is None:
                self.path, self.reason = None, str(path)
                super().__init__(str(path))
                return
            path, reason = found.groups()
        self.path, self.reason = Path(path), reason
        super().__init__(f"image {path} cannot be used: {reason}; {_HINT}")


def read_image_array(path: str | os.PathLike) -> np.ndarray:
    """``uint8[H, W, 3]`` (8-bit images) or ``float32[H, W, 3]`` in [0, 1] (high bit depth): module docstring."""
    try:
        with Image.open(path) as img:
            img.load()  # the whole file: a truncated one fails here, not only at its header
            if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
                return _high_bit_depth(img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(path, "the file does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(path, f"{type(exc).__name__}: {exc}") from None


def _high_bit_depth(img: Image.Image) -> np.ndarray:
    values = np.asarray(img)
    if img.mode in _SIXTEEN_BIT:
        scaled = values.astype(np.float32) / 65535.0
    elif img.mode == "I" and values.size and 0 <= values.min() and values.max() <= 65535:
        scaled = values.astype(np.float32) / 65535.0
    elif img.mode == "F" and values.size and 0 <= values.min() and values.max() <= 1 and np.isfinite(values).all():
        scaled = values.astype(np.float32)
    else:
        low, high = (values.min(), values.max()) if values.size else (0, 0)
        raise ImageDecodeError(
            img.filename or "?",
            f"{'32-bit integer' if img.mode == 'I' else 'floating-point'} "
            f"grayscale (PIL mode {img.mode}) with values in [{low}, {high}], whose range is "
            "unknown; save it as 8-bit or 16-bit (PNG or TIFF)",
        )
    return np.repeat(scaled[:, :, None], 3, axis=2)


def decode_problems(files: Iterable[tuple[str | os.PathLike, str]], *, workers: int | None = None) -> list[Problem]:
    """One error per ``(path, location)`` whose image cannot be decoded in full, in input order; decoded in
    ``workers`` threads (default: the CPU count, at most 8)."""
    files = list(files)
    workers = workers or min(8, os.cpu_count() or 1)

    def check(item) -> Problem | None:
        path, location = item
        try:
            read_image_array(path)
        except ImageDecodeError as exc:
            return Problem(
                location,
                f"image {path} cannot be decoded: {exc.reason}",
                "replace the file with a valid image, or remove the image from the annotations",
            )
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [p for p in pool.map(check, files) if p is not None]
