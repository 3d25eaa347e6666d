"""Atomic file writes (stdlib only, so data readers and reports can use them without importing torch).

A writer puts the bytes in a temporary file next to the destination and renames it over the destination with
``os.replace``: a reader, or a run killed at any moment, sees the old file or the new one, never half of one.
:func:`atomic_write_dir` does the same for a whole directory tree (generated datasets).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_write_dir"]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, flush it to disk, then rename it onto ``path``; creates parent directories.

    The temporary name is unique per process and call (not ``tempfile.mkstemp``, whose files are private 0600:
    ours get the usual umask permissions).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` (``\\n`` line ends) atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding="utf-8", newline="\n") as fh:
            fh.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | Path, obj: Any, *, allow_nan: bool = True) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=allow_nan) + "\n")


def atomic_write_dir(path: str | Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_dir)`` to fill a fresh directory, then rename it onto ``path``; returns ``path``.

    The temporary directory sits next to ``path``, so an interrupted ``write`` never leaves a partial tree at
    ``path`` (and the temporary one is removed). An existing non-empty ``path`` raises ``FileExistsError``
    unless ``overwrite``; it is then moved aside before the rename and deleted after it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory; choose another output directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{path} already exists and is not empty; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private (0o700)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # cleanup only; the original error propagates
        raise
    return path


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, first moving an existing ``target`` aside and deleting it afterwards."""
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    if target.exists():
        os.rename(target, old / target.name)
    os.rename(new, target)
    shutil.rmtree(old)
