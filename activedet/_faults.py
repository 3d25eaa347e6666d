"""Crash injection for the kill-and-resume tests: ``ACTIVEDET_KILL_AT=stage:cycle`` makes the process SIGKILL
itself right after that stage's output is written (a real, unclean kill: no cleanup, no flushing).

Points: ``start:T`` (the loop starts or resumes at cycle T, before it writes anything), ``train_epoch:E`` (after
epoch E's checkpoint of any training), ``train:T``, ``evaluate:T``, ``score:T``, ``stageK.PART.shardJ:T`` (after
shard J of scoring stage K, PART ``pool`` or ``labelled``, is saved), ``select:T``, ``export:T``, ``label:T`` (after
the ledger of cycle T's selection is saved), ``import_write:N`` / ``import:N`` (just before / after import record N
is committed). Unset in normal use; costs two environment lookups per stage.

``ACTIVEDET_MARK_FILE=path`` appends one line per point reached, ``pid point cpu_seconds`` (the process's CPU time
so far), so that a test can place kills at moments of the work measured from each process's own start.
"""

from __future__ import annotations

import os
import signal
import time

__all__ = ["kill_point"]


def kill_point(stage: str, number: int) -> None:
    marks = os.environ.get("ACTIVEDET_MARK_FILE")
    if marks:
        with open(marks, "a") as f:
            f.write(f"{os.getpid()} {stage}:{number} {time.process_time():.4f}\n")
    if os.environ.get("ACTIVEDET_KILL_AT") == f"{stage}:{number}":
        os.kill(os.getpid(), signal.SIGKILL)
