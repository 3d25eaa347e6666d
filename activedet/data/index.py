"""A columnar pool index: a dataset held as a few arrays instead of one Python object per image.

A pool of a million images as :class:`~activedet.data.records.ImageRecord` objects costs gigabytes and a minute
to rebuild in every command. :class:`PoolIndex` holds the same information as arrays::

    image rows  i = 0..N-1   image_ids[i], file_names[i] (strings), width[i], height[i]   (int32)
    box rows    k = 0..M-1   boxes[k] float32 xyxy pixels, labels[k] int32 in 1..C, flags[k] uint8
                             (bit 0 difficult, bit 1 iscrowd), area[k] float64 (NaN: not given)
    offsets                  the boxes of image i are rows box_start[i]:box_start[i + 1] (int64[N + 1])

in the order of the source file (image row = pool index; boxes in file order within an image), so it is the
same dataset the readers return, not an approximation: ``index.record(i)`` equals ``read_coco(...)[i]``.
:meth:`PoolIndex.dataset` wraps it as a :class:`DetectionDataset` whose ``records`` are created on demand.

Saved as one folder of ``.npy`` files plus ``meta.json`` (:meth:`PoolIndex.save`), it is memory-mapped by every
later command (:meth:`PoolIndex.load`): opening a million-image index reads a few kilobytes. ``meta.json`` keeps
each array's dtype, shape, byte size and BLAKE2b digest; :func:`cached_index` keys the folder by the source
file's path, size and modification time and the reading options, and rebuilds it whenever the key or any digest
does not match, so a stale or damaged cache is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, MutableSequence, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_json
from .records import DetectionDataset, ImageRecord

__all__ = ["FORMAT_VERSION", "StringColumn", "PoolIndex", "RecordView", "cached_index", "source_key"]

#: bumped whenever the saved layout or a reader's semantics change: older caches are then rebuilt
FORMAT_VERSION = 1
DIFFICULT, ISCROWD = 1, 2


class StringColumn(Sequence[str]):
    """``N`` strings as one UTF-8 byte array and ``int64[N + 1]`` offsets (string ``i`` is
    ``data[offsets[i]:offsets[i + 1]]``); both arrays may be memory-mapped."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data, self.offsets = data, offsets

    @classmethod
    def from_strings(cls, strings: Sequence[str]) -> StringColumn:
        text = "".join(strings)
        offsets = np.zeros(len(strings) + 1, np.int64)
        if text.isascii():  # one byte per character: the lengths are the byte counts
            np.cumsum(np.fromiter(map(len, strings), np.int64, len(strings)), out=offsets[1:])
            return cls(np.frombuffer(text.encode("ascii"), np.uint8).copy(), offsets)
        encoded = [s.encode("utf-8") for s in strings]
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        return bytes(self.data[self.offsets[i] : self.offsets[i + 1]]).decode("utf-8")

    def to_list(self) -> list[str]:
        """Every string, decoded in one pass (faster than indexing one by one)."""
        text = bytes(self.data)
        bounds = self.offsets.tolist()
        return [text[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class PoolIndex:
    """A detection dataset as columns (see the module notes for the layout and conventions)."""

    image_ids: StringColumn
    file_names: StringColumn  # as the file gives them; relative ones are resolved against ``root``
    width: np.ndarray
    height: np.ndarray
    box_start: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    flags: np.ndarray
    area: np.ndarray
    class_names: list[str]
    category_ids: list[int] | None = None
    root: Path | None = None

    # ------------------------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.width)

    @property
    def num_boxes(self) -> int:
        return int(self.box_start[-1])

    def box_counts(self) -> np.ndarray:
        """``int64[N]``: boxes per image."""
        return np.diff(self.box_start)

    def class_counts(self) -> np.ndarray:
        """``int64[C]``: boxes per class (index ``l - 1`` for label ``l``)."""
        return np.bincount(np.asarray(self.labels) - 1, minlength=len(self.class_names)).astype(np.int64)

    def path(self, i: int) -> Path:
        name = self.file_names[i]
        return Path(name) if self.root is None else Path(os.path.abspath(os.path.join(self.root, name)))

    def record(self, i: int) -> ImageRecord:
        """Image row ``i`` as the :class:`ImageRecord` the readers build."""
        a, b = int(self.box_start[i]), int(self.box_start[i + 1])
        flags = np.asarray(self.flags[a:b])
        return ImageRecord(
            self.image_ids[i],
            self.path(i),
            int(self.width[i]),
            int(self.height[i]),
            np.array(self.boxes[a:b]),
            np.asarray(self.labels[a:b], np.int64),
            difficult=(flags & DIFFICULT) > 0,
            iscrowd=(flags & ISCROWD) > 0,
            area=np.array(self.area[a:b]),
        )

    def dataset(self) -> DetectionDataset:
        """A :class:`DetectionDataset` over this index; its ``records`` are built on demand."""
        return DetectionDataset(RecordView(self), self.class_names, self.category_ids, root=self.root)

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def from_dataset(cls, dataset: DetectionDataset) -> PoolIndex:
        """The columns of an in-memory dataset (any reader's output)."""
        records = list(dataset.records)
        counts = np.array([r.num_boxes for r in records], np.int64)
        start = np.zeros(len(records) + 1, np.int64)
        np.cumsum(counts, out=start[1:])

        def stack(get, shape, dtype):
            parts = [get(r) for r in records if r.num_boxes]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)

        flags = stack(lambda r: r.difficult * DIFFICULT + r.iscrowd * ISCROWD, (0,), np.uint8)
        return cls(
            StringColumn.from_strings([r.image_id for r in records]),
            StringColumn.from_strings([str(r.file_name) for r in records]),
            np.array([r.width for r in records], np.int32),
            np.array([r.height for r in records], np.int32),
            start,
            stack(lambda r: r.boxes, (0, 4), np.float32),
            stack(lambda r: r.labels, (0,), np.int32),
            flags,
            stack(lambda r: r.area, (0,), np.float64),
            list(dataset.class_names),
            dataset.category_ids,
            None,
        )

    # ------------------------------------------------------------------------------------------------ saving
    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "image_ids.data": self.image_ids.data,
            "image_ids.offsets": self.image_ids.offsets,
            "file_names.data": self.file_names.data,
            "file_names.offsets": self.file_names.offsets,
            "width": self.width,
            "height": self.height,
            "box_start": self.box_start,
            "boxes": self.boxes,
            "labels": self.labels,
            "flags": self.flags,
            "area": self.area,
        }

    def save(self, folder: str | os.PathLike, *, key: dict | None = None) -> Path:
        """Write the index to ``folder`` (replaced as a whole: written beside it, then renamed into place)."""
        folder = Path(folder)
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.mkdir(parents=True)
        arrays = {}
        for name, array in self._arrays().items():
            path = tmp / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array))
            arrays[name] = {
                "dtype": str(array.dtype),
                "shape": list(array.shape),
                "bytes": path.stat().st_size,
                "blake2b": _digest(path),
            }
        meta = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "arrays": arrays,
            "class_names": self.class_names,
            "category_ids": self.category_ids,
            "root": None if self.root is None else str(self.root),
        }
        atomic_write_json(tmp / "meta.json", meta)
        old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
        try:
            folder.rename(old)
        except FileNotFoundError:
            pass
        try:
            tmp.rename(folder)
        except OSError:  # another process (a torchrun rank) saved the same index first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, key: dict | None = None, verify: bool = True) -> PoolIndex:
        """Memory-map a saved index. Raises :class:`StaleIndex` when ``meta.json`` is missing or unreadable, was
        written by another layout version or for another ``key``, or (``verify``) an array file's size or digest
        differs from what was written."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StaleIndex(f"{folder}: no readable meta.json ({exc})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise StaleIndex(f"{folder}: layout version {meta.get('format_version')}, expected {FORMAT_VERSION}")
        if key is not None and meta.get("key") != key:
            raise StaleIndex(f"{folder}: built for another source or other options")
        arrays = {}
        for name, info in meta["arrays"].items():
            path = folder / f"{name}.npy"
            if (
                not path.is_file()
                or path.stat().st_size != info["bytes"]
                or (verify and _digest(path) != info["blake2b"])
            ):
                raise StaleIndex(f"{path}: missing, truncated or changed since it was written")
            arrays[name] = np.load(path, mmap_mode="r")
            if str(arrays[name].dtype) != info["dtype"] or list(arrays[name].shape) != info["shape"]:
                raise StaleIndex(f"{path}: dtype/shape differ from meta.json")
        return cls(
            StringColumn(arrays["image_ids.data"], arrays["image_ids.offsets"]),
            StringColumn(arrays["file_names.data"], arrays["file_names.offsets"]),
            arrays["width"],
            arrays["height"],
            arrays["box_start"],
            arrays["boxes"],
            arrays["labels"],
            arrays["flags"],
            arrays["area"],
            meta["class_names"],
            meta["category_ids"],
            None if meta["root"] is None else Path(meta["root"]),
        )


class StaleIndex(Exception):
    """A saved index that must not be used (it is rebuilt); the message says why."""


class RecordView(MutableSequence[ImageRecord]):
    """The records of a :class:`PoolIndex` (or of the index rows ``rows``, in that order), each built when asked
    for (``records[i]``, iteration, slices).

    A record can be replaced (``records[i] = record``: labels imported by people on top of the pool); the
    replacements are kept in memory beside the index. The length is fixed: records are not inserted or deleted.
    The whole-column questions a loop asks of a large pool (:meth:`image_ids`, :meth:`file_names`,
    :meth:`box_counts`, :meth:`class_counts`, :meth:`subset`) are answered from the columns, without building a record.
    """

    def __init__(
        self, index: PoolIndex, rows: np.ndarray | None = None, replaced: dict[int, ImageRecord] | None = None
    ):
        self.index = index
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        self.replaced: dict[int, ImageRecord] = {} if replaced is None else replaced

    def __len__(self) -> int:
        return len(self.index) if self.rows is None else len(self.rows)

    def _rows(self) -> np.ndarray:
        return np.arange(len(self.index)) if self.rows is None else self.rows

    def subset(self, positions) -> RecordView:
        """The records at ``positions`` (of this view), as a view: nothing is built; replacements carried over."""
        positions = np.asarray(positions, np.int64).reshape(-1)
        if len(positions) and not (-len(self) <= positions.min() and positions.max() < len(self)):
            raise IndexError(f"subset positions out of range for {len(self)} records")
        positions = positions % max(1, len(self))
        replaced = {}
        if self.replaced:  # the replaced records that the subset keeps, at their new positions
            keys = np.fromiter(self.replaced, np.int64, len(self.replaced))
            hit = np.nonzero(np.isin(positions, keys))[0]
            replaced = {int(k): self.replaced[int(positions[k])] for k in hit}
        return RecordView(self.index, self._rows()[positions], replaced)

    def image_ids(self) -> list[str]:
        ids = self.index.image_ids.to_list()
        ids = ids if self.rows is None else [ids[r] for r in self.rows.tolist()]
        for i, record in self.replaced.items():
            ids[i] = record.image_id
        return ids

    def file_names(self) -> list[str]:
        """Each record's file name as the source gives it (relative to the index's ``root``, or absolute)."""
        names = self.index.file_names.to_list()
        names = names if self.rows is None else [names[r] for r in self.rows.tolist()]
        for i, record in self.replaced.items():
            names[i] = str(record.file_name)
        return names

    def class_counts(self, num_classes: int) -> np.ndarray:
        """``int64[C]``: boxes per class over the records (index ``l - 1`` for label ``l``)."""
        rows = self._rows()
        if self.replaced:
            keep = np.ones(len(rows), bool)
            keep[list(self.replaced)] = False
            rows = rows[keep]
        start, end = self.index.box_start[rows], self.index.box_start[rows + 1]
        n = end - start
        boxes = np.repeat(start - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))  # every box row of those images
        counts = np.bincount(np.asarray(self.index.labels)[boxes] - 1, minlength=num_classes).astype(np.int64)
        for record in self.replaced.values():
            np.add.at(counts, record.labels - 1, 1)
        return counts

    def box_counts(self) -> np.ndarray:
        """``int64[N]``: boxes per record."""
        counts = self.index.box_counts()
        counts = counts.copy() if self.rows is None else counts[self.rows]
        for i, record in self.replaced.items():
            counts[i] = record.num_boxes
        return counts

    def _position(self, i) -> int:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} out of range for a pool of {len(self)} images")
        return i % len(self)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = self._position(i)
        if i in self.replaced:
            return self.replaced[i]
        return self.index.record(i if self.rows is None else int(self.rows[i]))

    def __setitem__(self, i, record: ImageRecord) -> None:  # type: ignore[override]
        if not isinstance(record, ImageRecord):
            raise TypeError(f"records[{i}] must be an ImageRecord. Got {type(record).__name__} instead.")
        self.replaced[self._position(i)] = record

    def __delitem__(self, i) -> None:
        raise TypeError("the records of a pool index cannot be deleted (a record's position is its pool index)")

    def insert(self, i, record) -> None:
        raise TypeError(
            "records cannot be inserted into a pool index (a record's position is its pool index); "
            "build a DetectionDataset from list(records) + new ones"
        )

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self[i] for i in range(len(self)))


def _digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def source_key(fmt: str, path: str | os.PathLike, options: dict) -> dict:
    """What a cached index is valid for: the format, the source file's absolute path, size and modification time
    (nanoseconds), the reading options and the layout version."""
    stat = os.stat(path)
    return {
        "format": fmt,
        "path": os.path.abspath(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "options": {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in sorted(options.items())},
        "version": FORMAT_VERSION,
    }


def cached_index(
    fmt: str,
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike,
    scan,
    what: str,
    save: bool | list = True,
    **options,
) -> PoolIndex:
    """The index of the dataset at ``path``, loaded from ``cache_dir`` when a valid one is there, else built with
    ``scan(path, **options) -> (PoolIndex, problems)``; errors raise :class:`DatasetError`, warnings are issued
    (both introduced by ``what``, e.g. ``"COCO file PATH"``).
    Only a dataset without any problem is saved (one with warnings is read again next time, so its warnings are
    shown again). The folder name is a digest of :func:`source_key`.

    ``save=False`` never writes; a list defers the write: a callable that saves the index is appended to it (a
    command that must validate everything before it writes anything calls them once it has)."""
    from .validate import raise_for_problems

    key = source_key(fmt, path, options)
    name = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()
    folder = Path(cache_dir) / f"{fmt}-{name}"
    if folder.exists():
        try:
            return PoolIndex.load(folder, key=key)
        except StaleIndex:
            pass  # rebuilt below, replacing the folder
    index, problems = scan(path, **options)
    raise_for_problems(problems, what)
    if problems or save is False:
        return index
    if isinstance(save, list):
        save.append(lambda: index.save(folder, key=key))
    else:
        index.save(folder, key=key)
    return index
