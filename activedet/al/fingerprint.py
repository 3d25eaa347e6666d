"""The pool fingerprint: which images, in which order, a run's ledger counts.

The ledger (``ledger.npz``) keeps one integer per pool index, so it is only meaningful for the pool it was made
for. If the train split's source (a COCO file, a VOC devkit's sets, a YOLO or image folder, the
``unlabelled_data`` folder of a run with people labelling) changes after the run started so that the pool's
images differ, the ledger would silently point at other images. A run therefore saves, next to its
``config.json``, ``pool.json``::

    {"version": 1,
     "parts": [{"key": "train_data", "path": "/abs/train.json", "format": "coco",  # (VOC: and its "sets")
                "images": 1000,                          # the pool's images that came from this source
                "stat": {"size": ..., "mtime_ns": ...},  # of a source file (COCO); null for a folder
                "block": 1, "blocks": ["9f0c...", ...],  # digests of the ordered (image id, file name) pairs,
                "digest": "..."}, ...]}                  # one per block of `block` images, and of them all

Every later command that reads the pool of the run compares (:func:`check_pool`) and stops with
:class:`PoolChanged`, naming the source, its config key, what changed and what to do. Only the images' ids,
file names and order count: boxes and classes edited in the source (labels being fixed) are not a change of
the pool. Digests are taken over the image ids and file names as the split holds them (a COCO pool index: the
file names as the file gives them; other formats: the image paths as read).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_json
from ..data.index import RecordView, StringColumn
from ..data.records import DetectionDataset
from .rundir import RunDir

__all__ = ["FINGERPRINT_VERSION", "PoolChanged", "part_fingerprint", "load_fingerprint", "save_fingerprint"]
__all__ += ["check_pool", "files_unchanged"]

FINGERPRINT_VERSION = 1
#: at most this many block digests per source (a changed file name is located to within one block)
MAX_BLOCKS = 1024


class PoolChanged(ValueError):
    """The images of a run's pool differ from those it started with (the message says where and what to do)."""


def _columns(data: DetectionDataset) -> tuple[StringColumn, StringColumn]:
    """The image ids and file names of ``data`` as string columns (read from the pool index where it has one)."""
    view = data.records
    if isinstance(view, RecordView) and view.rows is None and not view.replaced:  # the index's own rows
        return view.index.image_ids, view.index.file_names
    records = data.records
    return (
        StringColumn.from_strings([r.image_id for r in records]),
        StringColumn.from_strings([str(r.file_name) for r in records]),
    )


def _block_digest(columns: Sequence[StringColumn], a: int, z: int) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for column in columns:
        start, stop = int(column.offsets[a]), int(column.offsets[z])
        digest.update(np.ascontiguousarray(column.data[start:stop]).tobytes())
        digest.update(np.diff(np.asarray(column.offsets[a : z + 1], np.int64)).astype("<i8").tobytes())
    return digest.hexdigest()


def part_fingerprint(
    key: str, path: str | os.PathLike, fmt: str, data: DetectionDataset, *, sets: list[str] | None = None
) -> dict:
    """The fingerprint of the images of ``data``, read from ``path`` (config key ``key``, format ``fmt``; a VOC
    devkit's image ``sets``, named in messages)."""
    columns = _columns(data)
    n = len(columns[0])
    block = max(1, -(-n // MAX_BLOCKS))
    blocks = [_block_digest(columns, a, min(n, a + block)) for a in range(0, n, block)]
    stat = None
    if fmt == "coco" and os.path.isfile(path):  # the file alone lists the images: its stat tells it is unchanged
        info = os.stat(path)
        stat = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    return {
        "key": key,
        "path": os.path.abspath(path),
        "format": fmt,
        **({"sets": list(sets)} if sets else {}),
        "images": n,
        "stat": stat,
        "block": block,
        "blocks": blocks,
        "digest": hashlib.blake2b("".join(blocks).encode(), digest_size=16).hexdigest(),
    }


def save_fingerprint(run: str | os.PathLike, parts: list[dict]) -> Path:
    """Write ``RUN/pool.json`` (atomically) for the pool made of ``parts`` (:func:`part_fingerprint`)."""
    return atomic_write_json(RunDir(run).pool, {"version": FINGERPRINT_VERSION, "parts": parts})


def load_fingerprint(run: str | os.PathLike) -> dict | None:
    """``RUN/pool.json``, or ``None`` when the run has none (started by an activedet without fingerprints)."""
    path = RunDir(run).pool
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise PoolChanged(
            f"{path} is not valid JSON ({exc}); restore it from a backup, or delete it: the next `activedet "
            "resume` then checks the pool against the ledger's image ids and writes it again"
        ) from None
    if saved.get("version") != FINGERPRINT_VERSION or not isinstance(saved.get("parts"), list):
        raise PoolChanged(
            f"{path} has version {saved.get('version')!r}, expected {FINGERPRINT_VERSION} with a list of 'parts'; "
            "it was written by another activedet: delete it, and the next `activedet resume` writes it again"
        )
    return saved


def files_unchanged(saved: dict) -> bool:
    """Whether every source of ``saved`` is a file whose size and modification time are still those saved (then
    its images are too, without reading it)."""
    for part in saved["parts"]:
        stat = part.get("stat")
        if stat is None or not os.path.isfile(part["path"]):
            return False
        info = os.stat(part["path"])
        if (info.st_size, info.st_mtime_ns) != (stat["size"], stat["mtime_ns"]):
            return False
    return True


def check_pool(
    run: str | os.PathLike,
    saved: dict | None,
    current: list[dict],
    *,
    config: str,
    pool_ids=None,
    ledger_ids=None,
) -> None:
    """Raise :class:`PoolChanged` when the pool ``current`` (a list of :func:`part_fingerprint`) is not the one
    ``saved`` (:func:`load_fingerprint`) describes. ``config`` names the config file in messages; ``pool_ids()``
    and ``ledger_ids()`` give the image ids of the pool now and of the ledger (called only to say exactly what
    changed). Without ``saved`` (a run older than fingerprints) the pool's ids are compared with the ledger's."""
    if saved is None:
        if ledger_ids is not None:
            _check_ids(run, current, config, pool_ids(), ledger_ids())
        return
    old_parts = saved["parts"]
    if [p["key"] for p in old_parts] != [p["key"] for p in current]:
        raise PoolChanged(
            f"{config}: the pool of {run} was made from {[p['key'] for p in old_parts]}, now from "
            f"{[p['key'] for p in current]}; start a new run (a new out_dir) for other data"
        )
    start = 0
    for old, new in zip(old_parts, current):
        if old["digest"] != new["digest"] or old["images"] != new["images"]:
            what = _what_changed(old, new, start, pool_ids, ledger_ids)
            raise PoolChanged(_message(run, new, config, what))
        start += new["images"]


def _check_ids(run, current: list[dict], config: str, now: Sequence[str], before: Sequence[str]) -> None:
    start = 0
    for part in current:
        stop = start + part["images"]
        last = part is current[-1]
        old = list(before[start:] if last else before[start:stop])
        if old != list(now[start:stop]):
            count = f"the pool had {len(old)} images, now {part['images']}" if len(old) != part["images"] else ""
            what = "; ".join(x for x in (count, _first_id_difference(old, now[start:stop], start)) if x)
            raise PoolChanged(_message(run, part, config, what))
        start = stop


def _what_changed(old: dict, new: dict, start: int, pool_ids, ledger_ids) -> str:
    said = []
    if old["images"] != new["images"]:
        said.append(f"the pool had {old['images']} images, now {new['images']}")
    first = next((b for b, (x, y) in enumerate(zip(old["blocks"], new["blocks"])) if x != y), 0)
    if ledger_ids is not None and pool_ids is not None:
        before, now = ledger_ids(), pool_ids()
        old_ids = before[start : start + old["images"]]
        new_ids = now[start : start + new["images"]]
        found = _first_id_difference(old_ids, new_ids, start)
        if found:
            return "; ".join([*said, found])
    if old["images"] == new["images"] and old["block"] == new["block"]:
        a = first * old["block"]
        z = min(old["images"], a + old["block"]) - 1
        where = f"image {start + a}" if a == z else f"an image among {start + a}..{start + z}"
        said.append(f"the file name of {where} changed (the image ids are the same)")
    elif not said:
        said.append("the images' ids or file names changed")
    return "; ".join(said)


def _first_id_difference(old: Sequence[str], new: Sequence[str], start: int) -> str:
    for i, (x, y) in enumerate(zip(old, new)):
        if x != y:
            return f"image {start + i} was {x!r}, now {y!r}"
    if len(old) > len(new):
        return f"image {start + len(new)} ({old[len(new)]!r}) and those after it are gone"
    if len(new) > len(old):
        return f"image {start + len(old)} ({new[len(old)]!r}) and those after it are new"
    return ""


def _message(run, part: dict, config: str, what: str) -> str:
    sets = f" with 'voc_train_sets' {part['sets']}" if part.get("sets") else ""
    return (
        f"{part['path']} (key '{part['key']}'{sets} of {config}) changed since the run in {run} started: {what}. The "
        "ledger counts images by their position in the pool, so it would now point at other images. Restore the "
        f"{'file' if part['stat'] is not None else 'data'} as it was when the run started, or start a new run "
        "(a new out_dir) on the changed data"
    )
