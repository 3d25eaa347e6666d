"""Several independently trained detectors of one architecture (a config's ``ensemble_size``).

:class:`EnsembleDetector` holds ``M`` members built one after the other (so their random initialisations differ) and
trained independently (:func:`activedet.engine.trainers.train_ensemble`). Its own ``predict`` is member 0's: the
other members serve the strategies that score with several trained models, and the cycle's model, evaluated and
exported, is member 0, trained with the run's seed exactly as the plain detector is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import Tensor, nn

from .outputs import Detections

__all__ = ["EnsembleDetector"]


class EnsembleDetector(nn.Module):
    """``M`` detectors of one architecture (module docstring). ``predict`` and the eval forward are member 0's."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 1:
            raise ValueError("The 'members' parameter of EnsembleDetector must hold at least one detector. Got 0.")
        self.members = nn.ModuleList(members)
        self.prob_kind = getattr(members[0], "prob_kind", "sigmoid")
        self.PROVIDES = getattr(members[0], "PROVIDES", frozenset())

    def forward(self, images, targets=None):
        if self.training:
            raise RuntimeError(
                "an EnsembleDetector trains member by member (activedet.engine.trainers."
                "train_ensemble); call a member for its training losses"
            )
        return self.members[0](images)

    def predict(self, images: Sequence[Tensor], fields: Iterable[str] = ()) -> list[Detections]:
        return self.members[0].predict(images, fields)
