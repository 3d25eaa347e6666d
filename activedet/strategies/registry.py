"""The flat registry of query strategies: ``name -> factory``, and the option checks every factory shares.

A factory takes keyword options only, checks their values, binds them into a scoring function and a selection
step (the plain functions of :mod:`.uncertainty` and :mod:`.diversity`) and returns a
:class:`~activedet.strategies.base.Strategy`. The first line of its docstring is the description that
``activedet strategies`` prints. ::

    strategy = get_strategy("entropy", aggregation="sum", empty_policy="skip")
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
from numbers import Integral, Real
from typing import Any, Callable, Iterator

import numpy as np

from .base import SelectionInput, Strategy, first_picks
from ..models.difficulty import RELEASED_DCUS_POSTPROCESS, DifficultyPredictor
from ..models.influence import INFLUENCE_PARAMETER_SETS, InfluenceOptions, InfluencePredictor
from ..models.stochastic import StochasticPredictor, predicting_detector
from ..models.views import ViewPredictor, noise_views, parse_views
from .almdn import almdn_combine, almdn_vector
from .cald import (DISTRIBUTION_OBJECTIVES, cald_informativeness, cald_references, class_score_vector,
                   distribution_order)
from .localization import localization_stability as _stability_score, localization_tightness as _tightness_score
from .localization import top_references
from .dense import discrepancy_score
from .stochastic import DENSE_MEASURES, dense_stochastic_score, matched_stochastic_score
from .diversity import KMEANS_ORDERS, coreset_select, kmeans_select, kmeanspp_select
from .ppal import CCM_DISTANCES, ccm_describe, dcus_score, kmedoids_select
from .uncertainty import (AGGREGATIONS, EMPTY_POLICIES, image_uncertainty, random_select, rank_select)

__all__ = ["STRATEGIES", "get_strategy", "list_strategies", "hybrid_select", "cald_distribution_select"]


# ---------------------------------------------------------------------------------------------- option checks

def _choice(strategy: str, name: str, value: Any, choices: tuple) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"The '{name}' parameter of {strategy} must be one of {list(choices)}. "
                         f"Got {value!r} instead.")


def _number(strategy: str, name: str, value: Any, kind: type, low: float, high: float = math.inf,
            extra: str = "") -> None:
    """sklearn-style check that ``value`` is an int (``kind=int``) or a real in ``[low, high]``."""
    ok_type = isinstance(value, Integral if kind is int else Real) and not isinstance(value, bool)
    if not ok_type or not low <= value <= high or (kind is float and not math.isfinite(value)):
        upper = "inf)" if high == math.inf else f"{high}]"
        raise ValueError(f"The '{name}' parameter of {strategy} must be {'an int' if kind is int else 'a float'}"
                         f" in [{low}, {upper}{extra}. Got {value!r} instead.")


def _flag(strategy: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"The '{name}' parameter of {strategy} must be an instance of 'bool'. "
                         f"Got {value!r} instead.")


def _options_of(factory: Callable) -> list[str]:
    return [p.name for p in inspect.signature(factory).parameters.values() if p.kind is p.KEYWORD_ONLY]


def _unknown_options(strategy: str, given: dict, valid: list[str]) -> None:
    unknown = [name for name in given if name not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"Unknown option {unknown[0]!r} for strategy {strategy!r}{hint} Valid options of "
                         f"{strategy}: {valid}")


def _description(factory: Callable) -> str:
    return inspect.getdoc(factory).splitlines()[0]


# ------------------------------------------------------------------------------------------------- baselines

def random() -> Strategy:
    """Uniform random sample of the unlabelled pool; no inference at all (methods.md §1.1)."""
    return Strategy("random", _description(random), score=None, select=random_select, needs_inference=False)


def _uncertainty(measure: str, factory: Callable, score_threshold: float, aggregation: str, topk: int,
                 use_class_probs: bool, empty_policy: str) -> Strategy:
    _number(measure, "score_threshold", score_threshold, float, 0, 1)
    _choice(measure, "aggregation", aggregation, AGGREGATIONS)
    _number(measure, "topk", topk, int, 1)
    _flag(measure, "use_class_probs", use_class_probs)
    _choice(measure, "empty_policy", empty_policy, EMPTY_POLICIES)
    score = functools.partial(image_uncertainty, measure=measure, score_threshold=float(score_threshold),
                              aggregation=aggregation, topk=int(topk), use_class_probs=use_class_probs)
    select = functools.partial(rank_select, empty_policy=empty_policy, strategy=measure)
    needs = frozenset({"class_probs"}) if use_class_probs else frozenset()
    return Strategy(measure, _description(factory), score=score, select=select, needs=needs)


def least_confidence(*, score_threshold: float = 0.05, aggregation: str = "max", topk: int = 3,
                     use_class_probs: bool = False, empty_policy: str = "lowest") -> Strategy:
    """Least confidence of the detections, 1 - s (or 1 - max class probability), reduced per image.

    Options (shared by ``margin`` and ``entropy``; per-detection formulas in :mod:`.uncertainty`):
        score_threshold: detections with ``score >= score_threshold`` are scored (0.05, the usual test threshold).
        aggregation: ``"max"`` | ``"mean"`` | ``"sum"`` | ``"topk_mean"`` over those detections (methods.md §0.3).
        topk: k of ``topk_mean`` (3: close to the typical number of objects per image, about 2.5 in VOC, so the
            score averages over the objects present instead of being set by one near-threshold duplicate, and it
            does not grow with crowding as ``sum`` does).
        use_class_probs: use the full class vector (``needs={"class_probs"}``) instead of the score alone.
        empty_policy: where images with no detection at or above the threshold go: ``"lowest"`` (after every
            scored image), ``"highest"`` (first), ``"skip"`` (never selected), ``"random_fill"`` (after every
            scored image, in random order). Ties between scored images: by pool index.
    """
    return _uncertainty("least_confidence", least_confidence, score_threshold, aggregation, topk,
                        use_class_probs, empty_policy)


def margin(*, score_threshold: float = 0.05, aggregation: str = "max", topk: int = 3,
           use_class_probs: bool = False, empty_policy: str = "lowest") -> Strategy:
    """Margin (1-vs-2) uncertainty of the detections, 1 - (p(1) - p(2)), reduced per image.

    Options as :func:`least_confidence`.
    """
    return _uncertainty("margin", margin, score_threshold, aggregation, topk, use_class_probs, empty_policy)


def entropy(*, score_threshold: float = 0.05, aggregation: str = "max", topk: int = 3,
            use_class_probs: bool = False, empty_policy: str = "lowest") -> Strategy:
    """Entropy of the detections (binary of the score, or of the class vector), reduced per image.

    Options as :func:`least_confidence`.
    """
    return _uncertainty("entropy", entropy, score_threshold, aggregation, topk, use_class_probs, empty_policy)


# ------------------------------------------------------------------------------------------------- diversity

def _projection(strategy: str, projection_dim: int | None) -> None:
    if projection_dim is not None:
        _number(strategy, "projection_dim", projection_dim, int, 1, extra=" or None")


def _diversity(name: str, factory: Callable, select: Callable) -> Strategy:
    return Strategy(name, _description(factory), score=None, select=select, needs=frozenset({"embedding"}),
                    needs_labelled=True)


def coreset(*, projection_dim: int | None = None) -> Strategy:
    """Core-set greedy k-centre on image embeddings: the image farthest from labelled and picked ones, in turn.

    Options:
        projection_dim: ``None`` (default) = exact; an int = greedy on a Gaussian random projection of the
            embeddings to that many dimensions (approximate, much faster on structureless embeddings; see
            :mod:`.diversity`).
    """
    _projection("coreset", projection_dim)
    return _diversity("coreset", coreset, functools.partial(coreset_select, projection_dim=projection_dim))


def kmeanspp(*, projection_dim: int | None = None) -> Strategy:
    """k-means++ D² sampling on image embeddings, the labelled images being the initial centres.

    Options:
        projection_dim: as for ``coreset``.
    """
    _projection("kmeanspp", projection_dim)
    return _diversity("kmeanspp", kmeanspp, functools.partial(kmeanspp_select, projection_dim=projection_dim))


def kmeans(*, n_clusters: int | str = 10, order: str = "coverage") -> Strategy:
    """k-means on image embeddings, then one image per cluster per round, least-covered clusters first.

    Options:
        n_clusters: number of clusters (10, as med_sslal) or ``"budget"`` for the loop's budget hint.
        order: ``"coverage"`` (default: least-covered clusters first, members far from the labelled set first)
            or ``"released"`` (the medical framework's code: clusters in number order, a uniform random member).
    """
    if n_clusters != "budget":
        _number("kmeans", "n_clusters", n_clusters, int, 1, extra=" or 'budget'")
    _choice("kmeans", "order", order, KMEANS_ORDERS)
    return _diversity("kmeans", kmeans, functools.partial(kmeans_select, n_clusters=n_clusters, order=order))


# ----------------------------------------------------------------------------------------------- dense scores

def miaod(*, topk: int = 10000, topk_fraction: float | None = 0.1, weighted: bool = False) -> Strategy:
    """MI-AOD: mean of the top-k anchor disagreements of the two adversarial classifiers (detector: miaod).

    Options (methods.md §3.3; formulas in :mod:`.dense`):
        topk, topk_fraction: ``k = min(topk, ceil(topk_fraction x anchors))``: 10,000 on large images, the top
            10 % of anchors on small ones; ``topk_fraction: null``: the released fixed ``k = topk`` whatever the
            anchor count (an image with fewer anchors averages all of them).
        weighted: ``False`` (default, the released code): squared disagreement; ``True``: the paper's
            |p1 - p2| re-weighted by the MIL instance weights.
    """
    _number("miaod", "topk", topk, int, 1)
    if topk_fraction is not None:
        _number("miaod", "topk_fraction", topk_fraction, float, 0, 1, extra=" or None (the released fixed k)")
        if topk_fraction == 0:
            raise ValueError("The 'topk_fraction' parameter of miaod must be a float in (0, 1] or None (the released "
                             "fixed k). Got 0 instead.")
    _flag("miaod", "weighted", weighted)
    fraction = None if topk_fraction is None else float(topk_fraction)
    score = functools.partial(discrepancy_score, topk=int(topk), topk_fraction=fraction,
                              weighted=weighted)
    needs = frozenset({"dense_probs", "dense_probs_2"} | ({"dense_weights"} if weighted else set()))
    return Strategy("miaod", _description(miaod), score=score,
                    select=functools.partial(rank_select, empty_policy="lowest", strategy="miaod"), needs=needs)


def almdn(*, score_threshold: float = 0.5, empty_policy: str = "lowest") -> Strategy:
    """AL-MDN: max of the z-normalised aleatoric/epistemic loc/cls uncertainties, one pass (detector: almdn_*).

    Options (methods.md §4.4; formulas in :mod:`.almdn`):
        score_threshold: detections with ``score >= score_threshold`` are scored (0.5, the released code).
        empty_policy: where images with no such detection go (``"lowest"``, as the released -99999).
    """
    _number("almdn", "score_threshold", score_threshold, float, 0, 1)
    _choice("almdn", "empty_policy", empty_policy, EMPTY_POLICIES)
    return Strategy("almdn", _description(almdn), score=functools.partial(almdn_vector,
                                                                          score_threshold=float(score_threshold)),
                    select=functools.partial(rank_select, empty_policy=empty_policy, strategy="almdn"),
                    needs=frozenset({"uncertainties"}), combine=almdn_combine)


# ------------------------------------------------------------------------------------- several predictions

FORMULATIONS = ("dense", "matched")


def _stochastic(name: str, factory: Callable, predictor: Callable, formulation: str, measure: str,
                score_threshold: float, aggregation: str, topk: int, detection_threshold: float,
                iou_threshold: float, same_label: bool, cluster_aggregation: str, empty_policy: str) -> Strategy:
    _choice(name, "formulation", formulation, FORMULATIONS)
    _choice(name, "measure", measure, DENSE_MEASURES)
    _number(name, "score_threshold", score_threshold, float, 0, 1)
    _choice(name, "aggregation", aggregation, ("max", "topk_mean"))
    _number(name, "topk", topk, int, 1)
    _number(name, "detection_threshold", detection_threshold, float, 0, 1)
    _number(name, "iou_threshold", iou_threshold, float, 0, 1)
    _flag(name, "same_label", same_label)
    _choice(name, "cluster_aggregation", cluster_aggregation, ("min", "mean"))
    _choice(name, "empty_policy", empty_policy, EMPTY_POLICIES)
    if formulation == "dense":
        predictor = functools.partial(_dense_predictor, predictor=predictor, strategy=name)
        score = functools.partial(dense_stochastic_score, measure=measure, score_threshold=float(score_threshold),
                                  aggregation=aggregation, topk=int(topk))
        needs = frozenset({"dense_probs", "dense_expected_entropy", "dense_box_var"})
    else:
        predictor = functools.partial(_model_only, build=predictor)
        score = functools.partial(matched_stochastic_score, detection_threshold=float(detection_threshold),
                                  iou_threshold=float(iou_threshold), same_label=same_label,
                                  cluster_aggregation=cluster_aggregation)
        needs = frozenset({"passes"})
    return Strategy(name, _description(factory), score=score, needs=needs, predictor=predictor,
                    select=functools.partial(rank_select, empty_policy=empty_policy, strategy=name))


def _model_only(model: Any, context: Any = None, *, build: Callable) -> Any:
    """A predictor that needs nothing from the scoring context."""
    return build(model)


def _dense_predictor(model: Any, context: Any = None, *, predictor: Callable, strategy: str) -> Any:
    built = predictor(model)
    if not built.dense:
        raise ValueError(f"strategy '{strategy}' with formulation 'dense' needs a single-stage detector (the same "
                         f"anchors in every prediction); {type(built.members[0]).__name__} is two-stage: set "
                         "strategy_options: {formulation: matched}")
    return built


def mc_dropout(*, passes: int = 20, formulation: str = "dense", measure: str = "mutual_information",
               score_threshold: float = 0.05, aggregation: str = "max", topk: int = 10,
               detection_threshold: float = 0.5, iou_threshold: float = 0.5, same_label: bool = False,
               cluster_aggregation: str = "min", empty_policy: str = "lowest") -> Strategy:
    """MC-dropout: T stochastic passes of the head's dropout, dense (anchor) or box-matched uncertainty (§2).

    Needs a detector trained with head dropout (``detector_options: {dropout: 0.25}``). Formulas in
    :mod:`.stochastic`.

    Options:
        passes: T, stochastic passes per image (20, maskAL's default); the backbone runs once.
        formulation: ``"dense"`` (single-stage detectors: per-anchor uncertainty) or ``"matched"`` (any detector,
            the only one for Faster R-CNN: detections clustered across passes).
        measure: dense: ``"mutual_information"`` (BALD, default), ``"entropy"`` (predictive) or ``"box_variance"``.
        score_threshold: dense: anchors whose mean top foreground probability is at least this count (0.05).
        aggregation, topk: dense: ``"max"`` over those anchors, or ``"topk_mean"`` of the ``topk`` largest.
        detection_threshold, iou_threshold, same_label: matched: detections with score >= 0.5 are clustered at
            IoU > 0.5 (maskAL's defaults), optionally only with detections of the same label.
        cluster_aggregation: matched: image score 1 - ``"min"`` (default) or 1 - ``"mean"`` cluster certainty.
        empty_policy: where images with nothing to score go (see ``least_confidence``).
    """
    _number("mc_dropout", "passes", passes, int, 2)
    predictor = functools.partial(StochasticPredictor.mc_dropout, passes=int(passes))
    return _stochastic("mc_dropout", mc_dropout, predictor, formulation, measure, score_threshold, aggregation, topk,
                       detection_threshold, iou_threshold, same_label, cluster_aggregation, empty_policy)


def ensemble(*, formulation: str = "dense", measure: str = "mutual_information", score_threshold: float = 0.05,
             aggregation: str = "max", topk: int = 10, detection_threshold: float = 0.5, iou_threshold: float = 0.5,
             same_label: bool = False, cluster_aggregation: str = "min", empty_policy: str = "lowest") -> Strategy:
    """Deep ensemble: disagreement of M independently trained detectors, dense or box-matched (§2).

    Needs ``ensemble_size`` >= 2 in the config (training costs M times the detector's); each member predicts once.

    Options (meanings as for ``mc_dropout``): formulation, measure, score_threshold, aggregation, topk,
    detection_threshold, iou_threshold, same_label, cluster_aggregation, empty_policy.
    """
    return _stochastic("ensemble", ensemble, StochasticPredictor.ensemble, formulation, measure, score_threshold,
                       aggregation, topk, detection_threshold, iou_threshold, same_label, cluster_aggregation,
                       empty_policy)



# -------------------------------------------------------------------------------- localization and views

def _two_stage(model: Any, context: Any = None, *, strategy: str) -> Any:
    detector = predicting_detector(model)
    if "proposals" not in getattr(detector, "PROVIDES", frozenset()):
        raise ValueError(f"strategy '{strategy}' needs the RPN proposal of each detection, which only a two-stage "
                         f"detector gives; {type(detector).__name__} is single-stage: use a two-stage detector "
                         "such as faster_rcnn (detector: faster_rcnn)")
    return model


def localization_tightness(*, with_classification: bool = True, empty_policy: str = "lowest") -> Strategy:
    """Localization tightness (LT/C or LT): proposal-to-box IoU, against confidence with +C (two-stage, §5.1).

    Informativeness ``1 - min_j |IoU(box_j, proposal_j) + P_max(j) - 1|`` (formulas in :mod:`.localization`);
    needs a two-stage detector (faster_rcnn), checked before any work.

    Options:
        with_classification: ``True`` (default, LT/C) as above; ``False`` (pure LT): ``1 - min_j IoU(box_j,
            proposal_j)``, the image with the loosest box first.
        empty_policy: where images with no detection go: ``"lowest"`` (default; the released code's J = 1.0 ranks
            them last), ``"highest"``, ``"skip"``, ``"random_fill"`` (see ``least_confidence``).
    """
    _flag("localization_tightness", "with_classification", with_classification)
    _choice("localization_tightness", "empty_policy", empty_policy, EMPTY_POLICIES)
    return Strategy("localization_tightness", _description(localization_tightness),
                    score=functools.partial(_tightness_score, with_classification=with_classification),
                    select=functools.partial(rank_select, empty_policy=empty_policy,
                                             strategy="localization_tightness"),
                    needs=frozenset({"proposals", "class_probs"}),
                    predictor=functools.partial(_two_stage, strategy="localization_tightness"))


def _view_predictor(model: Any, context: Any = None, *, views: str | tuple[int, float], references: Callable
                    ) -> ViewPredictor:
    built = parse_views(views) if isinstance(views, str) else noise_views(*views)
    return ViewPredictor(model, built, references=references)


def localization_stability(*, with_classification: bool = True, noise_levels: int = 6, noise_step: float = 8.0,
                           max_references: int = 30, empty_policy: str = "lowest") -> Strategy:
    """Localization stability (LS+C or LS): IoU of the top detections with those of noisy copies (any detector, §5.2).

    Formulas in :mod:`.localization`; the copies come from a :class:`~activedet.models.views.ViewPredictor`
    (1 + ``noise_levels`` passes per image).

    Options:
        with_classification: ``True`` (default, LS+C): ``max_j (1 - P_max(j)) - S_I``; ``False`` (pure LS):
            ``-S_I``.
        noise_levels, noise_step: the copies have Gaussian noise of std ``noise_step x n`` (0-255 scale) for
            ``n = 1..noise_levels`` (6 and 8, the paper's and the released code's).
        max_references: the detections with the largest ``P_max`` that are tracked (30, the released code).
        empty_policy: where images with no detection go: ``"lowest"`` (default; the released code scores them 0,
            mid-ranking), ``"highest"``, ``"skip"``, ``"random_fill"`` (see ``least_confidence``).
    """
    name = "localization_stability"
    _flag(name, "with_classification", with_classification)
    _number(name, "noise_levels", noise_levels, int, 1, 20)
    _number(name, "noise_step", noise_step, float, 0, 255)
    _number(name, "max_references", max_references, int, 1)
    _choice(name, "empty_policy", empty_policy, EMPTY_POLICIES)
    references = functools.partial(top_references, max_references=int(max_references))
    return Strategy(name, _description(localization_stability),
                    score=functools.partial(_stability_score, with_classification=with_classification,
                                            max_references=int(max_references)),
                    select=functools.partial(rank_select, empty_policy=empty_policy, strategy=name),
                    needs=frozenset({"views", "class_probs"}),
                    predictor=functools.partial(_view_predictor, views=(int(noise_levels), float(noise_step)),
                                                references=references))


def _cald_references(det: Any, *, max_references: int, subsample_above: int) -> Any:
    return cald_references(len(det), max_references, subsample_above)


def _class_scores(det: Any) -> dict[str, np.ndarray]:
    return {"class_scores": class_score_vector(det)}


def cald_distribution_select(inputs: SelectionInput, *, update: bool = False,
                             objective: str = "divergence") -> Iterator[int]:
    """CALD stage 2: pool indices by :func:`~.cald.distribution_order` of the candidates' ``class_scores`` extras
    against ``inputs.labelled_class_counts`` / ``inputs.num_labelled``."""
    pool = inputs.pool
    if len(pool) == 0:
        return
    extras = pool.extras
    if "class_scores" not in extras:
        raise ValueError("cald's distribution stage needs the class-score vector of each candidate "
                         "(ScoredPool.extras['class_scores'], from the stage's describe); the pool has "
                         f"{sorted(extras)}")
    scores = np.stack([np.asarray(q, np.float64).reshape(-1) for q in extras["class_scores"]])
    counts = inputs.labelled_class_counts
    if counts is not None and np.asarray(counts).reshape(-1).shape[0] != scores.shape[1]:
        raise ValueError(f"cald: labelled_class_counts has {np.asarray(counts).size} classes but the detector's "
                         f"class scores have {scores.shape[1]}")
    for position in distribution_order(scores, counts, inputs.num_labelled, update=update, objective=objective):
        yield int(pool.indices[position])


def cald(*, views: str = "FCDR", beta: float = 1.3, max_references: int = 50, subsample_above: int = 40,
         shortlist: float = 1.2, update_distribution: bool = False, empty_policy: str = "highest",
         distribution: str = "divergence") -> Strategy:
    """CALD: consistency of detections across augmented views, then class-distribution selection (§6).

    Stage 1 ranks the pool by ``-C(x)`` (least consistent first) and keeps each image's class-score vector from
    the same views; stage 2 (no inference) picks among the first ``shortlist x budget`` by the class-score
    distribution (formulas in :mod:`.cald`). Every image costs ``1 + len(views)`` passes. Any detector.

    Options:
        views: CALD's augmentation letters (``"FCDR"``, the released default: flip, cutout, down-resize x0.8,
            rotation 5°; also ``G`` noise, ``N`` six noise levels, ``S`` salt and pepper; see
            :mod:`activedet.models.views`).
        beta: the base point of the consistency (1.3).
        max_references, subsample_above: more than ``subsample_above`` (40) detections: keep ``max_references``
            (50) at evenly spaced ranks as references (the released code's quirk).
        shortlist: stage-2 candidates = the first ``ceil(shortlist x budget)`` of stage 1 (1.2, the released ``mr``).
        update_distribution: stage 2 adds each pick's class scores to the labelled distribution before the next
            pick (``False``, as released).
        empty_policy: where images with no detection go in stage 1: ``"highest"`` (default; the released code's
            consistency 0 ranks them first), ``"lowest"``, ``"skip"``, ``"random_fill"``.
        distribution: stage 2's objective: ``"divergence"`` (default: the class scores least like the labelled
            distribution first) or ``"uniform"`` (the released ``-u`` option: the candidates that make the labelled
            distribution most balanced first).
    """
    _number("cald", "beta", beta, float, 0, 3)
    _choice("cald", "distribution", distribution, DISTRIBUTION_OBJECTIVES)
    _number("cald", "max_references", max_references, int, 1)
    _number("cald", "subsample_above", subsample_above, int, 1)
    _number("cald", "shortlist", shortlist, float, 1)
    _flag("cald", "update_distribution", update_distribution)
    _choice("cald", "empty_policy", empty_policy, EMPTY_POLICIES)
    parse_views(views, owner="cald")
    references = functools.partial(_cald_references, max_references=int(max_references),
                                   subsample_above=int(subsample_above))
    score = functools.partial(cald_informativeness, beta=float(beta), max_references=int(max_references),
                              subsample_above=int(subsample_above))
    stage1 = Strategy("cald", _description(cald), score=score, describe=_class_scores,
                      select=functools.partial(rank_select, empty_policy=empty_policy, strategy="cald"),
                      needs=frozenset({"views", "class_probs"}),
                      predictor=functools.partial(_view_predictor, views=views, references=references))
    stage2 = Strategy("cald", _description(cald), score=None, needs_inference=False,
                      select=functools.partial(cald_distribution_select, update=update_distribution,
                                               objective=distribution))
    return dataclasses.replace(stage1, then=stage2, shortlist=float(shortlist))


# ---------------------------------------------------------------------------------------------------- hybrid

UNCERTAINTY = ("least_confidence", "margin", "entropy")
DIVERSITY = ("coreset", "kmeans", "kmeanspp")


def hybrid(*, uncertainty: str = "entropy", diversity: str = "coreset", factor: float = 2.0,
           **options: Any) -> Strategy:
    """Uncertainty pre-filter to the top factor x budget images, then a diversity selector on those (§7.5).

    Options:
        uncertainty: ``"least_confidence"`` | ``"margin"`` | ``"entropy"`` (default), ranks the pool.
        diversity: ``"coreset"`` (default) | ``"kmeans"`` | ``"kmeanspp"``, picks among the candidates.
        factor: candidates = the top ``ceil(factor x budget_hint)`` images (2.0, med_sslal; CALD 1.2, PPAL 4).
        **options: the chosen uncertainty's and diversity's own options (``aggregation``, ``projection_dim``...).
    """
    _choice("hybrid", "uncertainty", uncertainty, UNCERTAINTY)
    _choice("hybrid", "diversity", diversity, DIVERSITY)
    _number("hybrid", "factor", factor, float, 1)
    u_factory, d_factory = STRATEGIES[uncertainty], STRATEGIES[diversity]
    _unknown_options("hybrid", options, ["uncertainty", "diversity", "factor"] + _options_of(u_factory)
                     + _options_of(d_factory))
    ranker = u_factory(**{k: v for k, v in options.items() if k in _options_of(u_factory)})
    picker = d_factory(**{k: v for k, v in options.items() if k in _options_of(d_factory)})
    select = functools.partial(hybrid_select, ranker=ranker, picker=picker, factor=float(factor))
    return Strategy("hybrid", _description(hybrid), score=ranker.score, select=select,
                    needs=ranker.needs | picker.needs, needs_labelled=ranker.needs_labelled or picker.needs_labelled)


def hybrid_select(inputs: SelectionInput, *, ranker: Strategy, picker: Strategy, factor: float) -> Iterator[int]:
    """Candidates = the first ``ceil(factor · budget_hint)`` picks of ``ranker``; yield ``picker``'s picks among
    them. Stops when the candidates are exhausted: never yields an image outside them."""
    _number("hybrid selection", "budget_hint", inputs.budget_hint, int, 1)
    chosen = first_picks(ranker, inputs, factor)
    yield from picker.select(dataclasses.replace(inputs, pool=inputs.pool.subset(inputs.pool.positions_of(chosen))))


def compose(*, criteria: list[str] = ("entropy", "kmeans"), factors: list[float] | None = None,
            **options: Any) -> Strategy:
    """Criteria applied in order: each but the last narrows the pool to its top factor x budget, the last picks.

    The medical framework's list of criteria (e.g. ``[localization_tightness, kmeans]``, methods.md §7.1, §7.5),
    run as a chain: every criterion after the first scores only the previous one's candidates, with its own
    predictor and fields, so the loop never knows which criteria are used. A config names it as a list,
    ``strategy: [entropy, coreset]``; the strategy is named after its criteria (``"entropy+coreset"``).

    Options:
        criteria: registered strategy names, at least 2 (default ``[entropy, kmeans]``). Every one but the last
            must score each image in one stage (an uncertainty criterion such as ``entropy`` or
            ``localization_tightness``; not ``random`` nor a diversity criterion); the last may be any strategy
            (diversity, uncertainty, or a chained one such as ``ppal``).
        factors: candidate factor of each narrowing criterion (``len(criteria) - 1`` floats >= 1). Default: the
            i-th of n criteria keeps ``(n - i) x budget`` images (2 x budget before the last of two criteria,
            as med_sslal's ``budget x number of criteria``).
        **options: one mapping per criterion name with that criterion's own options, e.g.
            ``{"kmeans": {"n_clusters": 10}}``.
    """
    if (not isinstance(criteria, (list, tuple)) or len(criteria) < 2
            or not all(isinstance(c, str) and c in STRATEGIES for c in criteria)):
        raise ValueError(f"The 'criteria' parameter of compose must be a list of at least 2 registered strategy "
                         f"names ({list(STRATEGIES)}). Got {criteria!r} instead.")
    if len(set(criteria)) != len(criteria) or "compose" in criteria:
        raise ValueError(f"The 'criteria' parameter of compose must name each criterion once and not 'compose'. "
                         f"Got {criteria!r} instead.")
    n = len(criteria)
    if factors is None:
        factors = [float(n - i) for i in range(n - 1)]
    if not isinstance(factors, (list, tuple)) or len(factors) != n - 1:
        raise ValueError(f"The 'factors' parameter of compose must be a list of {n - 1} floats >= 1 (one per "
                         f"narrowing criterion). Got {factors!r} instead.")
    for factor in factors:
        _number("compose", "factors", factor, float, 1)
    _unknown_options("compose", options, ["criteria", "factors"] + list(criteria))
    for name, given in options.items():
        if not isinstance(given, dict):
            raise ValueError(f"The '{name}' option of compose must be a mapping of {name}'s options. "
                             f"Got {given!r} instead.")
    built = [get_strategy(name, **options.get(name, {})) for name in criteria]
    for stage in built[:-1]:
        if stage.score is None or stage.then is not None or stage.combine is not None:
            raise ValueError(f"compose: criterion '{stage.name}' cannot narrow the pool (it must score each image "
                             f"on its own in one stage, as least_confidence, entropy, localization_tightness do); "
                             f"only the last criterion may be {stage.name!r}")
    chain = built[-1]
    for stage, factor in zip(reversed(built[:-1]), reversed(factors)):
        chain = dataclasses.replace(stage, then=chain, shortlist=float(factor))
    return dataclasses.replace(chain, name="+".join(criteria), description=_description(compose))


# ------------------------------------------------------------------------------------------------------ PPAL

def ppal(*, shortlist: float = 4.0, alpha: float = 0.3, beta: float = 0.2, score_threshold: float = 0.05,
         min_size: float = 4.0, max_aspect: float = 5.0, max_detections: int = 100,
         iterations: int = 100, dcus_postprocess: str = "detector", distance: str = "paper") -> Strategy:
    """PPAL: difficulty-calibrated uncertainty shortlist, then category-conditioned k-medoids (§7.4).

    Needs a detector trained with ``detector_options: {difficulty_ema: true}`` (``faster_rcnn``, our benchmark
    detector, or ``retinanet``, the paper's; see :mod:`activedet.models.difficulty`). Two stages (formulas in
    :mod:`.ppal`): DCUS scores the pool and its top ``shortlist x budget`` images go on; only those are predicted
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
            distance 0 from every image; see :mod:`.ppal`).

    Empty images: no DCUS detection ranks an image after every scored one (the official score 0 does the same);
    for CCM an image without detections is at distance 2 from every image with some and 0 from one without.
    """
    _number("ppal", "shortlist", shortlist, float, 1)
    _number("ppal", "alpha", alpha, float, 1e-3, 100)
    _number("ppal", "beta", beta, float, 0)
    _number("ppal", "score_threshold", score_threshold, float, 0, 1)
    _number("ppal", "min_size", min_size, float, 0)
    _number("ppal", "max_aspect", max_aspect, float, 1)
    _number("ppal", "max_detections", max_detections, int, 1)
    _number("ppal", "iterations", iterations, int, 1)
    _choice("ppal", "dcus_postprocess", dcus_postprocess, ("detector", "released"))
    _choice("ppal", "distance", distance, CCM_DISTANCES)
    ccm = Strategy("ppal_ccm", "PPAL's second stage: category-conditioned k-medoids on the DCUS shortlist.",
                   score=None, select=functools.partial(kmedoids_select, iterations=int(iterations),
                                                        distance=distance),
                   needs=frozenset({"features"}),
                   describe=functools.partial(ccm_describe, score_threshold=float(score_threshold),
                                              max_detections=int(max_detections)))
    score = functools.partial(dcus_score, alpha=float(alpha), beta=float(beta), score_threshold=float(score_threshold),
                              min_size=float(min_size), max_aspect=float(max_aspect))
    return Strategy("ppal", _description(ppal), score=score,
                    select=functools.partial(rank_select, empty_policy="lowest", strategy="ppal"),
                    needs=frozenset({"class_quality"}),
                    predictor=functools.partial(_model_only, build=functools.partial(
                        DifficultyPredictor,
                        postprocess=RELEASED_DCUS_POSTPROCESS if dcus_postprocess == "released" else None)),
                    then=ccm,
                    shortlist=float(shortlist))


# -------------------------------------------------------------------------------------------------- influence

def influence_score(det: Any) -> float | None:
    """Informativeness of one image for ISAL: minus its influence (the most helpful image first); ``None`` for an
    image with no pseudo label (the unscored bucket)."""
    return None if det.influence is None else -float(det.influence)


def _influence_predictor(model: Any, context: Any = None, *, options: InfluenceOptions) -> InfluencePredictor:
    return InfluencePredictor(predicting_detector(model), context, options=options)


def influence(*, score_threshold: float = 0.1, recursion_images: int = 1000, damping: float = 0.01,
              scales: list[float] | float | str | None = None, empty_policy: str = "random_fill",
              parameters: str = "last", recursions: int = 1) -> Strategy:
    """ISAL influence: predicted change of the validation loss from training on the image's pseudo labels (§8).

    Needs a validation split (``val_data``, disjoint from the test split) and a model whose adapter names its last
    prediction layers (fcos, faster_rcnn, retinanet, classifier); see :mod:`activedet.models.influence`.

    Options:
        score_threshold: detections at or above this score are the pseudo labels (0.1, the released command;
            images with none go to the unscored bucket).
        recursion_images: labelled images visited by the inverse-HVP recursion (1000, the official count per
            GPU), in a seeded random order; the main cost control with the config's ``score_subset``.
        damping: ``d`` of the recursion (0.01).
        scales: ``S`` per influence parameter tensor (a list in the adapter's ``INFLUENCE_PARAMETERS`` order),
            ``"auto"`` (twice each block's largest Hessian eigenvalue on 10 labelled images, by power iteration,
            raised 4x for a block that diverges), or ``null``: the
            adapter's official values where methods.md gives them (FCOS, Faster R-CNN), else ``"auto"``. One
            number: the same ``S`` for every tensor (the released classification code: 10000).
        parameters: ``"last"`` (the adapter's last prediction layers' weights) or ``"all_weights"`` (every
            trainable weight that is not a vector, as the released classification code).
        recursions: the ``recursion_images`` split into this many consecutive recursions, each from ``v``,
            averaged (1; the released classification code: 4 of 250).
        empty_policy: where unscored images go: ``"random_fill"`` (ISAL: after every scored image, in random
            order), ``"lowest"``, ``"highest"`` or ``"skip"``. Order: the most negative influence first.
    """
    name = "influence"
    _number(name, "score_threshold", score_threshold, float, 0, 1)
    _number(name, "recursion_images", recursion_images, int, 1)
    _number(name, "damping", damping, float, 0, 1)
    _choice(name, "empty_policy", empty_policy, EMPTY_POLICIES)
    _choice(name, "parameters", parameters, INFLUENCE_PARAMETER_SETS)
    _number(name, "recursions", recursions, int, 1)
    if int(recursions) > int(recursion_images):
        raise ValueError(f"The 'recursions' parameter of influence must be at most recursion_images "
                         f"({recursion_images}): each recursion needs images. Got {recursions!r} instead.")
    single = isinstance(scales, Real) and not isinstance(scales, bool)
    if isinstance(scales, str):
        _choice(name, "scales", scales, ("auto",))
    elif single and not (math.isfinite(scales) and scales > 0):
        raise ValueError(f"The 'scales' option of strategy 'influence' must be a number > 0, a list of numbers > 0 "
                         f"(one per influence parameter), 'auto' or null. Got {scales!r} instead.")
    elif not single and scales is not None and not (isinstance(scales, (list, tuple)) and scales and all(
            isinstance(x, Real) and not isinstance(x, bool) and x > 0 for x in scales)):
        raise ValueError(f"The 'scales' option of strategy 'influence' must be a number > 0, a list of numbers > 0 "
                         f"(one per influence parameter), 'auto' or null. Got {scales!r} instead.")
    scale_value = (float(scales) if single else tuple(float(x) for x in scales)
                   if isinstance(scales, (list, tuple)) else scales)
    options = InfluenceOptions(float(score_threshold), int(recursion_images), float(damping), scale_value,
                               parameters=parameters, recursions=int(recursions))
    return Strategy(name, _description(influence), score=influence_score, needs=frozenset({"influence"}),
                    predictor=functools.partial(_influence_predictor, options=options), needs_val=True,
                    select=functools.partial(rank_select, empty_policy=empty_policy, strategy=name))


# -------------------------------------------------------------------------------------------------- registry

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": random,
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
    "coreset": coreset,
    "kmeans": kmeans,
    "kmeanspp": kmeanspp,
    "hybrid": hybrid,
    "miaod": miaod,
    "almdn": almdn,
    "mc_dropout": mc_dropout,
    "ensemble": ensemble,
    "localization_tightness": localization_tightness,
    "localization_stability": localization_stability,
    "cald": cald,
    "ppal": ppal,
    "compose": compose,
    "influence": influence,
}


def get_strategy(name: str, **options: Any) -> Strategy:
    """The registered strategy ``name`` built with ``options``.

    Raises ``ValueError`` for an unknown name (with the closest valid name and the full list), an unknown option
    (naming the strategy and its valid options) or a bad option value (sklearn-style message).
    """
    if name not in STRATEGIES:
        close = difflib.get_close_matches(str(name), STRATEGIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"Unknown strategy {name!r}{hint} Valid strategies: {list(STRATEGIES)}")
    factory = STRATEGIES[name]
    if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()):
        _unknown_options(name, options, _options_of(factory))
    return factory(**options)


def list_strategies() -> list[tuple[str, str]]:
    """``[(name, one-line description)]`` in registry order."""
    return [(name, _description(factory)) for name, factory in STRATEGIES.items()]
