"""Two gloo processes under torchrun train to the same weights as one process (within float tolerance)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "ddp_train_script.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid``, children first (from ``/proc``). torchrun starts each worker in a session
    of its own, so signalling the launcher's process group does not reach them."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        found += children
        frontier = children
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def run(cmd, tmp_path, env: dict | None = None, check: bool = True, timeout: float = 600):
    """Run ``cmd``, with ``env`` added to the environment; with ``check``, it must exit 0. Past ``timeout`` the
    launcher's workers get SIGABRT, which makes Python's fault handler print each one's stack, then every process
    below ``cmd`` and ``cmd`` itself are killed and the test fails with the stacks: a hung collective shows where it
    hangs, and no worker outlives the test (holding its output open)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        below = descendants(proc.pid)
        signal_all(below, signal.SIGABRT)
        time.sleep(5)  # the fault handlers write
        signal_all([*descendants(proc.pid), *below, proc.pid], signal.SIGKILL)
        out, err = proc.communicate()
        stacks = "\n".join(x for x in err.splitlines() if "Extension modules:" not in x)  # a long line per process
        pytest.fail(f"{cmd} still running after {timeout} s; the stacks at SIGABRT:\n{out[-3000:]}{stacks[-12000:]}")
    assert not check or proc.returncode == 0, out[-3000:] + err[-3000:]


def tiny_run_config(tmp_path: Path, **keys) -> Path:
    """``tmp_path/cfg.yaml``: a run to cycle 0 on the generated tiny data (6 initial images, 5 per cycle), with
    ``keys`` set (``val_data`` relative to the data folder); returns its path. The pool is scored in shards of 6 =
    2 processes x batches of 3, so every forward pass has 3 images with one process or two (other batch sizes change
    the last bits)."""
    import yaml

    from activedet.data.synth import generate_dataset

    data = generate_dataset("tiny", tmp_path / "tiny", seed=0)
    if "val_data" in keys:
        keys["val_data"] = str(data / keys["val_data"])
    cfg = {
        "data_format": "coco",
        "train_data": str(data / "annotations/train.json"),
        "test_data": str(data / "annotations/test.json"),
        "image_root": str(data),
        "backbone": "tiny",
        "min_size": 96,
        "epochs": 1,
        "batch_size": 4,
        "optimizer": "adamw",
        "lr": 0.003,
        "warmup_iters": 0,
        "hflip_prob": 0.0,
        "amp": False,
        "metrics": ["voc"],
        "device": "cpu",
        "initial_labelled": 6,
        "budget": 5,
        "cycles": 0,
        "eval_batch_size": 3,
        "score_shard_size": 6,
        **keys,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def iteration_losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if x["event"] == "iter"]


def test_two_gloo_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, str(SCRIPT), str(one)], tmp_path)
    run(
        [*TORCHRUN, str(SCRIPT), str(two)],
        tmp_path,
    )
    a, b = torch.load(one / "final.pt"), torch.load(two / "final.pt")
    losses_one, losses_two = iteration_losses(one / "run"), iteration_losses(two / "run")
    assert len(losses_one) == len(losses_two) == 4  # 2 epochs x (8 images / global batch 4)
    for x, y in zip(losses_one, losses_two):
        assert abs(x - y) <= 1e-4 * max(1.0, abs(x)), (losses_one, losses_two)
    for name, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][name].float(), rtol=1e-4, atol=1e-5), name
    # the sharded, gathered predictions cover every image in order, like the single-process ones
    assert len(a["scores"]) == len(b["scores"]) == 8
    for x, y in zip(a["scores"], b["scores"]):
        assert x.shape == y.shape and torch.allclose(x, y, atol=1e-4)


@pytest.mark.parametrize(
    "detector,strategy", [("ssd", "hybrid"), ("miaod", "miaod"), ("almdn_ssd", "almdn"), ("ssd", "cald")]
)
def test_sharded_pool_scoring_selects_what_one_process_selects(tmp_path, detector, strategy):
    """Cycle 0 is trained once (MI-AOD: by two gloo processes, its DDP stages), then the pool is scored by one
    process and by two, in shards of 6 images: the same scores and the same picks (AL-MDN: its pool-level
    normalisation runs on the gathered statistics of every shard)."""
    import shutil

    import numpy as np

    keys = {"detector": detector, "strategy": strategy}
    if strategy == "hybrid":
        keys["strategy_options"] = {"uncertainty": "entropy", "diversity": "coreset"}
    elif strategy == "almdn":
        keys["strategy_options"] = {"score_threshold": 0.05}
    elif strategy == "cald":  # a chain: augmented views (random cutouts) and a selection-only second stage
        keys["strategy_options"] = {"views": "FCDR"}
    else:
        keys.update(max_size=96, training_options={"label_epochs": 1, "outer_loops": 1, "repeat_labelled": 1})
    tiny_run_config(tmp_path, **keys)
    launcher = TORCHRUN if detector == "miaod" else [sys.executable]
    run(
        [*launcher, "-m", "activedet", "run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "a"), "--quiet"],
        tmp_path,
    )  # cycle 0 trained once
    for name in ("one", "two"):
        shutil.copytree(tmp_path / "a", tmp_path / name)
    kill = {"ACTIVEDET_KILL_AT": "select:0"}  # stop right after selecting
    extend = ["-m", "activedet", "resume", "--set", "cycles=1", "--quiet"]
    run([sys.executable, *extend, str(tmp_path / "one")], tmp_path, env=kill, check=False)
    run([*TORCHRUN, *extend, str(tmp_path / "two")], tmp_path, env=kill, check=False)
    picks = [json.loads((tmp_path / name / "cycles/0/selection.json").read_text())["picks"] for name in ("one", "two")]
    assert len(picks[0]) == 5 and [p["index"] for p in picks[0]] == [p["index"] for p in picks[1]]
    scores = [np.load(tmp_path / name / "cycles/0/scores.npz") for name in ("one", "two")]
    assert np.array_equal(scores[0]["pool_indices"], scores[1]["pool_indices"])
    assert np.allclose(scores[0]["pool_scores"], scores[1]["pool_scores"], atol=1e-5)
    if strategy == "hybrid":
        assert np.allclose(scores[0]["labelled_embeddings"], scores[1]["labelled_embeddings"], atol=1e-5)
    if strategy == "cald":
        assert scores[0]["pool_num_detections"].sum() > 0 and np.isfinite(scores[0]["pool_scores"]).any()
        assert np.allclose(scores[0]["pool_extra_class_scores"], scores[1]["pool_extra_class_scores"], atol=1e-5)


def test_influence_under_two_gloo_processes(tmp_path):
    """ISAL under torchrun: each process sums the gradient of its share of the validation split (their sum is the
    one-process v), runs its own recursion on its share of the labelled images (the results are averaged, as the
    released 4-GPU code does) and scores its shard of the pool; the same images are scored and the budget is met."""
    import shutil

    import numpy as np

    tiny_run_config(
        tmp_path,
        val_data="annotations/val.json",
        detector="faster_rcnn",
        strategy="influence",
        eval_every=5,
        strategy_options={"score_threshold": 0.0, "recursion_images": 6},
    )
    run(
        [sys.executable, "-m", "activedet", "run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "a"), "--quiet"],
        tmp_path,
    )  # cycle 0 trained once
    for name in ("one", "two"):
        shutil.copytree(tmp_path / "a", tmp_path / name)
    kill = {"ACTIVEDET_KILL_AT": "select:0"}
    extend = ["-m", "activedet", "resume", "--set", "cycles=1", "--quiet"]
    run([sys.executable, *extend, str(tmp_path / "one")], tmp_path, env=kill, check=False)
    run([*TORCHRUN, *extend, str(tmp_path / "two")], tmp_path, env=kill, check=False)
    stats = [json.loads((tmp_path / name / "cycles/0/influence.json").read_text()) for name in ("one", "two")]
    assert stats[0]["v_norm"] == pytest.approx(stats[1]["v_norm"], rel=1e-4)
    assert (stats[0]["steps"], stats[1]["steps"]) == (6, 3)  # each of the two processes: half the labelled images
    scores = [np.load(tmp_path / name / "cycles/0/scores.npz") for name in ("one", "two")]
    assert np.array_equal(scores[0]["pool_indices"], scores[1]["pool_indices"])
    assert np.array_equal(np.isnan(scores[0]["pool_scores"]), np.isnan(scores[1]["pool_scores"]))
    assert np.isfinite(scores[0]["pool_scores"]).sum() > 5
    picks = [json.loads((tmp_path / name / "cycles/0/selection.json").read_text())["picks"] for name in ("one", "two")]
    assert len(picks[0]) == len(picks[1]) == 5


def test_a_rank_that_looks_late_for_a_stage_output_takes_rank_0s_decision(tmp_path):
    """Every look for a stage's output (ledger, weights, metrics, scores, selection) is rank 0's, shared: rank 1
    looks a second late each time, after rank 0 has written the file, and the run still ends (looking for itself it
    would skip a stage rank 0 runs, and the two would wait in different collectives). The run then resumes finished
    under two processes, every stage skipped alike."""
    tiny_run_config(tmp_path, detector="ssd", strategy="entropy", budget=4, cycles=1)
    late = [*TORCHRUN, str(Path(__file__).parent / "late_rank_script.py")]
    run([*late, "run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "a"), "--quiet"], tmp_path, timeout=240)
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["labelled_images"] for x in lines] == [6, 10]
    run([*late, "resume", str(tmp_path / "a"), "--quiet"], tmp_path, timeout=240)
    assert (tmp_path / "a" / "metrics.jsonl").read_text().splitlines() == lines
