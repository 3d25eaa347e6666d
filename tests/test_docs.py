"""The README documents every config key, strategy, detector and command (so docs cannot drift silently)."""

import dataclasses
from pathlib import Path

from activedet.cli import build_parser
from activedet.config import Config
from activedet.models import DETECTORS
from activedet.strategies import STRATEGIES

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_config_key_is_in_the_reference_table():
    missing = [f.name for f in dataclasses.fields(Config) if f"| `{f.name}` |" not in README]
    assert not missing, f"README config reference lacks {missing}"


def test_every_strategy_detector_and_command_is_documented():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in [*STRATEGIES, *DETECTORS, *commands]:
        assert f"`{name}" in README or f"activedet {name}" in README, name
