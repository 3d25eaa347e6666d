"""The command-line reference ``docs/cli.md``, generated from the parser (:func:`activedet.cli.build_parser`).

Each command's description and each argument's help are written once, where the parser defines them;
``activedet COMMAND --help`` prints them and this module renders them as Markdown.
``python -m activedet.cli.reference [PATH]`` writes the file (default ``docs/cli.md``, run from the repository
root); a test checks that the file is what this renders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atomic import atomic_write_text
from . import build_parser, shown_default

__all__ = ["REFERENCE_PATH", "render_reference", "write_reference"]

REFERENCE_PATH = "docs/cli.md"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(parser: argparse.ArgumentParser) -> list[str]:
    formatter = argparse.HelpFormatter(parser.prog)
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for action in _arguments(parser):
        invocation = formatter._format_action_invocation(action)
        meaning = action.help or ""
        if not action.option_strings and action.choices:  # a positional's metavar is its choices: name it
            invocation, meaning = action.dest, f"{meaning}: {', '.join(action.choices)}"
        if action.required and action.option_strings:
            default = "required"
        else:
            default = shown_default(action) or ""
        rows.append(f"| `{_cell(invocation)}` | {_cell(default)} | {_cell(meaning)} |")
    return rows


def render_reference() -> str:
    parser = build_parser()
    commands = _commands(parser)
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    short = {choice.dest: choice.help for choice in subparsers._choices_actions}
    lines = [
        "# Command line",
        "",
        "<!-- generated from the parser in activedet/cli by `python -m activedet.cli.reference`; edit it, not this -->",
        "",
        f"{parser.description} `activedet COMMAND --help` prints a command's section below. {parser.epilog}",
        "",
        *_table(parser),
        "",
        "| command | what it does |",
        "|---|---|",
        *(f"| [`{name}`](#activedet-{name}) | {_cell(short[name])} |" for name in commands),
    ]
    for name, command in commands.items():
        lines += ["", f"## activedet {name}", "", command.description, ""]
        if _arguments(command):
            lines += _table(command)
        else:
            lines.append("No arguments.")
    return "\n".join(lines) + "\n"


def write_reference(path: str | Path = REFERENCE_PATH) -> Path:
    path = Path(path)
    atomic_write_text(path, render_reference())
    return path


if __name__ == "__main__":
    print(write_reference(*sys.argv[1:2]))
