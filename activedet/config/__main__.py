"""``python -m activedet.config [PATH]``: write the config key reference (default ``docs/config.md``)."""

import sys

from .reference import write_reference

if __name__ == "__main__":
    print(write_reference(*sys.argv[1:2]))
