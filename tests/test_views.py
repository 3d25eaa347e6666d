"""Image views (box mapping of each, cutout constraint, noise statistics) and the ViewPredictor on tiny
weights-free detectors."""

from __future__ import annotations

import math

import pytest
import torch

from activedet.methods.stochastic.model import EnsembleDetector
from activedet.models.faster_rcnn import build_faster_rcnn
from activedet.models.retinanet import build_retinanet
from activedet.models.views import (
    Cutout,
    Flip,
    Noise,
    Resize,
    Rotate,
    SaltPepper,
    ViewPredictor,
    noise_views,
    parse_views,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def square_image(h: int = 40, w: int = 60, box=(10, 5, 20, 15)) -> torch.Tensor:
    image = torch.zeros(3, h, w)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = 1.0
    return image


def bright_extent(image: torch.Tensor) -> list[int]:
    ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_flip_mirrors_the_image_and_the_boxes():
    image = square_image()
    view, boxes = Flip()(image, torch.tensor([[10.0, 5.0, 20.0, 15.0]]), gen())
    assert boxes.tolist() == [[40.0, 5.0, 50.0, 15.0]]
    assert bright_extent(view) == [40, 5, 50, 15]


def test_resize_scales_the_image_and_the_boxes_by_the_exact_ratios():
    image = square_image(40, 60, (10, 5, 30, 25))
    view, boxes = Resize(0.8)(image, torch.tensor([[10.0, 5.0, 30.0, 25.0]]), gen())
    assert view.shape == (3, 32, 48)
    assert boxes[0].tolist() == pytest.approx([8.0, 4.0, 24.0, 20.0])
    assert bright_extent(view) == [8, 4, 24, 20]
    view, boxes = Resize(0.8)(torch.zeros(3, 7, 9), torch.tensor([[0.0, 0.0, 9.0, 7.0]]), gen())
    # round(5.6) x round(7.2)
    assert view.shape == (3, 6, 7) and boxes[0].tolist() == pytest.approx([0.0, 0.0, 7.0, 6.0])


def test_rotation_by_90_degrees_moves_pixels_and_boxes_alike():
    image = square_image(20, 20, (10, 2, 16, 6))  # centre (10, 10)
    view, boxes = Rotate(90.0)(image, torch.tensor([[10.0, 2.0, 16.0, 6.0]]), gen())
    assert boxes[0].tolist() == pytest.approx([2.0, 4.0, 6.0, 10.0], abs=1e-5)  # x' = cx + dy, y' = cy - dx
    assert bright_extent(view) == [2, 4, 6, 10]


def test_rotation_by_5_degrees_gives_the_enclosing_rectangle_of_the_rotated_corners_clipped():
    h, w = 50, 80
    boxes = torch.tensor([[10.0, 10.0, 30.0, 20.0], [60.0, 0.0, 80.0, 50.0]])
    _, mapped = Rotate(5.0)(torch.zeros(3, h, w), boxes, gen())
    t = math.radians(5.0)
    for box, got in zip(boxes.tolist(), mapped.tolist()):
        corners = [(x, y) for x in (box[0], box[2]) for y in (box[1], box[3])]
        xs = [w / 2 + math.cos(t) * (x - w / 2) + math.sin(t) * (y - h / 2) for x, y in corners]
        ys = [h / 2 - math.sin(t) * (x - w / 2) + math.cos(t) * (y - h / 2) for x, y in corners]
        expected = [max(0, min(xs)), max(0, min(ys)), min(w, max(xs)), min(h, max(ys))]
        assert got == pytest.approx(expected, abs=1e-4)
    assert mapped[1, 2] == w and mapped[1, 1] == 0  # the second box is clipped to the image


def test_rotation_of_the_image_follows_the_box_mapping_at_5_degrees():
    image = square_image(60, 60, (35, 20, 45, 30))
    view, mapped = Rotate(5.0)(image, torch.tensor([[35.0, 20.0, 45.0, 30.0]]), gen())
    extent = torch.tensor(bright_extent(view), dtype=torch.float32)
    assert torch.allclose(extent, mapped[0], atol=1.0)


def test_cutout_keeps_boxes_and_every_accepted_rectangle_covers_10_to_40_percent_of_some_box():
    h, w = 100, 100
    boxes = torch.tensor([[20.0, 20.0, 50.0, 50.0], [60.0, 10.0, 90.0, 80.0]])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    placed_any = False
    for seed in range(20):
        view, mapped = Cutout()(torch.ones(3, h, w), boxes, gen(seed))
        assert torch.equal(mapped, boxes)
        zero = view[0] == 0
        if not zero.any():
            continue
        placed_any = True
        covered = torch.stack([zero[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])].sum() for b in boxes]) / areas
        assert covered.max() >= 0.1 - 1e-6  # at least one accepted rectangle lies on some box
        side = zero.sum(0).max(), zero.sum(1).max()  # at most 2 rectangles of at most 20 % of each side
        assert side[0] <= 2 * 0.2 * h and side[1] <= 2 * 0.2 * w
    assert placed_any


def test_cutout_rejects_placements_outside_the_coverage_band():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]])  # any rectangle on it covers more than 40 %
    view, _ = Cutout()(torch.ones(3, 100, 100), boxes, gen(0))
    zero = view[0] == 0
    assert not zero[:2, :2].any()
    assert Cutout.largest_cover(torch.zeros(0, 4), torch.zeros(0), (0, 0, 5, 5)) == 0.0
    view, _ = Cutout()(torch.ones(3, 50, 50), torch.zeros(0, 4), gen(0))
    assert torch.equal(view, torch.ones(3, 50, 50))  # no reference box: no placement qualifies


def test_noise_has_the_requested_std_on_the_255_scale_and_is_clamped():
    image = torch.full((3, 200, 200), 0.5)
    view, boxes = Noise(16.0)(image, torch.zeros(0, 4), gen(1))
    assert (view - image).std().item() * 255 == pytest.approx(16.0, rel=0.03)
    assert (view - image).mean().abs().item() < 0.002 and boxes.shape == (0, 4)
    clamped, _ = Noise(48.0)(torch.ones(3, 50, 50), torch.zeros(0, 4), gen(1))
    assert clamped.max() <= 1 and clamped.min() < 1
    assert [v.std for v in noise_views(6)] == [8.0, 16.0, 24.0, 32.0, 40.0, 48.0]
    sp, _ = SaltPepper(0.1)(image, torch.zeros(0, 4), gen(2))
    assert ((sp == 1).float().mean().item(), (sp == 0).float().mean().item()) == pytest.approx((0.05, 0.05), abs=0.01)


def test_views_are_deterministic_given_the_generator():
    image, boxes = torch.rand(3, 60, 60, generator=gen(3)), torch.tensor([[10.0, 10.0, 40.0, 40.0]])
    for view in (Cutout(), Noise(8.0)):
        assert torch.equal(view(image, boxes, gen(5))[0], view(image, boxes, gen(5))[0])


def test_parse_views():
    assert [type(v).__name__ for v in parse_views("FCDR")] == ["Flip", "Cutout", "Resize", "Rotate"]
    assert len(parse_views("NF")) == 7
    with pytest.raises(ValueError, match=r"'views' parameter of parse_views must be letters .*\['X'\]"):
        parse_views("FX")
    with pytest.raises(ValueError, match="repeated"):
        parse_views("FF")
    with pytest.raises(ValueError, match="non-empty string"):
        parse_views("")


# ------------------------------------------------------------------------------------------- the predictor

_MODELS: dict[str, torch.nn.Module] = {}


def tiny(name: str) -> torch.nn.Module:
    if name not in _MODELS:
        torch.manual_seed(0)
        builder = {"faster_rcnn": build_faster_rcnn, "retinanet": build_retinanet}[name]
        _MODELS[name] = builder(2, backbone="tiny", min_size=64, max_size=96, score_thresh=0.0).eval()
    return _MODELS[name]


def images() -> list[torch.Tensor]:
    g = gen(4)
    return [torch.rand(3, 64, 80, generator=g), torch.rand(3, 72, 64, generator=g)]


@pytest.mark.parametrize("name", ["faster_rcnn", "retinanet"])
def test_view_predictor_returns_every_view_with_the_mapped_reference_boxes(name):
    model = tiny(name)
    model.train()
    predictor = ViewPredictor(model, parse_views("FCDR"))
    torch.manual_seed(0)
    results = predictor.predict(images(), fields={"views", "class_probs"})
    assert model.training  # modes restored
    plain = model.predict(images(), fields={"class_probs"})
    for image, det, ref in zip(images(), results, plain):
        assert torch.equal(det.boxes, ref.boxes) and det.class_probs is not None and len(det) > 0
        views = det.extras["views"]
        assert len(views) == 4 and all(v.class_probs is not None for v in views)
        width = image.shape[-1]
        flipped = views[0].extras["reference_boxes"]
        assert torch.allclose(flipped[:, [2, 0]], width - det.boxes[:, [0, 2]])
        assert torch.equal(views[1].extras["reference_boxes"], det.boxes)
        assert torch.allclose(
            views[2].extras["reference_boxes"],
            det.boxes * torch.tensor([round(0.8 * width) / width, round(0.8 * image.shape[-2]) / image.shape[-2]] * 2),
        )
        rotated = Rotate(5.0).map_boxes(det.boxes, *image.shape[-2:])
        assert torch.allclose(views[3].extras["reference_boxes"], rotated)
    torch.manual_seed(0)
    again = predictor.__class__(model, parse_views("FCDR")).predict(images()[::-1], fields={"views", "class_probs"})
    assert torch.equal(
        again[1].extras["views"][1].boxes, results[0].extras["views"][1].boxes
    )  # cutout independent of the order


def test_view_predictor_without_views_requested_runs_only_the_reference_pass_and_narrows_references():
    model = tiny("retinanet")
    predictor = ViewPredictor(EnsembleDetector([model]), noise_views(2), references=lambda d: torch.arange(3))
    plain = predictor.predict(images(), fields={"class_probs"})
    assert all(d.extras.get("views") is None and len(d) == 3 for d in plain)
    with_views = predictor.predict(images(), fields={"views", "class_probs"})
    assert all(
        len(d.extras["views"]) == 2 and d.extras["views"][0].extras["reference_boxes"].shape == (3, 4)
        for d in with_views
    )
    assert predictor.predict([], fields={"views"}) == [] and "views" in predictor.PROVIDES
    with pytest.raises(ValueError, match="at least one view"):
        ViewPredictor(model, [])


def test_images_without_reference_detections_get_no_views():
    model = tiny("retinanet")
    predictor = ViewPredictor(model, noise_views(2), references=lambda d: torch.zeros(0, dtype=torch.int64))
    results = predictor.predict(images(), fields={"views", "class_probs"})
    assert all(len(d) == 0 and d.extras["views"] == [] for d in results)
