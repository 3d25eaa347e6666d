"""Training augmentations move the boxes with the pixels."""

import numpy as np
import pytest
import torch

from activedet.data import augment
from activedet.data.torch_dataset import DetectionTorchDataset


def square_image(x0=20, y0=30, side=16, size=(3, 80, 96)):
    image = torch.zeros(size)
    image[:, y0 : y0 + side, x0 : x0 + side] = 1.0
    return image, torch.tensor([[x0, y0, x0 + side, y0 + side]], dtype=torch.float32)


def bright_box(image):
    ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def test_hflip_moves_the_box():
    image, boxes = square_image()
    flipped, out = augment.hflip(image, boxes)
    assert torch.equal(out[0], bright_box(flipped))


@pytest.mark.parametrize("seed", range(8))
def test_zoom_keeps_boxes_on_their_objects(seed):
    image, boxes = square_image()
    out, moved, labels = augment.zoom(
        image, boxes, torch.tensor([3]), np.random.default_rng(seed), jitter=0.4, min_visible=0.99
    )
    assert out.shape == image.shape
    if len(moved):  # the square stayed in the window
        assert labels.tolist() == [3]
        assert torch.allclose(moved[0], bright_box(out), atol=2.0)  # bilinear resampling blurs by a pixel


def test_zoom_drops_objects_mostly_cut_away():
    image, boxes = square_image(x0=0, y0=0)
    rng = np.random.default_rng(0)
    results = [augment.zoom(image, boxes, torch.tensor([1]), rng, jitter=0.8) for _ in range(40)]
    assert any(len(b) == 0 for _, b, _ in results) and any(len(b) == 1 for _, b, _ in results)
    assert all(len(b) == len(lab) for _, b, lab in results)


def test_color_jitter_keeps_range_and_shape():
    image = torch.rand(3, 20, 30)
    out = augment.color_jitter(image, np.random.default_rng(0), strength=0.5)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1


def test_dataset_augmentation_is_a_function_of_seed_epoch_and_index(toy_dataset):
    make = lambda: DetectionTorchDataset(
        toy_dataset, train=True, hflip_prob=0.5, scale_jitter=0.3, color_jitter=0.3, seed=7
    )
    a, b = make(), make()
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(len(a)))
    b.set_epoch(1)
    assert not all(torch.equal(a[i][0], b[i][0]) for i in range(len(a)))
    with pytest.raises(ValueError, match=r"The 'scale_jitter' parameter must be in \[0, 0.9\]. Got 1.5 instead."):
        DetectionTorchDataset(toy_dataset, scale_jitter=1.5)
