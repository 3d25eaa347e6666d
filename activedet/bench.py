"""``activedet bench``: the paired comparison of several strategies over several seeds, then the report.

Run directories are ``OUT/runs/{strategy label}/seed{seed}``; each is an ordinary, resumable run, so an interrupted
bench continues where it stopped when the same command is run again. Cycle 0 (training on the seed's initial set)
does not depend on the strategy, so it is trained once per seed and its model and metrics are copied into the
other strategies' runs of that seed (their ledgers start from the same initial set).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from .atomic import atomic_write_json
from .config import load_config
from .report import format_table, strategy_label, write_report
from .workflows import run_from_config

__all__ = ["run_bench", "parse_strategy_spec"]


def parse_strategy_spec(spec: str) -> tuple[str, dict]:
    """``"hybrid:uncertainty=entropy,factor=2"`` -> ``("hybrid", {"uncertainty": "entropy", "factor": 2})``."""
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        if "=" not in item:
            raise ValueError(f"strategy option {item!r} in {spec!r} must be key=value (e.g. entropy:aggregation=sum)")
        key, value = item.split("=", 1)
        options[key.strip()] = yaml.safe_load(value)
    return name.strip(), options


def _share_cycle_zero(source: Path, target: Path, strategy: str) -> None:
    """Give ``target`` the cycle-0 model and metrics of ``source`` (same seed, same initial set)."""
    src, dst = source / "cycles" / "0", target / "cycles" / "0"
    if (dst / "metrics.json").is_file() or not (src / "metrics.json").is_file() or not (src / "model.pt").is_file():
        return
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "model.pt", dst / ".model.pt.copy")
    (dst / ".model.pt.copy").replace(dst / "model.pt")
    if (src / "timing.json").is_file():
        shutil.copyfile(src / "timing.json", dst / "timing.json")
    metrics = json.loads((src / "metrics.json").read_text())
    metrics["strategy"] = strategy
    atomic_write_json(dst / "metrics.json", metrics)


def run_bench(config: str | Path, *, strategies: list[str], seeds: list[int], out: str | Path,
              overrides: list[str] | None = None, metric: str = "voc/mAP_area", progress: bool = True):
    """Run every strategy for every seed from one config and write ``OUT/report``; returns the summary."""
    out = Path(out)
    specs = [parse_strategy_spec(s) for s in strategies]
    labels = [strategy_label(name, options) for name, options in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--strategies lists the same strategy twice: {labels}")
    for seed in seeds:
        first_run = None
        for (name, options), label in zip(specs, labels):
            run_dir = out / "runs" / label / f"seed{seed}"
            cfg = load_config(config, list(overrides or []) + [f"strategy={name}", f"seed={seed}",
                                                                f"out_dir={run_dir.resolve()}",
                                                                f"strategy_options={json.dumps(options)}"])
            if first_run is not None:
                _share_cycle_zero(first_run, run_dir, name)
            print(f"[bench] seed {seed}, strategy {label} -> {run_dir}")
            run_from_config(cfg, run_dir, progress=progress)
            first_run = first_run or run_dir
    summary = write_report([out / "runs"], out / "report", metric=metric,
                           baseline="random" if "random" in labels else labels[0])
    print(format_table(summary))
    return summary
