"""The columnar pool index: the same dataset as the readers, saved, memory-mapped, cached and never trusted stale."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_toy_dataset
from PIL import Image

from activedet.al.ledger import Ledger
from activedet.al.rundir import RunDir
from activedet.data import coco_index
from activedet.data.coco import read_coco, scan_coco, write_coco
from activedet.data.coco_index import build_coco_index, scan_coco_index
from activedet.data.index import PoolIndex, RecordView, StaleIndex, StringColumn, cached_index
from activedet.data.records import DatasetError, DetectionDataset, ImageRecord


def assert_same_records(a, b) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert (ra.image_id, ra.file_name, ra.width, ra.height) == (rb.image_id, rb.file_name, rb.width, rb.height)
        for name in ("boxes", "labels", "difficult", "iscrowd", "area"):
            np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=f"{ra.image_id} {name}")
            assert getattr(ra, name).dtype == getattr(rb, name).dtype


def assert_same_dataset(a, b) -> None:
    assert_same_records(list(a.records), list(b.records))
    assert (a.class_names, a.category_ids) == (b.class_names, b.category_ids)


def coco_file(tmp_path: Path, **changes) -> Path:
    """A COCO file whose entries cover what the fast pass must keep: unsorted and non-contiguous ids, an absolute
    file name, an image without boxes, boxes of one image spread over the file, integer and float boxes,
    ``area`` given and absent, ``iscrowd`` and ``difficult``."""
    data = {
        "info": {"description": "test"},
        "categories": [{"id": 7, "name": "blue"}, {"id": 3, "name": "red"}],
        "images": [
            {"id": 20, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 5, "file_name": str(tmp_path / "abs" / "b.png"), "width": 32, "height": 40},
            {"id": 9, "file_name": "sub/c.png", "width": 50, "height": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 20, "category_id": 3, "bbox": [1, 2, 10, 20], "area": 150.5, "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 7, "bbox": [0.5, 0.25, 3.125, 4], "iscrowd": 1},
            {"id": 3, "image_id": 20, "category_id": 7, "bbox": [30, 10, 34, 38], "difficult": 1, "segmentation": []},
        ],
    }
    for key, value in changes.items():
        data[key] = value(data[key]) if callable(value) else value
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def fast_only(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the detailed reader was used for a plainly valid file")

    monkeypatch.setattr(coco_index, "scan_coco", refuse)


def test_the_fast_pass_builds_the_readers_dataset(tmp_path, monkeypatch):
    path = coco_file(tmp_path)
    expected = read_coco(path, check_images=False)
    fast_only(monkeypatch)
    index = build_coco_index(path, check_images=False)
    assert_same_dataset(index.dataset(), expected)
    assert index.num_boxes == 3 and index.box_counts().tolist() == [2, 1, 0]
    assert index.class_counts().tolist() == [1, 2]  # red (id 3) is label 1, blue (id 7) label 2


def test_a_written_dataset_reads_back_through_the_fast_pass(tmp_path, monkeypatch):
    toy = make_toy_dataset(tmp_path / "toy", n_images=9)
    path = write_coco(toy, tmp_path / "toy.json", image_root=tmp_path / "toy")
    expected = read_coco(path, image_root=tmp_path / "toy")
    fast_only(monkeypatch)
    index = build_coco_index(path, image_root=tmp_path / "toy")  # image headers checked too (all present)
    assert_same_dataset(index.dataset(), expected)
    assert_same_records(list(PoolIndex.from_dataset(toy).dataset().records), list(toy.records))


BAD = {
    "box outside": {"annotations": lambda a: a + [{"image_id": 9, "category_id": 3, "bbox": [45, 0, 10, 10]}]},
    "unknown category": {"annotations": lambda a: a + [{"image_id": 9, "category_id": 4, "bbox": [1, 1, 5, 5]}]},
    "unknown image": {"annotations": lambda a: a + [{"image_id": 99, "category_id": 3, "bbox": [1, 1, 5, 5]}]},
    "duplicate image id": {"images": lambda i: i + [{"id": 9, "file_name": "d.png", "width": 5, "height": 5}]},
    "duplicate file": {"images": lambda i: i + [{"id": 1, "file_name": "sub/../a.png", "width": 5, "height": 5}]},
    "null area": {"annotations": lambda a: a + [{"image_id": 9, "category_id": 3, "bbox": [1, 1, 5, 5], "area": None}]},
    "crowd 2": {"annotations": lambda a: a + [{"image_id": 9, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 2}]},
    "bool id": {"images": lambda i: i + [{"id": True, "file_name": "e.png", "width": 5, "height": 5}]},
    "zero width": {"images": lambda i: i + [{"id": 2, "file_name": "f.png", "width": 0, "height": 5}]},
    "no annotations key": {"annotations": None},
    "box of 3 numbers": {"annotations": lambda a: a + [{"image_id": 9, "category_id": 3, "bbox": [1, 1, 5]}]},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_file_with_problems_is_reported_as_the_reader_reports_it(tmp_path, case):
    changes = dict(BAD[case])
    if changes.get("annotations", 1) is None:
        path = coco_file(tmp_path)
        data = json.loads(path.read_text())
        del data["annotations"]
        path.write_text(json.dumps(data))
    else:
        path = coco_file(tmp_path, **changes)
    _, expected = scan_coco(path, check_images=False)
    _, found = scan_coco_index(path, check_images=False)
    assert found == expected and any(p.severity == "error" for p in found)
    with pytest.raises(DatasetError) as reader:
        read_coco(path, check_images=False)
    with pytest.raises(DatasetError) as fast:
        build_coco_index(path, check_images=False)
    assert str(fast.value) == str(reader.value)


@pytest.mark.parametrize("change", ["string ids", "background", "clipped box"])
def test_files_the_fast_pass_cannot_vouch_for_still_give_the_readers_result(tmp_path, change):
    options = {"check_images": False}
    if change == "string ids":
        path = coco_file(
            tmp_path,
            images=lambda i: [dict(e, id=f"im{e['id']}") for e in i],
            annotations=lambda a: [dict(e, image_id=f"im{e['image_id']}") for e in a],
        )
    elif change == "background":
        path = coco_file(tmp_path, categories=lambda c: c + [{"id": 0, "name": "background"}])
    else:
        path = coco_file(
            tmp_path, annotations=lambda a: a + [{"image_id": 9, "category_id": 3, "bbox": [45, 0, 6, 10]}]
        )
        options.update(box_policy="clip", clip_tolerance=2.0)
    expected, expected_problems = scan_coco(path, **options)
    index, problems = scan_coco_index(path, **options)
    assert problems == expected_problems
    assert_same_dataset(index.dataset(), expected)


def test_image_headers_are_checked_as_the_reader_checks_them(tmp_path):
    path = coco_file(tmp_path)
    for name, size in (("a.png", (64, 48)), ("abs/b.png", (32, 40)), ("sub/c.png", (50, 51))):  # c: wrong size
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(tmp_path / name)
    _, expected = scan_coco(path)
    _, found = scan_coco_index(path)
    assert found == expected and "annotation says the image is 50x50" in found[0].message


def test_saved_index_is_memory_mapped_and_equal(tmp_path):
    index = build_coco_index(coco_file(tmp_path), check_images=False)
    folder = index.save(tmp_path / "index")
    loaded = PoolIndex.load(folder)
    assert isinstance(loaded.boxes, np.memmap) and isinstance(loaded.labels, np.memmap)
    assert_same_dataset(loaded.dataset(), index.dataset())
    records = loaded.dataset().records
    assert isinstance(records, RecordView) and len(records) == 3
    assert records[-1].image_id == "9" and [r.image_id for r in records[1:]] == ["5", "9"]
    with pytest.raises(IndexError, match="record 3 out of range for a pool of 3 images"):
        records[3]
    old = records[2]  # people's labels replace a record (here: the image that had no box)
    labelled = ImageRecord(old.image_id, old.file_name, old.width, old.height, [[1, 1, 9, 9]], [2])
    records[-1] = labelled
    assert records[2] is labelled and [r.num_boxes for r in records] == [2, 1, 1]
    with pytest.raises(TypeError, match="cannot be deleted"):
        del records[0]


def test_string_column_round_trips_non_ascii_and_empty_strings():
    strings = ["a", "", "café/ß.png", "日本.jpg", "z"]
    column = StringColumn.from_strings(strings)
    assert list(column) == strings == column.to_list() and column[-1] == "z" and column[1:3] == strings[1:3]


class Builds:
    def __init__(self):
        self.count = 0

    def __call__(self, path, **options):
        self.count += 1
        return scan_coco_index(path, **options)


def test_cached_index_is_reused_and_rebuilt_when_stale_or_damaged(tmp_path):
    path = coco_file(tmp_path)
    cache, build = tmp_path / "cache", Builds()
    first = cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False)
    again = cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False)
    assert build.count == 1
    assert_same_dataset(again.dataset(), first.dataset())
    (folder,) = cache.iterdir()

    stat = path.stat()  # the source changed: same size, newer time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False)
    assert build.count == 2

    (folder,) = [
        f
        for f in cache.iterdir()
        if (f / "meta.json").exists()
        and json.loads((f / "meta.json").read_text())["key"]["mtime_ns"] == path.stat().st_mtime_ns
    ]
    boxes = folder / "boxes.npy"
    raw = bytearray(boxes.read_bytes())
    raw[-1] ^= 0xFF  # same size, one flipped bit in the data
    boxes.write_bytes(bytes(raw))
    with pytest.raises(StaleIndex, match="boxes.npy: missing, truncated or changed"):
        PoolIndex.load(folder)
    rebuilt = cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False)
    assert build.count == 3
    assert_same_dataset(rebuilt.dataset(), first.dataset())

    (folder / "meta.json").write_text("{not json")
    cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False)
    assert build.count == 4

    cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False, box_policy="clip")
    assert build.count == 5  # other options: another index


def test_a_dataset_with_warnings_is_not_cached_and_errors_raise(tmp_path):
    path = coco_file(tmp_path, annotations=lambda a: a + [{"image_id": 9, "category_id": 3, "bbox": [45, 0, 6, 10]}])
    cache, build = tmp_path / "cache", Builds()
    for _ in range(2):
        with pytest.warns(UserWarning, match="clipped"):
            index = cached_index(
                "coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False, box_policy="clip"
            )
    assert build.count == 2 and not cache.exists()
    assert index.boxes[index.box_start[2]].tolist() == [45, 0, 50, 10]
    with pytest.raises(DatasetError, match="extends 1 px beyond the right edge"):
        cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False)
    assert not cache.exists()


def test_the_cache_is_written_only_when_asked_or_deferred(tmp_path):
    path = coco_file(tmp_path)
    cache, build = tmp_path / "cache", Builds()
    cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False, save=False)
    assert not cache.exists()
    deferred: list = []
    index = cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False, save=deferred)
    assert not cache.exists() and len(deferred) == 1
    deferred[0]()
    again = cached_index("coco", path, cache_dir=cache, scan=build, what="COCO file", check_images=False)
    assert build.count == 2  # the deferred save wrote the index the third call loaded
    assert_same_dataset(again.dataset(), index.dataset())


def test_record_view_answers_whole_column_questions_as_the_records_do(tmp_path):
    """subset, image_ids, box_counts, class_counts and the split identities over the columns equal those of a
    list of the same records, with an image without boxes, replaced records and a subset of a subset."""
    index = build_coco_index(coco_file(tmp_path), check_images=False)
    view, plain = (
        index.dataset(),
        DetectionDataset(list(index.dataset().records), index.class_names, index.category_ids),
    )
    replacement = replace(plain.records[2], boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))
    for data in (view, plain):
        data.records[2] = replacement
    for positions in ([2, 0], [1, 1, 2], [], [-1]):
        a, b = view.subset(positions), plain.subset(positions)
        assert isinstance(a.records, RecordView)
        assert_same_records(list(a.records), list(b.records))
        assert a.image_ids() == b.image_ids() and a.box_counts().tolist() == b.box_counts().tolist()
        assert a.class_counts().tolist() == b.class_counts().tolist() and a.num_boxes() == b.num_boxes()
        again_a, again_b = a.subset(list(range(len(a)))[::-1]), b.subset(list(range(len(b)))[::-1])
        assert_same_records(list(again_a.records), list(again_b.records))
    assert view.box_counts()[2] == 0 and view.class_counts().tolist() == plain.class_counts().tolist()
    with pytest.raises(IndexError, match="out of range for 3 records"):
        view.subset([3])


def test_splits_sharing_an_image_are_refused_over_a_pool_index(tmp_path):
    from activedet.data.records import check_disjoint

    path = coco_file(tmp_path)
    pool = build_coco_index(path, check_images=False).dataset()
    other = make_toy_dataset(tmp_path / "other", n_images=2)
    check_disjoint(pool, other)
    shared = replace(other.records[0], file_name=tmp_path / "sub" / "c.png")
    with pytest.raises(ValueError, match=r"the pool \(train\) and test splits share 1 image\(s\), e\.g\. .*sub/c\.png"):
        check_disjoint(pool, DetectionDataset([shared, other.records[1]], other.class_names))
    (tmp_path / "sub").mkdir(exist_ok=True)
    (tmp_path / "sub" / "c.png").write_bytes(b"")
    (tmp_path / "link.png").symlink_to(tmp_path / "sub" / "c.png")  # a test file linking to a pool file
    linked = replace(other.records[0], file_name=tmp_path / "link.png")
    with pytest.raises(ValueError, match=r"share 1 image\(s\)"):
        check_disjoint(pool, DetectionDataset([linked], other.class_names))


def test_synthetic_pool_is_valid_coco_and_bench_scale_prints_its_table(tmp_path, capsys, monkeypatch):
    from activedet.bench_scale import write_synthetic_coco
    from activedet.cli import main

    boxes = write_synthetic_coco(tmp_path / "pool.json", 250, boxes_per_image=3.0, seed=1)
    expected = read_coco(tmp_path / "pool.json", check_images=False)  # the detailed reader accepts every entry
    assert len(expected) == 250 and expected.num_boxes() == boxes > 500
    fast_only(monkeypatch)
    assert_same_dataset(build_coco_index(tmp_path / "pool.json", check_images=False).dataset(), expected)
    monkeypatch.undo()

    assert main(["bench-scale", "--images", "300", "--out", str(tmp_path / "bench")]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    steps = [
        "pycocotools COCO()",
        "index build (first read)",
        "cached index (later read)",
        "one cycle (stand-in model)",
        "resume (finished run)",
        "status (later command)",
    ]
    assert [line.split(" | ")[1] for line in table[1:]] == steps
    assert [line.split(" | ")[0] for line in table[1:]] == ["| 300"] * 6
    run = RunDir(tmp_path / "bench" / "pool-300" / "run")
    assert run.cache.is_dir() and run.cycle(1).metrics.is_file()
    picks = json.loads(run.cycle(0).selection.read_text())["picks"]
    assert len(picks) == 3 and len(Ledger.load(run.ledger).labelled()) == 6  # 1% initial + 1% per cycle
    scores = np.load(run.cycle(0).scores)
    assert len(scores["pool_indices"]) == 297 and np.isfinite(scores["pool_scores"]).all()
    with pytest.raises(SystemExit):
        main(["bench-scale", "--images", "0"])
    assert "expected image counts >= 1 separated by commas" in capsys.readouterr().err
