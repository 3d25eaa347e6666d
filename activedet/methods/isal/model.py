"""Influence of an unlabelled image on the validation loss (ISAL, methods.md §8), for detectors and classifiers.

For an unlabelled image ``z'`` with pseudo labels ``ŷ`` (the model's detections with score >= a threshold)::

    I(z') = - <∇θ ℓ(z', ŷ), s_test>        s_test ≈ H⁻¹ v        v = Σ_{z ∈ V} ∇θ ℓ(z)

over ``θ`` = only the last prediction layers' **weights** (biases excluded), the tensors the adapter names in
``INFLUENCE_PARAMETERS``; ``ℓ`` is the model's own training loss with every term summed (torchvision returns it
only in training mode: BatchNorm and dropout are kept in eval mode and RPN/RoI sampling is seeded per image, so
the loss is a deterministic function of the image and its targets). ``v`` is the summed gradient over the
**validation split** (never the test split). ``s_test`` comes from the LiSSA-style recursion over labelled images
``z_1, z_2, ...`` (one image per step)::

    h_0 = v,    h_j = v + (1 - d) h_{j-1} - (∇²ℓ(z_j) h_{j-1}) / S      (block by block)

with damping ``d`` and one scale ``S`` per parameter tensor; its fixed point is ``(d I + S⁻¹ H)⁻¹ v`` block-wise
(the official code's block-preconditioned inverse-HVP, with no final division by ``S``). Hessian-vector
products are double back-propagation. A block whose product is not finite is reset to ``v`` (as released).
Negative influence = training on ``z'`` is predicted to lower the validation loss: the strategy picks the most
negative first. The official constant ``1 / |U_scored|`` does not change the order and is left out.

Everything here is a pure function of the model's weights, the images and the seed: the model handed in is
never modified (the gradients are taken on a private copy, so training-time buffers such as PPAL's difficulty EMA
are left alone).

:class:`InfluencePredictor` fills the ``Detections.extras`` key (:data:`EXTRA_FIELDS`):

* ``influence``: ``float64[]`` the predicted change of the validation loss from training on this image with its
  pseudo labels (negative = helpful); absent when the image has no pseudo label to score.
"""

from __future__ import annotations

import copy
import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...models._common import restored_modes, unwrap_ddp
from ...models.outputs import Detections

#: The ``Detections.extras`` keys this module fills (module docstring).
EXTRA_FIELDS = frozenset({"influence"})

__all__ = [
    "EXTRA_FIELDS",
    "InfluenceOptions",
    "InfluencePredictor",
    "influence_parameters",
    "loss_gradient",
    "hessian_vector_product",
    "lissa",
    "influence_of",
    "default_scales",
]

Blocks = list[Tensor]


@dataclass(frozen=True)
class InfluenceOptions:
    """Settings of the influence pass (the strategy's options, methods.md §8.3-8.4).

    Attributes:
        score_threshold: detections at or above this score become the pseudo labels (released command: 0.1).
        recursion_images: labelled images the recursion visits (official: 1000 per GPU), in a seeded random
            order; under torchrun each process runs its own recursion on its share and the results are averaged.
        damping: ``d`` of the recursion.
        parameters: ``"last"``: the weights the adapter names (``INFLUENCE_PARAMETERS``); ``"all_weights"``:
            every trainable parameter that is not a vector (all convolution and linear weights, no biases or norm
            parameters), as the released classification code.
        recursions: independent recursions the ``recursion_images`` are split into (consecutive, equal shares),
            each restarting from ``v``, averaged (the released classification code: 4 of 250 images).
        scales: ``S`` per parameter tensor, in ``INFLUENCE_PARAMETERS`` order, or one number for every tensor
            (the released classification code: 1e4); ``None`` = the adapter's
            ``INFLUENCE_SCALES`` (the official values where the spec gives them) and, for adapters without,
            ``"auto"``; ``"auto"`` = twice the largest Hessian eigenvalue magnitude of each block, estimated by
            power iteration on the first 10 labelled images of the recursion, and raised 4x for a block whose
            recursion outgrows twice its bound ``‖v_b‖ / d`` (a heuristic guard: another image may curve more).
    """

    score_threshold: float = 0.1
    recursion_images: int = 1000
    damping: float = 0.01
    scales: tuple[float, ...] | float | str | None = None
    parameters: str = "last"
    recursions: int = 1


INFLUENCE_PARAMETER_SETS = ("last", "all_weights")


# ---------------------------------------------------------------------------------------------- the pieces
def influence_parameters(model: nn.Module, which: str = "last") -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the weights named by the adapter's ``INFLUENCE_PARAMETERS``, in that order;
    ``which="all_weights"``: every trainable parameter with more than one dimension, in the model's order."""
    model = unwrap_ddp(model)
    if which == "all_weights":
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.dim() > 1]
    names = getattr(model, "INFLUENCE_PARAMETERS", None)
    if not names:
        raise ValueError(
            f"influence needs the last prediction layers' weights, but {type(model).__name__} does not "
            "name them (INFLUENCE_PARAMETERS); use detector fcos, faster_rcnn, retinanet or classifier"
        )
    params = dict(model.named_parameters())
    out = []
    for name in names:
        if name not in params:  # a layer wrapped with head dropout: Sequential(Dropout, layer) -> the layer's weight
            prefix = name.rsplit(".", 1)[0] + "."
            inner = [k for k, p in params.items() if k.startswith(prefix) and k.endswith(".weight") and p.dim() > 1]
            if len(inner) != 1:
                raise ValueError(
                    f"{type(model).__name__}.INFLUENCE_PARAMETERS names {name!r}, which the model does not have"
                )
            name = inner[0]
        out.append((name, params[name]))
    return out


def default_scales(model: nn.Module) -> tuple[float, ...] | None:
    """The adapter's ``INFLUENCE_SCALES`` (one per influence parameter), or ``None`` when it has none."""
    scales = getattr(unwrap_ddp(model), "INFLUENCE_SCALES", None)
    return None if scales is None else tuple(float(s) for s in scales)


@contextmanager
def loss_mode(model: nn.Module) -> Iterator[None]:
    """Training mode (torchvision computes losses only there) with every normalisation and dropout layer in eval
    mode: the loss is then a deterministic function of the weights, the image and its targets. Modes are restored
    on exit."""
    with restored_modes(model.modules()):
        model.train()
        for module in model.modules():
            if (
                isinstance(
                    module, (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d, nn.GroupNorm, nn.LayerNorm)
                )
                or "BatchNorm" in type(module).__name__
            ):
                module.eval()
        yield


def image_loss(model: nn.Module, image: Tensor, target: dict[str, Tensor], seed: int) -> Tensor:
    """The summed training loss of one image with ``target`` (boxes in the image's pixels, labels ``1..C``).

    Call inside :func:`loss_mode`. torchvision's RPN/RoI samplers draw from torch's global generator: it is seeded
    with ``seed`` inside a forked RNG state, so the draw is repeatable and the caller's RNG is untouched.
    """
    devices = [image.device] if image.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        losses = model([image], [target])
    return sum(losses.values())


def loss_gradient(loss: Tensor, params: Sequence[Tensor], *, create_graph: bool = False) -> Blocks:
    """``∇ loss`` for each of ``params`` (zeros for a parameter the loss does not reach)."""
    grads = torch.autograd.grad(loss, list(params), create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def hessian_vector_product(loss: Tensor, params: Sequence[Tensor], vector: Blocks) -> Blocks:
    """``(∇² loss) vector`` by double back-propagation: the gradient of ``<∇ loss, vector>``."""
    grads = loss_gradient(loss, params, create_graph=True)
    dot = sum((g * v.detach()).sum() for g, v in zip(grads, vector))
    if not dot.requires_grad:  # the loss is linear in params along every direction: a zero Hessian
        return [torch.zeros_like(p) for p in params]
    return loss_gradient(dot, params)


def lissa(
    v: Blocks,
    hvps: Iterable[Callable[[Blocks], Blocks]],
    *,
    damping: float,
    scales: Sequence[float],
    adapt: bool = False,
) -> tuple[Blocks, dict[str, Any]]:
    """The recursion ``h_j = v + (1 - d) h_{j-1} - hvp_j(h_{j-1}) / S`` (block-wise), from ``h_0 = v``.

    Args:
        v: the right-hand side, one tensor per block.
        hvps: one callable per step, ``h -> H_j h`` (the Hessian of step ``j``'s loss times ``h``).
        damping: ``d``.
        scales: ``S`` per block.
        adapt: guard against divergence: for a positive semi-definite Hessian the fixed point's norm is at most
            ``‖v_b‖ / d`` per block, so a block whose norm passes twice that has a scale below its curvature; its
            scale is multiplied by 4 and the block restarts from ``v_b`` (``auto`` scales use this; fixed scales,
            as released, do not).

    Returns ``(h, stats)``; ``stats`` has ``steps``, ``resets`` (blocks reset to ``v`` for a non-finite product),
    ``scale_increases`` (adaptive restarts), ``scales`` (the final ones) and ``norms`` (``‖h_j‖`` after each step).
    """
    if len(scales) != len(v):
        raise ValueError(
            f"The 'scales' parameter of lissa must give one scale per block ({len(v)}). Got {len(scales)} instead."
        )
    h = [x.clone() for x in v]
    scales = [float(x) for x in scales]
    bounds = [2 * float(x.norm()) / damping if adapt and damping > 0 else math.inf for x in v]
    resets, increases, norms = 0, 0, []
    for hvp in hvps:
        products = hvp(h)
        for b, (vb, hb, pb) in enumerate(zip(v, h, products)):
            if not torch.isfinite(pb).all():
                h[b] = vb.clone()
                resets += 1
                continue
            h[b] = vb + (1 - damping) * hb - pb / scales[b]
            if not float(h[b].norm()) <= bounds[b]:
                scales[b] *= 4.0
                h[b] = vb.clone()
                increases += 1
        norms.append(float(torch.sqrt(sum((x.double() ** 2).sum() for x in h))))
    return h, {"steps": len(norms), "resets": resets, "scale_increases": increases, "scales": scales, "norms": norms}


def influence_of(gradient: Blocks, s_test: Blocks) -> float:
    """``-Σ_b <gradient_b, s_test_b>``, skipping blocks where either is not finite (as released)."""
    total = 0.0
    for g, s in zip(gradient, s_test):
        if torch.isfinite(g).all() and torch.isfinite(s).all():
            total -= float((g.double() * s.double()).sum())
    return total


def _largest_eigenvalue(
    hvp: Callable[[Blocks], Blocks],
    shapes: list[tuple[torch.Size, torch.device]],
    block: int,
    iterations: int,
    generator: torch.Generator,
) -> float:
    """``|λ_max|`` of the Hessian's diagonal block ``block`` by power iteration."""
    shape, device = shapes[block]
    x = torch.randn(shape, generator=generator).to(device)
    x /= x.norm().clamp_min(1e-30)
    value = 0.0
    for _ in range(iterations):
        vector = [torch.zeros(s, device=d) for s, d in shapes]
        vector[block] = x
        y = hvp(vector)[block]
        if not torch.isfinite(y).all():
            return math.nan
        value = float(y.norm())
        if value == 0.0:
            return 0.0
        x = y / value
    return value


# ---------------------------------------------------------------------------------------------- the predictor
class InfluencePredictor:
    """Predicts like the model and adds each image's ``influence`` (``Detections.extras["influence"]``).

    On construction with a scoring context (every process of a torchrun job constructs it) it computes ``v`` on
    the context's validation split and ``s_test`` on its labelled images; ``predict`` then runs the model's own
    ``predict`` with the score threshold lowered to the pseudo-label threshold when needed, takes the detections
    at or above it as targets and returns ``-<∇ℓ(image, targets), s_test>``. An image without such a detection
    gets no ``influence`` (the strategy's unscored bucket). Without a context (a capability check) nothing is
    computed and ``predict`` raises.

    Args:
        model: a detector or classifier whose adapter names ``INFLUENCE_PARAMETERS``.
        context: :class:`~activedet.strategies.base.ScoringContext` (labelled and validation images, device, seed).
        options: :class:`InfluenceOptions`.
    """

    def __init__(self, model: nn.Module, context: Any = None, *, options: InfluenceOptions = InfluenceOptions()):
        self.model = unwrap_ddp(model)
        self.options = options
        self.context = context
        names = [n for n, _ in influence_parameters(self.model, options.parameters)]
        if not names:
            raise ValueError(
                f"strategy 'influence': the model has no trainable weight for option parameters={options.parameters!r}"
            )
        default = default_scales(self.model) if options.parameters == "last" else None
        scales = options.scales if options.scales is not None else (default or "auto")
        if isinstance(scales, (int, float)) and not isinstance(scales, bool):
            scales = (float(scales),) * len(names)
        if not isinstance(scales, str) and len(scales) != len(names):
            raise ValueError(
                f"strategy 'influence': option 'scales' must give one scale per influence parameter "
                f"{names} ({len(names)}). Got {list(scales)} instead."
            )
        self.scales = scales
        self.PROVIDES = getattr(self.model, "PROVIDES", frozenset()) | EXTRA_FIELDS
        self.s_test: Blocks | None = None
        self.stats: dict[str, Any] = {"parameters": names}
        if context is not None:
            self._prepare()

    # ------------------------------------------------------------------ the validation gradient and s_test
    def _work_copy(self) -> tuple[nn.Module, list[nn.Parameter]]:
        work = copy.deepcopy(self.model).to(self.context.device)
        params = [p for _, p in influence_parameters(work, self.options.parameters)]
        for p in work.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        return work, params

    def _loss(self, work: nn.Module, image: Tensor, target: dict[str, Tensor], index: int, what: str) -> Tensor:
        """The image's loss with its sampling seed drawn from ``(scoring seed, split, image)``."""
        split = ("val", "hvp", "pool").index(what)
        seed = int(np.random.default_rng([int(self.context.seed), split, index]).integers(2**62))
        return image_loss(work, image, target, seed)

    def _prepare(self) -> None:
        from ...engine import distributed as dist_utils

        ctx = self.context
        if ctx.val is None or len(ctx.val) == 0:
            raise ValueError(
                "strategy 'influence' needs a validation split (its validation-loss gradient); set "
                "'val_data' to images disjoint from the test split"
            )
        work, params = self._work_copy()
        self._work, self._params = work, params
        with loss_mode(work), torch.enable_grad():
            # v: the summed validation gradient, each process summing its share
            v = [torch.zeros_like(p) for p in params]
            val_items = list(range(len(ctx.val)))[dist_utils.rank() :: dist_utils.world_size()]
            for index, image, target in _items(ctx.val, val_items, ctx.device):
                grads = loss_gradient(self._loss(work, image, target, index, "val"), params)
                v = [a + g.detach() for a, g in zip(v, grads)]
            v = _all_reduce(v, "sum")
            # s_test: the recursion over labelled images in a seeded order, one recursion per process, averaged
            order = np.random.default_rng([ctx.seed, 1]).permutation(len(ctx.labelled))[: self.options.recursion_images]
            mine = [int(i) for i in order[dist_utils.rank() :: dist_utils.world_size()]]  # may be empty: h = v
            if len(order) == 0:  # the same on every process
                raise ValueError(
                    "strategy 'influence' needs labelled images for its recursion; the labelled set is "
                    "empty (set initial_labelled > 0)"
                )

            def hvp_of(index: int, image: Tensor, target: dict[str, Tensor]):
                return lambda h: [
                    x.detach() for x in hessian_vector_product(self._loss(work, image, target, index, "hvp"), params, h)
                ]

            scales = self.scales
            if scales == "auto":
                scales = self._auto_scales(list(_items(ctx.labelled, mine[:10], ctx.device)), hvp_of, params)
                scales = [max(s) for s in zip(*dist_utils.all_gather_object(scales))]  # one set for every process
            s_test, stats = self._recursions(v, mine, hvp_of, scales)
            self.s_test = _all_reduce(s_test, "mean")
        norms = stats.pop("norms")
        self.stats.update(
            stats,
            damping=self.options.damping,
            score_threshold=self.options.score_threshold,
            validation_images=len(ctx.val),
            recursion_images=len(order),
            v_norm=_norm(v),
            s_test_norm=_norm(self.s_test),
            recursion_norms=[
                norms[k] for k in sorted({0, len(norms) // 4, len(norms) // 2, 3 * len(norms) // 4, len(norms) - 1})
            ]
            if norms
            else [],
        )
        if ctx.stats_file is not None and dist_utils.is_main_process():
            from ...atomic import atomic_write_json

            atomic_write_json(ctx.stats_file("influence"), self.stats)
        if norms and len(norms) >= 8 and norms[-1] > 2 * norms[3 * len(norms) // 4]:
            warnings.warn(
                f"influence: the inverse-HVP recursion is still growing after {len(norms)} steps "
                f"(norm {norms[3 * len(norms) // 4]:.3g} -> {norms[-1]:.3g}); raise 'scales' or 'damping' "
                "(or set scales: auto)",
                stacklevel=2,
            )

    def _recursions(self, v: Blocks, mine: list[int], hvp_of, scales) -> tuple[Blocks, dict[str, Any]]:
        """``options.recursions`` recursions over consecutive shares of ``mine``, each from ``v``, averaged."""
        chunks = [
            [int(i) for i in c]
            for c in np.array_split(np.asarray(mine, dtype=np.int64), self.options.recursions)
            if len(c)
        ] or [[]]
        results, stats = [], {"steps": 0, "resets": 0, "scale_increases": 0, "norms": []}
        for chunk in chunks:
            steps = (hvp_of(i, img, t) for i, img, t in _items(self.context.labelled, chunk, self.context.device))
            h, part = lissa(v, steps, damping=self.options.damping, scales=scales, adapt=self.scales == "auto")
            results.append(h)
            for key in ("steps", "resets", "scale_increases"):
                stats[key] += part[key]
            stats["norms"] += part["norms"]
            stats["scales"] = part["scales"]
        return [sum(blocks) / len(results) for blocks in zip(*results)], stats

    def _auto_scales(self, items, hvp_of, params) -> list[float]:
        generator = torch.Generator().manual_seed(int(self.context.seed) % 2**62)
        shapes = [(p.shape, p.device) for p in params]
        scales = []
        for b in range(len(params)):
            values = [_largest_eigenvalue(hvp_of(i, img, t), shapes, b, 8, generator) for i, img, t in items]
            finite = [x for x in values if math.isfinite(x)]
            scales.append(max(2.0 * max(finite, default=0.0), 1e-3))
        return scales

    # ------------------------------------------------------------------ per-image influence
    def predict(self, images: Sequence[Tensor], fields: Iterable[str] = ()) -> list[Detections]:
        if self.s_test is None:
            raise RuntimeError(
                "InfluencePredictor was built without a scoring context (a capability check); the "
                "loop builds it with one"
            )
        fields = frozenset(fields) - EXTRA_FIELDS
        with lowered_score_threshold(self.model, self.options.score_threshold):
            detections = self.model.predict(images, fields=fields)
        out = []
        with loss_mode(self._work), torch.enable_grad():  # iter_predictions runs under no_grad
            for image, det in zip(images, detections):
                keep = det.scores >= self.options.score_threshold
                if not bool(keep.any()):
                    out.append(det)
                    continue
                boxes = det.boxes[keep].detach()
                valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # torchvision refuses flat boxes
                if not bool(valid.any()):
                    out.append(det)
                    continue
                target = {"boxes": boxes[valid], "labels": det.labels[keep][valid].detach()}
                index = _content_seed(image)
                grads = loss_gradient(self._loss(self._work, image, target, index, "pool"), self._params)
                out.append(
                    det.with_extras(influence=torch.tensor(influence_of(grads, self.s_test), dtype=torch.float64))
                )
        return out


# ---------------------------------------------------------------------------------------------- helpers
def _content_seed(image: Tensor) -> int:
    """A seed from the image's pixels: an image's sampling draw does not depend on its batch or process."""
    digest = hashlib.blake2b(image.detach().cpu().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def _items(dataset, indices: Sequence[int], device) -> Iterator[tuple[int, Tensor, dict[str, Tensor]]]:
    """``(index, image, training target)`` of ``dataset.records[i]`` one at a time, on ``device``."""
    from ...data.torch_dataset import DetectionTorchDataset

    loader = DetectionTorchDataset(dataset, list(indices), train=True)  # training targets, no augmentation
    for position in range(len(loader)):
        image, target = loader[position]
        yield (
            int(target["index"]),
            image.to(device),
            {"boxes": target["boxes"].to(device), "labels": target["labels"].to(device)},
        )


@contextmanager
def lowered_score_threshold(model: nn.Module, threshold: float) -> Iterator[None]:
    """The model's postprocessing score threshold(s) temporarily at most ``threshold``, so every detection the
    pseudo labels may use comes out."""
    holders = [m for m in (model, getattr(model, "roi_heads", None)) if m is not None and hasattr(m, "score_thresh")]
    saved = [h.score_thresh for h in holders]
    try:
        for h in holders:
            h.score_thresh = min(h.score_thresh, threshold)
        yield
    finally:
        for h, s in zip(holders, saved):
            h.score_thresh = s


def _all_reduce(blocks: Blocks, op: str) -> Blocks:
    from ...engine import distributed as dist_utils

    if not dist_utils.is_distributed():
        return blocks
    gathered = dist_utils.all_gather_object([b.cpu() for b in blocks])
    total = [sum(part[b] for part in gathered) for b in range(len(blocks))]
    if op == "mean":
        total = [t / len(gathered) for t in total]
    return [t.to(b.device) for t, b in zip(total, blocks)]


def _norm(blocks: Blocks) -> float:
    return float(torch.sqrt(sum((b.double() ** 2).sum() for b in blocks)))
