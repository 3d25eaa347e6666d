"""The quickstart demo's wiring: its data, the paired run of configs/quickstart.yaml, and the thread count it trains
with (the full demo takes minutes; its table is measured in docs/benchmarks.md, not here)."""

from __future__ import annotations

import pytest
import torch

import activedet.demo as demo
from activedet.cli import main


@pytest.fixture
def calls(monkeypatch, tmp_path):
    seen = {}

    def fake_generate(name, out, *, seed):
        seen["data"] = (name, out, seed)
        out.mkdir(parents=True)
        (out / "manifest.json").write_text("{}")

    def fake_bench(config, **kwargs):
        seen["bench"] = dict(kwargs, config=config, threads=torch.get_num_threads())
        return "summary"

    monkeypatch.setattr(demo, "generate_dataset", fake_generate)
    monkeypatch.setattr(demo, "run_bench", fake_bench)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # as on a 2-core machine, whatever OMP_NUM_THREADS the suite runs with
    yield seen
    torch.set_num_threads(before)


def test_the_demo_trains_on_one_thread_and_gives_the_threads_back(calls, tmp_path):
    assert main(["demo", "--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert calls["bench"]["threads"] == 1 and torch.get_num_threads() == 2
    assert calls["data"] == ("quickstart", tmp_path / "q" / "data", 0)
    bench = calls["bench"]
    assert bench["config"] == demo.QUICKSTART_CONFIG and bench["strategies"] == ["random", "entropy"]
    assert bench["seeds"] == [0] and bench["out"] == tmp_path / "q" and not bench["progress"]
    assert f"test_data={tmp_path / 'q' / 'data' / 'annotations' / 'test.json'}" in bench["overrides"]


def test_threads_zero_keeps_torchs_default_and_a_negative_count_is_refused(calls, tmp_path):
    assert demo.run_demo(tmp_path / "q", threads=0, progress=False) == "summary"
    assert calls["bench"]["threads"] == 2
    with pytest.raises(ValueError, match=r"threads: expected 0 \(torch's default\) or a positive count, got -1"):
        demo.run_demo(tmp_path / "q", threads=-1)
