"""The near-duplicate filter on picks (activedet.strategies.near_duplicates) and the loop's `near_duplicates` key."""

from __future__ import annotations

import dataclasses
import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from test_loop import write_config

from activedet.config import ConfigError, load_config
from activedet.data.torch_dataset import load_image
from activedet.report.runs import label_extras
from activedet.strategies.near_duplicates import NearDuplicateFilter, thumbnail
from activedet.workflows import run_from_config


def scene(rng: np.random.Generator, side: int = 128) -> np.ndarray:
    """``float32[3, side + 16, side + 16]``: a smooth random colour field with a few bright squares (a canvas to crop
    scenes from)."""
    coarse = rng.random((3, 9, 9)).astype(np.float32)
    field = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], size=side + 16, mode="bicubic")[0].numpy()
    for _ in range(4):
        y, x, s = *rng.integers(0, side, 2), int(rng.integers(8, 30))
        field[:, y : y + s, x : x + s] = rng.random((3, 1, 1))
    return np.clip(field, 0, 1)


def shot(canvas: np.ndarray, dy: int, dx: int, rng: np.random.Generator | None = None, side: int = 128) -> np.ndarray:
    """A ``side`` crop of ``canvas`` shifted by ``(dy, dx)`` from its centre; with ``rng`` re-exposed (gain, offset)
    and with fresh noise."""
    image = canvas[:, 8 + dy : 8 + dy + side, 8 + dx : 8 + dx + side]
    if rng is not None:
        image = image * rng.uniform(0.85, 1.15) + rng.uniform(-0.06, 0.06) + rng.normal(0, 0.015, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def test_thumbnail_is_a_32_pixel_grey_box_average_of_any_image():
    image = np.zeros((3, 64, 96), np.float32)
    image[0, :32] = 0.9  # red in the top half: grey 0.3 there
    thumb = thumbnail(image)
    assert thumb.shape == (32, 32) and thumb.dtype == np.float32
    np.testing.assert_allclose(thumb[:16], 0.3, atol=1e-6)
    np.testing.assert_allclose(thumb[16:], 0.0, atol=1e-6)
    assert thumbnail(np.ones((20, 12), np.float32)).shape == (32, 32)  # smaller than 32: stretched
    with pytest.raises(ValueError, match=r"expected an image \[C, H, W\] or \[H, W\]; got shape \(2, 3, 4, 5\)"):
        thumbnail(np.zeros((2, 3, 4, 5)))


def test_shifted_re_exposed_copies_are_skipped_and_other_scenes_kept():
    rng = np.random.default_rng(0)
    canvases = [scene(rng) for _ in range(6)]
    images = {
        0: shot(canvases[0], 0, 0),  # labelled
        1: shot(canvases[1], 0, 0),
        2: shot(canvases[0], 4, -4, rng),  # a copy of the labelled image 0
        3: shot(canvases[1], -3, 2, rng),  # a copy of pick 1
        4: shot(canvases[2], 0, 0),
        5: shot(canvases[3], 2, 2, rng),
        6: shot(canvases[3], -4, 0, rng),  # a copy of pick 5 (both shifted)
        7: shot(canvases[4], 0, 0),
    }
    looked = []

    def thumbnail_of(i: int) -> np.ndarray:
        looked.append(i)
        return thumbnail(images[i])

    distinct = NearDuplicateFilter(thumbnail_of, [0], 0.85)
    assert list(distinct([1, 2, 3, 4, 5, 6, 7])) == [1, 4, 5, 7]
    assert [(pick, owner) for pick, owner, _ in distinct.skipped] == [(2, 0), (3, 1), (6, 5)]
    assert all(0.85 <= c <= 1 for _, _, c in distinct.skipped)
    # a different scene is far below the threshold: the filter does not skip by chance
    other = NearDuplicateFilter(lambda i: thumbnail(images[i]), [0], 0.5)
    assert list(other([1, 4, 7])) == [1, 4, 7]
    assert looked == [0, 1, 2, 3, 4, 5, 6, 7]  # each image read once


def test_the_filter_is_lazy_and_keeps_the_order_when_nothing_repeats():
    rng = np.random.default_rng(1)
    images = [shot(scene(rng), 0, 0) for _ in range(5)]
    looked = []
    distinct = NearDuplicateFilter(lambda i: looked.append(i) or thumbnail(images[i]), [], 0.85)
    assert list(islice(distinct(iter([3, 1, 4, 0, 2])), 2)) == [3, 1]
    assert looked == [3, 1]  # a budget that stops after two picks reads two images
    flat = NearDuplicateFilter(lambda i: np.full((32, 32), 0.5, np.float32), [7], 0.85)
    assert list(flat([8, 9])) == [8, 9]  # flat images correlate with nothing, so they are never duplicates


@pytest.mark.parametrize("threshold", [0.0, 1.5, -0.2])
def test_a_threshold_outside_0_1_is_refused(threshold):
    with pytest.raises(
        ValueError, match=rf"near_duplicates: the threshold must be a correlation in \(0, 1\]; got {threshold}"
    ):
        NearDuplicateFilter(lambda i: np.zeros((32, 32), np.float32), [], threshold)


def test_the_config_key_is_checked(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="near_duplicates"):
        load_config(write_config(tmp_path, tiny_data, near_duplicates=1.5))
    assert load_config(write_config(tmp_path, tiny_data)).near_duplicates is None


def test_the_report_label_shows_the_filter():
    assert label_extras({"near_duplicates": 0.85}) == " +near_duplicates[0.85]"
    assert label_extras({"near_duplicates": None, "budget_unit": "boxes", "budget": 9}) == " +budget[9 boxes]"


@pytest.fixture(scope="module")
def dup_data(tmp_path_factory) -> Path:
    """The ``tiny`` pool with half its images in near-duplicate groups, copies shifted by up to 2 px of 96 (two
    copies of a scene lie at most 4 px apart: within the filter's reach of 1/16 of the image, 6 px)."""
    from activedet.data import synth

    size = dataclasses.replace(synth.SYNTH_SIZES["tiny"], dup_fraction=0.5, max_shift=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(synth.SYNTH_SIZES, "tiny", size)
        return synth.generate_dataset("tiny", tmp_path_factory.mktemp("dups") / "tiny", seed=0)


def groups_of(data: Path) -> dict[str, int]:
    manifest = json.loads((data / "manifest.json").read_text())
    return {m: g for g, members in enumerate(manifest["splits"]["train"]["near_duplicate_groups"]) for m in members}


def test_every_generated_copy_is_found_and_no_other_image(dup_data):
    images = json.loads((dup_data / "annotations/train.json").read_text())["images"]
    group = groups_of(dup_data)
    names = [Path(im["file_name"]).stem for im in images]
    assert len(set(group.values())) >= 2  # the tiny pool has near-duplicate groups to find
    distinct = NearDuplicateFilter(lambda i: thumbnail(load_image(dup_data / images[i]["file_name"])), [], 0.85)
    kept = list(distinct(range(len(images))))
    # one image per group and every image outside the groups (copies are shifted at most 2 px of 96 here)
    assert sorted({group.get(names[i], -1 - i) for i in kept}) == sorted(
        {group.get(n, -1 - i) for i, n in enumerate(names)}
    )
    assert all(
        group.get(names[p]) is not None and group.get(names[p]) == group.get(names[o]) for p, o, _ in distinct.skipped
    )


def repeats(run: Path, names: list[str], group: dict[str, int], cycles: int) -> list[str]:
    """The picks of a run that show a scene already labelled or picked before them."""
    seen = {group[names[i]] for i in np.load(run / "X_L_0.npy") if names[i] in group}
    found = []
    for t in range(cycles):
        for pick in json.loads((run / "cycles" / str(t) / "selection.json").read_text())["picks"]:
            g = group.get(names[pick["index"]])
            if g is not None and g in seen:
                found.append(pick["image_id"])
            seen.add(g)
    return found


def test_a_run_skips_near_duplicates_and_still_spends_its_budget(dup_data, tmp_path):
    images = json.loads((dup_data / "annotations/train.json").read_text())["images"]
    names, group = [Path(im["file_name"]).stem for im in images], groups_of(dup_data)
    settings = {"strategy": "random", "budget": 3, "cycles": 2, "epochs": 1}  # random needs no trained model
    plain = write_config(tmp_path / "plain", dup_data, **settings)
    run_from_config(load_config(plain), progress=False)
    assert repeats(tmp_path / "plain/run", names, group, 2)  # without the filter the picks repeat a scene
    assert "near_duplicates_skipped" not in json.loads((tmp_path / "plain/run/cycles/0/selection.json").read_text())

    config = write_config(tmp_path, dup_data, near_duplicates=0.85, **settings)
    ledger = run_from_config(load_config(config), progress=False)
    assert len(ledger.labelled()) == 6 + 2 * 3  # the budget is spent on other images
    assert repeats(tmp_path / "run", names, group, 2) == []
    skipped = [
        entry
        for t in range(2)
        for entry in json.loads((tmp_path / "run/cycles" / str(t) / "selection.json").read_text())[
            "near_duplicates_skipped"
        ]
    ]
    assert skipped and all(entry["correlation"] >= 0.85 for entry in skipped)
    name_of = {str(im["id"]): Path(im["file_name"]).stem for im in images}
    for entry in skipped:  # each names the image it nearly duplicates, one of its own group
        assert group[name_of[entry["image_id"]]] == group[name_of[entry["duplicate_of"]]]


def test_a_pool_out_of_distinct_images_gives_a_smaller_batch_and_says_why(dup_data, tmp_path):
    config = write_config(tmp_path, dup_data, strategy="random", budget=17, cycles=1, epochs=1, near_duplicates=0.85)
    with pytest.warns(
        UserWarning,
        match=r"selected \d+ of the 17 images .*; \d+ picks skipped as near-duplicates of labelled images or "
        r"earlier picks \(near_duplicates\)\); the cycle",
    ):
        ledger = run_from_config(load_config(config), progress=False)
    assert 6 < len(ledger.labelled()) < 6 + 17


def test_a_box_budget_is_spent_on_the_picks_the_filter_keeps(dup_data, tmp_path):
    images = json.loads((dup_data / "annotations/train.json").read_text())["images"]
    names, group = [Path(im["file_name"]).stem for im in images], groups_of(dup_data)
    config = write_config(
        tmp_path, dup_data, strategy="random", budget=25, budget_unit="boxes", cycles=1, epochs=1, near_duplicates=0.85
    )
    run_from_config(load_config(config), progress=False)
    selection = json.loads((tmp_path / "run/cycles/0/selection.json").read_text())
    boxes = [pick["boxes"] for pick in selection["picks"]]
    assert sum(boxes) >= 25 and sum(boxes[:-1]) < 25  # skipped picks spend nothing; the crossing pick is the last
    assert selection["near_duplicates_skipped"] and repeats(tmp_path / "run", names, group, 1) == []
