"""Reading run directories: :func:`load_runs` finds runs below the given paths and checks each one's
``config.json`` and ``metrics.jsonl`` line by line into a :class:`Run`; :func:`strategy_label` names a run's
strategy variant (conventions: :mod:`activedet.report`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..al.rundir import RunDir

__all__ = ["Run", "load_runs", "strategy_label", "label_extras"]

_REQUIRED_FIELDS = ("cycle", "labelled_images", "labelled_boxes", "metrics")


@dataclass(eq=False)
class Run:
    """One active-learning run: one strategy variant, one seed, C completed cycles.

    Attributes:
        path: the run directory.
        strategy: the strategy label (see :func:`strategy_label`).
        seed: the run's seed.
        cycles: ``int64[C]``, ``0 .. C-1``.
        labelled_images: ``float64[C]`` labelled images the cycle's model was trained on.
        labelled_boxes: ``float64[C]`` boxes in those images.
        metrics: metric name -> ``float64[C]``; NaN where a cycle reported null or lacked the key.
        labelled_cost: ``float64[C]`` the labelled set's labelling cost (:mod:`activedet.al.cost`); NaN where a
            cycle did not record it (runs without a cost model), ``None`` for all NaN.
        environments: the distinct environments its cycles' models were trained in, as
            :func:`~activedet.engine.environment.environment_key` lines (a retrained record's own, else
            ``timing.jsonl``'s; empty where the run did not record them).
    """

    path: Path
    strategy: str
    seed: int
    cycles: np.ndarray
    labelled_images: np.ndarray
    labelled_boxes: np.ndarray
    metrics: dict[str, np.ndarray]
    labelled_cost: np.ndarray | None = None
    environments: tuple[str, ...] = ()


def strategy_label(strategy: str, options: dict | None = None) -> str:
    """``strategy`` plus ``[key=value,...]`` for the given options, keys sorted; the bare name when none.

    Strings (and lists of strings) are shown as is, other values as compact JSON: ``strategy_label("entropy",
    {"top_k": 5, "aggregation": "sum"}) == "entropy[aggregation=sum,top_k=5]"``, ``strategy_label("compose",
    {"criteria": ["entropy", "coreset"]}) == "compose[criteria=[entropy,coreset]]"``.
    """
    if not options:
        return strategy
    shown = (f"{key}={_shown(value)}" for key, value in sorted(options.items()))
    return f"{strategy}[{','.join(shown)}]"


def _shown(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):  # criteria=[entropy,coreset]
        return f"[{','.join(value)}]"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def load_runs(run_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Run]:
    """Load runs from run directories and/or parent directories searched recursively for ``metrics.jsonl``.

    A path holding ``metrics.jsonl`` is a run; any other directory is searched below for run directories.
    Runs are returned in path order, each loaded once. Raises ``FileNotFoundError`` for a missing path, a
    directory with no run below it, or a run without ``config.json``; ``ValueError`` for malformed files and
    for two runs with the same strategy label and seed.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    found: dict[Path, Path] = {}
    for given in run_dirs:
        for run_dir in _find_run_dirs(Path(given)):
            found.setdefault(run_dir.resolve(), run_dir)
    if not found:
        raise ValueError(
            "load_runs got no paths; pass run directories (each with metrics.jsonl and config.json) "
            "or a directory containing them"
        )
    runs = [_load_run(run_dir) for run_dir in found.values()]
    _check_unique(runs)
    return runs


def _find_run_dirs(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"run directory {path} does not exist")
    log = RunDir(path).metrics_log
    if log.is_file():
        return [path]
    found = sorted(p.parent for p in path.rglob(log.name) if p.is_file()) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"{path} has no metrics.jsonl and no subdirectory with one; pass a run directory written by the "
            "active-learning loop (RUN/metrics.jsonl and RUN/config.json) or a directory containing runs"
        )
    return found


def _load_run(run_dir: Path) -> Run:
    strategy, options, seed, extras = _read_config(run_dir)
    criteria = options.get("criteria")
    # a strategy built from a list of criteria is named after them in the loop's records ("entropy+coreset")
    named = "+".join(criteria) if isinstance(criteria, list) and all(isinstance(c, str) for c in criteria) else strategy
    records = _read_records(RunDir(run_dir).metrics_log, named, seed)
    keys = sorted({key for record in records for key in record["metrics"]})
    column = lambda name: np.array([float(r[name]) for r in records], np.float64)
    # None (null or absent key) becomes NaN in a float64 array.
    metrics = {key: np.array([r["metrics"].get(key) for r in records], np.float64) for key in keys}
    return Run(
        run_dir,
        strategy_label(strategy, options) + extras,
        seed,
        np.arange(len(records), dtype=np.int64),
        column("labelled_images"),
        column("labelled_boxes"),
        metrics,
        np.array([r.get("labelled_cost") for r in records], np.float64),
        _environments(RunDir(run_dir).timing_log, records),
    )


def _environments(timing_log: Path, records: list[dict]) -> tuple[str, ...]:
    """The distinct environments the run's cycles were trained in: a retrained record's own
    (``retrained.environment``), else the cycle's line of ``timing.jsonl`` (a file no result depends on: a missing
    or unreadable one gives none)."""
    from ..engine.environment import environment_key

    by_cycle: dict[int, dict] = {}
    try:
        lines = timing_log.read_text(encoding="utf-8").splitlines() if timing_log.is_file() else []
        for line in filter(str.strip, lines):
            timing = json.loads(line)
            if isinstance(timing.get("environment"), dict):
                by_cycle[timing["cycle"]] = timing["environment"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        by_cycle = {}
    found: list[str] = []
    for record in records:
        environment = record.get("retrained", {}).get("environment") or by_cycle.get(record["cycle"])
        if isinstance(environment, dict):
            found.append(environment_key(environment))
    return tuple(dict.fromkeys(found))


def _read_config(run_dir: Path) -> tuple[str, dict, int, str]:
    path = RunDir(run_dir).config
    if not path.is_file():
        raise FileNotFoundError(
            f"run {run_dir} has metrics.jsonl but no config.json; the report needs the run's "
            "'strategy' and 'seed' from the config.json the active-learning loop writes"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object. Got {type(config).__name__} instead.")
    strategy, seed, options = config.get("strategy"), config.get("seed"), config.get("strategy_options")
    if isinstance(strategy, list) and strategy and all(isinstance(s, str) and s for s in strategy):
        strategy = "+".join(strategy)  # a composition of criteria, named as the loop names it
    if not isinstance(strategy, str) or not strategy:
        raise ValueError(f"'strategy' in {path} must be a non-empty string. Got {strategy!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"'seed' in {path} must be an int. Got {seed!r} instead.")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"'strategy_options' in {path} must be an object or absent. Got {options!r} instead.")
    return strategy, options or {}, seed, label_extras(config)


def label_extras(config: dict) -> str:
    """The loop settings of a run's config that change what an arm is, shown after its strategy label:
    ``" +pseudo[...]"`` (pseudo labels), ``" +ssl[...]"`` (teacher-student semi-supervision, its options but
    ``method``), ``" +fine-tune"`` (warm start), ``" +typiclust start"`` (an initial set not drawn at random),
    ``" +budget[320 boxes]"`` (a budget per cycle in boxes or cost rather than images; ``" +budget[320 boxes,
    predicted]"`` when a simulation spends it on predicted figures, ``simulated_preview: false``, and ``",
    predicted, uncalibrated]"`` when those are spent as predicted, ``cost_calibration: false``; a run whose config
    predates that key spent them so), ``" +near_duplicates[0.85]"`` (picks that nearly duplicate another image
    skipped)."""
    extras = strategy_label(" +pseudo", config["pseudo_labels"]) if config.get("pseudo_labels") is not None else ""
    ssl = config.get("semi_supervised")
    if ssl is not None:
        extras += strategy_label(
            " +ssl", {k: v for k, v in ssl.items() if k != "method"} if isinstance(ssl, dict) else None
        )
    extras += " +fine-tune" if config.get("warm_start") else ""
    start = config.get("initial_selection")
    extras += f" +{start} start" if start not in (None, "random") else ""
    unit = config.get("budget_unit", "images")
    predicted = ""
    if config.get("simulated_preview", True) is False:
        predicted = ", predicted" if config.get("cost_calibration", False) else ", predicted, uncalibrated"
    extras += f" +budget[{config.get('budget')} {unit}{predicted}]" if unit != "images" else ""
    near = config.get("near_duplicates")
    return extras + (f" +near_duplicates[{near}]" if near is not None else "")


def _read_records(path: Path, strategy: str, seed: int) -> list[dict]:
    records: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}, line {line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); "
                    "fix or delete the line (a run killed mid-write leaves a partial last line)"
                ) from exc
            _check_record(record, where, len(records), strategy, seed)
            records.append(record)
    return records


def _check_record(record, where: str, expected_cycle: int, strategy: str, seed: int) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object. Got {type(record).__name__} instead.")
    missing = [name for name in _REQUIRED_FIELDS if name not in record]
    if missing:
        raise ValueError(
            f"{where}: missing field(s) {', '.join(missing)}; each line needs {', '.join(_REQUIRED_FIELDS)}"
        )
    if record["cycle"] != expected_cycle:
        raise ValueError(
            f"{where}: expected cycle {expected_cycle} (cycles must be 0, 1, 2, ... in order, "
            f"each once). Got {record['cycle']!r} instead."
        )
    for name in ("labelled_images", "labelled_boxes"):
        if isinstance(record[name], bool) or not isinstance(record[name], (int, float)):
            raise ValueError(f"{where}: '{name}' must be a number. Got {record[name]!r} instead.")
    cost = record.get("labelled_cost")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))):
        raise ValueError(f"{where}: 'labelled_cost' must be a number or null. Got {cost!r} instead.")
    if not isinstance(record["metrics"], dict):
        raise ValueError(f"{where}: 'metrics' must be an object. Got {record['metrics']!r} instead.")
    for key, value in record["metrics"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}: metric {key!r} must be a number or null. Got {value!r} instead.")
    for name, expected in (("strategy", strategy), ("seed", seed)):
        if name in record and record[name] != expected:
            raise ValueError(
                f"{where}: '{name}' is {record[name]!r} but config.json says {expected!r}; "
                "the run directory mixes two runs"
            )


def _check_unique(runs: list[Run]) -> None:
    seen: dict[tuple[str, int], Path] = {}
    for run in runs:
        other = seen.setdefault((run.strategy, run.seed), run.path)
        if other != run.path:
            raise ValueError(
                f"runs {other} and {run.path} are both strategy {run.strategy!r} with seed {run.seed}; "
                "a paired comparison needs one run per (strategy, seed): pass only one of them"
            )
