"""``activedet bench --jobs N``: the runs of a bench as up to N processes at a time.

Each (strategy, seed) run is its own ``activedet run`` process writing its own run directory, so a run that fails
(out of memory, a bad method option, a killed process) ends only itself: the others go on, the report is written from
what finished, and the failed runs are named with their log files. Running the same command again resumes every
unfinished run where it stopped.

Cycle 0 does not depend on the strategy. As in the sequential bench, the first strategy of each seed trains it; the
other runs of that seed start once that model and its metrics are saved, from a copy of them (the copy is made by
this process, before the run starts). Should the first run fail before its cycle 0 is saved, the others train their
own cycle 0 from the same initial set.

Processes share the machine: each gets ``OMP_NUM_THREADS`` = CPU cores // N (unless the variable is set), and on a
GPU machine they share its device (``device: auto``), which suits detectors too small to fill one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .al.rundir import RunDir

__all__ = ["BenchRun", "run_parallel"]


@dataclass
class BenchRun:
    """One (arm, seed) run of a bench.

    Attributes:
        label: the arm's report label; seed, run_dir: which run and where.
        settings: its config overrides (``key=value``, given to ``activedet run`` as ``--set`` in order).
        recorded: the strategy name its records carry (a copied cycle 0 is relabelled to it).
        head: the run of the same seed and overrides whose cycle 0 it shares (``None``: it trains its own).
        command: the ``activedet`` arguments of another job than ``activedet run`` (a bench's retrain of a run
            under another training draw); ``settings`` then go unused.
        quiet: ``activedet run --quiet`` (a quiet bench): no dataset warnings and no progress lines in its log.
    """

    label: str
    seed: int
    run_dir: Path
    settings: list[str]
    recorded: str
    head: BenchRun | None = None
    command: list[str] | None = None
    quiet: bool = False
    returncode: int | None = field(default=None, compare=False)

    @property
    def title(self) -> str:
        return f"seed {self.seed}, strategy {self.label}"

    def log_path(self, logs: Path) -> Path:
        """Where the run's output goes: ``logs/{folder_name(label)}.seed{seed}.log``."""
        return logs / f"{folder_name(self.label)}.seed{self.seed}.log"


#: what an arm's label may not keep in a file name (Windows forbids <>:"/\\|?*; "/" would nest folders anywhere)
_UNSAFE = {ord(c): "_" for c in "<>/\\|?*"} | {ord(" "): None, ord('"'): None, ord(":"): "="}
#: labels longer than this get a shortened folder name ending in a digest of the whole label
_MAX_NAME = 120


def folder_name(label: str) -> str:
    """An arm label as a file name that every common file system accepts: spaces and ``"`` dropped, ``:``
    written ``=``, the other characters Windows forbids (and control characters) written ``_``, no trailing dot;
    ``compose[class_balance={"per_box":true},criteria=[entropy,class_balance]]`` ->
    ``compose[class_balance={per_box=true},criteria=[entropy,class_balance]]``. A label longer than 120
    characters keeps its first 103 and a 16-hex-digit digest of the whole label, so distinct labels stay apart."""
    name = "".join(ch if ch.isprintable() else "_" for ch in label.translate(_UNSAFE)).rstrip(".") or "_"
    if len(name) > _MAX_NAME:
        name = f"{name[: _MAX_NAME - 17]}-{hashlib.sha1(label.encode()).hexdigest()[:16]}"
    return name


def _command(config: Path | None, run: BenchRun) -> list[str]:
    if run.command is not None:
        return [sys.executable, "-m", "activedet", *run.command]
    # unless quiet, the run writes one plain line per epoch, scoring pass and cycle to its log (a file: no bars)
    return [sys.executable, "-m", "activedet", "run", str(config), *(["--quiet"] if run.quiet else [])] + [
        arg for value in run.settings for arg in ("--set", value)
    ]


def _environment(jobs: int) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return env


def _cycle_zero_saved(run: BenchRun) -> bool:
    cycle = RunDir(run.run_dir).cycle(0)
    return cycle.metrics.is_file() and cycle.model.is_file()


def run_parallel(
    config: str | Path | None,
    runs: list[BenchRun],
    *,
    jobs: int,
    logs: Path,
    share_cycle_zero,
    poll_s: float = 0.5,
) -> list[BenchRun]:
    """Run ``runs`` in the order given, at most ``jobs`` (>= 1) processes at a time; returns those that failed.

    ``share_cycle_zero(source, target, strategy)`` copies a head's cycle 0 into a waiting run before it starts. The
    output of each run goes to :meth:`BenchRun.log_path`.
    """
    config = Path(config) if config is not None else None
    logs.mkdir(parents=True, exist_ok=True)
    env = _environment(jobs)
    waiting = list(runs)
    running: dict[subprocess.Popen, tuple[BenchRun, object]] = {}
    try:
        _schedule(
            config,
            waiting,
            running,
            jobs=jobs,
            logs=logs,
            env=env,
            share_cycle_zero=share_cycle_zero,
            poll_s=poll_s,
        )
    finally:  # interrupted (Ctrl-C, `timeout -s INT`): stop the runs; each resumes from its last saved output
        for process in running:
            process.terminate()
        for process, (run, log) in running.items():
            process.wait()
            log.close()
            print(f"[bench] {run.title}: stopped", flush=True)
    return [run for run in runs if run.returncode != 0]


def _schedule(config, waiting, running, *, jobs, logs, env, share_cycle_zero, poll_s) -> None:
    started = time.perf_counter()
    while waiting or running:
        for process, (run, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            run.returncode = process.returncode
            del running[process]
            outcome = "done" if run.returncode == 0 else f"FAILED (exit {run.returncode}, log {log.name})"
            print(f"[bench] {run.title}: {outcome} at {time.perf_counter() - started:.0f} s", flush=True)
        for run in list(waiting):
            if len(running) >= jobs:
                break
            head = run.head
            if head is not None and not _cycle_zero_saved(head):
                if head.returncode is None:
                    continue  # its seed's cycle 0 is still being trained
            elif head is not None:
                share_cycle_zero(head.run_dir, run.run_dir, run.recorded)
            waiting.remove(run)
            log = open(run.log_path(logs), "a")  # closed when the run ends; a resumed run appends
            process = subprocess.Popen(_command(config, run), stdout=log, stderr=subprocess.STDOUT, env=env)
            running[process] = (run, log)
            print(f"[bench] {run.title} -> {run.run_dir} (log {log.name})", flush=True)
        if waiting or running:
            time.sleep(poll_s)
