"""Cold start: the initial labelled set chosen from the pool's embeddings (typiclust, k-means medoids)."""

from __future__ import annotations

import numpy as np
import pytest
from test_loop import write_config

from activedet.al.coldstart import cold_start_indices
from activedet.al.ledger import Ledger
from activedet.config import ConfigError, load_config
from activedet.workflows import run_from_config


def blobs(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Three well-separated blobs of 30 points in 4-D, and the rows of each."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [50, 0, 0, 0], [0, 50, 0, 0]], float)
    points, members = [], []
    for c in centres:
        block = c + rng.normal(0, 1, (30, 4))
        members.append(np.arange(len(points) * 30, len(points) * 30 + 30))
        points.append(block)
    return np.concatenate(points), members


@pytest.mark.parametrize("method", ["typiclust", "kmeans_medoids"])
def test_one_representative_per_cluster(method):
    points, members = blobs()
    chosen = cold_start_indices(points, 3, method=method, seed=0)
    assert [len(set(chosen.tolist()) & set(m.tolist())) for m in members] == [1, 1, 1]  # one per blob
    if method == "kmeans_medoids":  # k-means finds the blobs: each one's member nearest to its mean
        medoids = [m[np.argmin(np.linalg.norm(points[m] - points[m].mean(axis=0), axis=1))] for m in members]
        assert chosen.tolist() == medoids
    again = cold_start_indices(points, 3, method=method, seed=0)
    assert np.array_equal(chosen, again)
    six = cold_start_indices(points, 6, method=method, seed=0)
    assert len(set(six.tolist())) == 6 and all(len(set(six.tolist()) & set(m.tolist())) >= 1 for m in members)


def test_typiclust_prefers_the_dense_part_of_a_cluster():
    rng = np.random.default_rng(1)
    dense, sparse = rng.normal(0, 0.1, (40, 2)), rng.normal(0, 5, (10, 2)) + [3, 3]
    points = np.concatenate([dense, sparse])
    (chosen,) = cold_start_indices(points, 1, method="typiclust", seed=0)
    assert chosen < 40


def test_cold_start_errors_name_the_problem():
    points, _ = blobs()
    with pytest.raises(ValueError, match=r"method must be one of \['typiclust', 'kmeans_medoids'\]. Got 'random'"):
        cold_start_indices(points, 3, method="random", seed=0)
    with pytest.raises(ValueError, match=r"size must be in 1..90 for embeddings of shape \(90, 4\). Got 91"):
        cold_start_indices(points, 91, method="typiclust", seed=0)
    points[5, 2] = np.nan
    with pytest.raises(ValueError, match="pool index 5 has a non-finite embedding"):
        cold_start_indices(points, 3, method="typiclust", seed=0)
    assert cold_start_indices(points[:3] * 0 + 1, 3, method="typiclust", seed=0).tolist() == [0, 1, 2]


def test_a_run_starts_from_the_cold_start_set_for_every_strategy(tiny_data, tmp_path):
    """The initial set is chosen once from the untrained detector's embeddings: the same for every strategy of a
    seed, not the random one, and kept on resume."""
    sets = {}
    for name, extra in [
        ("typiclust_entropy", {"initial_selection": "typiclust", "strategy": "entropy"}),
        ("typiclust_random", {"initial_selection": "typiclust", "strategy": "random"}),
        ("random_start", {}),
    ]:
        config = write_config(tmp_path / name, tiny_data, cycles=0, epochs=1, **extra)
        run_from_config(load_config(config), progress=False)
        sets[name] = Ledger.load(tmp_path / name / "run" / "ledger.npz").labelled().tolist()
        run_from_config(load_config(config), progress=False)  # a resumed run keeps its ledger
        assert Ledger.load(tmp_path / name / "run" / "ledger.npz").labelled().tolist() == sets[name]
    assert len(sets["typiclust_entropy"]) == 6
    assert sets["typiclust_entropy"] == sets["typiclust_random"] != sets["random_start"]


def test_cold_start_with_people_labelling_is_refused(tiny_data, tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    config = write_config(
        tmp_path, tiny_data, oracle="human", unlabelled_data=str(folder), initial_selection="typiclust"
    )
    with pytest.raises(ConfigError, match=r"config\.yaml: key 'initial_selection': 'typiclust' chooses the initial"):
        run_from_config(load_config(config), progress=False)
    assert not (tmp_path / "run").exists()
