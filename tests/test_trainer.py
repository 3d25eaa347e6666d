"""The one training loop: hook order, progress without a terminal, custom hooks, overriding a step, one step site."""

import io
import re
from pathlib import Path

import pytest
import torch

from activedet.engine import hooks
from activedet.engine.train import TrainOptions, train_detector
from activedet.engine.trainer import HookBase, Trainer
from activedet.models import build_detector

POINTS = ("before_train", "before_epoch", "before_step", "after_step", "after_epoch", "after_train")


class Quadratic(torch.nn.Module):
    """``model(images, targets)`` -> ``{"mse": mean((image - w)^2)}``: a one-parameter stand-in for a detector."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images, targets):
        return {"mse": ((torch.stack(images) - self.w) ** 2).mean()}


def batches(n: int = 2):
    return [([torch.full((3,), 1.0 + i)], [{}]) for i in range(n)]


class Recorder(HookBase):
    def __init__(self, calls: list, name: str = ""):
        self.calls, self.name = calls, name
        for point in POINTS:
            setattr(
                self,
                point,
                lambda point=point: self.calls.append((self.name + point, self.trainer.epoch, self.trainer.step)),
            )


def make_trainer(hooks=(), trainer_class=Trainer, epochs: int = 2, **kwargs):
    model = Quadratic()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return trainer_class(
        model, batches(), optimizer, max_epochs=epochs, device=torch.device("cpu"), hooks=hooks, **kwargs
    )


def test_hooks_run_in_the_documented_order():
    calls = []
    trainer = make_trainer([Recorder(calls, "a."), Recorder(calls, "b.")])
    trainer.train()
    expected = [("before_train", 0, 0)]
    for epoch in range(2):
        expected.append(("before_epoch", epoch, 0 if epoch == 0 else 1))
        for step in range(2):
            expected += [("before_step", epoch, step), ("after_step", epoch, step)]
        expected.append(("after_epoch", epoch, 1))
    expected.append(("after_train", 1, 1))
    # every point runs each hook in registration order
    assert calls == [(p + n, e, s) for n, e, s in expected for p in ("a.", "b.")]
    assert [h["epoch"] for h in trainer.history] == [1, 2] and trainer.iter == 4
    # mean of the epoch's two losses, the second after one SGD step
    assert trainer.history[0]["train_mse"] == pytest.approx((1.0 + (2.0 - 0.2) ** 2) / 2)


def test_a_custom_hook_sees_every_step_and_can_stop_training():
    class StopWhenSmall(HookBase):
        def __init__(self):
            self.losses = []

        def after_step(self):
            self.losses.append(self.trainer.step_losses["mse"])

        def after_epoch(self):
            self.trainer.should_stop = self.trainer.entry["train_mse"] < 0.5

    hook = StopWhenSmall()
    trainer = make_trainer([hook], epochs=50)
    trainer.train()
    assert 2 < len(trainer.history) < 50 and len(hook.losses) == 2 * len(trainer.history)
    assert trainer.history[-1]["train_mse"] < 0.5 <= trainer.history[-2]["train_mse"]


def test_a_run_step_override_replaces_the_step():
    class Accumulate(Trainer):
        """Two batches per optimizer step: the override decides, the loop and the hooks stay the same."""

        def run_step(self, batch):
            if self.step % 2 == 0:
                self.pending = batch
                return
            images = self.pending[0] + batch[0]
            super().run_step((images, self.pending[1] + batch[1]))

    calls = []
    trainer = make_trainer([Recorder(calls)], trainer_class=Accumulate, epochs=1)
    trainer.train()
    # one SGD step on the mean over both batches: d/dw mean((x - w)^2) at w=0 is -2 * mean(x) = -3
    assert torch.isclose(trainer.model.w.detach(), torch.tensor(0.3))
    assert [c[0] for c in calls].count("after_step") == 2


def test_progress_without_a_terminal_prints_one_plain_line_per_epoch(capsys):
    trainer = make_trainer([hooks.Progress(True)], epochs=3)
    trainer.train()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    pattern = r"epoch {}/3: loss \d+\.\d{{4}}, lr 1\.00e-01 \(\d+\.\d s\)"
    assert len(lines) == 3 and all(re.fullmatch(pattern.format(i + 1), line) for i, line in enumerate(lines))
    make_trainer([hooks.Progress(False)], epochs=3).train()
    assert capsys.readouterr().err == ""


def test_progress_on_a_terminal_is_a_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    make_trainer([hooks.Progress(True)], epochs=2).train()
    assert "\r" in stream.getvalue() and "epoch 2/2" in stream.getvalue()


def test_train_detector_without_a_terminal_prints_one_line_per_epoch_with_the_validation_metric(toy_dataset, capsys):
    torch.manual_seed(0)
    model = build_detector("retinanet", 2, backbone="tiny", min_size=96, max_size=96)
    options = TrainOptions(epochs=2, batch_size=2, optimizer="adamw", lr=1e-3, warmup_iters=0, amp=False)
    train_detector(
        model,
        toy_dataset.subset(range(2)),
        val_set=toy_dataset.subset(range(1)),
        options=options,
        device="cpu",
        progress=True,
    )
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(
        line.startswith(f"epoch {i + 1}/2: loss ") and "val_mAP_area " in line for i, line in enumerate(lines)
    )


def test_the_engine_has_one_optimizer_step():
    engine = Path(__file__).resolve().parents[1] / "activedet" / "engine"
    sites = [
        (path.name, line)
        for path in sorted(engine.glob("*.py"))
        for line in path.read_text().splitlines()
        if re.search(r"\b(optimizer|scaler)\.step\(", line)
    ]
    assert len(sites) == 1 and sites[0][0] == "trainer.py", sites
