"""The strategy registry: every method builds with its defaults and declares what it needs, option and name errors
say what is valid, a method defined outside the package is one decorated function, and the names can be read
without importing torch. No detector needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from activedet.cli import main
from activedet.models import OPTIONAL_FIELDS
from activedet.models.outputs import Detections
from activedet.strategies import (
    METHODS,
    STRATEGIES,
    ScoredPool,
    SelectionInput,
    Strategy,
    get_strategy,
    list_strategies,
    register,
    registry,
    strategy_names,
)
from activedet.strategies.checks import options_of
from activedet.strategies.uncertainty import rank_select
from tests.test_loop import write_config

ROOT = Path(__file__).resolve().parent.parent
DETECTION_FIELDS = set(OPTIONAL_FIELDS)  # the optional Detections fields and the extras keys


@pytest.fixture
def restored_registry():
    """The registry as it was before the test (a test's own methods do not leak into the others)."""
    saved = dict(METHODS)
    yield
    METHODS.clear()
    METHODS.update(saved)


# ------------------------------------------------------------------------------------------ every method


@pytest.mark.parametrize("name", list(METHODS))
def test_every_registered_strategy_builds_with_defaults_as_declared(name):
    method = METHODS[name]
    strategy = get_strategy(name)
    assert isinstance(strategy, Strategy) and strategy.description == method.description
    assert method.description and "\n" not in method.description
    stages = strategy.stages
    assert set().union(*(stage.needs for stage in stages)) == method.needs
    assert method.needs <= DETECTION_FIELDS, f"{name}: needs {sorted(method.needs - DETECTION_FIELDS)}"
    assert ("val" in method.requires) == any(stage.needs_val for stage in stages)
    assert ("labelled" in method.requires) == any(stage.needs_labelled for stage in stages)
    if "passes" in method.requires:
        assert any(stage.predictor is not None for stage in stages), f"{name}: several passes without a predictor"
    assert method.requires <= set(registry.REQUIREMENTS)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_unknown_option_is_refused_naming_the_strategy_the_option_and_the_valid_ones(name):
    with pytest.raises(ValueError) as error:
        get_strategy(name, not_an_option=1)
    message = str(error.value)
    assert f"Unknown option 'not_an_option' for strategy {name!r}" in message
    valid = message.split(f"Valid options of {name}: ")[1]
    for option in options_of(STRATEGIES[name]):
        assert repr(option) in valid, f"{name}: {option!r} missing from {message!r}"


def test_a_misspelt_option_or_name_gets_the_closest_valid_one():
    with pytest.raises(
        ValueError,
        match=r"Unknown option 'agregation' for strategy 'entropy'; did you mean "
        r"'aggregation'\? Valid options of entropy: \['score_threshold', ",
    ):
        get_strategy("entropy", agregation="sum")
    with pytest.raises(
        ValueError,
        match=r"Unknown option 'n_cluster' for strategy 'hybrid'; did you mean "
        r"'n_clusters'\?",
    ):
        get_strategy("hybrid", diversity="kmeans", n_cluster=3)
    with pytest.raises(ValueError) as error:
        get_strategy("entropie")
    assert str(error.value) == f"Unknown strategy 'entropie'; did you mean 'entropy'? Valid strategies: {list(METHODS)}"
    with pytest.raises(ValueError, match=r"^Unknown strategy 'zzz'\. Valid strategies: \['random', "):
        get_strategy("zzz")


def test_the_listings_come_from_the_registry(capsys):
    assert list_strategies() == [(name, method.description) for name, method in METHODS.items()]
    assert list(STRATEGIES) == list(METHODS) and STRATEGIES["cald"] is METHODS["cald"].factory
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name, method in METHODS.items():
        assert f"{name} " in out and method.description in out
    assert "needs: influence; requires: val" in out
    assert "needs: embedding; requires: labelled" in out


# ------------------------------------------------------------------------------------------ a new method


def _detections(n: int) -> Detections:
    return Detections(
        boxes=torch.zeros(n, 4),
        scores=torch.full((n,), 0.5),
        labels=torch.ones(n, dtype=torch.int64),
        prob_kind="sigmoid",
    )


def test_a_new_strategy_is_one_decorated_function(restored_registry, capsys):
    @register("most_detections")
    def most_detections(*, empty_policy: str = "lowest") -> Strategy:
        """The images with the most detections first."""
        return Strategy(
            "most_detections",
            "The images with the most detections first.",
            score=lambda det: float(len(det)) if len(det) else None,
            select=lambda inputs: rank_select(inputs, empty_policy=empty_policy, strategy="x"),
        )

    strategy = get_strategy("most_detections", empty_policy="skip")
    counts = [2, 0, 5, 1]
    pool = ScoredPool.collect(((10 + i, _detections(n)) for i, n in enumerate(counts)), strategy)
    assert list(strategy.select(SelectionInput(pool, None, 2, np.random.default_rng(0)))) == [12, 10, 13]
    assert ("most_detections", "The images with the most detections first.") in list_strategies()
    assert "most_detections" in strategy_names() and "most_detections" in STRATEGIES
    with pytest.raises(
        ValueError,
        match=r"Unknown option 'empty_polcy' for strategy 'most_detections'; did you mean "
        r"'empty_policy'\? Valid options of most_detections: \['empty_policy'\]",
    ):
        get_strategy("most_detections", empty_polcy="skip")
    assert main(["strategies"]) == 0 and "most_detections" in capsys.readouterr().out


def test_registration_mistakes_are_refused(restored_registry):
    def ok(*, option: int = 1) -> Strategy:
        """A description."""

    with pytest.raises(
        ValueError,
        match=r"register\('entropy'\): the name is taken by "
        r"activedet\.strategies\.uncertainty\.entropy; choose another name",
    ):
        register("entropy")(ok)
    with pytest.raises(ValueError, match=r"a strategy name must be lower-case letters, digits and '_'.*'My-Method'"):
        register("My-Method")
    with pytest.raises(ValueError, match=r"unknown requirement\(s\) \['gpu'\]; valid: \['val', "):
        register("ok", requires={"gpu"})
    with pytest.raises(
        ValueError,
        match=r"must take keyword options only \(def positional\(\*, \.\.\.\)\); "
        r"\['option'\] can be given by position",
    ):
        register("positional")(lambda option=1: None)
    with pytest.raises(ValueError, match=r"register\('undocumented'\): .* needs a docstring"):
        register("undocumented")(lambda *, option=1: None)
    assert register("ok")(ok) is ok and register("ok")(ok) is ok  # the same function again: no conflict
    assert METHODS["ok"].factory is ok


# ------------------------------------------------------------------------------------------ cheap names


def test_strategy_names_reads_the_decorators():
    assert strategy_names() == tuple(sorted(METHODS))


def test_strategy_names_imports_neither_the_methods_nor_torch():
    code = (
        "import sys, time; started = time.process_time(); "
        "from activedet.strategy_names import strategy_names; names = strategy_names(); "
        "spent = time.process_time() - started; "
        "heavy = sorted(m for m in ('torch', 'numpy', 'activedet.strategies', 'activedet.methods') "
        "if m in sys.modules); "
        "print(' '.join(names)); print(heavy); print(spent)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    names, heavy, spent = result.stdout.splitlines()
    assert names.split() == sorted(METHODS)
    assert heavy == "[]"
    assert float(spent) < 1.0  # CPU seconds, which machine load does not stretch


def test_strategy_names_reads_the_method_packages_too():
    packaged = {name for name, method in METHODS.items() if method.factory.__module__.startswith("activedet.methods.")}
    assert "miaod" in packaged and packaged <= set(strategy_names())


def test_the_registry_order_does_not_depend_on_which_method_module_is_imported_first():
    def order(first_import: str) -> list[str]:
        code = f"import {first_import}; from activedet.strategies import METHODS; print(' '.join(METHODS))"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    expected = order("activedet.strategies")
    assert expected == list(METHODS)
    for first in ("activedet.methods.miaod.scoring", "activedet.methods.almdn.model", "activedet.predict"):
        assert order(first) == expected, f"import {first} first"


NEW_METHOD = '''"""The images with the most detections first (a method added as one file)."""

from .base import Strategy
from .registry import register
from .uncertainty import rank_select


@register("most_detections_file")
def most_detections_file(*, empty_policy: str = "lowest") -> Strategy:
    """The images with the most detections first."""
    return Strategy(
        "most_detections_file",
        "The images with the most detections first.",
        score=lambda det: float(len(det)) if len(det) else None,
        select=lambda inputs: rank_select(inputs, empty_policy=empty_policy, strategy="most_detections_file"),
    )
'''


def test_a_new_strategy_is_one_new_file(tiny_data, tmp_path):
    """Writing one module into activedet/strategies/ is all it takes: listed by `activedet strategies`, named by
    strategy_names() without torch, and usable by a run's config."""
    import yaml

    import activedet.strategies

    path = Path(activedet.strategies.__file__).parent / "most_detections_file.py"
    assert not path.exists()
    path.write_text(NEW_METHOD)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "activedet", "strategies"], capture_output=True, text=True, env=env, timeout=300
        )
        assert listed.returncode == 0 and "most_detections_file" in listed.stdout, listed.stderr
        names = subprocess.run(
            [sys.executable, "-c", "from activedet.strategy_names import strategy_names; print(strategy_names())"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "most_detections_file" in names.stdout
        config = write_config(tmp_path, tiny_data, epochs=1, cycles=1, strategy="most_detections_file")
        run = subprocess.run(
            [sys.executable, "-m", "activedet", "run", str(config), "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr
        picks = yaml.safe_load((tmp_path / "run/cycles/0/selection.json").read_text())["picks"]
        assert len(picks) == 4 and {p["strategy"] for p in picks} == {"most_detections_file"}
    finally:
        path.unlink(missing_ok=True)
