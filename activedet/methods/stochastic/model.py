"""Several predictions of one image: MC-dropout passes and deep-ensemble members (methods.md §2).

* :class:`HeadDropout` / :func:`add_head_dropout` (defined with the adapters, :mod:`activedet.models._common`):
  dropout in front of a detector's prediction layers. Every builder takes ``dropout=p``; the adapter's
  ``dropout_sites()`` names where it goes (RetinaNet/FCOS: before the final convolution of each tower; SSD: before
  every per-level prediction convolution; Faster R-CNN: after ``fc6`` and after ``fc7``). The dropout acts through
  a forward pre-hook on those layers, so the state dict, and therefore torchvision's and our checkpoints, are the
  same as without it. The model trains with it.
* :class:`EnsembleDetector` (defined in :mod:`activedet.models.ensemble`): ``M`` members of one architecture,
  trained independently; the predictor below runs one pass per member.
* :class:`StochasticPredictor`: ``predict(images, fields)`` like a detector's, from ``T`` predictions of each image
  (``T`` dropout passes, or one pass per member), reduced as they are produced so memory does not grow with ``T``:

  - single-stage detectors (the anchors are the same in every prediction): the detections of the *mean*
    prediction (class probabilities and box deltas averaged anchor by anchor, then torchvision's postprocessing),
    ``dense_probs`` = the mean class probabilities, ``dense_expected_entropy`` and ``dense_box_var``;
  - any detector, on request (``"passes"``): each prediction's post-NMS detections with ``class_probs``, for
    the box-matched formulation. Faster R-CNN offers only this one (its proposals are regressed per pass);
    its main detections are member 0's deterministic prediction.

  The ``Detections.extras`` keys it fills on request (:data:`EXTRA_FIELDS`), over the ``T`` predictions:

  - ``dense_expected_entropy``: ``float32[A]`` mean over the predictions of each anchor's entropy (binary
    entropies summed over classes for sigmoid heads, the entropy of the ``C + 1`` softmax for softmax heads);
  - ``dense_box_var``: ``float32[A]`` variance over the predictions of each anchor's box regression output,
    summed over its 4 coordinates (encoded deltas, so scale-free);
  - ``passes``: ``list[Detections]``, one per prediction, each with ``class_probs``.

  MC-dropout computes the backbone (and, for Faster R-CNN, the RPN) once per image and runs only the head ``T``
  times: with dropout only in the head, everything before it is the same in every pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor, nn

from ...models._common import (
    DENSE_FIELDS,
    HeadDropout,
    add_head_dropout,
    dense_detections,
    dense_forward,
    has_head_dropout,
    in_solo_groups,
    restored_modes,
    solo_group_indices,
    unwrap_ddp,
)
from ...models.ensemble import EnsembleDetector
from ...models.outputs import Detections

__all__ = [
    "EXTRA_FIELDS",
    "HeadDropout",
    "add_head_dropout",
    "has_head_dropout",
    "EnsembleDetector",
    "predicting_detector",
    "StochasticPredictor",
    "prediction_entropy",
]

#: The ``Detections.extras`` keys this module fills (module docstring).
EXTRA_FIELDS = frozenset({"passes", "dense_expected_entropy", "dense_box_var"})

_EPS = 1e-7


def prediction_entropy(probs: Tensor, prob_kind: str) -> Tensor:
    """Entropy of each row of ``probs`` ``[..., K]``: of the distribution (softmax heads), or the sum of the
    per-class binary entropies (sigmoid heads). Natural log."""
    p = probs.float().clamp(_EPS, 1 - _EPS)
    if prob_kind == "softmax":
        return -(p * p.log()).sum(dim=-1)
    return -(p * p.log() + (1 - p) * (1 - p).log()).sum(dim=-1)


def predicting_detector(model: nn.Module) -> nn.Module:
    """The detector that predicts for ``model``: the module inside DDP, an ensemble's member 0."""
    model = unwrap_ddp(model)
    return model.members[0] if isinstance(model, EnsembleDetector) else model


class StochasticPredictor:
    """``T`` predictions per image from MC-dropout passes or ensemble members (module docstring).

    Build it with :meth:`mc_dropout` or :meth:`ensemble`; both check the model and say what to change.
    """

    def __init__(self, members: Sequence[nn.Module], passes: int, sample_dropout: bool):
        self.members = list(members)
        self.passes = passes
        self.sample_dropout = sample_dropout
        ref = self.members[0]
        self.prob_kind = ref.prob_kind
        self.dense = hasattr(ref, "HEAD_OUTPUT_KINDS")
        stochastic = {"passes"} | ({"dense_probs", "dense_expected_entropy", "dense_box_var"} if self.dense else set())
        self.PROVIDES = frozenset(getattr(ref, "PROVIDES", frozenset()) | stochastic)

    @classmethod
    def mc_dropout(cls, model: nn.Module, *, passes: int = 20) -> StochasticPredictor:
        model = predicting_detector(model)
        if not has_head_dropout(model):
            raise ValueError(
                f"MC-dropout needs dropout in the detector's head, and this {type(model).__name__} has "
                "none: set detector_options: {dropout: 0.25} in the config (or dropout=0.25 in the "
                "builder), so that it trains with dropout"
            )
        _check_family("MC-dropout passes", model)
        return cls([model], passes, sample_dropout=True)

    @classmethod
    def ensemble(cls, model: nn.Module) -> StochasticPredictor:
        model = unwrap_ddp(model)
        if not isinstance(model, EnsembleDetector) or len(model.members) < 2:
            raise ValueError(
                "the ensemble strategy needs an ensemble of at least 2 detectors: set ensemble_size: 3 "
                "(or more) in the config; the model is a single "
                f"{type(model).__name__ if not isinstance(model, EnsembleDetector) else 'member'}"
            )
        _check_family("ensembles", model.members[0])
        return cls(list(model.members), 1, sample_dropout=False)

    def predict(self, images: Sequence[Tensor], fields: Iterable[str] = ()) -> list[Detections]:
        requested = Detections.check_fields(fields)
        images = list(images)
        if not images:
            return []
        with torch.no_grad(), _modes(self.members, self.sample_dropout):
            if self.dense:
                groups = (
                    solo_group_indices(self.members[0], images)
                    if requested & DENSE_FIELDS
                    else [list(range(len(images)))]
                )
                return in_solo_groups(images, lambda part: self._dense(part, requested), groups)
            return self._matched(images, requested)

    # ------------------------------------------------------------------------------------------- single stage
    def _dense(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        ref = self.members[0]
        moments = _Moments(ref)
        passes: list[list[Detections]] = []
        first = None
        for member in self.members:
            image_list, original_sizes, features, head_outputs, anchors = parts = dense_forward(member, images)
            first = first if first is not None else parts
            for t in range(self.passes):
                if t > 0:
                    head_outputs = member.head(features)
                moments.add(head_outputs)
                if "passes" in fields:
                    passes.append(
                        dense_detections(
                            member,
                            image_list,
                            original_sizes,
                            features,
                            head_outputs,
                            anchors,
                            fields=frozenset({"class_probs"}),
                        )
                    )
        mean_outputs, per_anchor = moments.result()
        image_list, original_sizes, features, _, anchors = first
        results = dense_detections(
            ref,
            image_list,
            original_sizes,
            features,
            mean_outputs,
            anchors,
            fields=fields - {"passes"},
            dense_extras=per_anchor,
        )
        return _with_passes(results, passes, fields)

    # ---------------------------------------------------------------------------------------------- two stage
    def _matched(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        passes: list[list[Detections]] = []
        results = None
        for m, member in enumerate(self.members):
            parts = member.propose(images)
            if m == 0:
                with _dropout_off(member):
                    results = member.detect_from_proposals(*parts, fields=(fields - {"passes"}) | {"class_probs"})
                if not self.sample_dropout:
                    passes.append(results)
                    continue
            for _ in range(self.passes):
                passes.append(member.detect_from_proposals(*parts, fields=frozenset({"class_probs"})))
        if "class_probs" not in fields:
            results = [replace(r, class_probs=None) for r in results]
        return _with_passes(results, passes, fields)


def _check_family(method: str, model: nn.Module) -> None:
    """Dense predictions need ``HEAD_OUTPUT_KINDS`` (single-stage adapters), matched ones ``detect_from_proposals``."""
    if not (hasattr(model, "HEAD_OUTPUT_KINDS") or hasattr(model, "detect_from_proposals")):
        raise ValueError(f"{method} need a RetinaNet, FCOS, SSD or Faster R-CNN detector; got {type(model).__name__}")


def _with_passes(results: list[Detections], passes: list[list[Detections]], fields: frozenset[str]) -> list[Detections]:
    if "passes" not in fields:
        return results
    return [r.with_extras(passes=[p[i] for p in passes]) for i, r in enumerate(results)]


@contextmanager
def _modes(members: list[nn.Module], sample_dropout: bool) -> Iterator[None]:
    """Eval mode (BatchNorm on running statistics); with ``sample_dropout`` only the HeadDropout layers sample."""
    with restored_modes(m for member in members for m in member.modules()):
        for member in members:
            member.eval()
            if sample_dropout:
                for module in member.modules():
                    if isinstance(module, HeadDropout):
                        module.train()
        yield


@contextmanager
def _dropout_off(model: nn.Module) -> Iterator[None]:
    layers = [m for m in model.modules() if isinstance(m, HeadDropout)]
    with restored_modes(layers):
        for layer in layers:
            layer.eval()
        yield


def _to_prob(values: Tensor, kind: str) -> Tensor:
    if kind == "sigmoid":
        return torch.sigmoid(values.float())
    if kind == "softmax":
        return torch.softmax(values.float(), dim=-1)
    return values.float()


def _from_prob(mean: Tensor, kind: str) -> Tensor:
    if kind == "sigmoid":
        return torch.logit(mean.clamp(_EPS, 1 - _EPS))
    if kind == "softmax":
        return mean.clamp_min(_EPS).log()
    return mean


class _Moments:
    """Running sums over predictions: each head output in probability space, the entropy of the class
    probabilities, and the first two moments of the box regression output."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.kinds = model.HEAD_OUTPUT_KINDS
        self.count = 0
        self.sums: dict[str, Tensor] = {}
        self.entropy = self.box_sum = self.box_sq = None

    def add(self, head_outputs: dict[str, Tensor]) -> None:
        def acc(old: Tensor | None, new: Tensor) -> Tensor:
            return new if old is None else old + new

        self.count += 1
        for key, kind in self.kinds.items():
            self.sums[key] = acc(self.sums.get(key), _to_prob(head_outputs[key], kind))
        probs = self.model.dense_class_probs(head_outputs)  # [B, A, K]
        self.entropy = acc(self.entropy, prediction_entropy(probs, self.model.prob_kind))
        deltas = head_outputs["bbox_regression"].float()  # [B, A, 4]
        self.box_sum = acc(self.box_sum, deltas)
        self.box_sq = acc(self.box_sq, deltas * deltas)

    def result(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        n = self.count
        mean_outputs = {key: _from_prob(total / n, self.kinds[key]) for key, total in self.sums.items()}
        box_mean = self.box_sum / n
        variance = (self.box_sq / n - box_mean * box_mean).clamp_min(0).sum(dim=-1)  # [B, A]
        return mean_outputs, {"dense_expected_entropy": self.entropy / n, "dense_box_var": variance}
