"""The training engine: loss goes down, schedules, checkpoints, exact resume, early stopping, errors."""

import json

import pytest
import torch
from conftest import tiny_model
from conftest import train_options as options

from activedet.engine.checkpoint import load_checkpoint
from activedet.engine.train import TrainOptions, build_lr_lambda, train_detector


def test_training_lowers_the_loss_and_logs_json_lines(toy_dataset, tmp_path):
    result = train_detector(
        tiny_model(), toy_dataset, options=options(epochs=6), out_dir=tmp_path, device="cpu", progress=False
    )
    losses = [h["train_classification"] + h["train_bbox_regression"] for h in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0]
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    iters = [x for x in lines if x["event"] == "iter"]
    assert len(iters) == 6 * 2 and {"lr", "loss", "classification", "bbox_regression", "epoch"} <= set(iters[0])
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 6


def test_resume_after_an_interruption_is_exact(toy_dataset, tmp_path):
    straight = tiny_model()
    train_detector(
        straight, toy_dataset, options=options(epochs=3), out_dir=tmp_path / "a", device="cpu", progress=False
    )
    # a run stopped after epoch 1 (its last.pt is all that survives), then resumed from a different init; "all"
    # keeps the optimizer state in last.pt when the 1-epoch training ends, as a run killed there would have it
    train_detector(
        tiny_model(),
        toy_dataset,
        options=options(epochs=1, epoch_checkpoints="all"),
        out_dir=tmp_path / "b",
        device="cpu",
        progress=False,
    )
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = tiny_model(seed=123)
    result = train_detector(
        resumed,
        toy_dataset,
        options=options(epochs=3),
        out_dir=tmp_path / "b",
        device="cpu",
        resume=True,
        progress=False,
    )
    assert result.epochs_completed == 3 and len(result.history) == 3
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_validation_picks_the_best_epoch_and_stops_early(toy_dataset, tmp_path):
    opts = options(epochs=8, lr=1e-9, warmup_iters=0, early_stopping_patience=2)  # lr ~0: no improvement
    result = train_detector(
        tiny_model(), toy_dataset, val_set=toy_dataset, options=opts, out_dir=tmp_path, device="cpu", progress=False
    )
    assert result.stopped_early and result.epochs_completed == 3 and result.best_epoch == 1
    assert (tmp_path / "best.pt").is_file()
    assert all("val_mAP_area" in h for h in result.history)


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("constant", [0.5, 0.75, 1.0, 1.0, 1.0]),
        ("step", [0.5, 0.75, 1.0, 0.1, 0.1]),
    ],
)
def test_lr_schedules(schedule, expected):
    factor = build_lr_lambda(
        TrainOptions(epochs=5, lr_schedule=schedule, lr_steps=[3], warmup_iters=2, warmup_factor=0.5), iters_per_epoch=1
    )
    assert [round(factor(i), 6) for i in range(5)] == expected


def test_cosine_schedule_ends_at_zero():
    factor = build_lr_lambda(TrainOptions(epochs=2, lr_schedule="cosine", warmup_iters=0), iters_per_epoch=5)
    assert factor(0) == 1.0 and abs(factor(5) - 0.5) < 1e-9 and factor(10) < 1e-9


@pytest.mark.parametrize(
    "field, value, pattern",
    [
        ("epochs", 0, r"The 'epochs' training option must be an int >= 1. Got 0 instead."),
        ("optimizer", "adam", r"The 'optimizer' training option must be one of \['sgd', 'adamw'\]"),
        ("grad_clip", 0.0, r"The 'grad_clip' training option must be a float > 0 or null"),
    ],
)
def test_option_errors(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainOptions(**{field: value})


def test_non_finite_loss_is_an_error_that_says_what_to_do(toy_dataset):
    with pytest.raises(FloatingPointError, match=r"training loss is (nan|inf).*lower 'lr'"):
        train_detector(
            tiny_model(),
            toy_dataset,
            options=options(epochs=1, optimizer="sgd", lr=1e12, warmup_iters=0),
            device="cpu",
            progress=False,
        )


def _weights(path):
    return load_checkpoint(path)["model"]


def test_epoch_checkpoints_keep_last_and_best_weights_by_default_and_all_or_last_on_request(toy_dataset, tmp_path):
    kept = {}
    for policy in ("last_best", "last", "all"):
        model = tiny_model()
        train_detector(
            model,
            toy_dataset,
            val_set=toy_dataset,
            options=options(epochs=2, epoch_checkpoints=policy),
            out_dir=tmp_path / policy,
            device="cpu",
            progress=False,
        )
        kept[policy] = sorted(p.name for p in (tmp_path / policy).glob("*.pt"))
        last = load_checkpoint(tmp_path / policy / "last.pt")
        assert ("optimizer" in last) == (policy == "all") and last["epoch"] == 2
        if policy == "last":  # the one file holds the weights training ended with
            assert all(torch.equal(a, b) for a, b in zip(last["model"].values(), model.state_dict().values()))
    assert kept == {
        "last_best": ["best.pt", "last.pt"],
        "last": ["last.pt"],
        "all": ["best.pt", "epoch_1.pt", "epoch_2.pt", "last.pt"],
    }
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            _weights(tmp_path / "all/epoch_2.pt").values(), _weights(tmp_path / "last_best/last.pt").values()
        )
    )


@pytest.mark.parametrize("policy", ["last_best", "last"])
def test_a_finished_training_resumes_to_the_same_model_and_refuses_to_extend(policy, toy_dataset, tmp_path):
    opts = options(epochs=2, epoch_checkpoints=policy)
    first = tiny_model()
    train_detector(
        first, toy_dataset, val_set=toy_dataset, options=opts, out_dir=tmp_path, device="cpu", progress=False
    )
    again = tiny_model(seed=5)
    train_detector(
        again,
        toy_dataset,
        val_set=toy_dataset,
        options=opts,
        out_dir=tmp_path,
        device="cpu",
        resume=True,
        progress=False,
    )
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    with pytest.raises(
        ValueError,
        match=r"last.pt holds only the weights of a training that ended at epoch 2, so it "
        r"cannot continue to epoch 3; .*epoch_checkpoints: all",
    ):
        train_detector(
            tiny_model(),
            toy_dataset,
            options=options(epochs=3, epoch_checkpoints=policy),
            out_dir=tmp_path,
            device="cpu",
            resume=True,
            progress=False,
        )


def test_epoch_checkpoints_is_validated():
    with pytest.raises(
        ValueError,
        match=r"The 'epoch_checkpoints' training option must be one of "
        r"\['last_best', 'last', 'all'\]. Got 'best' instead.",
    ):
        TrainOptions(epoch_checkpoints="best")


def test_prediction_progress_is_one_plain_line_when_output_is_not_a_terminal(toy_dataset, capsys):
    """A log file gets one line per prediction pass, not a carriage-return bar."""
    from activedet.engine.inference import iter_predictions

    model = tiny_model()
    assert len(list(iter_predictions(model, toy_dataset, range(5), batch_size=2, progress=True))) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("predict: 5 images in ") and "\r" not in err
    list(iter_predictions(model, toy_dataset, range(5), batch_size=2, progress=False))
    assert capsys.readouterr().err == ""
