"""What the method packages declare (detectors, model additions, training procedures, requirements) is collected
by the generic modules, which import no method until a name is looked up. Weights-free, CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from activedet import plugins
from activedet.models import build_detector
from activedet.models.additions import ModelAddition
from activedet.models.retinanet import build_retinanet
from activedet.strategies.base import Strategy
from activedet.strategies.registry import register

ROOT = Path(__file__).resolve().parent.parent


class _Counter(nn.Module):
    """A sample observer: counts the positive training samples it is given (a buffer, so it is in the state dict)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))

    def observe(self, labels, probs, ious) -> None:
        assert labels.shape == probs.shape == ious.shape
        self.seen += labels.numel()


def _attach(model, *, func, num_classes, count_samples):
    if not isinstance(count_samples, bool):
        raise ValueError(f"The 'count_samples' parameter of {func} must be a bool. Got {count_samples!r} instead.")
    if count_samples:
        model.add_sample_observer("counter", _Counter())


@pytest.fixture
def counting_method(monkeypatch):
    """A method package, as plugins sees it, whose model.py adds ``count_samples`` at the training-samples point."""
    fake = types.ModuleType("fake_method.model")
    fake.MODEL_ADDITIONS = {
        "counter": ModelAddition(
            point="training_samples", keywords={"count_samples": False}, attach=_attach, summary="counts samples"
        )
    }
    real = plugins.method_modules

    def method_modules(module):
        return real(module) + ([fake] if module == "model" else [])

    monkeypatch.setattr(plugins, "method_modules", method_modules)
    return fake


def test_importing_the_generic_modules_imports_no_method():
    code = (
        "import sys, activedet.models, activedet.engine.trainers; "
        "print([m for m in sys.modules if m.startswith('activedet.methods')])"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_method_packages_declarations_are_collected():
    from activedet import models
    from activedet.engine import trainers

    assert {"miaod", "almdn_ssd", "almdn_retinanet"} <= set(models.DETECTORS)
    assert list(models.DETECTORS)[:5] == ["retinanet", "fcos", "ssd", "faster_rcnn", "classifier"]
    assert "miaod" in trainers.TRAINERS and trainers.resolve_training("auto", "miaod") == "miaod"
    assert set(trainers.refused_keys("miaod")) == {"pseudo_labels"}
    assert trainers.refused_keys("standard") == {}


def test_a_name_declared_twice_is_refused(monkeypatch):
    first, second = types.ModuleType("first"), types.ModuleType("second")
    first.DETECTORS, second.DETECTORS = {"twin": object()}, {"twin": object()}
    monkeypatch.setattr(plugins, "method_modules", lambda module: [first, second])
    with pytest.raises(ValueError, match="DETECTORS name 'twin' is declared twice: by first and by second"):
        plugins.collect("model", "DETECTORS")
    with pytest.raises(ValueError, match="'retinanet' is declared twice: by the built-in ones and by first"):
        first.DETECTORS = {"retinanet": object()}
        plugins.collect("model", "DETECTORS", {"retinanet": object()})


def test_a_model_addition_attaches_at_the_hook_point_and_sees_every_training_step(counting_method):
    plain = build_retinanet(2, backbone="tiny", min_size=64, max_size=64)
    assert not hasattr(plain, "counter") and plain.sample_observers == []
    model = build_detector("retinanet", 2, backbone="tiny", min_size=64, max_size=64, count_samples=True)
    assert "counter.seen" in model.state_dict()
    model.train()
    images = [torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}]
    model(images, targets)
    assert int(model.counter.seen) > 0
    faster = build_detector("faster_rcnn", 2, backbone="tiny", min_size=64, max_size=64, count_samples=True)
    assert "roi_heads.counter.seen" in faster.state_dict()
    with pytest.raises(ValueError, match="'count_samples' parameter of build_retinanet must be a bool"):
        build_retinanet(2, backbone="tiny", count_samples="yes")
    with pytest.raises(ValueError, match=r"detector 'fcos' does not take \['count_samples'\]"):
        build_detector("fcos", 2, backbone="tiny", count_samples=True)
    with pytest.raises(TypeError, match=r"build_retinanet\(\) got unexpected keyword argument\(s\) \['count_sample'\]"):
        build_retinanet(2, backbone="tiny", count_sample=True)


def test_a_method_defines_its_own_requirements(restored_requirements):
    def factory(*, empty_policy: str = "lowest") -> Strategy:
        """Needs a thing of its own."""
        raise AssertionError("not built")

    register("needs_a_thing", requires={"a_thing"}, defines={"a_thing": "a thing of its own"})(factory)
    from activedet.strategies import registry

    assert registry.REQUIREMENTS["a_thing"] == "a thing of its own"
    with pytest.raises(ValueError, match=r"unknown requirement\(s\) \['another'\]"):
        register("needs_another", requires={"another"})(factory)
    with pytest.raises(ValueError, match=r"requirement\(s\) \['val'\] are already defined with other words"):
        register("redefines_val", requires={"val"}, defines={"val": "something else"})(factory)


@pytest.fixture
def restored_requirements():
    from activedet.strategies import registry

    saved_requirements, saved_methods = dict(registry.REQUIREMENTS), dict(registry.METHODS)
    yield
    registry.REQUIREMENTS.clear()
    registry.REQUIREMENTS.update(saved_requirements)
    registry.METHODS.clear()
    registry.METHODS.update(saved_methods)
