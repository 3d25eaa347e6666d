"""Released-exact modes of the seed methods: each test shows the released behaviour (docs/deviations.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from activedet.config import load_config
from activedet.engine.train import OptionError, TrainOptions, warmup_multiplier
from activedet.methods.miaod.scoring import topk_count
from activedet.methods.miaod.training import MIAODOptions, train_miaod
from activedet.models import Detections, build_detector
from activedet.strategies import get_strategy

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _preset(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


# ------------------------------------------------------------------------------------------------------ MI-AOD


@pytest.mark.parametrize("anchors", [3_060, 68_000, 117_000, 250_000])
def test_miaod_released_k_is_a_fixed_10000_whatever_the_anchor_count(anchors):
    assert topk_count(anchors, 10_000, None) == min(10_000, anchors)
    assert topk_count(anchors, 10_000, 0.1) == min(10_000, -(-anchors // 10))  # the default: 10 % of the anchors


def test_miaod_released_score_averages_the_top_10000_anchors():
    gen = torch.Generator().manual_seed(0)
    p1, p2 = torch.rand(40_000, 3, generator=gen), torch.rand(40_000, 3, generator=gen)
    det = Detections(
        torch.zeros(0, 4),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.int64),
        dense_probs=p1,
        extras={"dense_probs_2": p2},
    )
    per_anchor = (p1 - p2).pow(2).mean(dim=1)
    released = get_strategy("miaod", topk_fraction=None).score(det)
    assert released == pytest.approx(float(per_anchor.sort(descending=True).values[:10_000].mean()), rel=1e-6)
    default = get_strategy("miaod").score(det)  # k = 4000 here
    assert default == pytest.approx(float(per_anchor.sort(descending=True).values[:4_000].mean()), rel=1e-6)
    assert default > released
    small = Detections(
        torch.zeros(0, 4),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.int64),
        dense_probs=p1[:500],
        extras={"dense_probs_2": p2[:500]},
    )
    assert get_strategy("miaod", topk_fraction=None).score(small) == pytest.approx(
        float(per_anchor[:500].mean()), rel=1e-6
    )


def test_miaod_presets_say_the_released_values():
    voc, coco = _preset("voc0712_miaod.yaml"), _preset("coco_miaod.yaml")
    for name in ("voc0712_miaod.yaml", "coco_miaod.yaml"):
        cfg = load_config(CONFIGS / name)  # the values validate, and the trainer and strategy build from them
        assert cfg.trainer().keywords["training_options"].warmup_per_stage is (name == "coco_miaod.yaml")
        assert get_strategy(cfg.strategy, **cfg.strategy_options).name == "miaod"
    for preset in (voc, coco):
        assert preset["strategy_options"] == {"topk": 10000, "topk_fraction": None, "weighted": False}
        assert preset["weight_decay"] == 1e-4  # configs/MIAOD.py and for_coco/MIAOD.py: weight_decay=0.0001
        assert (preset["lr"], preset["momentum"], preset["optimizer"], preset["seed"]) == (1e-3, 0.9, "sgd", 666)
        assert preset["batch_size"] == 2  # samples_per_gpu=2 on one GPU
    assert voc["warmup_iters"] == 0  # configs/MIAOD.py: lr_config has no warm-up
    assert voc["training_options"].get("warmup_per_stage", False) is False
    assert (coco["warmup_iters"], coco["warmup_factor"]) == (500, 0.001)  # for_coco/MIAOD.py, linear
    assert coco["training_options"]["warmup_per_stage"] is True  # a new mmcv runner per stage
    assert coco["score_subset"] == 117266 // 5  # for_coco/active_datasets.py: a fixed 23,453 images


def _step_learning_rates(monkeypatch, toy_dataset, per_stage: bool) -> list[float]:
    """The learning rate of every optimizer step of one MI-AOD cycle."""
    seen: list[float] = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    torch.manual_seed(0)
    model = build_detector("miaod", 2, backbone="tiny", min_size=96, max_size=160)

    def cheap_forward(self, images, targets=None, stage="label"):  # the schedule is under test, not the losses
        return {"loss": sum((p * 0).sum() for p in self.parameters() if p.requires_grad) + 1.0}

    monkeypatch.setattr(type(model), "forward", cheap_forward)
    schedule = MIAODOptions(
        label_epochs=1,
        adversarial_epochs=1,
        outer_loops=1,
        repeat_labelled=2,
        lr_drop_epochs=0,
        warmup_per_stage=per_stage,
    )
    train_miaod(
        model,
        toy_dataset.subset(range(4)),
        unlabelled=toy_dataset.subset(range(4, 8)),
        options=WARMUP_OPTIONS,
        training_options=schedule,
        device="cpu",
        progress=False,
    )
    return seen


WARMUP_OPTIONS = TrainOptions(
    batch_size=4, optimizer="sgd", lr=1e-3, warmup_iters=2, hflip_prob=0.0, amp=False, num_workers=0
)


def test_miaod_warmup_restarts_with_every_stage_as_the_released_coco_config(monkeypatch, toy_dataset):
    # 4 stages (label, min, max, label) x 2 passes x 1 labelled batch; adversarial stages step twice per batch
    def lr(it):  # the learning rate of warm-up iteration `it`
        return pytest.approx(WARMUP_OPTIONS.lr * warmup_multiplier(WARMUP_OPTIONS, it))

    per_stage = _step_learning_rates(monkeypatch, toy_dataset, True)
    assert per_stage == [lr(it) for it in [0, 1] + [0, 0, 1, 1] * 2 + [0, 1]]
    assert lr(0) != lr(1) != lr(2)  # the three are told apart: the warm-up is seen restarting
    monkeypatch.undo()
    once = _step_learning_rates(monkeypatch, toy_dataset, False)
    assert once == [lr(it) for it in [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7]]
    with pytest.raises(OptionError, match="'training_options.warmup_per_stage' training option must be true or"):
        MIAODOptions(warmup_per_stage="yes")


def test_miaod_dense_scores_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = build_detector("miaod", 3, backbone="tiny", min_size=96, max_size=160)
    with torch.no_grad():  # non-zero biases, as after training: padding then changes the border features
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(("bias", "running_mean")):
                tensor.uniform_(-0.5, 0.5)
    gen = torch.Generator().manual_seed(1)
    small, large, odd = (
        torch.rand(3, 96, 96, generator=gen),
        torch.rand(3, 96, 160, generator=gen),
        torch.rand(3, 90, 120, generator=gen),
    )
    fields = {"dense_probs", "dense_probs_2", "dense_weights"}
    alone = model.predict([small], fields)[0]
    strategy = get_strategy("miaod", topk_fraction=None)
    for batch in ([small, large], [large, small, odd], [odd, small]):
        together = model.predict(batch, fields)[next(i for i, img in enumerate(batch) if img is small)]
        for name in fields:
            assert torch.allclose(together.get(name), alone.get(name), atol=1e-6), name
        assert strategy.score(together) == pytest.approx(strategy.score(alone), rel=1e-5)
        assert torch.allclose(together.boxes, alone.boxes, atol=1e-4)
    odd_alone = model.predict([odd], fields)[0]
    assert torch.allclose(model.predict([large, odd], fields)[1].dense_probs, odd_alone.dense_probs, atol=1e-6)


# -------------------------------------------------------------------------------------------------------- PPAL


def _retinanet_with_many_detections():
    from activedet.methods.ppal.model import find_difficulty
    from activedet.models.retinanet import build_retinanet

    torch.manual_seed(0)
    model = build_retinanet(3, backbone="tiny", min_size=128, max_size=128, difficulty_ema=True)
    find_difficulty(model).updates.fill_(1)  # as after training: DCUS reads the class quality
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.zero_()  # every (anchor, class) scores about 0.5
    return model


def test_ppal_released_dcus_scores_200_detections_without_a_pre_nms_threshold():
    model = _retinanet_with_many_detections()
    image = [torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))]
    before = (model.score_thresh, model.topk_candidates, model.detections_per_img)
    paper = get_strategy("ppal").predictor(model, None).predict(image, {"class_quality"})[0]
    released_predictor = get_strategy("ppal", dcus_postprocess="released").predictor(model, None)
    released = released_predictor.predict(image, {"class_quality"})[0]
    assert len(paper) == 100 and len(released) == 200  # the released RetinaHeadUncertainty's max_per_img
    assert (model.score_thresh, model.topk_candidates, model.detections_per_img) == before  # restored
    dcus = get_strategy("ppal", dcus_postprocess="released")
    assert dcus.score(released) > dcus.score(paper) > 0  # the 100 extra detections add to the sum
    with pytest.raises(ValueError, match=r"'dcus_postprocess' parameter of ppal must be one of \['detector', "):
        get_strategy("ppal", dcus_postprocess="official")


def test_ppal_released_ccm_distance_matches_same_rank_detections_and_empty_images_at_zero():
    import numpy as np

    from activedet.methods.ppal.scoring import ccm_distances

    feats = [
        np.array([[1, 0], [0, 1]], np.float32),
        np.array([[0.6, 0.8]], np.float32),
        np.array([[0, 1], [1, 0]], np.float32),
        np.zeros((0, 2), np.float32),
    ]
    labels = [np.array([1, 2]), np.array([1]), np.array([3, 2]), np.zeros(0, np.int64)]
    scores = [
        np.array([0.9, 0.3], np.float32),
        np.array([0.5], np.float32),
        np.array([0.9, 0.8], np.float32),
        np.zeros(0, np.float32),
    ]
    paper = ccm_distances(feats, labels, scores)
    released = ccm_distances(feats, labels, scores, distance="released")
    # images 0 and 1: their first detections share label 1 -> 0 in the released code, 1 - cos = 0.4 in the paper
    assert paper[0, 1] == pytest.approx(0.5 * ((0.9 * 0.4 + 0.3 * 2) / 1.2 + 0.4), abs=1e-6)
    assert released[0, 1] == pytest.approx(0.5 * (0.3 * 2 / (1.2 + 1e-5) + 0.0), abs=1e-6)
    # images 0 and 2: the second detections share label 2 with orthogonal features: 1 (paper) or 0 (released)
    assert paper[0, 2] == pytest.approx(0.5 * ((0.9 * 2 + 0.3 * 1) / 1.2 + (0.9 * 2 + 0.8 * 1) / 1.7), abs=1e-6)
    assert released[0, 2] == pytest.approx(0.5 * (0.9 * 2 / (1.2 + 1e-5) + 0.9 * 2 / (1.7 + 1e-5)), abs=1e-6)
    # the image with no detection: 2 from every image with some (paper), 0 from every image (released)
    assert np.allclose(paper[3, :3], 2.0) and np.allclose(released[3], 0.0) and np.allclose(released[:, 3], 0.0)
    assert np.allclose(released, released.T)
    with pytest.raises(ValueError, match=r"'distance' parameter of ppal must be one of \['paper', 'released'\]"):
        get_strategy("ppal", distance="code")


# ----------------------------------------------------------------------------------------------- ISAL (images)


def test_isal_released_classification_mode(tmp_path, monkeypatch):
    """All weights (no vectors), one scale 1e4, 4 recursions averaged, argmax pseudo labels (threshold 0)."""
    from test_influence import colour_images

    from activedet.engine.inference import iter_predictions
    from activedet.methods.isal import model as influence_module
    from activedet.strategies.base import ScoredPool, ScoringContext

    calls = []
    original = influence_module.lissa

    def spy(v, hvps, **kwargs):
        hvps = list(hvps)
        h, stats = original(v, hvps, **kwargs)
        calls.append((len(hvps), [b.clone() for b in h], kwargs["scales"]))
        return h, stats

    monkeypatch.setattr(influence_module, "lissa", spy)
    torch.manual_seed(0)
    model = build_detector("classifier", 2, backbone="small", min_size=32)
    rgbs = [(0.8, 0, 0.2), (0.2, 0, 0.8), (0.7, 0, 0.3), (0.3, 0, 0.7)] * 2
    labelled = colour_images(tmp_path, rgbs, [1, 2, 1, 2] * 2, "l")
    val = colour_images(tmp_path, [(0.6, 0, 0.4)] * 2, [1, 1], "v")
    pool = colour_images(tmp_path, [(0.45, 0, 0.55), (0.7, 0, 0.3), (0.5, 0, 0.5)], [1, 1, 2], "u")
    strategy = get_strategy(
        "influence", parameters="all_weights", scales=1e4, recursions=4, recursion_images=8, score_threshold=0.0
    )
    predictor = strategy.predictor(model, ScoringContext(labelled=labelled, val=val, seed=0))
    weights = [n for n, p in model.named_parameters() if p.requires_grad and p.dim() > 1]
    assert predictor.stats["parameters"] == weights and len(weights) > 1 and "fc.weight" in weights
    assert all(not n.endswith("bias") for n in weights)
    assert [c[0] for c in calls] == [2, 2, 2, 2]  # 4 recursions over consecutive shares of the 8 images
    assert all(list(c[2]) == [1e4] * len(weights) for c in calls)  # one scale for every tensor
    for b, block in enumerate(predictor.s_test):  # the average of the 4 recursions
        assert torch.allclose(block, sum(c[1][b] for c in calls) / 4, atol=1e-7)
    scored = ScoredPool.collect(iter_predictions(predictor, pool, fields=strategy.needs), strategy)
    assert not scored.empty.any()  # every image has its argmax pseudo label
    with pytest.raises(ValueError, match=r"'parameters' parameter of influence must be one of \['last', "):
        get_strategy("influence", parameters="all")
    with pytest.raises(ValueError, match="'recursions' parameter of influence must be at most recursion_images"):
        get_strategy("influence", recursions=5, recursion_images=4)
    with pytest.raises(ValueError, match="'scales' option of strategy 'influence' must be a number > 0"):
        get_strategy("influence", scales=-1.0)


# ------------------------------------------------------------------------------------------------------ AL-MDN


def _default_boxes(generator) -> torch.Tensor:
    from torchvision.models.detection.image_list import ImageList

    maps = [torch.zeros(1, 1, s, s) for s in (38, 19, 10, 5, 3, 1)]
    return generator(ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)]), maps)[0]


@pytest.mark.parametrize(("scales", "first"), [("voc", 30.0), ("coco", 21.0)])
def test_almdn_ssd300_default_boxes_use_the_dataset_scales_of_the_released_config(scales, first):
    model = build_detector("almdn_ssd", 20, backbone="vgg16", box_scales=scales)
    boxes = _default_boxes(model.anchor_generator)
    assert boxes.shape == (8732, 4)  # 38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4
    # data/config.py: min_sizes [30, 60, 111, 162, 213, 264] (voc300_active) or [21, 45, ...] (coco300_active),
    # each map's second square box sqrt(min * max); centred at (j + 0.5) * step
    second = {"voc": (30 * 60) ** 0.5, "coco": (21 * 45) ** 0.5}[scales]
    sides = boxes[:4, 2:] - boxes[:4, :2]
    assert torch.allclose(
        boxes[0], torch.tensor([4 - first / 2, 4 - first / 2, 4 + first / 2, 4 + first / 2]), atol=1e-3
    )
    assert torch.allclose(sides[1], torch.tensor([second, second]), atol=1e-3)
    last = boxes[-4:]  # the 1x1 map: 264 (voc) or 261 (coco) px, clipped to the image
    assert float((last[0, 2:] - last[0, :2]).max()) == pytest.approx({"voc": 264.0, "coco": 261.0}[scales], abs=1e-3)


def test_almdn_presets_and_box_scale_errors():
    for name, scales in (("voc07_almdn.yaml", "voc"), ("coco_almdn.yaml", "coco")):
        cfg = load_config(CONFIGS / name)
        assert cfg.detector == "almdn_ssd" and cfg.detector_options["box_scales"] == scales
        assert (cfg.weight_decay, cfg.lr, cfg.batch_size, cfg.seed) == (5e-4, 1e-3, 32, 314)
    with pytest.raises(ValueError, match="'box_scales' parameter of build_ssd applies to variant 'ssd300_vgg16'"):
        build_detector("ssd", 2, backbone="tiny", box_scales="voc")
    with pytest.raises(ValueError, match=r"'box_scales' parameter of build_ssd must be one of \['coco', 'voc'\]"):
        build_detector("ssd", 2, backbone="tiny", box_scales="pascal")


# -------------------------------------------------------------------------------------------------------- CALD


def _js(p, q):
    import numpy as np

    p, q = np.asarray(p, float) / np.sum(p), np.asarray(q, float) / np.sum(q)
    m = (p + q) / 2
    return 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))


def _softmax(x):
    import numpy as np

    e = np.exp(np.asarray(x, float) - np.max(x))
    return e / e.sum()


def test_cald_uniform_variant_picks_the_most_balancing_candidates_as_the_released_u_option():
    import numpy as np

    from activedet.strategies.cald import distribution_order

    counts, labelled = np.array([6.0, 0.0, 2.0]), 2  # n̄ = [3, 0, 1]
    q = np.array([[0.9, 0.0, 0.1], [0.0, 0.9, 0.0], [0.0, 0.0, 0.0], [0.0, 0.2, 0.8], [0.5, 0.5, 0.5]])
    mean = counts / labelled
    uniform = [_js(_softmax(mean + row), np.ones(3) / 3) for row in q]
    divergence = [_js(_softmax(mean), _softmax(row)) for row in q]
    rest = [1, 0, 3, 4]  # row 2 is all zero: first in both (cls_kldiv adds those before the loop)
    assert list(distribution_order(q, counts, labelled, objective="uniform")) == [2] + sorted(
        rest, key=lambda i: (uniform[i], i)
    )
    assert list(distribution_order(q, counts, labelled)) == [2] + sorted(rest, key=lambda i: (-divergence[i], i))
    stage2 = get_strategy("cald", distribution="uniform").then
    assert stage2.select.keywords["objective"] == "uniform"
    with pytest.raises(ValueError, match=r"'distribution' parameter of cald must be one of \['divergence', "):
        get_strategy("cald", distribution="balanced")


# ---------------------------------------------------------------------------------- medical framework (k-means)


def test_kmeans_released_order_is_cluster_number_order_with_uniform_members():
    import numpy as np
    from test_strategies import run

    from activedet.strategies.kmeans import kmeans_select

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    labels = np.repeat(np.arange(4), [6, 3, 5, 2])
    points = centres[labels] + rng.normal(0, 0.5, (len(labels), 2))
    labelled = points[:1] + 0.0  # image 0 is a copy of a labelled image
    last_in_cluster = []
    for seed in range(5):
        picks = run(kmeans_select, points, labelled, seed=seed, n_clusters=4, order="released")
        assert sorted(picks) == list(range(len(points)))
        first = labels[picks[:4]].tolist()  # the same cluster order in every round, whatever the labelled set
        sizes = np.bincount(labels)
        assert labels[picks].tolist() == [c for r in range(6) for c in first if sizes[c] > r]
        last_in_cluster.append([p for p in picks if labels[p] == 0][-1] == 0)
    assert not all(last_in_cluster)  # members are uniform: the copy of a labelled image is not pushed last
    with pytest.raises(ValueError, match=r"'order' parameter of kmeans must be one of \['coverage', 'released'\]"):
        get_strategy("kmeans", order="random")


def test_ensemble_dense_scores_do_not_depend_on_the_batch():
    from activedet.methods.stochastic.model import EnsembleDetector, StochasticPredictor

    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        member = build_detector("retinanet", 2, backbone="tiny", min_size=96, max_size=160)
        with torch.no_grad():
            for name, tensor in [*member.named_parameters(), *member.named_buffers()]:
                if name.endswith(("bias", "running_mean")):
                    tensor.uniform_(-0.5, 0.5)
        members.append(member)
    predictor = StochasticPredictor.ensemble(EnsembleDetector(members))
    gen = torch.Generator().manual_seed(2)
    small, large = torch.rand(3, 96, 96, generator=gen), torch.rand(3, 96, 160, generator=gen)
    fields = {"dense_probs", "dense_expected_entropy", "dense_box_var"}
    alone = predictor.predict([small], fields)[0]
    together = predictor.predict([large, small], fields)[1]
    for name in fields:
        assert torch.allclose(together.get(name), alone.get(name), atol=1e-6), name


# ------------------------------------------------------------------------------------- SSD augmentation (AL-MDN)


def _white_box_image(box, size=(3, 90, 120)) -> torch.Tensor:
    image = torch.zeros(size)
    x0, y0, x1, y1 = (int(v) for v in box)
    image[:, y0:y1, x0:x1] = 1.0
    return image


def _bright_extent(image: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def test_ssd_expand_and_crop_move_the_boxes_with_the_pixels():
    import numpy as np

    from activedet.data import augment

    box = torch.tensor([[30.0, 20.0, 70.0, 60.0]])
    image = _white_box_image(box[0])
    expanded = crops = 0
    for seed in range(40):
        out, moved = augment.ssd_expand(image, box, np.random.default_rng(seed))
        assert out.shape == image.shape
        if not torch.equal(out, image):
            expanded += 1
            assert np.allclose(_bright_extent(out), moved[0].tolist(), atol=1.5)
            assert torch.allclose(out[:, 0, 0], torch.tensor(augment.SSD_MEAN)) or moved[0, 0] < 1
        out, kept, labels = augment.ssd_crop(image, box, torch.tensor([3]), np.random.default_rng(seed))
        if not torch.equal(out, image):
            crops += 1
            assert labels.tolist() == [3] and out.shape == image.shape
            assert np.allclose(_bright_extent(out), kept[0].tolist(), atol=2.5)
    assert 10 < expanded < 30 and crops > 20  # expand half the time; crop in 5 of 6 modes
    empty = augment.ssd_crop(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), np.random.default_rng(0))
    assert torch.equal(empty[0], image) and len(empty[1]) == 0


def test_ssd_crop_returns_clipped_boxes_in_the_output_frame():
    import numpy as np

    from activedet.data import augment

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 30.0, 80.0, 60.0], [105.0, 75.0, 120.0, 90.0]])
    image = torch.rand(3, 90, 120, generator=torch.Generator().manual_seed(0))
    for seed in range(30):
        out, kept, labels = augment.ssd_crop(image, boxes, torch.tensor([1, 2, 3]), np.random.default_rng(seed))
        assert len(kept) == len(labels) >= 1 and out.shape == image.shape
        assert bool(((kept[:, 2:] - kept[:, :2]) > 0).all())
        assert bool((kept >= 0).all()) and bool((kept[:, [0, 2]] <= 120.001).all())


def test_ssd_photometric_stays_in_range_and_the_dataset_applies_it_reproducibly(toy_dataset):
    import numpy as np

    from activedet.data import augment
    from activedet.data.torch_dataset import DetectionTorchDataset

    image = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0))
    changed = 0
    for seed in range(10):
        out = augment.ssd_photometric(image, np.random.default_rng(seed))
        assert out.shape == image.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        changed += not torch.allclose(out, image, atol=1e-5)
    assert changed >= 8
    data = DetectionTorchDataset(toy_dataset, train=True, ssd_augment=True, seed=3)
    again = DetectionTorchDataset(toy_dataset, train=True, ssd_augment=True, seed=3)
    for position in range(len(data)):  # includes the toy images without boxes
        (a, ta), (b, tb) = data[position], again[position]
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
        assert len(ta["boxes"]) == len(ta["labels"])


def test_ssd_augment_option_is_checked():
    from activedet.config import ConfigError, config_from_dict

    assert TrainOptions(ssd_augment=True).ssd_augment
    with pytest.raises(OptionError, match="'ssd_augment' training option must be true or false"):
        TrainOptions(ssd_augment=1)
    with pytest.raises(ConfigError, match="ssd_augment"):
        config_from_dict({"train_data": "t", "ssd_augment": "yes"})
    for name in ("voc07_almdn.yaml", "coco_almdn.yaml"):
        assert load_config(CONFIGS / name).ssd_augment is True
    from activedet.engine.train import _check_task_options

    classifier = build_detector("classifier", 2, backbone="small", min_size=32)
    with pytest.raises(OptionError, match="'ssd_augment' training option must be false for a classifier"):
        _check_task_options(classifier, TrainOptions(ssd_augment=True), validating=False)


def test_pseudo_labels_exclude_the_previous_shortlist_as_the_released_medical_framework(tiny_data, tmp_path):
    import json

    import numpy as np
    from test_loop import write_config

    from activedet.engine.pseudo import PseudoLabelOptions
    from activedet.workflows import run_from_config

    config = write_config(
        tmp_path,
        tiny_data,
        cycles=1,
        strategy=["entropy", "kmeans"],
        pseudo_labels={"score_threshold": 0.0, "top1_only": True, "exclude": "shortlist"},
    )
    run_from_config(load_config(config), progress=False)
    run = tmp_path / "run"
    shortlist = set(np.load(run / "cycles/0/scores.stage1.npz")["pool_indices"].tolist())
    scored = set(np.load(run / "cycles/0/scores.npz")["pool_indices"].tolist())
    pseudo = {p["index"] for p in json.loads((run / "cycles/1/pseudo_labels.json").read_text())["images"]}
    assert shortlist and pseudo and not pseudo & shortlist  # threshold 0: every other unlabelled image
    assert pseudo == scored - shortlist
    with pytest.raises(OptionError, match="'pseudo_labels.exclude' training option must be 'selected' or"):
        PseudoLabelOptions(exclude="picked")
