"""The flat config file: types, ranges, unknown keys with suggestions, relative paths, overrides."""

import json
from pathlib import Path

import pytest

from activedet.config import ConfigError, config_from_dict, load_config


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


def test_wrong_type_names_key_expected_and_found():
    with pytest.raises(ConfigError, match=r"key 'epochs' must be of type int; found 'ten' \(str\)"):
        config_from_dict({"train_data": "t", "epochs": "ten"})
    with pytest.raises(ConfigError, match=r"key 'lr_steps' must be of type list\[int\]; found \[8, 'x'\]"):
        config_from_dict({"train_data": "t", "lr_steps": [8, "x"]})
    with pytest.raises(ConfigError, match=r"key 'amp' must be of type bool; found 1"):
        config_from_dict({"train_data": "t", "amp": 1})


@pytest.mark.parametrize("key, value, pattern", [
    ("epochs", 0, r"key 'epochs' must be an int >= 1; found 0"),
    ("lr", -0.1, r"key 'lr' must be a float > 0; found -0.1"),
    ("optimizer", "adam", r"key 'optimizer' must be one of \['sgd', 'adamw'\]; found 'adam'"),
    ("hflip_prob", 1.5, r"key 'hflip_prob' must be a float in \[0, 1\]"),
    ("data_format", "kitti",
     r"key 'data_format' must be one of \['coco', 'voc', 'yolo', 'imagefolder', 'cifar'\]; found 'kitti'"),
    ("metrics", ["voc", "map"], r"key 'metrics' must be a non-empty list of"),
    ("voc_train_sets", ["2007"], r"key 'voc_train_sets' must be a list of 'YEAR/SET' strings"),
])
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


@pytest.mark.parametrize("preset", sorted((Path(__file__).parent.parent / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
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
    """The flat file repeats the keyword arguments of TrainOptions and LoopOptions; they must not drift."""
    import dataclasses

    from activedet.al.plan import LoopOptions
    from activedet.config import Config
    from activedet.engine.train import TrainOptions

    cfg = config_from_dict({"train_data": "t"})
    for cls, built in ((TrainOptions, cfg.train_options()), (LoopOptions, cfg.loop_options())):
        assert {f.name for f in dataclasses.fields(cls)} <= {f.name for f in dataclasses.fields(Config)}
        assert built == cls(), cls.__name__
