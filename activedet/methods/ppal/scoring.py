"""PPAL (Plug-and-Play Active Learning, CVPR 2024): difficulty-calibrated uncertainty sampling (DCUS), then
category-conditioned matching (CCM) k-medoids on the DCUS shortlist (methods.md §7.4).

**DCUS** (a per-image score, larger = pick first). The detector keeps a per-class quality ``Q_c`` learned during
training (:mod:`activedet.methods.ppal.model`; it reaches the score as ``Detections.extras["class_quality"]`` through
:class:`~activedet.methods.ppal.model.DifficultyPredictor`). Class weight

    w_c = 1 + α β log(1 + b (1 - Q_c)),   b = e^(1/α) - 1,

so ``w_c`` runs from 1 (``Q_c = 1``, easy) to ``1 + β`` (``Q_c = 0``, hard). Image score ``Σ_j w_{c_j} H_b(s_j)``
over the detections with ``s_j >= score_threshold`` whose box has ``sqrt(w h) > min_size`` and aspect ratio
``max(w/h, h/w) < max_aspect`` (boxes are already clipped to the image by the detectors). No such detection: the
score is ``None`` and the image ranks after every scored one (the official code scores it 0, the sum over nothing,
which ranks it with the lowest too).

``min_size`` is in original-image pixels. The official 16 px is for VOC/COCO images (about 500 px a side), where it
drops about 3 % of the image side; our default 4 px keeps that proportion on the 128 px benchmark images, whose
objects are 10-60 px (16 px would drop most small objects). Set 16 for VOC/COCO-sized images.

**CCM distance** between images ``i`` and ``j`` from their detections with ``s > score_threshold`` (the top
``max_detections`` by score), each with a feature ``f`` (``Detections.features``), label and score:

    d(a, b) = 1 - cos(f_a, f_b) if label_a == label_b else 2,   d(a, j) = min_{b in j} d(a, b),
    D(i -> j) = Σ_a s_a d(a, j) / Σ_a s_a,   D(i, j) = (D(i -> j) + D(j -> i)) / 2,   D(i, i) = 0.

An image with no such detection: ``D = 0`` to another such image and ``D = 2`` (the cost of a detection that
nothing matches) to every other image. Features are L2-normalised and kept as float16 between scoring and
selection. This is the paper's distance (``distance="paper"``).

``distance="released"`` computes what the released code computes (``mmdet/ppal/models/utils.py``,
``get_img_score_distance_matrix_slow``), two differences from the paper: (1) detections are ranked by score in
each image, and the ``r``-th detection of image ``i`` and the ``r``-th of image ``j`` are at distance 0 when their
labels agree, whatever their features (the code zeroes the diagonal of every image pair's detection matrix, not
only of an image with itself); (2) an image with no detection above the threshold is at distance 0 from every
image, which makes it the ideal medoid of any cluster. The score normalisation ``Σ_a s_a + 1e-5`` is also the
code's.

**k-medoids** on ``D`` with ``K = budget``: greedy farthest-first initialisation from a first medoid drawn from the
selection generator, then up to ``iterations`` rounds of (assign every image to its nearest medoid, a medoid to
itself; new medoid of a cluster = its member with the smallest summed distance to the members), stopping early
when the medoids no longer change. The medoids are yielded largest cluster first (ties: pool index); if the loop
asks for more (a budget counted in boxes), the other images follow, farthest from their medoid first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...models.outputs import Detections
from ...strategies.base import SelectionInput, Strategy
from ...strategies.checks import choice, number, summary
from ...strategies.predictors import model_only
from ...strategies.registry import register
from ...strategies.uncertainty import binary_entropy, rank_select
from .model import RELEASED_DCUS_POSTPROCESS, DifficultyPredictor

__all__ = [
    "class_weights",
    "valid_boxes",
    "dcus_score",
    "ccm_describe",
    "ccm_distances",
    "kmedoids",
    "kmedoids_select",
    "CCM_DISTANCES",
    "ppal",
]

_MAX_WORK = 1 << 24  # row detections x (images x detections per image) per distance chunk (64 MiB of float32)


def class_weights(quality: Tensor, alpha: float = 0.3, beta: float = 0.2) -> Tensor:
    """``w_c = 1 + α β log(1 + b (1 - Q_c))``, ``b = e^(1/α) - 1``, for ``quality`` ``[C]`` in [0, 1]."""
    b = math.expm1(1.0 / alpha)
    return 1 + alpha * beta * torch.log1p(b * (1 - quality.double().clamp(0, 1)))


def valid_boxes(boxes: Tensor, min_size: float, max_aspect: float) -> Tensor:
    """``bool[N]``: ``sqrt(w h) > min_size`` and ``max(w/h, h/w) < max_aspect`` for xyxy ``boxes`` ``[N, 4]``."""
    wh = (boxes[:, 2:] - boxes[:, :2]).double().clamp(min=0)
    w, h = wh[:, 0], wh[:, 1]
    eps = 1e-10
    return (torch.sqrt(w * h) > min_size) & (w / (h + eps) < max_aspect) & (h / (w + eps) < max_aspect)


def dcus_score(
    det: Detections,
    *,
    alpha: float = 0.3,
    beta: float = 0.2,
    score_threshold: float = 0.05,
    min_size: float = 4.0,
    max_aspect: float = 5.0,
) -> float | None:
    """DCUS image score (module docstring); ``None`` when no detection passes the score and box filters.

    Needs ``det.extras["class_quality"]`` ``[C]`` (from :class:`~activedet.methods.ppal.model.DifficultyPredictor`).
    """
    quality = det.extras.get("class_quality")
    if quality is None:
        raise ValueError(
            "the DCUS score needs Detections.extras['class_quality']: score through "
            "activedet.methods.ppal.model.DifficultyPredictor with fields={'class_quality'}"
        )
    scores = det.scores.double().reshape(-1)
    keep = (scores >= score_threshold) & valid_boxes(det.boxes, min_size, max_aspect)
    if not bool(keep.any()):
        return None
    labels = det.labels[keep].long()
    num_classes = quality.numel()
    if int(labels.min()) < 1 or int(labels.max()) > num_classes:
        raise ValueError(
            f"detection labels must be in 1..{num_classes} (the length of class_quality); got "
            f"{sorted(set(labels.tolist()))}"
        )
    s = scores[keep]
    return float((class_weights(quality, alpha, beta)[labels - 1] * binary_entropy(s)).sum())


def ccm_describe(det: Detections, *, score_threshold: float = 0.05, max_detections: int = 100) -> dict[str, np.ndarray]:
    """What CCM keeps of one image: its detections with ``score > score_threshold``, the ``max_detections`` best:
    ``features`` ``float16[N, D]`` (L2-normalised), ``labels`` ``int64[N]``, ``scores`` ``float32[N]``."""
    if det.features is None:
        raise ValueError("CCM needs per-detection features: predict with fields={'features'}")
    if det.features.shape[0] != len(det):
        raise ValueError(f"Detections.features has {det.features.shape[0]} rows for {len(det)} detections")
    scores = det.scores.float().reshape(-1)
    keep = torch.where(scores > score_threshold)[0]
    keep = keep[scores[keep].argsort(descending=True, stable=True)][:max_detections]
    features = F.normalize(det.features[keep].float(), dim=1)
    if not bool(torch.isfinite(features).all()):
        raise ValueError("non-finite per-detection features")
    return {
        "features": features.half().cpu().numpy(),
        "labels": det.labels[keep].long().cpu().numpy(),
        "scores": scores[keep].cpu().numpy(),
    }


def _padded(features: list[np.ndarray], labels: list[np.ndarray], scores: list[np.ndarray]):
    """``[M, N, D]`` features, ``[M, N]`` labels and scores, zero-padded; padding has label -1 and score 0."""
    m, n = len(features), max((len(s) for s in scores), default=0)
    dim = next((f.shape[1] for f in features if f.ndim == 2 and f.shape[0]), 1)
    feats, labs, scs = torch.zeros(m, n, dim), torch.full((m, n), -1, dtype=torch.int64), torch.zeros(m, n)
    for i, (f, lab, s) in enumerate(zip(features, labels, scores)):
        if len(s):
            feats[i, : len(s)] = torch.from_numpy(np.asarray(f, np.float32))
            labs[i, : len(s)] = torch.from_numpy(np.asarray(lab, np.int64))
            scs[i, : len(s)] = torch.from_numpy(np.asarray(s, np.float32))
    return feats, labs, scs


CCM_DISTANCES = ("paper", "released")


def ccm_distances(
    features: list[np.ndarray], labels: list[np.ndarray], scores: list[np.ndarray], *, distance: str = "paper"
) -> np.ndarray:
    """``float64[M, M]`` symmetric CCM image distances (module docstring) from per-image ``features [N_i, D]``
    (L2-normalised), ``labels [N_i]`` and ``scores [N_i]`` (positive weights, in descending order), in chunks of
    row detections. ``distance``: ``"paper"`` or ``"released"`` (module docstring)."""
    if distance not in CCM_DISTANCES:
        raise ValueError(
            f"The 'distance' parameter of ccm_distances must be one of {list(CCM_DISTANCES)}. Got {distance!r} instead."
        )
    released = distance == "released"
    feats, labs, scs = _padded(features, labels, scores)
    m, n = labs.shape
    present = labs >= 0  # [M, N] real detections (padding has label -1)
    directed = torch.zeros(m, m, dtype=torch.float64)  # D(i -> j)
    rows = torch.nonzero(present)  # [T, 2]: (image, detection) of every real detection
    chunk = max(1, _MAX_WORK // max(1, m * n))
    for lo in range(0, len(rows), chunk):
        image, slot = rows[lo : lo + chunk].T
        d = 1 - torch.einsum("td,jnd->tjn", feats[image, slot], feats)  # [t, M, N]
        same_label = labs[image, slot][:, None, None] == labs[None]
        if released:  # the r-th detections of two images match at 0 when their labels agree
            d = torch.where(same_label & (torch.arange(n)[None, None, :] == slot[:, None, None]), 0.0, d)
        d = torch.where(same_label, d.clamp(0, 2), torch.full_like(d, 2.0))
        d = torch.where(present[None], d, torch.full_like(d, math.inf)).amin(dim=2)  # [t, M]: nearest in image j
        # image j has no detection: unmatched (2), or 0 in the released code
        d = torch.where(torch.isinf(d), torch.full_like(d, 0.0 if released else 2.0), d)
        directed.index_add_(0, image, scs[image, slot, None].double() * d.double())
    weight = scs.double().sum(dim=1)  # [M]
    has = weight > 0
    if released:  # Σ_a s_a d(a, j) / (Σ_a s_a + 1e-5), and 0 when image j has no detection
        directed = torch.where(has[None, :], directed / (weight[:, None] + 1e-5), 0.0).double()
        distances = 0.5 * (directed + directed.T)
        distances.fill_diagonal_(0)
        return distances.numpy()
    directed = torch.where(
        has[:, None], directed / weight.clamp(min=1e-12)[:, None], torch.where(has[None, :], 2.0, 0.0).double()
    )
    distances = 0.5 * (directed + directed.T)
    distances.fill_diagonal_(0)
    return distances.numpy()


def kmedoids(distances: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 100) -> np.ndarray:
    """``int64[k]`` medoid positions of a k-medoids clustering of ``distances [M, M]`` (module docstring);
    all ``M`` positions when ``k >= M``."""
    m = len(distances)
    if k >= m:
        return np.arange(m)
    medoids = [int(rng.integers(m))]
    nearest = distances[:, medoids[0]].copy()
    for _ in range(1, k):  # farthest-first
        candidates = nearest.copy()
        candidates[medoids] = -1
        medoids.append(int(candidates.argmax()))
        nearest = np.minimum(nearest, distances[:, medoids[-1]])
    medoids = np.asarray(medoids, np.int64)
    for _ in range(iterations):
        assignment = _assign(distances, medoids)
        updated = np.array([_medoid_of(distances, np.flatnonzero(assignment == c)) for c in range(k)], np.int64)
        if np.array_equal(updated, medoids):
            break
        medoids = updated
    return medoids


def _assign(distances: np.ndarray, medoids: np.ndarray) -> np.ndarray:
    """``int64[M]`` cluster of every position: its nearest medoid (first on ties); a medoid is its own."""
    assignment = distances[:, medoids].argmin(axis=1)
    assignment[medoids] = np.arange(len(medoids))
    return assignment


def _medoid_of(distances: np.ndarray, members: np.ndarray) -> int:
    return int(members[distances[np.ix_(members, members)].sum(axis=1).argmin()])


def kmedoids_select(inputs: SelectionInput, *, iterations: int = 100, distance: str = "paper") -> Iterator[int]:
    """Yield the ``K = inputs.budget_hint`` k-medoids of the pool under the CCM distance, then the other images
    (module docstring). Reads ``inputs.pool.extras`` ``{"features", "labels", "scores"}`` (from
    :func:`ccm_describe`)."""
    pool = inputs.pool
    if len(pool) == 0:
        return
    extras = pool.extras
    missing = [name for name in ("features", "labels", "scores") if name not in extras]
    if missing:
        raise ValueError(
            f"CCM k-medoids needs the pool's per-image {missing} (ScoredPool.extras, from "
            f"ccm_describe); the pool has {sorted(extras)}"
        )
    if not isinstance(inputs.budget_hint, int) or inputs.budget_hint < 1:
        raise ValueError(
            f"The 'budget_hint' parameter of CCM k-medoids must be an int >= 1. Got {inputs.budget_hint!r} instead."
        )
    distances = ccm_distances(extras["features"], extras["labels"], extras["scores"], distance=distance)
    medoids = kmedoids(distances, min(inputs.budget_hint, len(pool)), inputs.rng, iterations)
    for position in _pick_order(distances, medoids, pool.indices):
        yield int(pool.indices[position])


def _pick_order(distances: np.ndarray, medoids: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Medoids by cluster size (largest first, ties by pool index), then the rest farthest from their medoid
    first (ties by pool index)."""
    assignment = _assign(distances, medoids)
    sizes = np.bincount(assignment, minlength=len(medoids))
    first = medoids[np.lexsort((indices[medoids], -sizes))]
    rest = np.setdiff1d(np.arange(len(distances)), medoids)
    gap = distances[rest, medoids[assignment[rest]]]
    return np.concatenate([first, rest[np.lexsort((indices[rest], -gap))]]).astype(np.int64)


# ------------------------------------------------------------------------------------------------ strategies


@register(
    "ppal",
    needs={"class_quality", "features"},
    requires={"difficulty_ema"},
    defines={"difficulty_ema": "a detector trained with detector_options: {difficulty_ema: true}"},
)
def ppal(
    *,
    shortlist: float = 4.0,
    alpha: float = 0.3,
    beta: float = 0.2,
    score_threshold: float = 0.05,
    min_size: float = 4.0,
    max_aspect: float = 5.0,
    max_detections: int = 100,
    iterations: int = 100,
    dcus_postprocess: str = "detector",
    distance: str = "paper",
) -> Strategy:
    """PPAL: difficulty-calibrated uncertainty shortlist, then category-conditioned k-medoids (§7.4).

    Needs a detector trained with ``detector_options: {difficulty_ema: true}`` (``faster_rcnn``, our benchmark
    detector, or ``retinanet``, the paper's; see :mod:`activedet.methods.ppal.model`). Two stages (formulas
    above): DCUS scores the pool and its top ``shortlist x budget`` images go on; only those are predicted
    again for per-detection features, and k-medoids under the CCM image distance picks ``budget`` of them.

    Options:
        shortlist: DCUS candidates per image of budget (4.0, the official ``budget_expand_ratio``).
        alpha, beta: DCUS class weight ``1 + α β log(1 + (e^(1/α) - 1)(1 - Q_c))``, between 1 and ``1 + β``
            (0.3 and 0.2, the official ``class_weight_alpha`` and ``class_weight_ub``).
        score_threshold: detections scored by DCUS (``s >= score_threshold``) and matched by CCM
            (``s > score_threshold``); 0.05 as the official code.
        min_size, max_aspect: DCUS ignores boxes with ``sqrt(w h) <= min_size`` pixels or aspect ratio
            ``>= max_aspect`` (5.0). The official 16 px suits ~500 px VOC/COCO images; the default 4 px keeps the
            same share of the image side on the 128 px benchmark images (set 16 for VOC/COCO).
        max_detections: CCM uses an image's ``max_detections`` best detections (100, as the official code).
        iterations: at most this many k-medoids assign/update rounds (100, as the official code); it stops
            earlier when the medoids no longer change.
        dcus_postprocess: the detections DCUS scores: ``"detector"`` (default: the detector's own postprocessing,
            e.g. score > 0.05 before NMS and 100 per image) or ``"released"`` (the released DCUS inference: no
            score threshold before NMS, 3000 candidates per level, 200 per image; ``score_threshold`` still
            applies after it, as in the released sampler).
        distance: CCM image distance: ``"paper"`` (default) or ``"released"`` (the released code's: the r-th
            detections of two images match at 0 when their labels agree, and an image with no detection is at
            distance 0 from every image, above).

    Empty images: no DCUS detection ranks an image after every scored one (the official score 0 does the same);
    for CCM an image without detections is at distance 2 from every image with some and 0 from one without.
    """
    number("ppal", "shortlist", shortlist, float, 1)
    number("ppal", "alpha", alpha, float, 1e-3, 100)
    number("ppal", "beta", beta, float, 0)
    number("ppal", "score_threshold", score_threshold, float, 0, 1)
    number("ppal", "min_size", min_size, float, 0)
    number("ppal", "max_aspect", max_aspect, float, 1)
    number("ppal", "max_detections", max_detections, int, 1)
    number("ppal", "iterations", iterations, int, 1)
    choice("ppal", "dcus_postprocess", dcus_postprocess, ("detector", "released"))
    choice("ppal", "distance", distance, CCM_DISTANCES)
    ccm = Strategy(
        "ppal_ccm",
        "PPAL's second stage: category-conditioned k-medoids on the DCUS shortlist.",
        score=None,
        select=functools.partial(kmedoids_select, iterations=int(iterations), distance=distance),
        needs=frozenset({"features"}),
        describe=functools.partial(
            ccm_describe, score_threshold=float(score_threshold), max_detections=int(max_detections)
        ),
    )
    score = functools.partial(
        dcus_score,
        alpha=float(alpha),
        beta=float(beta),
        score_threshold=float(score_threshold),
        min_size=float(min_size),
        max_aspect=float(max_aspect),
    )
    return Strategy(
        "ppal",
        summary(ppal),
        score=score,
        select=functools.partial(rank_select, empty_policy="lowest", strategy="ppal"),
        needs=frozenset({"class_quality"}),
        predictor=functools.partial(
            model_only,
            build=functools.partial(
                DifficultyPredictor, postprocess=RELEASED_DCUS_POSTPROCESS if dcus_postprocess == "released" else None
            ),
        ),
        then=ccm,
        shortlist=float(shortlist),
    )
