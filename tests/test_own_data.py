"""A user's own dataset, first try: grouped validation with the exact fix, every VOC image set checked, the file's
own values in messages, one line per dataset for clipped boxes, early argument checks, COCO's background category,
config errors that name the file and the key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import warnings

import pytest
import yaml
from PIL import Image

from activedet.cli import main
from activedet.config import ConfigError, load_config
from activedet.data.coco import read_coco
from activedet.data.io import validate_path
from activedet.data.records import DatasetError
from activedet.data.validate import DatasetWarning
from activedet.data.voc import read_voc
from activedet.workflows import run_from_config

NAMES = ("Tree", "Dead", "Alive")


def write_voc_folder(root, n_images=400, boxes_per_image=4, sets=None):
    """``root/VOC2007`` with ``n_images`` 32x32 images and ``boxes_per_image`` Tree/Dead/Alive boxes each; ``sets``
    maps an image set name to the image indices it lists (default: trainval 0..299, test the rest)."""
    voc = root / "VOC2007"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (32, 32), (90, 120, 150))
    stems = [f"img{i:04d}" for i in range(n_images)]
    for i, stem in enumerate(stems):
        image.save(voc / "JPEGImages" / f"{stem}.png")
        objects = "".join(
            f"<object><name>{NAMES[(i + k) % 3]}</name><bndbox><xmin>{1 + k}</xmin><ymin>{1 + k}</ymin>"
            f"<xmax>{20 + k}</xmax><ymax>{20 + k}</ymax></bndbox></object>"
            for k in range(boxes_per_image)
        )
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename><size><width>32</width><height>32</height></size>"
            f"{objects}</annotation>"
        )
    split = n_images * 3 // 4
    sets = sets if sets is not None else {"trainval": range(split), "test": range(split, n_images)}
    for name, indices in sets.items():
        (voc / "ImageSets/Main" / f"{name}.txt").write_text("".join(f"{stems[i]}\n" for i in indices))
    return voc


# ---------------------------------------------------------------------------------------------------- validate


def test_validate_groups_1600_unknown_class_boxes_in_a_few_lines_with_the_fix(tmp_path, capsys):
    write_voc_folder(tmp_path)
    (tmp_path / "VOC2007/ImageSets/Main/Tree_trainval.txt").write_text("img0000  1\n")
    assert main(["validate", "voc", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 20, "\n".join(lines)
    text = "\n".join(lines)
    assert re.search(
        r"unknown class name: 1600 in 400 files; found 'Tree' \(\d+\), 'Dead' \(\d+\), 'Alive' \(\d+\)", text
    )
    assert "... and 1597 more (--verbose lists every one)" in text
    assert 'config key class_names: ["Alive", "Dead", "Tree"]' in text
    assert f"activedet validate voc {tmp_path} --class-names Alive Dead Tree" in text
    assert "skipped 1 per-class list (VOC2007/ImageSets/Main/Tree_trainval.txt)" in text
    assert (
        lines[-1] == f"1600 errors, 0 warnings in {tmp_path}, image sets 2007/test (100 images), "
        "2007/trainval (300 images)"
    )
    assert main(["validate", "voc", str(tmp_path), "--class-names", "Alive", "Dead", "Tree"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 errors, 0 warnings")
    assert main(["validate", "voc", str(tmp_path), "--verbose"]) == 1
    assert len(capsys.readouterr().out.splitlines()) > 1600


def test_validate_voc_checks_every_image_set_each_on_its_own(tmp_path, capsys):
    voc = write_voc_folder(
        tmp_path,
        n_images=6,
        boxes_per_image=1,
        sets={"train": [0, 1], "val": [2, 3], "trainval": [0, 1, 2, 3], "test": [4, 5]},
    )
    xml = voc / "Annotations/img0005.xml"  # an error only the test set sees
    xml.write_text(xml.read_text().replace("<xmax>20</xmax>", "<xmax>40</xmax>"))
    assert main(["validate", "voc", str(tmp_path), "--class-names", *NAMES]) == 1
    out = capsys.readouterr().out
    assert "img0005.xml: object[1]/bndbox: box xmin=1, ymin=1, xmax=40, ymax=20" in out
    assert "listed again" not in out  # train and trainval overlap: fine when each set is checked on its own
    assert out.splitlines()[-1] == (
        f"1 error, 0 warnings in {tmp_path}, image sets 2007/test (2 images), 2007/train "
        "(2 images), 2007/trainval (4 images), 2007/val (2 images)"
    )
    assert main(["validate", "voc", str(tmp_path), "--class-names", *NAMES, "--sets", "2007/train"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("image sets 2007/train (2 images)")


def test_validate_voc_without_image_sets_says_how_to_write_one(tmp_path, capsys):
    voc = write_voc_folder(tmp_path, n_images=2, boxes_per_image=1, sets={})
    assert main(["validate", "voc", str(voc)]) == 1
    out = capsys.readouterr().out
    assert "no image sets found" in out and "ls Annotations | sed 's/\\.xml$//' > ImageSets/Main/trainval.txt" in out


def test_box_messages_quote_the_file_and_put_the_pixels_beside(tmp_path):
    voc = write_voc_folder(tmp_path, n_images=1, boxes_per_image=1, sets={"trainval": [0]})
    xml = voc / "Annotations/img0000.xml"
    xml.write_text(
        xml.read_text()
        .replace(
            "<xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax>",
            "<xmin>0</xmin><ymin>42</ymin><xmax>32</xmax><ymax>104</ymax>",
        )
        .replace("<height>32</height>", "<height>104</height>")
    )
    with pytest.raises(
        DatasetError,
        match=re.escape(
            "img0000.xml: object[1]/bndbox: box xmin=0, ymin=42, xmax=32, ymax=104 (xyxy=(-1, 41, 32, 104) in 0-based "
            "pixels) extends 1 px beyond the left edge of the 32x104 image"
        ),
    ):
        read_voc(tmp_path, sets=[("2007", "trainval")], class_names=NAMES)


# ------------------------------------------------------------------------------------------------- clipped boxes


def clipped_coco(tmp_path, n_images=6):
    """A COCO file whose every box leaves its 32x32 image by 1 px (xmin -1)."""
    image = Image.new("RGB", (32, 32), (90, 120, 150))
    images, annotations = [], []
    for i in range(n_images):
        image.save(tmp_path / f"im{i}.png")
        images.append({"id": i + 1, "file_name": f"im{i}.png", "width": 32, "height": 32})
        annotations += [
            {"id": 3 * i + k + 1, "image_id": i + 1, "category_id": 1 + k % 2, "bbox": [-1, 4 + k, 12, 10]}
            for k in range(3)
        ]
    path = tmp_path / "clip.json"
    path.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "Tree"}, {"id": 2, "name": "Dead"}],
            }
        )
    )
    return path


def test_clipped_boxes_give_one_warning_line_per_dataset(tmp_path):
    path = clipped_coco(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_coco(path, box_policy="clip")
    assert len(caught) == 1 and issubclass(caught[0].category, DatasetWarning)
    message = str(caught[0].message)
    assert "\n" not in message and len(caught[0].message.problems) == 18
    assert re.fullmatch(
        r"COCO file .*clip\.json: box clipped to the image: 18 \(e\.g\. clip\.json: annotations\[0\]"
        r"\.bbox: clipped box bbox=\[-1, 4, 12, 10\] .*\) \(activedet validate --verbose lists every "
        r"one\)",
        message,
    )


def test_cli_shows_the_clip_summary_once_without_source_lines_and_quiet_silences_it(tmp_path, capsys):
    from conftest import untrained_checkpoint

    path = clipped_coco(tmp_path)
    cfg = {
        "train_data": str(path),
        "test_data": str(path),
        "box_policy": "clip",
        "detector": "fcos",
        "backbone": "tiny",
        "min_size": 32,
        "max_size": 32,
        "amp": False,
        "metrics": ["voc"],
        "device": "cpu",
        "out_dir": str(tmp_path / "out"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        config, checkpoint = untrained_checkpoint(cfg, tmp_path)
    capsys.readouterr()
    assert main(["eval", str(config), "--checkpoint", str(checkpoint)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert (
        len(err) == 1
        and err[0].startswith("activedet eval: warning: COCO file ")
        and "box clipped to the image: 18" in err[0]
    )
    assert main(["eval", str(config), "--checkpoint", str(checkpoint), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err.lower()
    assert main(["train", str(config), "--set", "epochs=1", "--set", "batch_size=6", "--no-eval"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert len(err) == 1 and err[0].startswith("activedet train: warning: COCO file ")


# ------------------------------------------------------------------------------------------------------- bench


@pytest.fixture
def tiny_config(tiny_data, tmp_path):
    cfg = {
        "train_data": str(tiny_data / "annotations/train.json"),
        "test_data": str(tiny_data / "annotations/test.json"),
        "image_root": str(tiny_data),
        "detector": "fcos",
        "backbone": "tiny",
        "min_size": 96,
        "max_size": 96,
        "epochs": 1,
        "amp": False,
        "metrics": ["voc"],
        "device": "cpu",
        "initial_labelled": 6,
        "budget": 4,
        "cycles": 1,
        "out_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "arguments, pattern",
    [
        (
            ["--strategies", "random", "entropyy"],
            "argument --strategies: unknown strategy 'entropyy' (did you mean "
            "'entropy'?); valid names: almdn, cald, class_balance, compose, coreset,",
        ),
        (
            ["--strategies", "random", "entropy:aggregation=summ"],
            "argument --strategies 'entropy:aggregation=summ': The 'aggregation' parameter of entropy must be one of",
        ),
        (
            ["--strategies", "random", "mc_dropout"],
            "argument --strategies 'mc_dropout': MC-dropout needs dropout in the detector's head",
        ),
        (["--strategies", "random", "--seeds", "0", "0"], "argument --seeds: seed 0 is listed twice"),
        (
            ["--strategies", "random", "--metric", "coco/AP"],
            "argument --metric: 'coco/AP' is a 'coco' metric, but the config",
        ),
    ],
)
def test_bench_rejects_bad_arguments_before_any_work(tiny_config, tmp_path, capsys, arguments, pattern):
    import activedet.bench  # noqa: F401  (imported before: the check itself is timed, not the imports)
    import activedet.strategies  # noqa: F401

    started = time.perf_counter()
    assert main(["bench", str(tiny_config), *arguments, "--out", str(tmp_path / "bench"), "--quiet"]) == 2
    assert time.perf_counter() - started < 1.0
    assert pattern in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


def test_bench_typo_fails_without_loading_the_methods(tiny_config, tmp_path):
    """A mistyped strategy name is refused from the method modules' source: torch is never imported."""
    script = (
        f"import sys; from activedet.cli import main; "
        f"rc = main(['bench', {str(tiny_config)!r}, '--strategies', 'random', 'entropyy', '--out', "
        f"{str(tmp_path / 'bench')!r}]); print('torch loaded:', 'torch' in sys.modules); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "argument --strategies: unknown strategy 'entropyy' (did you mean 'entropy'?)" in done.stderr
    assert "torch loaded: False" in done.stdout
    assert not (tmp_path / "bench").exists()


# ----------------------------------------------------------------------------------------- COCO background


def test_coco_background_category_is_not_a_class(tmp_path):
    path = clipped_coco(tmp_path, n_images=1)
    data = json.loads(path.read_text())
    data["annotations"] = [{**a, "bbox": [1, 4, 12, 10]} for a in data["annotations"]]
    data["categories"].insert(0, {"id": 0, "name": "background"})  # as kwcoco writes it
    path.write_text(json.dumps(data))
    with pytest.warns(
        DatasetWarning,
        match=r"clip\.json: categories\[0\]: category 0 'background' has no annotations "
        r"and is taken as the background \(label 0\), not as a class",
    ):
        dataset = read_coco(path)
    assert dataset.class_names == ["Tree", "Dead"] and dataset.category_ids == [1, 2]
    assert sorted({int(label) for r in dataset for label in r.labels}) == [1, 2]
    data["annotations"][0]["category_id"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(
        DatasetError,
        match=r"categories\[0\]: category 0 'background' is the background, but 1 "
        r"annotation\(s\) use it .* -> remove those annotations, or rename",
    ):
        read_coco(path)
    data["categories"][0]["name"] = "Stump"  # id 0 with a real name, used: an ordinary class (0-based ids)
    path.write_text(json.dumps(data))
    assert read_coco(path).class_names == ["Stump", "Tree", "Dead"]
    assert [p.severity for p in validate_path("coco", path)] == []


# ------------------------------------------------------------------------------------------------ config errors


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (
            {"budget": 30},
            r"cfg\.yaml: key 'budget': The budget \(30 -> 30 images per cycle\) is larger than the "
            r"unlabelled pool",
        ),
        (
            {"initial_labelled": 100},
            r"cfg\.yaml: key 'initial_labelled': The initial labelled set \(100 -> 100 images\) "
            r"must hold between 1 and the pool's 24 images",
        ),
        ({"train_data": "nope/train.json"}, r"cfg\.yaml: key 'train_data': .*nope/train\.json does not exist"),
        ({"test_data": None}, r"cfg\.yaml: key 'test_data': an active-learning run needs a non-empty test split"),
        ({"backbone": "resnet9"}, r"cfg\.yaml: key 'backbone': The 'backbone' parameter of .* must be one of"),
        ({"detector_options": {"anchorz": 3}}, r"cfg\.yaml: key 'detector_options\.anchorz': .*'anchorz'"),
        ({"image_root": "/nonexistent"}, r"cfg\.yaml: key 'train_data' \(.*train\.json\) has \d+ problem"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tiny_config, overrides, pattern):
    cfg = {**yaml.safe_load(tiny_config.read_text()), **overrides}
    tiny_config.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=pattern):
        run_from_config(load_config(tiny_config), progress=False)
    assert not (tiny_config.parent / "run").exists()


def test_a_missing_split_file_is_a_config_error(tiny_config):
    cfg = load_config(tiny_config, ["val_data=missing.json"])
    with pytest.raises(ConfigError, match=r"cfg\.yaml: key 'val_data': .*missing\.json does not exist"):
        run_from_config(cfg, progress=False)


# ---------------------------------------------------------------------------------------------------- docs


def test_config_reference_lists_every_backbone_and_the_package_weights():
    from pathlib import Path

    from activedet.models import SSD_BACKBONES
    from activedet.models.backbones import FPN_BACKBONES
    from activedet.models.classifier import CLASSIFIER_BACKBONES

    readme = (Path(__file__).parent.parent / "docs" / "config.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `backbone` |"))
    missing = [name for name in (*FPN_BACKBONES, *SSD_BACKBONES, *CLASSIFIER_BACKBONES) if f"`{name}`" not in row]
    assert not missing, f"the backbone row of the config reference lacks {missing}"
    row = next(line for line in readme.splitlines() if line.startswith("| `weights_backbone` |"))
    assert "`package`" in row and "efficientnet_lite0" in row


def test_the_own_data_guide_shows_what_validate_prints_now(tmp_path, capsys, monkeypatch):
    """The guide's toy data, made by the script it shows, gives the validate output it pastes."""
    import subprocess
    import sys
    from pathlib import Path

    guide = (Path(__file__).parent.parent / "docs" / "own-data.md").read_text()
    script = guide.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "make_trees.py").write_text(script)
    subprocess.run([sys.executable, "make_trees.py", "."], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    stems = sorted(p.stem for p in (tmp_path / "trees/Annotations").glob("*.xml"))
    (tmp_path / "trees/ImageSets/Main").mkdir(parents=True)
    (tmp_path / "trees/ImageSets/Main/trainval.txt").write_text("".join(f"{s}\n" for s in stems[:30]))
    (tmp_path / "trees/ImageSets/Main/test.txt").write_text("".join(f"{s}\n" for s in stems[-10:]))
    for arguments in (
        ["validate", "voc", "trees"],
        ["validate", "voc", "trees", "--class-names", "Alive", "Dead", "Tree"],
    ):
        main(arguments)
        shown = f"$ activedet {' '.join(arguments)}\n{capsys.readouterr().out}```"
        assert shown in guide, shown


def test_a_zero_based_voc_box_says_why_it_is_outside(tmp_path):
    voc = write_voc_folder(tmp_path, n_images=1, boxes_per_image=1, sets={"trainval": [0]})
    xml = voc / "Annotations/img0000.xml"
    xml.write_text(xml.read_text().replace("<xmin>1</xmin>", "<xmin>0</xmin>"))
    with pytest.raises(
        DatasetError,
        match=re.escape(
            "extends 1 px beyond the left edge of the 32x32 image -> VOC pixel coordinates start at 1, so xmin=0 or "
            "ymin=0 lies 1 px outside the image (tools that write 0-based coordinates do this): fix the coordinates, "
            "or pass box_policy='clip'"
        ),
    ):
        read_voc(tmp_path, sets=[("2007", "trainval")], class_names=NAMES)
