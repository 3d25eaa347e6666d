"""Two gloo processes under torchrun train to the same weights as one process (within float tolerance)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parent / "ddp_train_script.py"


def run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def iteration_losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if x["event"] == "iter"]


def test_two_gloo_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, str(SCRIPT), str(one)], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
         str(two)], tmp_path)
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
