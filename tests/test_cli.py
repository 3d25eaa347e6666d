"""The command line end to end on the tiny generated data: generate, validate, train, eval, errors."""

from __future__ import annotations

import json

import pytest
import yaml

from activedet.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    assert main(["generate-data", "tiny", "--out", str(out)]) == 0
    return out


def test_generate_data_refuses_to_overwrite(tiny, capsys):
    assert main(["generate-data", "tiny", "--out", str(tiny)]) == 2
    assert "pass overwrite=True (CLI: --overwrite)" in capsys.readouterr().err


def test_validate_reports_every_problem_and_exit_code(tiny, tmp_path, capsys):
    assert main(["validate", "coco", str(tiny / "annotations/train.json"), "--image-root", str(tiny)]) == 0
    assert "0 errors" in capsys.readouterr().out
    data = json.loads((tiny / "annotations/train.json").read_text())
    data["annotations"][0]["bbox"] = [-50, 0, 10, 10]
    data["annotations"][1]["category_id"] = 999
    data["images"][2]["file_name"] = "missing.png"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    assert main(["validate", "coco", str(broken), "--image-root", str(tiny)]) == 1
    out = capsys.readouterr().out
    assert "annotations[0].bbox" in out and "annotations[1].category_id" in out and "missing.png" in out
    assert "3 errors" in out


def test_train_then_eval_a_checkpoint(tiny, tmp_path, capsys):
    cfg = {
        "train_data": str(tiny / "annotations/train.json"),
        "val_data": str(tiny / "annotations/val.json"),
        "test_data": str(tiny / "annotations/test.json"),
        "image_root": str(tiny),
        "detector": "fcos",
        "backbone": "tiny",
        "min_size": 96,
        "max_size": 96,
        "epochs": 2,
        "batch_size": 4,
        "optimizer": "adamw",
        "lr": 0.002,
        "warmup_iters": 2,
        "amp": False,
        "metrics": ["voc", "coco", "froc"],
        "device": "cpu",
        "out_dir": str(tmp_path / "train"),
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "trained 2 epoch(s)" in out and "voc/mAP_11pt" in out and "coco/AP" in out and "froc/cpm" in out
    assert (tmp_path / "train/best.pt").is_file() and (tmp_path / "train/metrics_test.json").is_file()
    assert main(["eval", str(path), "--checkpoint", str(tmp_path / "train/last.pt"), "--split", "val", "--quiet"]) == 0
    assert "val metrics" in capsys.readouterr().out


def test_user_errors_exit_2_with_one_clear_line(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("train_data: x.json\nepoch: 3\n")
    assert main(["train", str(path)]) == 2
    assert "unknown key 'epoch'; did you mean 'epochs'?" in capsys.readouterr().err
    assert main(["eval", str(path.with_name("nope.yaml")), "--checkpoint", "x.pt"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_listings(capsys):
    assert main(["strategies"]) == 0 and "entropy" in capsys.readouterr().out
    assert main(["detectors"]) == 0 and "faster_rcnn" in capsys.readouterr().out


def test_train_miaod_then_predict_single_images_with_their_uncertainty(tiny, tmp_path, capsys):
    from PIL import Image

    cfg = {
        "train_data": str(tiny / "annotations/train.json"),
        "image_root": str(tiny),
        "detector": "miaod",
        "backbone": "tiny",
        "min_size": 96,
        "max_size": 96,
        "batch_size": 4,
        "optimizer": "adamw",
        "lr": 0.002,
        "warmup_iters": 2,
        "amp": False,
        "device": "cpu",
        "out_dir": str(tmp_path / "train"),
        "strategy": "miaod",
        "score_thresh": 0.01,
        "training_options": {"label_epochs": 1, "outer_loops": 1, "repeat_labelled": 1},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--quiet", "--no-eval"]) == 0
    assert "trained 4 epoch(s)" in capsys.readouterr().out  # label | min | max | label
    images = sorted((tiny / "images").rglob("*.png"))[:2]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 48), (0, 0, 0)).save(blank)
    args = [
        "predict",
        str(path),
        *map(str, images),
        str(blank),
        "--checkpoint",
        str(tmp_path / "train/last.pt"),
        "--min-score",
        "0.01",
        "--draw",
        str(tmp_path / "drawn"),
        "--json",
        str(tmp_path / "pred.json"),
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "miaod image score:" in out and "disagreement" in out and "blank.png  (64x48" in out
    results = json.loads((tmp_path / "pred.json").read_text())
    assert len(results) == 3 and all(r["image_score"] >= 0 for r in results)
    boxes = [b for r in results for b in r["boxes"]]
    assert boxes and all(b["disagreement"] >= 0 and 0.01 <= b["score"] <= 1 for b in boxes)
    assert len(list((tmp_path / "drawn").glob("*.png"))) == 3
    checkpoint = str(tmp_path / "train/last.pt")
    assert main(["predict", str(path), str(tmp_path / "nope.png"), "--checkpoint", checkpoint]) == 2
    assert "image file(s) not found" in capsys.readouterr().err


def untrained_ssd(tiny, tmp_path, **extra) -> dict:
    """A config for the tiny SSD on the tiny data (commands that take an untrained checkpoint), plus ``extra``."""
    return {
        "train_data": str(tiny / "annotations/train.json"),
        "image_root": str(tiny),
        "detector": "ssd",
        "backbone": "tiny",
        "min_size": 96,
        "device": "cpu",
        "out_dir": str(tmp_path / "out"),
        **extra,
    }


@pytest.mark.parametrize(
    "extra, columns",
    [
        (
            {"detector": "almdn_ssd", "strategy": "almdn"},
            ["aleatoric_loc", "epistemic_loc", "aleatoric_cls", "epistemic_cls", "entropy"],
        ),
        ({"detector_options": {"dropout": 0.3}, "strategy": "mc_dropout"}, ["mc_uncertainty", "mc_spatial", "entropy"]),
        ({"ensemble_size": 2, "strategy": "ensemble"}, ["mc_uncertainty", "mc_occurrence"]),
    ],
)
def test_predict_uncertainty_shows_and_draws_every_per_box_uncertainty(tiny, tmp_path, capsys, extra, columns):

    from conftest import untrained_checkpoint

    cfg = untrained_ssd(tiny, tmp_path, strategy_options={"passes": 4} if "detector_options" in extra else {}, **extra)
    path, checkpoint = untrained_checkpoint(cfg, tmp_path)
    images = sorted((tiny / "images").rglob("*.png"))[:2]
    assert (
        main(
            [
                "predict",
                str(path),
                *map(str, images),
                "--checkpoint",
                str(checkpoint),
                "--min-score",
                "0.0",
                "--uncertainty",
                "--json",
                str(tmp_path / "pred.json"),
                "--draw",
                str(tmp_path / "drawn"),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    boxes = [b for r in json.loads((tmp_path / "pred.json").read_text()) for b in r["boxes"]]
    assert boxes and all(c in b and b[c] >= 0 for b in boxes for c in columns), boxes[:1]
    assert all(c in out for c in columns) and len(list((tmp_path / "drawn").glob("*.png"))) == 2
    if "mc_uncertainty" in columns:
        assert all(0 <= b["mc_uncertainty"] <= 1 for b in boxes)


def test_predict_with_the_default_strategy_shows_its_first_criterion_per_box(tiny, tmp_path, capsys):
    from conftest import untrained_checkpoint

    path, checkpoint = untrained_checkpoint(untrained_ssd(tiny, tmp_path), tmp_path)
    image = sorted((tiny / "images").rglob("*.png"))[0]
    argv = ["predict", str(path), str(image), "--checkpoint", str(checkpoint), "--min-score", "0.0"]
    assert main([*argv, "--json", str(tmp_path / "pred.json"), "--quiet"]) == 0
    (result,) = json.loads((tmp_path / "pred.json").read_text())
    assert result["strategy"] == "entropy+class_balance" and result["boxes"]
    assert all(0 <= b["entropy"] for b in result["boxes"])  # entropy, the criterion that shortlists


@pytest.mark.parametrize(("command", "continues"), [("run", True), ("query", True), ("eval", False)])
def test_an_interrupted_command_says_so_in_one_line(command, continues, monkeypatch, capsys):
    from activedet.cli import commands

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, f"cmd_{command}", interrupted)
    argv = {"run": ["run", "config.yaml"], "query": ["query", "RUN"], "eval": ["eval", "c.yaml", "--checkpoint", "x"]}
    assert main(argv[command]) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"activedet {command}: interrupted") and len(err.splitlines()) == 1, err
    assert ("the same command continues the run where it stopped" in err) == continues
    with pytest.raises(KeyboardInterrupt):  # --debug shows the traceback
        main(["--debug", *argv[command]])
