"""MI-AOD's adversarial learning-rate scale: validation, the lr of every optimizer step, and what each step of the
real training loop updates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from activedet.config import load_config
from activedet.engine.train import OptionError, TrainOptions
from activedet.methods.miaod.training import MIAODOptions, train_miaod
from activedet.models import build_detector

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# label 1 | min 1, max 1 | label 1 with 4 labelled images in one batch: 1 iteration per unit, so the optimizer steps
# are label, min (labelled), min (unlabelled), max (labelled), max (unlabelled), label (at lr x lr_gamma)
SCHEDULE = {"label_epochs": 1, "adversarial_epochs": 1, "outer_loops": 1, "repeat_labelled": 1, "lr_drop_epochs": 1}
STEPS = ["label", "min", "min", "max", "max", "label"]


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, True, "auto", None])
def test_adversarial_lr_scale_is_validated(bad):
    with pytest.raises(
        OptionError, match=r"'training_options.adversarial_lr_scale' .* must be a float in \(0, 1\]. Got"
    ):
        MIAODOptions(adversarial_lr_scale=bad)


def test_default_scale_is_the_released_one():
    assert MIAODOptions().adversarial_lr_scale == 1.0
    assert MIAODOptions(adversarial_lr_scale=1).adversarial_lr_scale == 1


def _train_recording_steps(toy_dataset, optimizer: str, scale, optimizers: list | None = None, **schedule):
    """Train a tiny MI-AOD for :data:`SCHEDULE` (updated by ``schedule``); per optimizer step: (stage, lr, names of
    the parameters it changed); ``optimizers`` collects the optimizer of every step."""
    torch.manual_seed(0)
    model = build_detector("miaod", 2, backbone="tiny", min_size=96, max_size=160)
    names = {id(p): n for n, p in model.named_parameters()}
    stages, steps = [], []
    forward = type(model).forward

    def spy_forward(self, images, targets=None, stage="label"):
        stages.append(stage)
        return forward(self, images, targets, stage)

    optimizer_class = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
    step = optimizer_class.step

    def spy_step(self, *args, **kwargs):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = step(self, *args, **kwargs)
        changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
        params = [p for g in self.param_groups for p in g["params"]]
        assert changed <= {names[id(p)] for p in params}  # only the stage's own parameters move
        steps.append((stages[-1], self.param_groups[0]["lr"], changed))
        if optimizers is not None:
            optimizers.append(self)
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(model), "forward", spy_forward)
        patch.setattr(optimizer_class, "step", spy_step)
        result = train_miaod(
            model,
            toy_dataset.subset([0, 1, 2, 3]),
            unlabelled=toy_dataset.subset([4, 5, 6, 7]),
            options=TrainOptions(
                batch_size=4, optimizer=optimizer, lr=1e-3, warmup_iters=0, hflip_prob=0.0, amp=False, lr_gamma=0.1
            ),
            training_options={**SCHEDULE, **schedule, "adversarial_lr_scale": scale},
            device="cpu",
            progress=False,
        )
    return steps, result.history


def test_adamw_scaled_unlabelled_adversarial_steps_and_each_step_updates_its_stage(toy_dataset):
    steps, history = _train_recording_steps(toy_dataset, "adamw", 0.1)
    assert [s[0] for s in steps] == STEPS
    scaled = 1e-4
    assert [s[1] for s in steps] == pytest.approx([1e-3, 1e-3, scaled, 1e-3, scaled, 1e-4])
    assert [h.get("adversarial_lr") for h in history] == pytest.approx([None, scaled, scaled, None])
    assert_each_step_moves_its_stage(steps)


def assert_each_step_moves_its_stage(steps) -> None:
    adversarial = ("head.classification_head.", "head.classification_head_2.")
    for k, (stage, _, changed) in enumerate(steps):
        moved_adversarial = {n for n in changed if n.startswith(adversarial)}
        moved_other = changed - moved_adversarial
        if stage == "max":  # only f1 and f2 (towers and prediction convs); the trunk, FPN, f_r and f_mil stay
            assert moved_adversarial and not moved_other, k
            assert any(n.startswith("head.classification_head_2.") for n in moved_adversarial)
        elif stage == "min":  # f1 and f2 stay; the trunk and the other heads move
            assert not moved_adversarial and any(n.startswith("backbone.") for n in moved_other), k
            if k == 1:  # the labelled step trains the box regressor (the unlabelled one has no box loss)
                assert any(n.startswith("head.regression_head.") for n in moved_other)
        else:
            assert moved_adversarial and any(n.startswith("backbone.") for n in moved_other), k


@pytest.mark.parametrize(("scale", "adversarial"), [(0.25, 2.5e-4), (1.0, 1e-3)])
def test_sgd_steps_run_at_the_scaled_lr_and_the_default_keeps_the_released_one(toy_dataset, scale, adversarial):
    steps, history = _train_recording_steps(toy_dataset, "sgd", scale)
    assert [s[1] for s in steps] == pytest.approx([1e-3, 1e-3, adversarial, 1e-3, adversarial, 1e-4])
    assert [h.get("adversarial_lr") for h in history] == pytest.approx([None, adversarial, adversarial, None])


@pytest.mark.parametrize(
    ("name", "scale"), [("voc0712_miaod.yaml", 1.0), ("coco_miaod.yaml", 1.0), ("bench_miaod.yaml", 1.0)]
)
def test_presets_set_the_scale_explicitly(name, scale):
    cfg = load_config(CONFIGS / name)
    options = cfg.trainer().keywords["training_options"]
    assert options.adversarial_lr_scale == scale  # the released lr in every step of the adversarial stages


def test_bench_preset_warms_up_every_stage_and_the_released_presets_as_released():
    warm = {
        name: load_config(CONFIGS / name).trainer().keywords["training_options"].warmup_per_stage
        for name in ("voc0712_miaod.yaml", "coco_miaod.yaml", "bench_miaod.yaml")
    }
    # AdamW on the bench: a fresh optimiser per stage needs its warm-up; VOC: none (configs/MIAOD.py), COCO: per stage
    assert warm == {"voc0712_miaod.yaml": False, "coco_miaod.yaml": True, "bench_miaod.yaml": True}
