"""Run by tests/test_distributed.py under torchrun: ``activedet run`` in which rank 1 is late at every look for a
stage's output (it sleeps before answering), so rank 0 has written the file by the time rank 1 looks. Each process
must still take rank 0's decision, or their collectives stop matching and the run hangs. Not a test module itself."""

import os
import sys
import time
from pathlib import Path

LATE_FOR = {"ledger.npz", "model.pt", "metrics.json", "selection.json", "scores.npz", "batch.json", "last.pt"}


def main(argv: list[str]) -> None:
    if os.environ.get("RANK") == "1":
        is_file = Path.is_file

        def late_is_file(self: Path) -> bool:
            if self.name in LATE_FOR:
                time.sleep(1.0)
            return is_file(self)

        Path.is_file = late_is_file
    from activedet.cli import main as cli

    sys.exit(cli(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
