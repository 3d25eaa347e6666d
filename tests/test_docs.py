"""The README and docs document every config key, strategy, detector, command and option, and every command they
show parses (so docs cannot drift)."""

from pathlib import Path

from activedet.cli import build_parser
from activedet.config import config_keys
from activedet.models import DETECTORS
from activedet.strategies import STRATEGIES

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_every_config_key_is_in_the_reference_table():
    reference = (Path(__file__).parent.parent / "docs" / "config.md").read_text()
    missing = [key for key in config_keys() if f"| `{key}` |" not in reference]
    assert not missing, f"docs/config.md lacks {missing}"


def test_every_strategy_detector_and_command_is_documented():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in [*STRATEGIES, *DETECTORS, *commands]:
        assert f"`{name}" in README or f"activedet {name}" in README, name


def test_docs_cli_md_is_generated_from_the_parser():
    from activedet.cli.reference import REFERENCE_PATH, render_reference

    written = (Path(__file__).parent.parent / REFERENCE_PATH).read_text(encoding="utf-8")
    assert written == render_reference(), (
        "docs/cli.md is stale; regenerate it with `python -m activedet.cli.reference` from the repository root"
    )


def test_every_command_and_argument_says_what_it_is():
    from activedet.cli.reference import _arguments, _commands

    parser = build_parser()
    for name, command in _commands(parser).items():
        assert command.description and command.description.endswith("."), name
        for action in _arguments(command):
            assert action.help, (name, action.dest)
    reference = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    for option in ("--debug", "--clip-tolerance", "--no-eval", "--empty-means-labelled", "--boxes-per-image"):
        assert f"`{option}" in reference, option


def _documented_commands() -> list[tuple[str, str]]:
    """Every ``activedet ...`` command of the shell blocks of the README, DEVELOPERS.md and docs: (file, command),
    continuation lines joined and a quoted value that spans lines kept whole, as bash reads them."""
    import re
    import shlex

    files = [ROOT / "README.md", ROOT / "DEVELOPERS.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += [ROOT / "configs" / "README.md", ROOT / "benchmarks" / "results" / "README.md"]
    commands = []
    for path in files:
        for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", path.read_text(), flags=re.S):
            pending = ""
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                pending = f"{pending}\n{line}" if pending else line.strip()
                try:
                    shlex.split(pending, comments=True)
                except ValueError:  # an open quote: the command goes on on the next line
                    continue
                words = pending.split()
                if words[:1] == ["activedet"] and len(words) > 1 and not words[1].endswith(":"):  # not an output
                    commands.append((str(path.relative_to(ROOT)), pending))
                pending = ""
    return commands


def test_every_documented_command_parses_and_names_files_that_exist():
    import contextlib
    import io
    import shlex

    commands = _documented_commands()
    assert len(commands) >= 80 and any("training_options={label_epochs: 5," in c for _, c in commands)
    wrong = []
    for path, command in commands:
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                args = build_parser().parse_args(shlex.split(command, comments=True)[1:])
        except SystemExit:
            wrong.append((path, command, errors.getvalue().strip().splitlines()[-1]))
            continue
        config = getattr(args, "config", "")
        if config.startswith("configs/") and not (ROOT / config).is_file():
            wrong.append((path, command, f"no such config: {config}"))
    assert not wrong, wrong


# ------------------------------------------------------------------------------ the shipped method specification
METHODS = ROOT / "docs" / "methods.md"


def _sections(text: str) -> set[str]:
    import re

    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, flags=re.MULTILINE))


def _citations(text: str) -> list[str]:
    """Every ``§N`` in the clause that follows each ``methods.md`` (e.g. ``methods.md §2 and §4``, ``§5-§7, §9``)."""
    import re

    cited = []
    for match in re.finditer(r"methods\.md", text):
        clause = re.split(r"\)|\n\n|\. |;", text[match.end() : match.end() + 200])[0]
        cited += re.findall(r"§(\d+(?:\.\d+)?)", clause)
    return cited


def test_every_methods_md_citation_names_a_section_of_the_shipped_file():
    sections = _sections(METHODS.read_text())
    assert {"0.3", "3.3", "7.4", "8.6", "12"} <= sections
    files = [
        ROOT / "README.md",
        ROOT / "DEVELOPERS.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "activedet").rglob("*.py")),
    ]
    cited = {(str(f.relative_to(ROOT)), n) for f in files for n in _citations(f.read_text())}
    assert len({n for _, n in cited}) >= 15  # the parser finds the README's and the sources' citations
    missing = sorted((f, n) for f, n in cited if n not in sections)
    assert not missing, f"methods.md has no section for {missing}"
    # references inside the specification itself ("see §10"), except the papers' own sections
    import re

    inner = re.findall(r"(?<!paper )§(\d+(?:\.\d+)?)", METHODS.read_text())
    assert inner and not sorted(set(inner) - sections)


def test_the_citation_parser_reads_lists_and_ranges():
    assert _citations("see methods.md §2 and §4; not §9") == ["2", "4"]
    assert _citations("(methods.md §5-§7, §9). Then §1") == ["5", "7", "9"]


def test_deviation_rows_name_tests_that_exist():
    import re

    text = (ROOT / "docs" / "deviations.md").read_text()
    tests = "".join(f.read_text() for f in sorted((ROOT / "tests").glob("test_*.py")))
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", text))
    assert len(named) >= 10
    assert not sorted(n for n in named if f"def {n}(" not in tests)
    assert "deviations.md" in METHODS.read_text() and "docs/deviations.md" in README


# ------------------------------------------------------------------------------ links between the documents
def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (``-`` and ``_`` kept), spaces to ``-``."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    import re

    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def _relative_links(path: Path) -> list[str]:
    import re

    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: are external


def _broken_links(files: list[Path]) -> tuple[int, list[str]]:
    """How many relative links ``files`` hold, and those whose file or heading does not exist."""
    checked, broken = 0, []
    for source in files:
        for link in _relative_links(source):
            target, _, anchor = link.partition("#")
            path = (source.parent / target).resolve() if target else source
            checked += 1
            if not path.exists():
                broken.append(f"{source.name}: {link} (no file {target})")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{source.name}: {link} (no heading #{anchor} in {target or source.name})")
    return checked, broken


def test_the_link_checker_finds_missing_files_and_headings(tmp_path):
    assert (
        _slug("1.2 Detection-level uncertainty (least confidence / margin / entropy)")
        == "12-detection-level-uncertainty-least-confidence--margin--entropy"
    )
    assert _slug("The quickstart demo (`make demo`)") == "the-quickstart-demo-make-demo"
    (tmp_path / "a.md").write_text("# A\n\n## The quickstart demo (`make demo`)\n\n```\n## not a heading\n```\n")
    (tmp_path / "b.md").write_text(
        "[ok](a.md) [ok](a.md#the-quickstart-demo-make-demo) [self](#b) [web](https://example.org/x)\n"
        "[gone](c.md) [no heading](a.md#not-a-heading) [image](a.png)\n\n# B\n```\n[in code](d.md)\n```\n"
    )
    checked, broken = _broken_links([tmp_path / "b.md"])
    assert checked == 6
    assert broken == [
        "b.md: c.md (no file c.md)",
        "b.md: a.md#not-a-heading (no heading #not-a-heading in a.md)",
        "b.md: a.png (no file a.png)",
    ]


def test_every_relative_link_in_the_readme_and_docs_resolves():
    docs = [
        ROOT / "README.md",
        ROOT / "DEVELOPERS.md",
        ROOT / "configs/README.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]
    checked, broken = _broken_links(docs)
    assert checked >= 30  # the README's methods table alone links 15 sections
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_preset_is_listed_in_the_configs_readme():
    listed = (ROOT / "configs/README.md").read_text()
    missing = [f.name for f in sorted((ROOT / "configs").glob("*.yaml")) if f"`{f.name}`" not in listed]
    assert not missing, f"configs/README.md does not list {missing}"
