"""Where a run stands, read from its files without torch (``activedet status`` answers in a fraction of a second
whatever the pool's size): the ledger, the cycles' metrics and selections, the imports.

The pool itself is read only when its source may have changed (:mod:`activedet.al.fingerprint`): a source file
whose size and modification time are still those saved in ``pool.json`` is not opened.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from ..constants import HEADLINE_METRICS
from .annotation import load_import_records, pending_images
from .cost import calibration
from .ledger import Ledger
from .plan import LoopOptions
from .rundir import RunDir

__all__ = ["run_status", "check_source", "find_runs", "status_line", "headline_metric"]


def run_status(run_dir: str | Path) -> dict[str, Any]:
    """Where a run stands, from its files: cycle, state (``in progress``: running, or stopped before its end;
    ``awaiting labels``; ``labelled, ready for the next query``; ``finished``), labelled
    images and boxes, the pending batch, the query folder, the imports, the last evaluated metrics, the labelled
    batches (:func:`labelled_batches`) and, where they recorded predictions, ``calibration``: actual / predicted
    boxes and cost over them (:func:`~activedet.al.cost.calibration`, the factors ``cost_calibration`` spends the
    next batch's predictions at), else ``None``.

    Raises :class:`~activedet.al.fingerprint.PoolChanged` when the train split's source file changed the pool's
    images since the run started (:func:`check_source`)."""
    run_dir, run = Path(run_dir), RunDir(run_dir)
    ledger = Ledger.load(run.ledger)
    check_source(run_dir)
    t = ledger.cycle
    lines = run.metric_records()
    selection, query = run.cycle(t).selection, run.cycle(t).query
    pending: list[str] = []
    state = "in progress"
    if selection.is_file() and run.cycle(t).query_batch.is_file():
        batch = [p["image_id"] for p in json.loads(selection.read_text())["picks"]]
        pending = pending_images(run_dir, batch)
        state = "awaiting labels" if pending else "labelled, ready for the next query"
    elif lines and lines[-1]["cycle"] == t and run.cycle(t).metrics.is_file() and _stops_at(run, ledger):
        state = "finished"
    last = lines[-1] if lines else None
    return {
        "run_dir": str(run_dir),
        "cycle": t,
        "state": state,
        "labelled_images": int(len(ledger.labelled())),
        "labelled_boxes": last["labelled_boxes"] if last and last["cycle"] == t else None,
        "pending": pending,
        "query_folder": str(query) if pending else None,
        "imports": len(load_import_records(run_dir)),
        "last_metrics": {"cycle": last["cycle"], **last["metrics"]} if last else None,
        "batches": labelled_batches(ledger),
        "calibration": (
            {unit: round(calibration(ledger.picks, unit), 6) for unit in ("boxes", "cost")}
            if any(p.get("predicted_boxes") is not None for p in ledger.picks)
            else None
        ),
    }


def labelled_batches(ledger: Ledger) -> list[dict[str, Any]]:
    """Per labelled batch (the picks of one cycle): ``cycle``, ``images``, ``boxes`` (labelled) and, where its
    selection recorded them (a run with a cost model), ``predicted_boxes``, ``predicted_cost`` and ``cost``: how
    far the figures a budget in boxes or cost spent at selection were from what labelling found."""
    by_cycle: dict[int, list[dict]] = {}
    for pick in ledger.picks:
        by_cycle.setdefault(int(pick["cycle"]), []).append(pick)

    def total(picks: list[dict], key: str):
        values = [p.get(key) for p in picks]
        if any(v is None for v in values):
            return None
        return int(sum(values)) if key == "boxes" else round(float(sum(values)), 6)

    return [
        {
            "cycle": t,
            "images": len(picks),
            **{key: total(picks, key) for key in ("boxes", "predicted_boxes", "cost", "predicted_cost")},
        }
        for t, picks in sorted(by_cycle.items())
    ]


def check_source(run_dir: str | Path) -> None:
    """Raise :class:`~activedet.al.fingerprint.PoolChanged` when a source file of the run's pool (a COCO file) has
    another size or modification time than when ``pool.json`` was written and the images read from it differ.

    Cheap where nothing changed (one ``stat`` per file); a changed file is read again (COCO: through the pool
    index, cached once per version of the file). Folder sources (VOC, YOLO, image folders, ``unlabelled_data``)
    are not listed here: the commands that read the pool (run, resume, query, import) check them."""
    from .fingerprint import files_unchanged, load_fingerprint

    saved = load_fingerprint(run_dir)
    if saved is None or files_unchanged(saved) or not any(p.get("stat") for p in saved["parts"]):
        return
    from ..splits import run_pool

    run_pool(_saved_config(RunDir(run_dir)), run_dir=run_dir)


def _saved_config(run: RunDir):
    """The run's ``config.json`` as a :class:`~activedet.config.Config`, checked against the schema only (it was
    checked in full when the run started; the full checks import every method, torch included)."""
    from pydantic import ValidationError

    from ..config import Config, load_config

    try:
        cfg = Config(**json.loads(run.config.read_text(encoding="utf-8")))
    except (ValueError, TypeError, ValidationError):
        return load_config(run.config)  # raises, naming the file and the key
    cfg._source = str(run.config)
    return cfg


def _stops_at(run: RunDir, ledger: Ledger) -> bool:
    """Whether the run's stopping rule (its saved ``cycles``, ``max_labelled``, or an exhausted pool) holds at the
    ledger's cycle: an evaluated cycle is the last one, not a run between its evaluation and its selection. A run
    without ``config.json`` (made through the library) counts an evaluated cycle without a selection as its last."""
    if not run.config.is_file():  # a run made through the library: no config to read its stopping rule from
        return True
    saved = json.loads(run.config.read_text(encoding="utf-8"))
    options = LoopOptions(**{f.name: saved[f.name] for f in dataclasses.fields(LoopOptions) if f.name in saved})
    return options.finished(ledger)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """The run directories (those with a ledger) among ``paths`` and below them, each once, in path order.

    Raises ``FileNotFoundError`` naming a path that does not exist or holds no run."""
    runs: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such run directory")
        found = (
            [path] if RunDir(path).ledger.is_file() else sorted(p.parent for p in path.rglob(RunDir(".").ledger.name))
        )
        if not found:
            raise FileNotFoundError(f"{path}: no run below it (a run directory holds {RunDir('.').ledger.name})")
        runs.update(dict.fromkeys(found))
    return list(runs)


def status_line(status: dict[str, Any]) -> str:
    """A run's status on one line: ``RUN: cycle 2, in progress, 400 labelled images, 1508 boxes, voc/mAP_area 0.5420
    (cycle 2)``."""
    parts = [f"cycle {status['cycle']}", status["state"], f"{status['labelled_images']} labelled images"]
    if status["labelled_boxes"] is not None:
        parts.append(f"{status['labelled_boxes']} boxes")
    if status["pending"]:
        parts.append(f"{len(status['pending'])} pending")
    metrics = status["last_metrics"] or {}
    headline = headline_metric(metrics)
    if headline is not None:
        parts.append(f"{headline[0]} {headline[1]:.4f} (cycle {metrics['cycle']})")
    return f"{status['run_dir']}: {', '.join(parts)}"


def headline_metric(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The metric a one-line summary shows: the first of :data:`~activedet.constants.HEADLINE_METRICS` that
    ``metrics`` holds as a number (not NaN), with its value; None when there is none."""
    for key in HEADLINE_METRICS:
        value = metrics.get(key)
        if isinstance(value, int | float) and not math.isnan(value):
            return key, float(value)
    return None
