"""Streaming inference over a dataset, sharded across processes under torchrun."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.records import DetectionDataset
from ..data.torch_dataset import DetectionTorchDataset, collate_detection
from ..models._common import unwrap_ddp
from ..models.outputs import Detections
from . import distributed as dist_utils

__all__ = ["iter_predictions", "predict_dataset"]


def iter_predictions(
    model: torch.nn.Module | Any,
    dataset: DetectionDataset,
    indices: Sequence[int] | None = None,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    fields: Iterable[str] = (),
    num_workers: int = 0,
    progress: bool = False,
) -> Iterator[tuple[int, Detections]]:
    """Yield ``(pool_index, Detections on CPU)`` for this process's shard of ``indices``, in order.

    Under torchrun, rank ``r`` of ``W`` handles ``indices[r::W]``; in one process, all of them. Results are
    produced batch by batch, so a caller that reduces each one to a score keeps memory flat in the pool size.
    The model is used through its ``predict(images, fields)`` method with the test transform (no augmentation);
    any object with that method serves (e.g. a predictor of several passes). An object with a
    ``predict_indices(pool_indices, fields)`` method instead is given the pool indices and no image is read:
    detections made elsewhere (precomputed), or the zero-cost stand-in of ``activedet bench-scale``.
    """
    indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    device = dist_utils.resolve_device(device)  # "auto" as the trainers read it
    shard = indices[dist_utils.rank() :: dist_utils.world_size()]
    show = progress and dist_utils.is_main_process()
    if hasattr(model, "predict_indices"):
        for start in _progress(range(0, len(shard), batch_size), show, len(shard)):
            batch = shard[start : start + batch_size]
            with torch.no_grad():
                outputs = model.predict_indices(batch, fields=fields)
            yield from zip(batch, outputs)
        return
    loader = torch.utils.data.DataLoader(
        DetectionTorchDataset(dataset, shard, train=False),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_detection,
    )
    model = unwrap_ddp(model)
    for images, targets in _progress(loader, show, len(shard)):
        with torch.no_grad():  # around the model only: a no_grad generator would re-enter it at every image
            outputs = [output.to("cpu") for output in model.predict([img.to(device) for img in images], fields=fields)]
        for target, output in zip(targets, outputs):
            yield int(target["index"]), output


def predict_dataset(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    indices: Sequence[int] | None = None,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    fields: Iterable[str] = (),
    num_workers: int = 0,
    progress: bool = False,
) -> list[Detections]:
    """Detections for ``indices`` (default: every record), in the order of ``indices``, on every rank."""
    indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    local = list(
        iter_predictions(
            model,
            dataset,
            indices,
            device=device,
            batch_size=batch_size,
            fields=fields,
            num_workers=num_workers,
            progress=progress,
        )
    )
    by_index = {i: d for part in dist_utils.all_gather_object(local) for i, d in part}
    return [by_index[i] for i in indices]


def _progress(batches: Iterable, show: bool, images: int) -> Iterable:
    """A progress bar over the batches on a terminal; otherwise (a log file, CI) one plain line once they are
    done; nothing unless ``show``."""
    if not show:
        yield from batches
        return
    if sys.stderr.isatty():
        yield from tqdm(batches, desc="predict", leave=False, file=sys.stderr)
        return
    started = time.perf_counter()
    yield from batches
    print(f"predict: {images} images in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
