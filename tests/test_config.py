"""The flat config file: types, ranges, unknown keys with suggestions, relative paths, overrides."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from activedet.config import ConfigError, config_from_dict, config_keys, load_config

ROOT = Path(__file__).parent.parent


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_yaml_resolves_relative_paths_against_the_config_dir(tmp_path):
    path = write(tmp_path, "train_data: data/train.json\ntest_data: /abs/test.json\nepochs: 3\nlr: 1\n")
    cfg = load_config(path)
    assert cfg.train_data == str((tmp_path / "data/train.json").resolve())
    assert cfg.test_data == "/abs/test.json"
    assert cfg.epochs == 3 and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.train_options().epochs == 3


def test_json_is_accepted(tmp_path):
    path = write(tmp_path, json.dumps({"train_data": "t.json", "detector": "fcos"}), "cfg.json")
    assert load_config(path).detector == "fcos"


def test_unknown_key_suggests_the_closest(tmp_path):
    path = write(tmp_path, "train_data: t.json\nlearning_rat: 0.1\nepoch: 3\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: unknown key 'learning_rat'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"unknown key 'epoch'; did you mean 'epochs'\?"):
        config_from_dict({"train_data": "t", "epoch": 3})
    # a key given with --set is blamed on --set, not on the file
    with pytest.raises(ConfigError, match=r"^--set epoch=\.\.\.: unknown key 'epoch'; did you mean 'epochs'\?"):
        load_config(write(tmp_path, "train_data: t.json\n"), ["epoch=1"])


def test_wrong_type_names_key_expected_and_found():
    with pytest.raises(ConfigError, match=r"key 'epochs' must be of type int; found 'ten' \(str\)"):
        config_from_dict({"train_data": "t", "epochs": "ten"})
    with pytest.raises(ConfigError, match=r"key 'lr_steps' must be of type list\[int\]; found \[8, 'x'\]"):
        config_from_dict({"train_data": "t", "lr_steps": [8, "x"]})
    with pytest.raises(ConfigError, match=r"key 'amp' must be of type bool; found 1"):
        config_from_dict({"train_data": "t", "amp": 1})


@pytest.mark.parametrize(
    "key, value, pattern",
    [
        ("epochs", 0, r"key 'epochs' must be an int >= 1; found 0"),
        ("lr", -0.1, r"key 'lr' must be a float > 0; found -0.1"),
        ("optimizer", "adam", r"key 'optimizer' must be one of \['sgd', 'adamw'\]; found 'adam'"),
        ("hflip_prob", 1.5, r"key 'hflip_prob' must be a float in \[0, 1\]"),
        (
            "data_format",
            "kitti",
            r"key 'data_format' must be one of \['coco', 'voc', 'yolo', 'imagefolder', 'cifar'\]; found 'kitti'",
        ),
        ("metrics", ["voc", "map"], r"key 'metrics' must be a non-empty list of"),
        ("voc_train_sets", ["2007"], r"key 'voc_train_sets' must be a list of 'YEAR/SET' strings"),
    ],
)
def test_out_of_range_values(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict({"train_data": "t", key: value})


def test_missing_required_key_and_bad_top_level(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'train_data'"):
        config_from_dict({"epochs": 2})
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train_data: [unclosed\n"))


def test_overrides_are_validated_like_file_keys(tmp_path):
    path = write(tmp_path, "train_data: t.json\n")
    cfg = load_config(path, ["epochs=5", "lr_steps=[3, 4]"])
    assert cfg.epochs == 5 and cfg.lr_steps == [3, 4]
    with pytest.raises(ConfigError, match="unknown key 'epochz'"):
        load_config(path, ["epochz=5"])
    with pytest.raises(ConfigError, match="--set expects key=value"):
        load_config(path, ["epochs"])


def test_model_kwargs_leave_unset_keys_to_the_detector():
    cfg = config_from_dict({"train_data": "t", "backbone": "tiny", "min_size": 128})
    assert cfg.model_kwargs() == {"backbone": "tiny", "min_size": 128}


@pytest.mark.parametrize(
    "preset", sorted((Path(__file__).parent.parent / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_preset_is_a_valid_complete_config(preset):
    cfg = load_config(preset)
    assert cfg.train_data and cfg.test_data


@pytest.mark.parametrize("name", ["voc0712_retinanet", "voc0712_miaod"])
def test_voc0712_presets_are_the_published_protocol(name):
    cfg = load_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
    assert cfg.voc_train_sets == ["2007/trainval", "2012/trainval"] and cfg.voc_test_sets == ["2007/test"]
    # 827 + 6 x 413 = 3305 = 20% of 16551: cycles 0..6 are the 7 published points
    assert (cfg.initial_labelled, cfg.budget, cfg.cycles) == (827, 413, 6)
    assert cfg.initial_labelled + cfg.cycles * cfg.budget == 3305  # 827 + 6 x 413: 20% of 16551, rounded down


def test_miaod_presets_are_the_released_recipe():
    for name in ("voc0712_miaod", "coco_miaod", "bench_miaod"):
        cfg = load_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
        assert cfg.detector == "miaod" and cfg.strategy == "miaod" and cfg.trainer().func.__name__ == "train_miaod"
    voc = load_config(Path(__file__).parent.parent / "configs" / "voc0712_miaod.yaml")
    assert voc.trainer().keywords["training_options"].repeat_labelled == 2 and voc.lr == 0.001 and voc.seed == 666
    coco = load_config(Path(__file__).parent.parent / "configs" / "coco_miaod.yaml")
    # the released for_coco code scores a fixed 117266 // 5 = 23,453 unlabelled images per cycle
    assert (coco.initial_labelled, coco.budget, coco.cycles, coco.score_subset) == (0.02, 0.02, 4, 23453)


def test_config_keys_mirror_the_library_defaults():
    """The flat file's training and loop keys are the fields of TrainOptions and LoopOptions; they must not drift."""
    import dataclasses

    from activedet.al.plan import LoopOptions
    from activedet.config import config_keys
    from activedet.engine.options import TrainOptions

    cfg = config_from_dict({"train_data": "t"})
    for cls, built in ((TrainOptions, cfg.train_options()), (LoopOptions, cfg.loop_options())):
        assert {f.name for f in dataclasses.fields(cls)} <= set(config_keys())
        assert built == cls(), cls.__name__


def test_a_key_declared_twice_is_declared_alike():
    """``seed`` is a field of both TrainOptions and LoopOptions; the config has one key, so they must agree."""
    import dataclasses

    from activedet.al.plan import LoopOptions
    from activedet.engine.options import TrainOptions

    train = {f.name: f for f in dataclasses.fields(TrainOptions)}
    shared = [f for f in dataclasses.fields(LoopOptions) if f.name in train]
    assert [f.name for f in shared] == ["seed"]
    for f in shared:
        assert (f.type, f.default, dict(f.metadata)) == (
            train[f.name].type,
            train[f.name].default,
            dict(train[f.name].metadata),
        )


def test_importing_the_config_loads_neither_torch_nor_sklearn():
    code = (
        "import sys, activedet.config; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'sklearn')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    assert out.strip() == "[]", out


def test_docs_config_md_is_generated_from_the_schema():
    from activedet.config.reference import REFERENCE_PATH, render_reference

    written = (ROOT / REFERENCE_PATH).read_text(encoding="utf-8")
    assert written == render_reference(), (
        "docs/config.md is stale; regenerate it with `python -m activedet.config` from the repository root"
    )
    for key in config_keys():
        assert f"| `{key}` |" in written, key


@pytest.mark.parametrize(
    "key, value, pattern",
    [
        (
            "initial_labelled",
            1.5,
            r"key 'initial_labelled' must be a fraction in \(0, 1\] \(float\) or a count >= 1 "
            r"\(int\); found 1.5",
        ),
        ("budget", 0, r"key 'budget' must be a count >= 1 \(int\) or a fraction in \(0, 1\] \(float\); found 0$"),
        ("max_labelled", "half", r"key 'max_labelled' must be of type int \| float \| null; found 'half' \(str\)"),
        ("cycles", -1, r"key 'cycles' must be an int >= 0 or null; found -1"),
        ("metrics", [], r"key 'metrics' must be a non-empty list of \['voc', 'coco', 'froc', 'accuracy'\]; found \[\]"),
        ("export_images", "move", r"key 'export_images' must be one of \['copy', 'link', 'none'\]; found 'move'"),
        ("grad_clip", 0, r"key 'grad_clip' must be a float > 0 or null; found 0"),
        ("detector_options", {1: 2}, r"key 'detector_options' must be of type dict\[str, Any\]; found \{1: 2\}"),
        ("strategy", 3, r"key 'strategy' must be of type str \| list\[str\]; found 3 \(int\)"),
    ],
)
def test_schema_errors_name_the_key_the_allowed_and_the_found_value(key, value, pattern):
    with pytest.raises(ConfigError, match=r"^config: " + pattern) as info:
        config_from_dict({"train_data": "t", key: value})
    assert "pydantic" not in str(info.value) and "validation error" not in str(info.value)


def test_the_stopping_rule_needs_cycles_or_max_labelled():
    with pytest.raises(ConfigError, match=r"key 'cycles' must be set, or 'max_labelled' set, so that the run stops"):
        config_from_dict({"train_data": "t", "cycles": None})
    assert config_from_dict({"train_data": "t", "cycles": None, "max_labelled": 0.5}).loop_options().cycles is None


def test_config_is_read_back_from_its_dict():
    cfg = config_from_dict({"train_data": "t", "lr_steps": [2], "strategy": ["entropy", "kmeans"]})
    again = config_from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and again.lr_steps == [2] and again.source == "config"
    assert config_from_dict({"train_data": "t"}).lr_steps is not config_from_dict({"train_data": "t"}).lr_steps


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_class_names_beside_a_format_that_names_its_classes_is_refused(tmp_path, fmt):
    path = write(tmp_path, f"train_data: t.json\ndata_format: {fmt}\nclass_names: [Alive, Dead, Trees]\n")
    with pytest.raises(ConfigError, match=rf"key 'class_names' must be null with data_format '{fmt}' .*remove the key"):
        load_config(path)


@pytest.mark.parametrize(
    ("key", "options"),
    [
        ("pseudo_labels", "activedet.engine.pseudo:PseudoLabelOptions"),
        ("semi_supervised", "activedet.engine.teacher:TeacherStudentOptions"),
    ],
)
def test_the_help_of_a_mapping_key_states_the_defaults_its_options_have(key, options):
    """The reference (docs/config.md) lists a mapping key's options with their defaults by hand: each one stated
    must be the options class's own default, and every option is listed."""
    import dataclasses
    import importlib
    import re

    from activedet.config.schema import key_fields

    module, name = options.split(":")
    help_text = key_fields()[key][1].metadata["help"]
    literal = {True: "true", False: "false", None: "null"}
    for f in dataclasses.fields(getattr(importlib.import_module(module), name)):
        stated = re.search(rf"`{f.name}` \((?:λ = )?(`[^`]+`|[\w.-]+)", help_text)
        assert stated, f"{key}: option {f.name!r} is not in the help"
        if f.name == "class_thresholds":  # per-class overrides: no single default to state
            continue
        default = f.default
        expected = (
            literal[default]
            if default is None or isinstance(default, bool)
            else (f"`{default}`" if isinstance(default, str) else repr(default))
        )
        assert stated.group(1) == expected, (key, f.name, stated.group(1), expected)
