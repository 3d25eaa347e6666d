"""activedet: active learning for object detection on current PyTorch and torchvision.

Importing the package has no side effects: no logging configuration, no RNG seeding, no downloads.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
