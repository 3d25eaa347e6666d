"""Tests of the synthetic digit-scene generator (``activedet.data.synth``) on the ``tiny`` size."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import activedet.data.synth as synth
from activedet.data.coco import read_coco
from activedet.data.synth import SYNTH_CLASSES, SYNTH_SIZES, SynthSize, _class_prior, generate_dataset
from activedet.data.voc import read_voc

SPLITS = ("train", "val", "test")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate_dataset("tiny", tmp_path_factory.mktemp("synth") / "tiny", seed=0)


@pytest.fixture(scope="module")
def manifest(tiny) -> dict:
    return json.loads((tiny / "manifest.json").read_text())


@pytest.fixture(scope="module")
def datasets(tiny) -> dict:
    return {split: read_coco(tiny / "annotations" / f"{split}.json", image_root=tiny) for split in SPLITS}


def test_layout(tiny):
    size = SYNTH_SIZES["tiny"]
    for split, n in (("train", size.num_train), ("val", size.num_val), ("test", size.num_test)):
        names = sorted(p.name for p in (tiny / "images" / split).iterdir())
        assert names == [f"{split}_{i:05d}.png" for i in range(n)]
        with Image.open(tiny / "images" / split / names[0]) as image:
            assert (image.mode, image.size) == ("RGB", (size.image_size, size.image_size))
    assert (tiny / "voc" / "ImageSets" / "Main" / "train.txt").is_file()
    assert [p.name for p in tiny.parent.iterdir()] == ["tiny"]  # no temporary directory left next to it


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    (tmp_path / "again").mkdir()  # an existing empty directory is not an error
    again = generate_dataset("tiny", tmp_path / "again", seed=0)
    other = generate_dataset("tiny", tmp_path / "other", seed=1)
    reference = _tree(tiny)
    assert _tree(again) == reference
    differing = _tree(other)
    assert differing.keys() == reference.keys()
    assert differing["images/train/train_00000.png"] != reference["images/train/train_00000.png"]
    assert differing["annotations/train.json"] != reference["annotations/train.json"]


def test_coco_reads_back_with_manifest_counts_and_valid_boxes(datasets, manifest):
    size = SYNTH_SIZES["tiny"]
    for split, dataset in datasets.items():
        summary = manifest["splits"][split]
        assert dataset.class_names == list(SYNTH_CLASSES)
        assert (len(dataset), dataset.num_boxes()) == (summary["images"], summary["boxes"])
        assert dataset.class_counts().tolist() == list(summary["class_counts"].values())
        for record in dataset:
            assert (record.width, record.height) == (size.image_size, size.image_size)
            x1, y1, x2, y2 = record.boxes.T
            assert np.all((0 <= x1) & (x1 < x2) & (x2 <= record.width))
            assert np.all((0 <= y1) & (y1 < y2) & (y2 <= record.height))
            assert np.all((1 <= record.labels) & (record.labels <= len(SYNTH_CLASSES)))


def test_voc_matches_coco(tiny, datasets):
    voc = read_voc(tiny / "voc", sets=[("2007", "test")], class_names=SYNTH_CLASSES)
    coco = datasets["test"]
    assert len(voc) == len(coco)
    for a, b in zip(voc, coco):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_scene_properties(datasets, manifest):
    boxes = np.concatenate([r.boxes for d in datasets.values() for r in d])
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert sides.min() <= 14 and sides.max() >= 28  # small objects next to large ones
    assert sum(r.num_boxes == 0 for r in datasets["train"]) >= 1  # empty images in the pool
    assert manifest["splits"]["train"]["empty_images"] >= 1
    counts = np.sort(datasets["train"].class_counts()[datasets["train"].class_counts() > 0])
    assert counts[-1] >= 5 * counts[0]  # long tail: the head class is far more frequent than a tail class
    prior = list(manifest["splits"]["train"]["class_prior"].values())
    assert prior[0] / prior[-1] > 10 and abs(sum(prior) - 1) < 1e-3
    assert sum(s["occluded_boxes"] for s in manifest["splits"].values()) >= 1
    cap = manifest["parameters"]["max_occlusion"]
    assert all(s["max_occluded_fraction"] <= cap for s in manifest["splits"].values())


def test_near_duplicate_groups(tiny, datasets, manifest):
    groups = manifest["splits"]["train"]["near_duplicate_groups"]
    assert len(groups) >= 1 and all(len(g) >= 3 for g in groups)
    assert manifest["splits"]["val"]["near_duplicate_groups"] == []
    members = [i for g in groups for i in g]
    assert len(members) == len(set(members))
    by_file = {r.file_name.stem: r for r in datasets["train"]}
    shift = SYNTH_SIZES["tiny"].max_shift
    for group in groups:
        base = by_file[group[0]]
        for image_id in group[1:]:
            other = by_file[image_id]
            np.testing.assert_array_equal(other.labels, base.labels)
            offsets = other.boxes - base.boxes  # one translation for every box of the image
            assert np.all(offsets == offsets[:1]) and np.all(np.abs(offsets) <= shift)
    pixels = {i: np.asarray(Image.open(tiny / "images" / "train" / f"{i}.png"), np.float32) for i in by_file}
    first, second = groups[0][:2]
    assert not np.array_equal(pixels[first], pixels[second])
    outsider = next(i for i in by_file if i not in members)
    assert _centre_diff(pixels[first], pixels[second]) < _centre_diff(pixels[first], pixels[outsider])


def _centre_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a[8:-8, 8:-8] - b[8:-8, 8:-8]).mean())


def test_test_split_uses_other_glyphs_and_a_flatter_prior(manifest):
    source = manifest["glyph_source"]
    assert source["train_val_samples"][1] <= source["test_samples"][0]
    train, test = (list(manifest["splits"][s]["class_prior"].values()) for s in ("train", "test"))
    assert test[-1] > train[-1]


def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(
        ValueError, match=r"must be one of \['bench', 'bench-balanced', 'quickstart', 'tiny'\]. Got 'huge' instead"
    ):
        generate_dataset("huge", tmp_path / "out")
    with pytest.raises(ValueError, match="'seed' parameter of generate_dataset must be a non-negative int"):
        generate_dataset("tiny", tmp_path / "out", seed=-1)
    assert not (tmp_path / "out").exists()


def test_existing_out_dir_needs_overwrite(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError, match=r"pass overwrite=True \(CLI: --overwrite\)"):
        generate_dataset("tiny", out)
    assert (out / "stale.txt").read_text() == "old"
    generate_dataset("tiny", out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "write_voc", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_dataset("tiny", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(SYNTH_SIZES))
def test_size_parameters_are_consistent(name):
    size = SYNTH_SIZES[name]
    assert abs(sum(size.scale_probs) - 1) < 1e-9 and len(size.scale_probs) == len(size.scales)
    assert max(hi for _, _, hi in size.scales) * 1.2 < size.image_size - 2 * size.max_shift
    assert size.dup_group_size[0] >= 2


def test_the_balanced_bench_differs_from_bench_only_in_its_even_class_prior():
    bench, balanced = SYNTH_SIZES["bench"], SYNTH_SIZES["bench-balanced"]
    assert dataclasses.replace(balanced, zipf_exponent=1.2, test_zipf_exponent=0.5) == bench
    for split in ("train", "val", "test"):
        assert np.allclose(_class_prior(balanced, split), 0.1)
    assert _class_prior(bench, "train")[0] / _class_prior(bench, "train")[9] > 15


def test_every_size_parameter_is_documented():
    for f in dataclasses.fields(SynthSize):
        assert f.name in SynthSize.__doc__, f"SynthSize.{f.name} is not documented"
