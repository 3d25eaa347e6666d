"""``activedet bench``: the paired comparison of several strategies over several seeds, then the report.

Run directories are ``OUT/runs/{strategy label}/seed{seed}``; each is an ordinary, resumable run, so an interrupted
bench continues where it stopped when the same command is run again. Cycle 0 (training on the seed's initial set)
does not depend on the strategy, so it is trained once per seed and its model and metrics are copied into the
other strategies' runs of that seed (their ledgers start from the same initial set).
"""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import yaml

from .al.rundir import RunDir
from .atomic import atomic_write_json
from .config import load_config
from .report import format_table, strategy_label, write_report

__all__ = ["run_bench", "parse_strategy_spec", "check_bench_arguments", "BenchRunsFailed"]


class BenchRunsFailed(RuntimeError):
    """Some runs of a parallel bench failed; the others finished and the report was written."""


def parse_strategy_spec(spec: str) -> tuple[str, dict]:
    """``"hybrid:uncertainty=entropy,factor=2"`` -> ``("hybrid", {"uncertainty": "entropy", "factor": 2})``.

    Values are read as YAML, so a list or mapping may hold commas: ``"compose:criteria=[influence,coreset]"``.
    """
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, _top_level_items(rest)):
        if "=" not in item:
            raise ValueError(
                f"argument --strategies: option {item!r} in {spec!r} must be key=value (e.g. entropy:aggregation=sum)"
            )
        key, value = item.split("=", 1)
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(
                f"argument --strategies: the value of {key.strip()!r} in {spec!r} is not valid YAML ({problem}); "
                f"write lists as [a,b] and mappings as {{k: v}}"
            ) from None
    return name.strip(), options


def _top_level_items(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and braces."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return items + [text[start:]]


def check_bench_arguments(
    config: str | Path, *, strategies: list[str], seeds: list[int], overrides: list[str] | None, metric: str
) -> None:
    """Fail before any work, naming the argument: an unknown strategy or option in ``--strategies``, a seed listed
    twice, a ``--metric`` the config does not compute, or a config that does not load with each strategy."""
    from .strategy_names import strategy_names  # the names without importing the methods: a typo fails at once

    known = strategy_names()
    specs = [(spec, *parse_strategy_spec(spec)) for spec in strategies]
    for _, name, _ in specs:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ValueError(
                f"argument --strategies: unknown strategy {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; valid names: {', '.join(known)} (`activedet strategies` describes them)"
            )
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"argument --seeds: seed {repeated[0]} is listed twice; give each seed once")
    from .strategies import get_strategy

    for spec, name, options in specs:
        try:
            get_strategy(name, **options)
        except ValueError as exc:
            raise ValueError(f"argument --strategies {spec!r}: {exc}") from None
    configs = []
    for spec, name, options in specs:
        cfg = load_config(
            config,
            list(overrides or []) + [f"strategy={name}", f"seed={seeds[0]}", f"strategy_options={json.dumps(options)}"],
        )
        family = metric.split("/", 1)[0]
        if family not in cfg.metrics:
            raise ValueError(
                f"argument --metric: {metric!r} is a '{family}' metric, but the config {config} computes "
                f"only {cfg.metrics} (key 'metrics'); pass a metric of those, e.g. --metric "
                f"{_example_metric(cfg.metrics[0])}, or add '{family}' to 'metrics'"
            )
        configs.append((spec, cfg))
    _check_supported(configs)


def _check_supported(configs: list) -> None:
    """Every strategy can score with the config's detector (built once, untrained; the pool is read for its
    classes without opening the images)."""
    import torch

    from .config import _strategy
    from .workflows import build_model, check_strategy_supported, load_split

    pool = load_split(configs[0][1], "train", check_images=False)
    with torch.random.fork_rng():
        model = build_model(configs[0][1], pool.num_classes)
    for spec, cfg in configs:
        try:
            check_strategy_supported(_strategy(cfg), model, cfg.detector)
        except ValueError as exc:
            raise ValueError(f"argument --strategies {spec!r}: {exc}") from None


def _example_metric(family: str) -> str:
    return {"voc": "voc/mAP_area", "coco": "coco/AP", "froc": "froc/cpm", "accuracy": "accuracy/top1"}.get(
        family, family
    )


def _share_cycle_zero(source: Path, target: Path, strategy: str) -> None:
    """Give ``target`` the cycle-0 model and metrics of ``source`` (same seed, same initial set)."""
    src, dst = RunDir(source).cycle(0), RunDir(target).cycle(0)
    if dst.metrics.is_file() or not src.metrics.is_file() or not src.model.is_file():
        return
    dst.path.mkdir(parents=True, exist_ok=True)
    copy = dst.model.with_name(f".{dst.model.name}.copy")  # copied aside, then renamed: never a partial model
    shutil.copyfile(src.model, copy)
    copy.replace(dst.model)
    if src.timing.is_file():
        shutil.copyfile(src.timing, dst.timing)
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
):
    """Run every strategy for every seed from one config and write ``OUT/report``; returns the summary.

    ``jobs`` > 1 runs up to that many (strategy, seed) runs at once, each in its own process
    (:mod:`activedet.bench_jobs`); a failed run does not stop the others, and after the report is written a
    :class:`BenchRunsFailed` names each failed run and its log.
    """
    out = Path(out)
    specs = [parse_strategy_spec(s) for s in strategies]
    labels = [strategy_label(name, options) for name, options in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"argument --strategies lists the same strategy twice: {labels}")
    if jobs < 1:
        raise ValueError(f"argument --jobs: expected a whole number >= 1, got {jobs}")
    check_bench_arguments(config, strategies=strategies, seeds=seeds, overrides=overrides, metric=metric)
    failed = []
    if jobs > 1:
        from .bench_jobs import BenchRun, run_parallel

        heads = {}  # strategy by strategy, each over every seed: the first strategy's runs train each cycle 0
        runs = []
        for (name, options), label in zip(specs, labels):
            for seed in seeds:
                run = BenchRun(label, name, options, seed, out / "runs" / label / f"seed{seed}", head=heads.get(seed))
                heads.setdefault(seed, run)
                runs.append(run)
        failed = run_parallel(
            config, runs, overrides=overrides, jobs=jobs, logs=out / "logs", share_cycle_zero=_share_cycle_zero
        )
    else:
        _run_in_turn(config, specs, labels, seeds, out, overrides=overrides, progress=progress)
    summary = write_report(
        [out / "runs"], out / "report", metric=metric, baseline="random" if "random" in labels else labels[0]
    )
    print(format_table(summary))
    if failed:
        raise BenchRunsFailed(
            f"{len(failed)} of the bench's runs failed (the report above leaves out what they did not finish): "
            + "; ".join(f"{run.title} (log {out / 'logs' / f'{run.label}.seed{run.seed}.log'})" for run in failed)
            + ". Fix the cause, then run the same command again: finished runs are kept, the others resume."
        )
    return summary


def _run_in_turn(config, specs, labels, seeds, out: Path, *, overrides, progress: bool) -> None:
    """The sequential bench: per seed, each strategy in turn, the first one's cycle 0 shared with the others."""
    from .workflows import run_from_config  # torch and the methods: only once the arguments are known good

    for seed in seeds:
        first_run = None
        for (name, options), label in zip(specs, labels):
            run_dir = out / "runs" / label / f"seed{seed}"
            cfg = load_config(
                config,
                list(overrides or [])
                + [
                    f"strategy={name}",
                    f"seed={seed}",
                    f"out_dir={run_dir.resolve()}",
                    f"strategy_options={json.dumps(options)}",
                ],
            )
            if first_run is not None:
                _share_cycle_zero(first_run, run_dir, name)
            print(f"[bench] seed {seed}, strategy {label} -> {run_dir}")
            run_from_config(cfg, run_dir, progress=progress)
            first_run = first_run or run_dir
