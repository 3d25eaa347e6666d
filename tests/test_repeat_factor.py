"""Repeat-factor sampling (activedet.engine.repeat_factor): the factors, the epochs it draws, and training with it."""

import math

import numpy as np
import pytest
import torch

from activedet.config import ConfigError, load_config
from activedet.engine.repeat_factor import RepeatFactorSampler, image_repeat_factors
from activedet.engine.train import TrainOptions, train_detector, train_loader
from activedet.models import build_detector


def test_factors_are_the_square_root_of_threshold_over_frequency_and_an_image_takes_its_rarest_class():
    # class 1 in 3 of 4 images, class 2 in 1 of 4; the last image has no box
    classes = [[1, 1], [1, 2], [1], []]
    factors = image_repeat_factors(classes, 0.5)
    rare = math.sqrt(0.5 / 0.25)
    np.testing.assert_allclose(factors, [1.0, rare, 1.0, 1.0])
    # a threshold below every class's frequency repeats nothing
    np.testing.assert_array_equal(image_repeat_factors(classes, 0.2), [1.0, 1.0, 1.0, 1.0])
    assert image_repeat_factors([], 0.5).shape == (0,)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_a_threshold_outside_zero_to_one_is_refused(threshold):
    with pytest.raises(ValueError, match=r"repeat_factor_threshold must be a fraction in \(0, 1\]"):
        image_repeat_factors([[1]], threshold)


def test_an_epoch_keeps_its_length_and_is_drawn_from_seed_and_epoch():
    factors = np.array([1.0, 1.0, 2.5, 1.0, 4.0])
    sampler = RepeatFactorSampler(factors, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 5 and set(first) <= set(range(5))
    assert list(RepeatFactorSampler(factors, seed=3)) == first  # the same draw from the same seed and epoch
    sampler.set_epoch(1)
    epochs = [list(sampler)]
    for epoch in range(2, 6):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert any(epoch != first for epoch in epochs)  # every epoch draws afresh
    for seed in (-7, 2**40, 2**63 - 1):  # any integer seed
        assert len(list(RepeatFactorSampler(factors, seed=seed))) == 5


def test_images_come_round_in_proportion_to_their_factors():
    sampler = RepeatFactorSampler(np.array([1.0, 4.0, 1.0, 2.5]), seed=0)
    counts = np.zeros(4)
    for epoch in range(3000):
        sampler.set_epoch(epoch)
        counts += np.bincount(list(sampler), minlength=4)
    # each image's expected copies in the expanded epoch is its factor; the epoch keeps a share of them
    ratio = counts / counts[0]
    np.testing.assert_allclose(ratio, [1.0, 4.0, 1.0, 2.5], rtol=0.08)


@pytest.mark.parametrize("n_images,world", [(7, 2), (5, 3), (2, 4)])
def test_the_processes_shares_make_up_the_epoch(n_images, world):
    factors = np.linspace(1.0, 3.0, n_images)
    whole = RepeatFactorSampler(factors, seed=1).epoch_indices().tolist()
    shares = [list(RepeatFactorSampler(factors, num_replicas=world, rank=r, seed=1)) for r in range(world)]
    assert all(len(share) == math.ceil(n_images / world) for share in shares)
    merged = [share[i] for i in range(len(shares[0])) for share in shares]
    assert merged[:n_images] == whole and set(merged[n_images:]) <= set(whole)


def test_bad_factors_or_rank_are_refused():
    with pytest.raises(ValueError, match="repeat factors must be one finite value >= 1 per image"):
        RepeatFactorSampler(np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 2\); got 2"):
        RepeatFactorSampler(np.array([1.0]), num_replicas=2, rank=2)


def test_the_loader_repeats_only_when_a_class_is_rare_enough(toy_dataset):
    options = TrainOptions(batch_size=2)
    _, plain = train_loader(toy_dataset, options)
    assert isinstance(plain, torch.utils.data.DistributedSampler)
    frequency = {
        c: np.mean([c in set(r.labels.tolist()) for r in toy_dataset.records]) for c in (1, 2)
    }  # both toy classes are common
    options.repeat_factor_threshold = min(frequency.values()) * 0.99
    _, still_plain = train_loader(toy_dataset, options)
    assert isinstance(still_plain, torch.utils.data.DistributedSampler)
    options.repeat_factor_threshold = 1.0
    loader, sampler = train_loader(toy_dataset, options)
    assert isinstance(sampler, RepeatFactorSampler) and len(sampler) == len(toy_dataset)
    assert sampler.factors.max() > 1 and sampler.factors.min() == 1.0  # the images with no box are not repeated
    assert len(loader) == math.ceil(len(toy_dataset) / 2)  # the same steps per epoch as without it


def test_a_detector_trains_with_repeat_factor_sampling_including_images_with_no_box(toy_dataset):
    torch.manual_seed(0)
    model = build_detector("retinanet", 2, backbone="tiny", min_size=96, max_size=96)
    options = TrainOptions(
        epochs=2, batch_size=2, optimizer="adamw", lr=1e-3, warmup_iters=0, amp=False, repeat_factor_threshold=1.0
    )
    assert any(len(r.labels) == 0 for r in toy_dataset.records)
    result = train_detector(model, toy_dataset, options=options, device="cpu")
    assert result.epochs_completed == 2
    assert all(np.isfinite(entry["loss"]) for entry in result.history if "loss" in entry)


def test_the_config_key_is_checked_and_named(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train_data: train.json\nrepeat_factor_threshold: 0\n")
    with pytest.raises(ConfigError, match=r"repeat_factor_threshold. must be a float in \(0, 1\] or null; found 0"):
        load_config(path)
    path.write_text("train_data: train.json\nrepeat_factor_threshold: 0.3\n")
    config = load_config(path)
    assert config.repeat_factor_threshold == 0.3 and config.train_options().repeat_factor_threshold == 0.3
