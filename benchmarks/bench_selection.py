"""Time and memory of the diversity selectors on large synthetic embedding pools (a script, not a test).

    python benchmarks/bench_selection.py                      # the default matrix (takes a few minutes)
    python benchmarks/bench_selection.py --strategy coreset --n 1000000 --budget 10000 --data mixture

Each case runs in a fresh subprocess. ``base RSS`` is the process once the embeddings exist (Python, torch and
the pool itself, ``N·D·4`` bytes: 977 MiB for 1,000,000 x 256), ``peak RSS`` the high-water mark during the
selection (``VmHWM`` reset just before it); the difference is what the selection allocates. Data models (all
``float32``, deterministic from ``--seed``):

* ``mixture``: a stand-in for pooled detector features (clustered, low intrinsic dimension): 1,000 clusters of
  random size (Dirichlet) with centres ``~ N(0, I_D)`` (about 22.6 apart), each member = its centre + a Gaussian
  vector in a 16-dimensional cluster-specific subspace (per-coordinate std 0.25: about 4 from the centre) +
  isotropic noise (per-coordinate std 0.02).
* ``isotropic``: ``N(0, I_D)``, no structure at all: the worst case for the triangle-inequality pruning (every
  centre is about equally far from every point), shown for honesty.

The labelled set (``--labelled``, default 1,000) is drawn from the same distribution. ``seconds`` is wall time,
``cpu s`` the process CPU time (BLAS threads included) and ``load`` the 1-minute load average at the end: on a
shared machine a load above the core count means the wall time is inflated by other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from activedet.strategies import ScoredPool, SelectionInput, get_strategy

DEFAULT_CASES = [
    # strategy, options, data, N, budget
    ("coreset", {}, "mixture", 100_000, 10_000),
    ("coreset", {}, "mixture", 1_000_000, 10_000),
    ("coreset", {"projection_dim": 32}, "mixture", 1_000_000, 10_000),
    ("kmeanspp", {}, "mixture", 100_000, 10_000),
    ("kmeanspp", {}, "mixture", 1_000_000, 10_000),
    ("coreset", {}, "isotropic", 100_000, 10_000),
    ("kmeanspp", {}, "isotropic", 100_000, 10_000),
    ("coreset", {"projection_dim": 32}, "isotropic", 1_000_000, 10_000),
    ("kmeanspp", {"projection_dim": 32}, "isotropic", 1_000_000, 10_000),
    ("kmeans", {}, "mixture", 100_000, 10_000),
    ("kmeans", {}, "mixture", 1_000_000, 10_000),
]


def make_embeddings(kind: str, n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``float32[n, dim]`` from the data model ``kind`` (module docstring), generated in blocks."""
    out = np.empty((n, dim), np.float32)
    if kind == "isotropic":
        for lo in range(0, n, 1 << 16):
            out[lo : lo + (1 << 16)] = rng.standard_normal((min(n - lo, 1 << 16), dim), dtype=np.float32)
        return out
    n_clusters, rank = 1000, 16
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    spreads = rng.standard_normal((n_clusters, rank, dim), dtype=np.float32) * (0.25 / np.sqrt(rank))
    labels = rng.choice(n_clusters, size=n, p=rng.dirichlet(np.ones(n_clusters)))
    for lo in range(0, n, 1 << 12):
        lab = labels[lo : lo + (1 << 12)]
        coef = rng.standard_normal((len(lab), 1, rank), dtype=np.float32)
        out[lo : lo + len(lab)] = (
            centres[lab] + (coef @ spreads[lab])[:, 0] + 0.02 * rng.standard_normal((len(lab), dim), dtype=np.float32)
        )
    return out


def _reset_peak_rss() -> None:
    """Make ``VmHWM`` restart from the current RSS (Linux >= 4.0), so the peak is the selection's own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_case(
    strategy: str, options: dict, data: str, n: int, budget: int, n_labelled: int, dim: int, seed: int
) -> dict:
    rng = np.random.default_rng(seed)
    both = make_embeddings(data, n + n_labelled, dim, rng)
    pool_emb, lab_emb = both[:n], both[n:]
    pool = ScoredPool(np.arange(n), np.zeros(n), np.zeros(n, bool), pool_emb)
    labelled = ScoredPool(np.arange(n_labelled), np.zeros(n_labelled), np.zeros(n_labelled, bool), lab_emb)
    strat = get_strategy(strategy, **options)
    _reset_peak_rss()
    base = _rss_mib("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    picks = []
    for index in strat.select(SelectionInput(pool, labelled, budget, np.random.default_rng(seed + 1))):
        picks.append(index)
        if len(picks) == budget:
            break
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(set(picks)) == len(picks) == min(budget, n)
    return {
        "strategy": strategy,
        "options": options,
        "data": data,
        "N": n,
        "D": dim,
        "L": n_labelled,
        "B": budget,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "load": round(os.getloadavg()[0], 1),
        "base_rss_mib": round(base),
        "peak_rss_mib": round(_rss_mib("VmHWM")),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", help="run one case in this process instead of the default matrix")
    parser.add_argument("--options", default="{}", help="JSON dict of strategy options")
    parser.add_argument("--data", default="mixture", choices=["mixture", "isotropic"])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--labelled", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.strategy:
        print(
            json.dumps(
                run_case(
                    args.strategy,
                    json.loads(args.options),
                    args.data,
                    args.n,
                    args.budget,
                    args.labelled,
                    args.dim,
                    args.seed,
                )
            ),
            flush=True,
        )
        return
    print(
        f"{'strategy':<9} {'options':<22} {'data':<9} {'N':>9} {'L':>6} {'B':>6} {'seconds':>8} {'cpu s':>7} "
        f"{'load':>5} {'base RSS MiB':>12} {'peak RSS MiB':>12}",
        flush=True,
    )
    for strategy, options, data, n, budget in DEFAULT_CASES:
        cmd = [
            sys.executable,
            __file__,
            "--strategy",
            strategy,
            "--options",
            json.dumps(options),
            "--data",
            data,
            "--n",
            str(n),
            "--budget",
            str(budget),
            "--labelled",
            str(args.labelled),
            "--dim",
            str(args.dim),
            "--seed",
            str(args.seed),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{strategy} {options} {data} N={n}: failed\n{out.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{strategy:<9} {json.dumps(options):<22} {data:<9} {n:>9} {r['L']:>6} {budget:>6} "
            f"{r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} {r['load']:>5} {r['base_rss_mib']:>12} "
            f"{r['peak_rss_mib']:>12}",
            flush=True,
        )


if __name__ == "__main__":
    main()
