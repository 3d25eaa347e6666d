"""torch.distributed helpers. Everything works unchanged in a single process (world size 1).

Under ``torchrun`` the environment variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set; call
:func:`init_distributed` once at start-up. The backend is NCCL when CUDA is used, gloo otherwise (the CPU tests run
two gloo processes). Only rank 0 writes files; :func:`barrier` surrounds writes that other ranks then read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed",
    "is_distributed",
    "rank",
    "world_size",
    "is_main_process",
    "barrier",
    "all_gather_object",
    "broadcast_object",
    "main_sees_file",
    "resolve_device",
]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    """Destroy the process group (when there is one) before the process exits: left to interpreter shutdown, gloo's
    threads can abort a process that has finished its work ("terminate called without an active exception").
    Every process waits for the others first, so none closes its connections while a peer still uses them."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:1"`` into a device, at call time.

    ``"auto"`` is CUDA when available (the local rank's GPU under torchrun), else CPU.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} was requested but CUDA is not available on this machine; use device: cpu (or auto)"
        )
    return torch.device(device)


def init_distributed(device: torch.device) -> bool:
    """Initialise the default process group when launched by torchrun; returns whether it is distributed."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj_of_rank_0, obj_of_rank_1, ...]`` on every rank (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def main_sees_file(path: str | Path) -> bool:
    """Whether ``path`` is a file as rank 0 sees it, the same answer on every rank (one broadcast; every rank must
    call it at the same point). A resume decision that steers collectives (skip a stage whose output exists, or run
    it) goes through it: were each process to look for itself, one that arrives after rank 0 has written the file
    would skip the stage while the others run it, and their collectives would no longer match (a hang)."""
    if not is_distributed():
        return Path(path).is_file()
    return bool(broadcast_object(Path(path).is_file() if is_main_process() else None))
