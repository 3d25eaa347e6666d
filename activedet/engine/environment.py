"""Where a model was trained: library versions, device, the CPU's vector instruction set, threads.

Float results depend on all of them. The same config, seed and data trained under another torch version, with
CPU kernels built for another instruction set (``torch.backends.cpu.get_cpu_capability()``: ``AVX2``,
``AVX512``, ...), with another thread count, or on a GPU, is another training draw: per-seed figures differ,
while the same code in the same environment repeats them bit for bit. The loop writes each cycle's environment
beside its timing (``cycles/t/environment.json``; ``timing.jsonl`` carries it) and ``activedet report`` warns when
the runs it compares were trained in more than one. Importing this module does not import torch (the report reads
it).
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["training_environment", "environment_key"]


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def training_environment(device) -> dict:
    """The environment of a training on ``device``: a JSON-ready dict (module docstring)."""
    import torch
    import torchvision

    from . import distributed as dist_utils

    device = torch.device(device)
    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": device.type,
        "cpu": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "world_size": dist_utils.world_size(),
    }
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


def environment_key(environment: dict) -> str:
    """What decides the floats of a training in ``environment``, as one line: torch version, device (the GPU's
    name, or the CPU's instruction set and threads) and processes; the CPU's model name does not enter it."""
    if environment.get("device") == "cuda":
        where = f"{environment.get('gpu', 'cuda')}"
    else:
        where = f"CPU {environment.get('cpu_capability', '?')}, {environment.get('threads', '?')} thread(s)"
    return f"torch {environment.get('torch', '?')}, {where}, {environment.get('world_size', 1)} process(es)"
