"""Crash injection for the kill-and-resume tests: ``ACTIVEDET_KILL_AT=stage:cycle`` makes the process SIGKILL
itself right after that stage's output is written (a real, unclean kill: no cleanup, no flushing).

Points: ``train_epoch:E`` (after epoch E's checkpoint of any training), ``train:T``, ``evaluate:T``, ``score:T``,
``stageK.PART.shardJ:T`` (after shard J of scoring stage K, PART ``pool`` or ``labelled``, is saved),
``select:T``, ``export:T``, ``label:T`` (after the ledger of cycle T's selection is saved), ``import_write:N`` /
``import:N`` (just before / after import record N is committed). Unset in normal use; costs one
environment lookup per stage.
"""

from __future__ import annotations

import os
import signal

__all__ = ["kill_point"]


def kill_point(stage: str, number: int) -> None:
    if os.environ.get("ACTIVEDET_KILL_AT") == f"{stage}:{number}":
        os.kill(os.getpid(), signal.SIGKILL)
