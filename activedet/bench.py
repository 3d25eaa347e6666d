"""``activedet bench``: the paired comparison of several strategies over several seeds, then the report.

Each arm is ``STRATEGY[:key=value,...][@KEY=VALUE...]``: a strategy, its options, and config overrides of that arm
alone (``--set`` overrides every arm). An arm override may set only what the report's label shows
(``semi_supervised``, ``pseudo_labels``, ``warm_start``, ``initial_selection``); a dotted key sets one option of a
mapping, so
``entropy@semi_supervised.method=teacher_student`` is entropy with teacher-student semi-supervision, labelled
``entropy +ssl`` (``@semi_supervised={}`` is the same). The paired comparison of semi-supervised active learning is
``--strategies random random@semi_supervised={} entropy@semi_supervised={}``: ``OUT/report`` compares every arm with
``random`` (supervised), and each semi-supervised ``random`` arm gets a second report, ``OUT/report-vs-random+ssl``,
with that arm as the baseline (active learning against random selection, both semi-supervised).

Run directories are ``OUT/runs/{arm folder}/seed{seed}``, the folder being the arm's label as a file name that every
common file system accepts (:func:`activedet.bench_jobs.folder_name`); each is an ordinary, resumable run, so an
interrupted bench continues where it stopped when the same command is run again. Cycle 0 (training on the seed's
initial set) does not depend on the strategy, so it is trained once per seed and arm overrides (compared by value:
two spellings of one setting share it), and its model and metrics are copied into the other strategies' runs of
that seed with the same overrides (their ledgers start from the same initial set).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .al.rundir import RunDir
from .atomic import atomic_write_json, atomic_write_text
from .bench_arms import Arm, check_bench_arguments, parse_arm_overrides, parse_strategy_spec
from .config import load_config
from .report import format_table, write_report

__all__ = ["run_bench", "parse_strategy_spec", "parse_arm_overrides", "check_bench_arguments", "Arm", "BenchRunsFailed"]


class BenchRunsFailed(RuntimeError):
    """Some runs of a parallel bench failed; the others finished and the report was written."""


def _share_cycle_zero(source: Path, target: Path, strategy: str) -> None:
    """Give ``target`` the cycle-0 model and metrics of ``source`` (same seed, same initial set)."""
    src, dst = RunDir(source).cycle(0), RunDir(target).cycle(0)
    if dst.metrics.is_file() or not src.metrics.is_file() or not src.model.is_file():
        return
    dst.path.mkdir(parents=True, exist_ok=True)
    copy = dst.model.with_name(f".{dst.model.name}.copy")  # copied aside, then renamed: never a partial model
    shutil.copyfile(src.model, copy)
    copy.replace(dst.model)
    for name in ("timing", "environment"):
        if getattr(src, name).is_file():
            shutil.copyfile(getattr(src, name), getattr(dst, name))
    metrics = json.loads(src.metrics.read_text())
    metrics["strategy"] = strategy
    atomic_write_json(dst.metrics, metrics)


def run_bench(
    config: str | Path,
    *,
    strategies: list[str],
    seeds: list[int],
    out: str | Path,
    overrides: list[str] | None = None,
    metric: str = "voc/mAP_area",
    progress: bool = True,
    jobs: int = 1,
    baseline_cycles: int | None = None,
    draws: int = 1,
):
    """Run every arm for every seed from one config and write ``OUT/report`` (baseline: the ``random`` arm without
    ``@`` overrides, else the first arm) and ``OUT/report-vs-ARM`` for each ``random`` arm with overrides; returns
    the first report's summary. The reports compare the config's cycles.

    ``jobs`` > 1 runs up to that many (arm, seed) runs at once, each in its own process
    (:mod:`activedet.bench_jobs`); a failed run does not stop the others, and after the reports are written a
    :class:`BenchRunsFailed` names each failed run and its log.

    ``baseline_cycles`` runs the plain ``random`` arm (the baseline of ``OUT/report``) for that many cycles instead
    of the config's ``cycles``, so that the other arms' last points fall on random's curve and their labels saved
    are measured instead of bounded (the report compares AUCs and final metrics over the common cycles). Raising it
    later and running the same command again continues the finished random runs. ``"auto"``: once every run has
    finished, each seed's random run goes on a cycle at a time until its curve reaches the best metric another
    arm's run of that seed reached (:func:`baseline_short_of`), so that every saving is measured where it can be.

    ``draws`` > 1 trains every run's labelled sets again under ``draws - 1`` other training draws
    (:mod:`activedet.retrain`, each run with its own config; ``OUT/draws/draw<k>/``, as many processes as ``jobs``)
    and writes ``OUT/report/draws.txt``: each arm's labels saved under every draw and each seed's mean over the
    draws with the interval over the seeds (:mod:`activedet.report.draws`). One training draw moves a saving by
    about its interval; the mean over draws is the figure to compare arms by.
    """
    out = Path(out)
    if jobs < 1:
        raise ValueError(f"argument --jobs: expected a whole number >= 1, got {jobs}")
    if draws < 1:
        raise ValueError(f"argument --draws: expected a whole number >= 1 (1: the runs' own training), got {draws}")
    arms = check_bench_arguments(config, strategies=strategies, seeds=seeds, overrides=overrides, metric=metric)
    if draws > 1:
        _check_retrainable(arms)
    overrides = list(overrides or [])
    planned = load_config(config, overrides).cycles  # every arm's, but a baseline that goes on
    if baseline_cycles is not None:
        _check_baseline_cycles(arms, planned, baseline_cycles)
    baseline = _baseline(arms)
    auto = baseline_cycles == AUTO
    arm_cycles = {baseline: baseline_cycles} if baseline_cycles is not None and not auto else {}
    failed = []
    if jobs > 1:
        from .bench_jobs import BenchRun, run_parallel

        heads = {}  # arm by arm, each over every seed: the first run of a seed (and overrides) trains its cycle 0
        runs = []
        for arm in arms:
            for seed in seeds:
                run_dir = arm.run_dir(out, seed)
                settings = run_settings(arm, seed, run_dir, overrides, cycles=arm_cycles.get(arm.label))
                head = heads.get((seed, arm.cycle_zero))
                run = BenchRun(arm.label, seed, run_dir, settings, arm.recorded, head=head, quiet=not progress)
                heads.setdefault((seed, arm.cycle_zero), run)
                runs.append(run)
        failed = run_parallel(config, runs, jobs=jobs, logs=out / "logs", share_cycle_zero=_share_cycle_zero)
    else:
        _run_in_turn(config, arms, seeds, out, overrides=overrides, progress=progress, cycles=arm_cycles)
    if auto and not failed:
        failed = _extend_baseline(
            config, arms, seeds, out, overrides=overrides, metric=metric, jobs=jobs, planned=planned, progress=progress
        )
    if draws > 1 and not failed:
        failed = _retrain_draws(arms, seeds, out, draws=draws, jobs=jobs)
    failures = (
        f"{len(failed)} of the bench's runs failed: "
        + "; ".join(f"{run.title} (log {run.log_path(out / 'logs')})" for run in failed)
        + ". Fix the cause, then run the same command again: finished runs are kept, the others resume."
    )
    try:
        summary = write_report([out / "runs"], out / "report", metric=metric, baseline=baseline, cycles=planned)
    except (ValueError, FileNotFoundError) as exc:
        if failed:  # no report without the failed runs: name them, not only what the report missed
            raise BenchRunsFailed(f"{failures} No report: {exc}") from None
        raise
    print(format_table(summary))
    if draws > 1 and not failed:
        from .report.draws import draw_savings, format_draws

        folders = [out / "runs", *(out / "draws" / f"draw{k}" for k in range(2, draws + 1))]
        saved = draw_savings(folders, metric=metric, baseline=baseline, cycles=planned)
        text = format_draws(folders, saved, cycles=planned)
        atomic_write_text(out / "report" / "draws.txt", text + "\n")
        print(f"\nLabels saved under {draws} training draws ({out / 'report' / 'draws.txt'}):\n{text}")
    for arm in arms:
        if arm.strategy == "random" and arm.overrides and arm.label != baseline:
            second = write_report(
                [out / "runs"], out / f"report-vs-{arm.directory}", metric=metric, baseline=arm.label, cycles=planned
            )
            print(format_table(second))
    if failed:
        raise BenchRunsFailed(f"{failures} The reports above leave out what they did not finish.")
    return summary


def _check_retrainable(arms: list[Arm]) -> None:
    """``--draws`` trains each cycle's set from scratch: an arm with warm start or pseudo labels (applied by the loop
    between cycles) cannot be retrained as it ran."""
    for arm in arms:
        values = json.loads(arm.cycle_zero)
        if values["warm_start"] or values["pseudo_labels"] is not None:
            raise ValueError(
                f"argument --draws: the arm {arm.spec!r} uses warm_start or pseudo_labels, which the loop applies "
                "between cycles and a retrain does not replay; leave --draws out or run those arms in another bench"
            )


def _retrain_draws(arms: list[Arm], seeds: list[int], out: Path, *, draws: int, jobs: int) -> list:
    """Train every run's labelled sets again under draws 2..``draws`` (salt ``draw<k>``) into ``OUT/draws/draw<k>``,
    each run with its own ``config.json``; in turn, or as up to ``jobs`` ``activedet retrain`` processes. A cycle
    already retrained is kept. Returns the retrains that failed (with ``jobs`` > 1; in turn an error stops)."""
    retrains = [(k, arm, seed) for k in range(2, draws + 1) for arm in arms for seed in seeds]
    if jobs == 1:
        from .retrain import Retrainer, retrain_run

        for k, arm, seed in retrains:
            run_dir = arm.run_dir(out, seed)
            print(f"[bench] draw {k}: seed {seed}, strategy {arm.label} -> {out / 'draws' / f'draw{k}'}")
            retrain = Retrainer(RunDir(run_dir).config, salt=f"draw{k}")
            retrain_run(retrain, run_dir, out / "draws" / f"draw{k}")
        return []
    from .bench_jobs import BenchRun, run_parallel

    jobs_list = []
    for k, arm, seed in retrains:
        run_dir, draw = arm.run_dir(out, seed), out / "draws" / f"draw{k}"
        command = ["retrain", str(RunDir(run_dir).config), str(run_dir), "--salt", f"draw{k}"]
        command += ["--out", str(draw), "--quiet"]
        target = draw / run_dir.parent.name / run_dir.name  # where retrain_run writes: shown as the job's run
        jobs_list.append(BenchRun(f"{arm.label}@draw{k}", seed, target, [], arm.recorded, command=command))
    return run_parallel(None, jobs_list, jobs=jobs, logs=out / "logs", share_cycle_zero=_share_cycle_zero)


def run_settings(
    arm: Arm, seed: int, run_dir: Path, overrides: list[str] | None, *, cycles: int | None = None
) -> list[str]:
    """The ``key=value`` config overrides of one run of ``arm``, in order: the bench's ``--set``, the arm's own,
    then its strategy, options, seed and run directory, and ``cycles`` when given (a baseline that goes on)."""
    return (
        list(overrides or [])
        + list(arm.overrides)
        + [
            f"strategy={arm.strategy}",
            f"seed={seed}",
            f"out_dir={run_dir.resolve()}",
            f"strategy_options={json.dumps(arm.options)}",
        ]
        + ([f"cycles={cycles}"] if cycles is not None else [])
    )


def _plain_random(arms: list[Arm]) -> str | None:
    """The label of the ``random`` arm without overrides of its own (None: there is none)."""
    return next((arm.label for arm in arms if arm.strategy == "random" and not arm.overrides), None)


def _baseline(arms: list[Arm]) -> str:
    """The label of ``OUT/report``'s baseline: the ``random`` arm without overrides of its own, else the first arm."""
    return _plain_random(arms) or arms[0].label


def _check_baseline_cycles(arms: list[Arm], planned: int | None, cycles: int | str) -> None:
    """``--baseline-cycles`` needs a ``random`` arm without overrides of its own, and at least the cycles the other
    arms run (``auto``: a cycle count to extend)."""
    if _plain_random(arms) is None:
        raise ValueError(
            "argument --baseline-cycles: no arm is 'random' without @ overrides, the baseline that goes on; add "
            "'random' to --strategies or leave --baseline-cycles out"
        )
    if cycles == AUTO and planned is not None:
        return
    if planned is None or cycles == AUTO or cycles < planned:
        raise ValueError(
            f"argument --baseline-cycles: expected at least the config's 'cycles' ({planned}), got {cycles}; "
            + (
                "a run that stops at 'max_labelled' has no cycle count to extend: set 'cycles' with --set"
                if planned is None
                else f"give a number >= {planned}, or leave it out to run random for {planned} cycles like the others"
            )
        )


#: ``--baseline-cycles auto``: random goes on until it reaches the other arms; it stops, the savings then bounds, once
#: it has labelled this many times the images of the arm run it must reach (a saving of at least 75%)
AUTO, AUTO_MAX_RATIO = "auto", 4.0


def baseline_short_of(
    baseline_curve: np.ndarray,
    baseline_images: float,
    arm_curves: list[tuple[np.ndarray, np.ndarray]],
) -> float | None:
    """The metric one seed's baseline run still has to reach under ``--baseline-cycles auto``, or None when it has
    nothing more to do.

    ``baseline_curve`` is its metric per cycle so far and ``baseline_images`` its labelled images at the last one;
    ``arm_curves`` holds each other arm's run of the seed as (metric per cycle, labelled images per cycle). The
    target is the best metric of those runs; the baseline has reached it when a point of its curve is at least as
    high. It stops short of it once it has labelled :data:`AUTO_MAX_RATIO` times the images the arm needed for that
    metric (a run that cannot go on, its pool used up or ``max_labelled`` reached, is stopped by the caller)."""
    best, images = None, None
    for metrics, labelled in arm_curves:
        if np.isnan(metrics).all():
            continue
        t = int(np.nanargmax(metrics))
        if best is None or metrics[t] > best:
            best, images = float(metrics[t]), float(labelled[t])
    if best is None or (not np.isnan(baseline_curve).all() and np.nanmax(baseline_curve) >= best):
        return None
    if baseline_images >= AUTO_MAX_RATIO * images:
        return None
    return best


def _extend_baseline(
    config, arms: list[Arm], seeds, out: Path, *, overrides, metric: str, jobs: int, planned: int, progress: bool
):
    """``--baseline-cycles auto``: each seed's plain random run goes on by one cycle, in rounds, while
    :func:`baseline_short_of` names a metric it has still to reach; returns the runs that failed (none in turn: an
    error stops)."""
    from .report.runs import load_runs

    baseline = next(arm for arm in arms if arm.label == _plain_random(arms))
    others = [arm for arm in arms if arm is not baseline]
    asked: dict[int, int] = {}  # per seed, the cycle the last round asked its random run to reach
    stuck: set[int] = set()
    while True:
        extend = {}
        for seed in seeds:
            if seed in stuck:
                continue
            (run,) = load_runs(baseline.run_dir(out, seed))
            last = len(run.cycles) - 1
            if asked.get(seed, last) > last:  # asked for a cycle it did not add: pool used up, max_labelled, ...
                print(f"[bench] seed {seed}: random cannot go past cycle {last}; its savings stay bounds", flush=True)
                stuck.add(seed)
                continue
            curves = []
            for arm in others:
                (other,) = load_runs(arm.run_dir(out, seed))
                curves.append((other.metrics[metric][: planned + 1], other.labelled_images[: planned + 1]))
            target = baseline_short_of(run.metrics[metric], run.labelled_images[-1], curves)
            if target is not None:
                extend[seed] = last + 1
                best = np.nanmax(run.metrics[metric]) if not np.isnan(run.metrics[metric]).all() else float("nan")
                print(
                    f"[bench] seed {seed}: random's best {metric} {best:.4f} is below {target:.4f}, which another arm "
                    f"reached; random goes on to cycle {last + 1}",
                    flush=True,
                )
        if not extend:
            return []
        asked.update(extend)
        if jobs > 1:
            from .bench_jobs import BenchRun, run_parallel

            runs = [
                BenchRun(
                    baseline.label,
                    seed,
                    baseline.run_dir(out, seed),
                    run_settings(baseline, seed, baseline.run_dir(out, seed), overrides, cycles=cycles),
                    baseline.recorded,
                    quiet=not progress,
                )
                for seed, cycles in extend.items()
            ]
            failed = run_parallel(config, runs, jobs=jobs, logs=out / "logs", share_cycle_zero=_share_cycle_zero)
            if failed:
                return failed
        else:
            for seed, cycles in extend.items():
                _run_in_turn(
                    config,
                    [baseline],
                    [seed],
                    out,
                    overrides=overrides,
                    progress=progress,
                    cycles={baseline.label: cycles},
                )


def _run_in_turn(config, arms: list[Arm], seeds, out: Path, *, overrides, progress: bool, cycles: dict) -> None:
    """The sequential bench: per seed, each arm in turn; cycle 0 trained by the first arm of each set of overrides
    and shared with the others."""
    from .workflows import run_from_config  # torch and the methods: only once the arguments are known good

    for seed in seeds:
        first_runs: dict[str, Path] = {}  # per arm overrides' values: cycle 0 depends on them
        for arm in arms:
            run_dir = arm.run_dir(out, seed)
            cfg = load_config(config, run_settings(arm, seed, run_dir, overrides, cycles=cycles.get(arm.label)))
            if arm.cycle_zero in first_runs:
                _share_cycle_zero(first_runs[arm.cycle_zero], run_dir, arm.recorded)
            print(f"[bench] seed {seed}, strategy {arm.label} -> {run_dir}")
            run_from_config(cfg, run_dir, progress=progress)
            first_runs.setdefault(arm.cycle_zero, run_dir)
