"""Query strategies on hand-built Detections: every registered strategy, the direction of every measure, the
empty-image policies, the diversity selectors against brute force, and the error messages. No detector needed."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from activedet.models.outputs import Detections
from activedet.strategies import (
    STRATEGIES,
    ScoredPool,
    SelectionInput,
    diversity,
    get_strategy,
    list_strategies,
    shortlist,
)
from activedet.strategies.diversity import coreset_select, kmeanspp_select
from activedet.strategies.kmeans import kmeans_select
from activedet.strategies.uncertainty import detection_uncertainty, image_uncertainty

OFFSET = 100  # pool index = OFFSET + position, so a selector that yields positions fails


def det(scores, kind="sigmoid", probs=None, embedding=None, dense_seed=None) -> Detections:
    """Detections with the given scores; ``dense_seed`` adds dense fields of 40 anchors x 2 classes (two
    classifiers and MIL weights, as the MI-AOD detector returns them)."""
    scores = torch.tensor(scores, dtype=torch.float32)
    n = len(scores)
    dense, extras = {}, {}
    if dense_seed is not None:
        g = torch.Generator().manual_seed(dense_seed)
        dense = {"dense_probs": torch.rand(40, 2, generator=g)}
        extras = {
            "dense_probs_2": torch.rand(40, 2, generator=g),
            "dense_weights": torch.rand(40, 2, generator=g) / 40,
            "dense_expected_entropy": torch.rand(40, generator=g) * 0.5,
            "dense_box_var": torch.rand(40, generator=g),
            "uncertainties": torch.rand(n, 4, generator=g),
            "class_quality": torch.rand(2, generator=g),
        }
        dense["features"] = torch.rand(n, 4, generator=g)
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n).reshape(n, 4)
        extras["passes"] = [
            Detections(boxes + torch.rand(n, 4, generator=g), scores, torch.ones(n, dtype=torch.int64), kind)
            for _ in range(3)
        ]
        dense["proposals"] = boxes + torch.rand(n, 4, generator=g)
        if probs is not None:  # two views (CALD, localization stability), the reference boxes unmoved
            labels = torch.ones(n, dtype=torch.int64)
            extras["views"] = [
                Detections(
                    boxes + torch.rand(n, 4, generator=g),
                    scores,
                    labels,
                    kind,
                    class_probs=torch.tensor(np.asarray(probs, np.float32)),
                    extras={"reference_boxes": boxes},
                )
                for _ in range(2)
            ]
    return Detections(
        boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n).reshape(n, 4),
        scores=scores,
        labels=torch.ones(n, dtype=torch.int64),
        prob_kind=kind,
        class_probs=None if probs is None else torch.tensor(np.asarray(probs, np.float32)),
        embedding=None if embedding is None else torch.tensor(embedding, dtype=torch.float32),
        **dense,
        extras=extras,
    )


def collect(dets, strategy, start=OFFSET) -> ScoredPool:
    return ScoredPool.collect(((start + i, d) for i, d in enumerate(dets)), strategy)


def select(strategy, dets, labelled_dets=(), budget=4, seed=0) -> list[int]:
    """The loop's selection on hand-built detections; a chain's later stages score its shortlist (the same
    detections stand for every stage's predictions)."""
    rng = np.random.default_rng(seed)
    candidates, pool, labelled = np.arange(len(dets)) + OFFSET, None, None
    for stage in strategy.stages:
        if pool is not None and not stage.needs_inference:  # selection-only: the previous stage's reductions
            pool = pool.subset(pool.positions_of(candidates))
        else:
            pool = ScoredPool.collect(((int(i), dets[int(i) - OFFSET]) for i in candidates), stage)
            labelled = collect(labelled_dets, stage, start=0) if stage.needs_labelled else None
        inputs = SelectionInput(pool, labelled, budget, rng)
        if stage.then is None:
            return list(stage.select(inputs))
        candidates = shortlist(stage, inputs)


def mixed_pool() -> list[Detections]:
    """Ten images: three clusters of embeddings, sigmoid heads with 2 classes, two images with nothing to score
    (one below the threshold, one with no detection at all)."""
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    dets = []
    for i, scores in enumerate(
        [[0.9, 0.3], [0.55], [0.97, 0.8, 0.6], [0.02], [], [0.7], [0.4, 0.35], [0.99], [0.5, 0.1], [0.65, 0.62]]
    ):
        probs = np.array([[s, 1 - s] for s in scores]).reshape(-1, 2)
        dets.append(det(scores, probs=probs, embedding=centres[i % 3] + rng.normal(0, 0.5, 3), dense_seed=i))
    return dets


def labelled_pool() -> list[Detections]:
    return [det([0.9], probs=[[0.9, 0.1]], embedding=[0.2, 0.1, 0.0], dense_seed=99)]


CONFIGS = [(name, {}) for name in STRATEGIES] + [
    ("entropy", {"use_class_probs": True}),
    ("margin", {"aggregation": "sum", "empty_policy": "highest"}),
    ("least_confidence", {"aggregation": "topk_mean", "empty_policy": "random_fill"}),
    ("entropy", {"aggregation": "mean", "empty_policy": "skip"}),
    ("coreset", {"projection_dim": 2}),
    ("kmeanspp", {"projection_dim": 2}),
    ("kmeans", {"n_clusters": "budget"}),
    ("hybrid", {"diversity": "kmeans", "uncertainty": "margin", "n_clusters": 2}),
    ("hybrid", {"diversity": "kmeanspp", "factor": 1.5, "use_class_probs": True}),
    ("miaod", {"weighted": True, "topk": 5}),
    ("mc_dropout", {"formulation": "matched", "detection_threshold": 0.3}),
    ("ensemble", {"measure": "box_variance", "aggregation": "topk_mean"}),
    ("almdn", {"score_threshold": 0.3}),
    ("influence", {"scales": "auto", "empty_policy": "lowest"}),
    ("influence", {"scales": [10.0, 20.0]}),
]


# ------------------------------------------------------------------------------------------- every strategy


@pytest.mark.parametrize("name, options", CONFIGS, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in CONFIGS])
def test_every_strategy_selects_distinct_pool_indices_deterministically(name, options):
    strategy = get_strategy(name, **options)
    dets = mixed_pool()
    picks = select(strategy, dets, labelled_pool(), budget=3, seed=1)
    assert picks == select(strategy, dets, labelled_pool(), budget=3, seed=1)
    assert len(picks) == len(set(picks)) and set(picks) <= set(range(OFFSET, OFFSET + len(dets)))
    if name == "hybrid":
        assert len(picks) == math.ceil(options.get("factor", 2.0) * 3)
    elif strategy.then is not None:  # a chain: the last stage picks among the shortlisted candidates
        assert len(picks) == min(math.ceil(strategy.shortlist * 3), len(dets))
    elif options.get("empty_policy") == "skip":
        assert set(picks) == set(range(OFFSET, OFFSET + len(dets))) - {OFFSET + 3, OFFSET + 4}
    else:
        assert len(picks) == len(dets)
    assert all(isinstance(p, int) for p in picks)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_handles_an_empty_pool_and_is_lazy(name):
    strategy = get_strategy(name)
    assert select(strategy, []) == []
    pool = collect(mixed_pool(), strategy)
    it = strategy.select(SelectionInput(pool, collect(labelled_pool(), strategy, 0), 2, np.random.default_rng(0)))
    assert inspect.isgenerator(it) and isinstance(next(it), int)


def test_registry_names_descriptions_and_needs():
    assert [n for n, _ in list_strategies()] == list(STRATEGIES)
    for name, description in list_strategies():
        assert description and "\n" not in description
        assert get_strategy(name).name == (name if name != "compose" else "entropy+kmeans")
    assert get_strategy("random").needs_inference is False and get_strategy("random").score is None
    assert get_strategy("entropy").needs == frozenset()
    assert get_strategy("margin", use_class_probs=True).needs == {"class_probs"}
    assert get_strategy("coreset").needs == {"embedding"} and get_strategy("coreset").needs_labelled
    hybrid = get_strategy("hybrid", use_class_probs=True)
    assert hybrid.needs == {"embedding", "class_probs"} and hybrid.needs_labelled


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_option_is_documented(name):
    factory = STRATEGIES[name]
    doc = inspect.getdoc(factory) + (
        inspect.getdoc(STRATEGIES["least_confidence"]) if "Options as" in inspect.getdoc(factory) else ""
    )
    for option in inspect.signature(factory).parameters:
        assert option in doc, f"{name}: option {option!r} undocumented"


# ---------------------------------------------------------------------------------------------- uncertainty

CONFIDENT = {
    "scores": ([0.9], "sigmoid", None),
    "softmax": ([0.9], "softmax", [[0.05, 0.9, 0.05]]),
    "sigmoid": ([0.9], "sigmoid", [[0.9, 0.02]]),
}
UNSURE = {
    "scores": ([0.55], "sigmoid", None),
    "softmax": ([0.45], "softmax", [[0.1, 0.45, 0.45]]),
    "sigmoid": ([0.55], "sigmoid", [[0.55, 0.5]]),
}


@pytest.mark.parametrize("measure", ["least_confidence", "margin", "entropy"])
@pytest.mark.parametrize("head", ["scores", "softmax", "sigmoid"])
def test_the_most_uncertain_image_ranks_first(measure, head):
    strategy = get_strategy(measure, use_class_probs=head != "scores")
    dets = [det(*CONFIDENT[head]), det(*UNSURE[head]), det(*CONFIDENT[head])]
    assert select(strategy, dets) == [OFFSET + 1, OFFSET, OFFSET + 2]  # ties by pool index


@pytest.mark.parametrize(
    "measure, probs, softmax, sigmoid",
    [
        ("least_confidence", [[0.6, 0.3, 0.1]], 1 - 0.3, 1 - 0.6),  # softmax ignores the background column
        ("margin", [[0.6, 0.3, 0.1]], 1 - (0.6 - 0.3), 1 - (0.6 - 0.4)),  # sigmoid: "absent" 1 - 0.6 competes
        (
            "entropy",
            [[0.5, 0.25, 0.25]],
            1.5 * math.log(2),
            3 * 0 + math.log(2) + 2 * -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)),
        ),
    ],
)
def test_class_vector_formulas_per_head(measure, probs, softmax, sigmoid):
    for kind, expected in [("softmax", softmax), ("sigmoid", sigmoid)]:
        value = detection_uncertainty(det([0.6], kind, probs), measure, use_class_probs=True)
        assert value.item() == pytest.approx(expected, abs=1e-6)


def test_scores_only_formulas_and_the_one_class_sigmoid_vector_agrees():
    d = det([0.5, 0.8, 1.0])
    assert detection_uncertainty(d, "least_confidence").tolist() == pytest.approx([0.5, 0.2, 0.0], abs=1e-6)
    assert detection_uncertainty(d, "margin").tolist() == pytest.approx([1.0, 0.4, 0.0], abs=1e-6)
    h8 = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert detection_uncertainty(d, "entropy").tolist() == pytest.approx([math.log(2), h8, 0.0], abs=1e-6)
    one_class = det([0.3, 0.8], "sigmoid", [[0.3], [0.8]])
    for measure in ("least_confidence", "margin", "entropy"):
        assert torch.allclose(
            detection_uncertainty(one_class, measure, True), detection_uncertainty(one_class, measure, False)
        )


@pytest.mark.parametrize("aggregation, first", [("max", 1), ("mean", 1), ("sum", 0), ("topk_mean", 1)])
def test_each_aggregation(aggregation, first):
    crowded, sparse = det([0.9, 0.9, 0.9, 0.9]), det([0.5, 0.95])

    def h(s):
        return -(s * math.log(s) + (1 - s) * math.log(1 - s))

    expected = {
        "max": (h(0.9), h(0.5)),
        "mean": (h(0.9), (h(0.5) + h(0.95)) / 2),
        "sum": (4 * h(0.9), h(0.5) + h(0.95)),
        "topk_mean": (h(0.9), (h(0.5) + h(0.95)) / 2),
    }
    strategy = get_strategy("entropy", aggregation=aggregation)
    assert strategy.score(crowded) == pytest.approx(expected[aggregation][0], rel=1e-5)
    assert strategy.score(sparse) == pytest.approx(expected[aggregation][1], rel=1e-5)
    assert select(strategy, [crowded, sparse])[0] == OFFSET + first


def test_topk_mean_uses_the_k_largest_and_the_threshold_drops_detections():
    values = get_strategy("least_confidence", aggregation="topk_mean", topk=2).score(det([0.9, 0.6, 0.2, 0.04]))
    assert values == pytest.approx((0.8 + 0.4) / 2)  # 0.04 is below 0.05; the two largest of 0.1, 0.4, 0.8
    assert get_strategy("least_confidence", score_threshold=0.5).score(det([0.9, 0.3])) == pytest.approx(0.1)
    assert get_strategy("entropy").score(det([0.01, 0.03])) is None
    assert image_uncertainty(det([]), measure="margin") is None


@pytest.mark.parametrize(
    "policy, expected",
    [("lowest", [1, 3, 0, 2, 4]), ("highest", [0, 2, 4, 1, 3]), ("skip", [1, 3]), ("random_fill", None)],
)
def test_each_empty_policy(policy, expected):
    dets = [det([]), det([0.5]), det([0.01]), det([0.9]), det([])]  # 0, 2, 4 have nothing to score
    strategy = get_strategy("entropy", empty_policy=policy)
    picks = [p - OFFSET for p in select(strategy, dets, seed=3)]
    if expected is None:
        assert picks[:2] == [1, 3] and sorted(picks[2:]) == [0, 2, 4]
        assert picks == [p - OFFSET for p in select(strategy, dets, seed=3)]
    else:
        assert picks == expected


def test_non_finite_scores_are_errors():
    with pytest.raises(ValueError, match="non-finite detection score in detection 1"):
        get_strategy("entropy").score(det([0.9, float("nan")]))
    with pytest.raises(ValueError, match="non-finite class_probs in detection 0"):
        get_strategy("margin", use_class_probs=True).score(det([0.9], probs=[[float("inf"), 0.1]]))
    pool = ScoredPool.from_lists([100, 101, 102], [0.1, float("inf"), 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="non-finite score inf for pool index 101"):
        list(get_strategy("entropy").select(SelectionInput(pool, None, 2, np.random.default_rng(0))))
    bad = mixed_pool()
    bad[4].embedding[1] = float("nan")
    with pytest.raises(ValueError, match="non-finite embedding for pool index 104"):
        select(get_strategy("coreset"), bad, labelled_pool())


def test_class_probs_must_be_present_and_well_formed():
    with pytest.raises(ValueError, match="needs Detections.class_probs"):
        get_strategy("entropy", use_class_probs=True).score(det([0.9]))
    with pytest.raises(ValueError, match=r"class_probs must be \[N=1, K>=2\] for a softmax head"):
        get_strategy("entropy", use_class_probs=True).score(det([0.9], "softmax", [[0.9]]))


# ------------------------------------------------------------------------------------------------ diversity


def emb_pool(points, start=OFFSET) -> ScoredPool:
    points = np.asarray(points, np.float32)
    return ScoredPool(np.arange(start, start + len(points)), np.zeros(len(points)), np.zeros(len(points), bool), points)


def run(selector, points, labelled=None, budget=3, seed=0, **options) -> list[int]:
    lab = emb_pool(labelled, start=0) if labelled is not None else None
    inputs = SelectionInput(emb_pool(points), lab, budget, np.random.default_rng(seed))
    return [p - OFFSET for p in selector(inputs, **options)]


def brute_force_kcenter(points, labelled, first=None) -> list[int]:
    points, labelled = np.asarray(points, np.float64), np.asarray(labelled, np.float64)
    delta = np.full(len(points), np.inf)
    for c in labelled:
        delta = np.minimum(delta, np.linalg.norm(points - c, axis=1))
    order = [] if first is None else [first]
    for i in order:
        delta = np.minimum(delta, np.linalg.norm(points - points[i], axis=1))
    while len(order) < len(points):
        masked = delta.copy()
        masked[order] = -1
        i = int(np.argmax(masked))
        order.append(i)
        delta = np.minimum(delta, np.linalg.norm(points - points[i], axis=1))
    return order


def test_coreset_picks_the_far_cluster_first_and_respects_labelled_distances():
    near, far = [[0.0, 0.1], [0.1, 0.0], [0.2, 0.2]], [[9.0, 9.0], [9.1, 9.2]]
    assert run(coreset_select, near + far, labelled=[[0.0, 0.0]])[0] in (3, 4)
    assert run(coreset_select, near + far, labelled=[[9.0, 9.1]])[0] in (0, 1, 2)
    picks = run(coreset_select, near + far, labelled=[[0.0, 0.0], [9.0, 9.1]])
    assert picks[0] == 2  # the farthest from both labelled images


@pytest.mark.parametrize("n_labelled, small_blocks", [(0, False), (5, False), (150, False), (150, True)])
def test_coreset_is_exactly_the_greedy_k_centre(n_labelled, small_blocks, monkeypatch):
    if small_blocks:  # many partial syncs and no single-point shortcut: the lazy bookkeeping must stay exact
        monkeypatch.setattr(diversity, "_WORK", 64)
        monkeypatch.setattr(diversity, "_CACHE", 64)
        monkeypatch.setattr(diversity, "_CHECK_ONE", 0)
    rng = np.random.default_rng(n_labelled)
    centres = rng.normal(0, 5, (6, 4))
    points = centres[rng.integers(0, 6, 300)] + rng.normal(0, 1, (300, 4))
    labelled = centres[rng.integers(0, 6, n_labelled)] + rng.normal(0, 1, (n_labelled, 4))
    picks = run(coreset_select, points, labelled if n_labelled else None)
    assert picks == brute_force_kcenter(points, labelled, first=None if n_labelled else picks[0])


def test_kmeans_covers_every_cluster_before_repeating():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    labels = np.repeat(np.arange(4), [6, 3, 5, 2])
    points = centres[labels] + rng.normal(0, 0.5, (len(labels), 2))
    picks = run(kmeans_select, points, n_clusters=4)
    assert sorted(picks) == list(range(len(points)))
    # without labelled images the clusters go by size in every round: 6, 5, 3, 2 members
    assert labels[picks].tolist() == [0, 2, 1, 3] * 2 + [0, 2, 1] + [0, 2] * 2 + [0]


def test_kmeans_uses_the_labelled_set_for_cluster_and_member_order():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 0.5, (5, 2))
    b = rng.normal(0, 0.5, (5, 2)) + 30
    points = np.concatenate([a, b])
    labelled = a[:1] + 0.0  # image 0 is identical to a labelled one: the least informative of cluster a
    for seed in range(5):
        picks = run(kmeans_select, points, labelled, seed=seed, n_clusters=2)
        assert picks[0] >= 5  # cluster b has no labelled image: it goes first in every round
        assert [p for p in picks if p < 5][-1] == 0


def test_kmeanspp_never_picks_a_copy_of_a_labelled_image_while_others_remain():
    rng = np.random.default_rng(2)
    points = rng.normal(0, 1, (12, 3))
    labelled = points[[1, 4, 7]] + 0.0
    for seed in range(10):
        picks = run(kmeanspp_select, points, labelled, seed=seed)
        assert sorted(picks[-3:]) == [1, 4, 7] and len(set(picks)) == 12


@pytest.mark.parametrize("check_one", [True, False])
def test_kmeanspp_draws_proportionally_to_squared_distance(check_one, monkeypatch):
    if not check_one:
        monkeypatch.setattr(diversity, "_CHECK_ONE", 0)
    points = [[1.0, 0.0], [3.0, 0.0], [9.0, 0.0]]  # D² = 1, 9, 1 to the labelled images (0, 0) and (10, 0)
    firsts = np.array([run(kmeanspp_select, points, [[0.0, 0.0], [10.0, 0.0]], seed=s)[0] for s in range(500)])
    assert 0.76 < np.mean(firsts == 1) < 0.88 and 0.04 < np.mean(firsts == 2) < 0.14  # exact: 9/11 and 1/11


def test_diversity_without_labelled_images_and_with_projection():
    rng = np.random.default_rng(3)
    points = rng.normal(0, 1, (50, 16))
    for selector in (coreset_select, kmeanspp_select):
        picks = run(selector, points, seed=4, projection_dim=4)
        assert sorted(picks) == list(range(50)) and picks == run(selector, points, seed=4, projection_dim=4)
    assert run(coreset_select, points[:1]) == [0]


def test_hybrid_picks_only_from_the_top_factor_times_budget():
    scores = [0.9, 0.5, 0.95, 0.55, 0.6, 0.99, 0.45, 0.8]  # binary entropy order: 1, 3, 6, 4, 7, 0, 2, 5
    dets = [det([s], embedding=[float(i), 0.0]) for i, s in enumerate(scores)]
    for picker in ("coreset", "kmeans", "kmeanspp"):
        strategy = get_strategy(
            "hybrid", diversity=picker, factor=2.0, **({"n_clusters": 2} if picker == "kmeans" else {})
        )
        picks = [p - OFFSET for p in select(strategy, dets, [det([0.9], embedding=[0.0, 0.0])], budget=2)]
        assert sorted(picks) == [1, 3, 4, 6]
    picks = select(get_strategy("hybrid", factor=1.3), dets, [det([0.9], embedding=[0.0, 0.0])], budget=2)
    assert len(picks) == 3 and set(picks) <= {OFFSET + 1, OFFSET + 3, OFFSET + 6}


# --------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("entropi", {}, r"Unknown strategy 'entropi'; did you mean 'entropy'\? Valid strategies: \['random', "),
        (
            "entropy",
            {"aggregaton": "max"},
            r"Unknown option 'aggregaton' for strategy 'entropy'; did you mean "
            r"'aggregation'\? Valid options of entropy: \['score_threshold', ",
        ),
        ("random", {"seed": 1}, r"Unknown option 'seed' for strategy 'random'. Valid options of random: \[\]"),
        ("hybrid", {"n_clusters": 3}, r"Unknown option 'n_clusters' for strategy 'hybrid'.*'projection_dim'\]"),
        (
            "entropy",
            {"aggregation": "median"},
            r"The 'aggregation' parameter of entropy must be one of \['max', "
            r"'mean', 'sum', 'topk_mean'\]. Got 'median' instead.",
        ),
        ("margin", {"empty_policy": "zero"}, r"The 'empty_policy' parameter of margin must be one of"),
        (
            "least_confidence",
            {"topk": 0},
            r"The 'topk' parameter of least_confidence must be an int in \[1, inf\). "
            r"Got 0 instead.",
        ),
        (
            "entropy",
            {"score_threshold": 1.5},
            r"The 'score_threshold' parameter of entropy must be a float in "
            r"\[0, 1\]. Got 1.5 instead.",
        ),
        (
            "entropy",
            {"use_class_probs": "yes"},
            r"'use_class_probs' parameter of entropy must be an instance of 'bool'",
        ),
        (
            "coreset",
            {"projection_dim": 0},
            r"'projection_dim' parameter of coreset must be an int in \[1, inf\) or None",
        ),
        ("kmeans", {"n_clusters": 2.5}, r"'n_clusters' parameter of kmeans must be an int in \[1, inf\) or 'budget'"),
        ("hybrid", {"factor": 0.5}, r"The 'factor' parameter of hybrid must be a float in \[1, inf\). Got 0.5"),
        ("hybrid", {"diversity": "badge"}, r"'diversity' parameter of hybrid must be one of \['coreset', 'kmeans', "),
    ],
)
def test_errors_name_the_problem_and_the_alternatives(name, options, message):
    with pytest.raises(ValueError, match=message):
        get_strategy(name, **options)


def test_hybrid_needs_a_positive_budget_hint():
    pool = collect(mixed_pool(), get_strategy("hybrid"))
    with pytest.raises(ValueError, match="'budget_hint' parameter of hybrid selection must be an int"):
        list(get_strategy("hybrid").select(SelectionInput(pool, None, 0, np.random.default_rng(0))))
