"""MI-AOD's ``optimizer_per_stage``: a fresh optimiser per stage (as released) or one optimiser for the cycle, whose
state carries across the stages while each stage still moves only its own parameters; resumable either way."""

from __future__ import annotations

import numpy as np
import pytest
from test_loop import kill_then_resume, outcome, run_cli, write_config
from test_miaod import MIAOD_RUN
from test_miaod_lr_scale import STEPS, _train_recording_steps, assert_each_step_moves_its_stage

from activedet.engine.train import OptionError
from activedet.methods.miaod.training import MIAODOptions


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_one_optimizer_for_the_cycle_keeps_its_state_and_each_stage_moves_its_own_parameters(toy_dataset, optimizer):
    per_stage, one = [], []
    _train_recording_steps(toy_dataset, optimizer, 1.0, per_stage)
    steps, _ = _train_recording_steps(toy_dataset, optimizer, 1.0, one, optimizer_per_stage=False)
    assert len({id(o) for o in per_stage}) == 4  # label | min | max | label: a fresh one at each stage
    assert len({id(o) for o in one}) == 1
    params = one[0].param_groups[0]["params"]
    assert len(params) == len(per_stage[0].param_groups[0]["params"])  # every parameter, the first label stage's
    assert len(one[0].state) == len(params)  # the state of every parameter that ever stepped is kept
    assert [s[0] for s in steps] == STEPS
    assert_each_step_moves_its_stage(steps)


@pytest.mark.parametrize("bad", [0, 1, "no", None])
def test_optimizer_per_stage_is_validated(bad):
    assert MIAODOptions().optimizer_per_stage is True
    with pytest.raises(OptionError, match=r"'training_options.optimizer_per_stage' .* must be true or false"):
        MIAODOptions(optimizer_per_stage=bad)


def test_one_optimizer_killed_at_a_stage_boundary_then_resumed_gives_the_same_run(tiny_data, tmp_path):
    """Killed after the last min unit: the resumed max stage must take the saved optimiser state, which a fresh
    optimiser per stage would drop (one cycle: the resume machinery itself is tested in test_miaod.py)."""
    options = {**MIAOD_RUN["training_options"], "optimizer_per_stage": False}
    run = {**MIAOD_RUN, "cycles": 0, "training_options": options}
    straight = write_config(tmp_path / "straight", tiny_data, **run)
    assert run_cli(["run", str(straight), "--quiet"]).returncode == 0
    killed = write_config(tmp_path / "killed", tiny_data, **run)
    run_dir = tmp_path / "killed" / "run"
    kill_then_resume(killed, run_dir, ["train_epoch:4"])
    a, b = outcome(tmp_path / "straight" / "run"), outcome(run_dir)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
