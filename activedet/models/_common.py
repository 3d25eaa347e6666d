"""Plumbing shared by the detector adapters: argument checks, the ``predict`` wrapper, and the single-stage
eval forward that keeps what torchvision's ``forward`` discards.

Private to :mod:`activedet.models`; users call the builders and ``model.predict``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.misc import FrozenBatchNorm2d

from .outputs import CORE_OPTIONAL_FIELDS, Detections

__all__: list[str] = []


# ----------------------------------------------------------------------------------------------------------
# Argument checks. Messages have one shape: "The 'x' parameter of f must be ... Got ... instead."
# ----------------------------------------------------------------------------------------------------------
def check_choice(func: str, name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = sorted(allowed)
    if value not in allowed:
        raise ValueError(f"The {name!r} parameter of {func} must be one of {allowed}. Got {value!r} instead.")


def check_int(func: str, name: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"The {name!r} parameter of {func} must be an int {bounds}. Got {value!r} instead.")


def check_float(func: str, name: str, value: Any, low: float, high: float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        raise ValueError(f"The {name!r} parameter of {func} must be a float in [{low}, {high}]. Got {value!r} instead.")


def check_sizes(func: str, name: str, value: Any, num_levels: int) -> None:
    """``value`` must be a sequence of ``num_levels`` positive numbers or of non-empty tuples of them."""

    def positive(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0

    ok = (
        isinstance(value, (list, tuple))
        and len(value) == num_levels
        and all(positive(v) or (isinstance(v, (list, tuple)) and len(v) > 0 and all(map(positive, v))) for v in value)
    )
    if not ok:
        raise ValueError(
            f"The {name!r} parameter of {func} must be a sequence of {num_levels} positive sizes "
            f"(one per feature level). Got {value!r} instead."
        )


def with_defaults(defaults: dict[str, Any], **given: Any) -> dict[str, Any]:
    """``given`` with every ``None`` replaced by the per-backbone default of the same name."""
    return {name: defaults[name] if value is None else value for name, value in given.items()}


def check_resize_and_postprocess(
    func: str, *, min_size: Any, max_size: Any, score_thresh: Any, nms_thresh: Any, detections_per_img: Any
) -> None:
    """The argument checks every FPN builder shares (sklearn-style messages naming ``func``)."""
    check_int(func, "min_size", min_size, 1)
    check_int(func, "max_size", max_size, min_size)
    check_float(func, "score_thresh", score_thresh, 0.0, 1.0)
    check_float(func, "nms_thresh", nms_thresh, 0.0, 1.0)
    check_int(func, "detections_per_img", detections_per_img, 1)


#: normalisation layers the builders accept (``norm=``)
NORMS = ("batchnorm", "frozen", "group")


def group_norm(num_channels: int) -> nn.GroupNorm:
    """GroupNorm with ``gcd(32, num_channels)`` groups, so that any channel count works."""
    return nn.GroupNorm(math.gcd(32, num_channels), num_channels)


def norm_layer_for(norm: str, *, eps: float = 1e-5, momentum: float = 0.1) -> Callable[[int], nn.Module]:
    """``num_channels -> module`` for ``norm`` in :data:`NORMS` (``eps``/``momentum`` apply to BatchNorm)."""
    check_choice("norm_layer_for", "norm", norm, NORMS)
    if norm == "batchnorm":
        return partial(nn.BatchNorm2d, eps=eps, momentum=momentum)
    if norm == "frozen":
        return partial(FrozenBatchNorm2d, eps=eps)
    return group_norm


# ----------------------------------------------------------------------------------------------------------
# predict(): eval mode, no grad, restores every submodule's mode afterwards.
# ----------------------------------------------------------------------------------------------------------
@contextmanager
def restored_modes(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Context: the train/eval mode of each of ``modules`` is put back on exit, whatever the body changed."""
    modes = [(module, module.training) for module in modules]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class PredictMixin:
    """Adds ``predict(images, fields)`` to a torchvision detector subclass that implements ``_predict``."""

    #: ``"sigmoid"`` or ``"softmax"``, see :class:`~activedet.models.outputs.Detections`.
    prob_kind: str = "sigmoid"

    def predict(self, images: Sequence[Tensor], fields: Iterable[str] = ()) -> list[Detections]:
        """Detections of each image, with the optional ``fields`` computed in the same forward pass.

        Args:
            images: float ``[3, H, W]`` tensors in ``[0, 1]``, any sizes.
            fields: optional :class:`Detections` fields to fill (``class_probs``, ``proposals``, ``embedding``,
                ``dense_probs``, ``features``) and ``Detections.extras`` keys the detector provides (its
                ``PROVIDES``); the fields not requested are ``None``, the keys absent.

        Runs without gradients in eval mode; the train/eval mode of every submodule is restored afterwards.
        """
        requested = Detections.check_fields(fields)
        images = list(images)
        if not images:
            return []
        with restored_modes(self.modules()), torch.no_grad():
            self.eval()
            return self._predict(images, requested)

    def _predict(self, images: list[Tensor], fields: frozenset[str]) -> list[Detections]:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------------
# Single-stage eval forward (RetinaNet, FCOS, SSD): the same steps as torchvision's forward, keeping the parts.
# ----------------------------------------------------------------------------------------------------------
def dense_forward(model: nn.Module, images: list[Tensor]):
    """transform -> backbone -> head -> anchors, exactly as the eval branch of torchvision's ``forward``.

    Returns ``(image_list, original_sizes, features, head_outputs, anchors)`` with ``features`` the list of
    ``[B, D, h_l, w_l]`` maps, ``head_outputs`` the head's dict of ``[B, A, *]`` tensors (``A`` anchors of all
    levels concatenated) and ``anchors`` a list of ``B`` tensors ``[A, 4]`` in resized-image pixels.
    """
    original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    image_list, _ = model.transform(images)
    return (image_list, original_sizes, *_forward_batch(model, image_list))


def _forward_batch(model: nn.Module, image_list: ImageList):
    features = model.backbone(image_list.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    features = list(features.values())
    head_outputs = model.head(features)
    anchors = model.anchor_generator(image_list, features)
    return features, head_outputs, anchors


#: Fields and extras keys computed from every anchor of an image: they must not depend on the other images of the
#: batch.
DENSE_FIELDS = frozenset({"dense_probs", "dense_probs_2", "dense_weights", "dense_expected_entropy", "dense_box_var"})


def solo_groups(image_list: ImageList, size_divisible: int) -> list[tuple[list[int], ImageList]]:
    """The images of a batch grouped by the padded size each would have in a batch of its own (its resized size
    rounded up to ``size_divisible``), each group an :class:`ImageList` cropped to that size.

    The crop holds exactly the tensor a batch of one would (the image, then zeros), so a forward pass per group
    gives every image the features, anchors and dense scores it gets alone, whatever else shares the batch.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (h, w) in enumerate(image_list.image_sizes):
        key = (math.ceil(h / size_divisible) * size_divisible, math.ceil(w / size_divisible) * size_divisible)
        groups.setdefault(key, []).append(i)
    if len(groups) == 1 and next(iter(groups)) == tuple(image_list.tensors.shape[-2:]):
        return [(list(range(len(image_list.image_sizes))), image_list)]
    return [
        (idx, ImageList(image_list.tensors[idx, :, :h, :w], [image_list.image_sizes[i] for i in idx]))
        for (h, w), idx in groups.items()
    ]


def solo_group_indices(model: nn.Module, images: list[Tensor]) -> list[list[int]]:
    """Indices of ``images`` grouped as :func:`solo_groups` does (one extra resize of each image)."""
    image_list, _ = model.transform(images)
    return [idx for idx, _ in solo_groups(image_list, model.transform.size_divisible)]


def in_solo_groups(images: list, predict: Callable[[list], list], groups: list[list[int]]) -> list:
    """``predict`` run on each group of ``images`` separately, the results put back in the input order."""
    if len(groups) == 1:
        return predict(images)
    results: list = [None] * len(images)
    for idx in groups:
        for i, result in zip(idx, predict([images[i] for i in idx])):
            results[i] = result
    return results


def anchors_per_level(num_anchors: int, features: list[Tensor]) -> list[int]:
    """Anchors of each pyramid level, from the total ``A`` of a ``[B, A, *]`` head output and the feature maps."""
    num_locations = [f.shape[-2] * f.shape[-1] for f in features]
    per_location = num_anchors // sum(num_locations)
    return [n * per_location for n in num_locations]


def split_by_level(head_outputs: dict[str, Tensor], anchors: list[Tensor], features: list[Tensor]):
    """Split ``[B, A, *]`` head outputs and ``[A, 4]`` anchors into per-level lists (RetinaNet/FCOS layout)."""
    num_anchors_per_level = anchors_per_level(head_outputs["cls_logits"].shape[1], features)
    split_outputs = {k: list(v.split(num_anchors_per_level, dim=1)) for k, v in head_outputs.items()}
    split_anchors = [list(a.split(num_anchors_per_level)) for a in anchors]
    return split_outputs, split_anchors


def inside_image(anchors: Tensor, image_size: tuple[int, int]) -> Tensor:
    """``bool[A]``: anchors whose centre lies in the (resized, unpadded) image, i.e. not on batch padding."""
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2  # [A, 2] as (x, y)
    return (centres[:, 0] < image_size[1]) & (centres[:, 1] < image_size[0])


def pooled_embedding(feature_map: Tensor, image_list: ImageList) -> list[Tensor]:
    """Global average of ``feature_map`` ``[B, D, h, w]`` over each image's unpadded area -> ``B`` x ``[D]``.

    Averaging only the cells that cover the image (not the batch padding) makes the embedding independent
    of which other images share the batch.
    """
    padded_h, padded_w = image_list.tensors.shape[-2:]
    _, _, h, w = feature_map.shape
    embeddings = []
    for i, (img_h, img_w) in enumerate(image_list.image_sizes):
        rows = max(1, math.ceil(img_h * h / padded_h))
        cols = max(1, math.ceil(img_w * w / padded_w))
        embeddings.append(feature_map[i, :, :rows, :cols].mean(dim=(1, 2)))  # [D]
    return embeddings


def single_stage_predict(
    model: nn.Module,
    images: list[Tensor],
    fields: frozenset[str],
    extras: Callable[..., list[dict[str, Tensor]]] | None = None,
) -> list[Detections]:
    """``predict`` of a single-stage adapter: one :func:`dense_forward`, then :func:`dense_detections`.

    When a dense field is requested the backbone and head run once per group of :func:`solo_groups`, so every
    image's dense scores are those of a batch of one (the released MI-AOD scores at batch 1), not a function of
    the batch's padding.
    """
    if not fields & DENSE_FIELDS:
        return dense_detections(model, *dense_forward(model, images), fields=fields, extras=extras)
    original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    image_list, _ = model.transform(images)
    results: list = [None] * len(images)
    for idx, group in solo_groups(image_list, model.transform.size_divisible):
        detections = dense_detections(
            model, group, [original_sizes[i] for i in idx], *_forward_batch(model, group), fields=fields, extras=extras
        )
        for i, det in zip(idx, detections):
            results[i] = det
    return results


def dense_detections(
    model: nn.Module,
    image_list: ImageList,
    original_sizes: list[tuple[int, int]],
    features: list[Tensor],
    head_outputs: dict[str, Tensor],
    anchors: list[Tensor],
    *,
    fields: frozenset[str],
    extras: Callable[..., list[dict[str, Tensor]]] | None = None,
    dense_extras: dict[str, Tensor] | None = None,
) -> list[Detections]:
    """Detections of a single-stage model from its head outputs (torchvision's postprocessing, sources kept).

    The model implements ``postprocess_with_sources`` (returning ``anchor_idxs``), ``dense_class_probs(head_outputs)
    -> [B, A, K]`` (the ``K`` convention of :class:`Detections`) and ``SPLIT_LEVELS`` (whether its postprocessing
    takes per-level lists, as RetinaNet/FCOS, or the concatenated outputs, as SSD).

    Args:
        extras: ``(head_outputs, anchors, image_sizes, features, detections) -> [dict]``, further values per
            image (detections in resized pixels, with ``anchor_idxs``): optional :class:`Detections` fields, and
            ``Detections.extras`` keys for any other name.
        dense_extras: ``{name: [B, A]}`` per-anchor values; each requested one is kept for the in-image anchors
            (a field or an extras key alike).
    """
    if model.SPLIT_LEVELS:
        outputs, anchors_in = split_by_level(head_outputs, anchors, features)
    else:
        outputs, anchors_in = head_outputs, anchors
    detections = model.postprocess_with_sources(outputs, anchors_in, image_list.image_sizes)
    more = (
        extras(head_outputs, anchors, image_list.image_sizes, features, detections)
        if extras is not None
        else [{} for _ in detections]
    )
    detections = model.transform.postprocess(detections, image_list.image_sizes, original_sizes)
    probs = model.dense_class_probs(head_outputs) if fields & {"class_probs", "dense_probs"} else None  # [B, A, K]
    embeddings = pooled_embedding(features[-1], image_list) if "embedding" in fields else None
    per_anchor = {name: values for name, values in (dense_extras or {}).items() if name in fields}
    results = []
    for i, det in enumerate(detections):
        inside = inside_image(anchors[i], image_list.image_sizes[i])
        added = {**{name: values[i, inside] for name, values in per_anchor.items()}, **more[i]}
        results.append(
            Detections(
                boxes=det["boxes"],
                scores=det["scores"],
                labels=det["labels"],
                prob_kind=model.prob_kind,
                class_probs=probs[i, det["anchor_idxs"]] if "class_probs" in fields else None,
                embedding=embeddings[i] if embeddings is not None else None,
                dense_probs=probs[i, inside] if "dense_probs" in fields else None,
                **{name: value for name, value in added.items() if name in CORE_OPTIONAL_FIELDS},
                extras={name: value for name, value in added.items() if name not in CORE_OPTIONAL_FIELDS},
            )
        )
    return results


def strip_sources(detections: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """torchvision's ``{"boxes", "scores", "labels"}`` dicts, without the carried source indices."""
    return [{k: d[k] for k in ("boxes", "scores", "labels")} for d in detections]


def overwrite_frozen_eps(model: nn.Module, eps: float) -> None:
    """Set ``eps`` of every FrozenBatchNorm2d (torchvision's COCO_V1 ResNet-50 weights were trained with 0)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


def broadcast_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of xyxy boxes ``a[..., 4]`` and ``b[..., 4]`` broadcast against each other (``[N, 4]`` with ``[N, 4]``:
    box by box; ``a[:, None]`` with ``b[None]``: every pair); 0 where the union is empty. Computed in ``a``'s
    dtype."""
    b = b.to(a.dtype)
    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = (
        (a[..., 2:] - a[..., :2]).clamp(min=0).prod(dim=-1)
        + (b[..., 2:] - b[..., :2]).clamp(min=0).prod(dim=-1)
        - inter
    )
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def unwrap_ddp(model: Any) -> Any:
    """The module inside a ``DistributedDataParallel`` wrapper (anything else unchanged)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------------------------------------
# Head dropout (every builder's ``dropout=``) and the "training_samples" hook point (models/additions.py).
# ----------------------------------------------------------------------------------------------------------
class HeadDropout(nn.Dropout):
    """The dropout in front of a detector's prediction layers: a predictor that samples several passes switches
    it (and no other dropout of the model) on at query time."""


def _dropout_before(module: nn.Module, args: tuple) -> tuple:
    return (module.head_dropout(args[0]), *args[1:])


def add_head_dropout(sites: Iterable[nn.Module], p: float) -> None:
    """Apply ``HeadDropout(p)`` to the input of each module in ``sites`` (p = 0 adds nothing)."""
    check_float("add_head_dropout", "p", p, 0.0, 0.95)
    if p == 0:
        return
    for site in sites:
        site.head_dropout = HeadDropout(p)  # a submodule: follows .train()/.eval() and DDP, has no state
        site.register_forward_pre_hook(_dropout_before)


def has_head_dropout(model: nn.Module) -> bool:
    """Whether ``model`` was built with head dropout (``dropout > 0``)."""
    return any(isinstance(m, HeadDropout) and m.p > 0 for m in model.modules())


class SampleObserversMixin:
    """The ``"training_samples"`` hook point (:mod:`activedet.models.additions`): modules attached with
    :meth:`add_sample_observer` receive the positive training samples of every training forward pass.

    The class sets ``self.sample_observers = []`` in its ``__init__`` and calls :meth:`notify_observers` when the
    list is not empty (gathering the samples costs a little, so it is skipped otherwise)."""

    sample_observers: list[nn.Module]
    #: set by :func:`observers_paused`
    observers_paused: bool = False

    def add_sample_observer(self, name: str, observer: nn.Module) -> None:
        """Attach ``observer`` as the submodule ``name`` (its buffers in the state dict) and give it the samples."""
        self.add_module(name, observer)
        self.sample_observers.append(observer)

    @torch.no_grad()
    def notify_observers(self, labels: Tensor, probs: Tensor, ious: Tensor) -> None:
        """``labels`` int64[P] the GT classes, ``probs`` [P] the predicted probability of each, ``ious`` [P] the
        IoU of each predicted box with its GT box. Nothing inside :func:`observers_paused`."""
        if self.observers_paused:
            return
        for observer in self.sample_observers:
            observer.observe(labels, probs, ious)


@contextmanager
def observers_paused(model: nn.Module) -> Iterator[None]:
    """Within the block, the sample observers of ``model`` (:class:`SampleObserversMixin`) receive nothing: a
    training forward pass whose targets are not ground truth (pseudo boxes) must not feed statistics of the
    labelled samples."""
    hosts = [(m, m.observers_paused) for m in model.modules() if isinstance(m, SampleObserversMixin)]
    for host, _ in hosts:
        host.observers_paused = True
    try:
        yield
    finally:
        for host, before in hosts:
            host.observers_paused = before
