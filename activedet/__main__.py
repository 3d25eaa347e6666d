"""``python -m activedet`` (also what ``torchrun -m activedet ...`` runs)."""

import sys

from .cli import main

sys.exit(main())
