"""Atomic file writes and checkpoints loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing pickled beyond what
``torch.load(weights_only=True)`` accepts)::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ..., "epoch": int (epochs completed),
     "best_metric": float | None, "best_epoch": int | None, "bad_evals": int, "meta": {...}}
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write, atomic_write_json, atomic_write_text  # noqa: F401  (re-exported)

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Save ``state`` atomically with ``torch.save``; the same ``state`` always gives the same bytes."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: torch names the archive's folder after a path (the temp name)
            torch.save(state, fh)

    return atomic_write(path, write)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint saved by :func:`save_checkpoint` (``weights_only=True``: no arbitrary code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass the path of a .pt file written by "
            "`activedet train` (e.g. RUN_DIR/best.pt or RUN_DIR/last.pt)"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupted or foreign file: say which and why
        raise ValueError(
            f"checkpoint {path} could not be loaded with weights_only=True ({exc}); "
            "it is corrupt or was not written by activedet"
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(
            f"checkpoint {path} has no 'model' entry; expected a dict written by activedet "
            "(a bare state_dict can be passed as the model's `weights` instead)"
        )
    return state


def file_sha256(path: str | Path, length: int = 12) -> str:
    """First ``length`` hex digits of the SHA-256 of a file (used to name the checkpoint behind a result)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]
