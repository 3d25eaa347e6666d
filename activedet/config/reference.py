"""``docs/config.md``, generated from the schema: one table per group of keys (key, type, default, allowed, help)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..fields import constrained, describe, type_name
from .schema import key_fields

__all__ = ["render_reference", "write_reference", "REFERENCE_PATH"]

#: where the reference lives, relative to the repository root
REFERENCE_PATH = Path("docs") / "config.md"

_INTRO = """\
# Configuration reference

<!-- Generated from activedet/config/schema.py by `python -m activedet.config`; do not edit by hand. -->

One flat YAML (or JSON) file; every key below, nothing else: an unknown key is an error that suggests the closest
valid one, and types and allowed values are checked before anything runs. Relative paths (keys marked *path*)
are resolved against the config file's directory. `--set key=value` overrides a key from the command line.
Complete presets, no inheritance: `configs/*.yaml`. The training keys are the keyword arguments of
`activedet.engine.options.TrainOptions`, the active-learning ones those of `activedet.al.plan.LoopOptions`,
the labelling cost ones those of `activedet.al.cost.CostModel` (docs/cost.md).
"""


def _default(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return f"`{json.dumps(f.default_factory())}`"
    if f.default is dataclasses.MISSING:
        return "required"
    return f"`{json.dumps(f.default)}`"


def _allowed(f: dataclasses.Field, tp) -> str:
    return _cell(describe(f, tp)) if constrained(f, tp) else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_reference() -> str:
    """The Markdown text of ``docs/config.md``."""
    lines, group = [_INTRO], None
    for key, (title, f, tp) in key_fields().items():
        if title != group:
            group = title
            lines += [f"\n## {title}\n", "| key | type | default | allowed | help |", "|---|---|---|---|---|"]
        kind = _cell(type_name(tp)) + (" (*path*)" if f.metadata.get("path") else "")
        lines.append(
            f"| `{key}` | {kind} | {_cell(_default(f))} | {_allowed(f, tp)} | {_cell(f.metadata.get('help', ''))} |"
        )
    return "\n".join(lines) + "\n"


def write_reference(path: str | Path = REFERENCE_PATH) -> Path:
    """Write :func:`render_reference` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(render_reference(), encoding="utf-8")
    return path
