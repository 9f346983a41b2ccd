"""Datasets without download: shapes, determinism, held-out classes, corruptions, OOD sets, bad names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import CORRUPTIONS, DATASETS, corrupt, load_dataset, make_mnist1d, make_ood


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_builds_offline_and_deterministically(name):
    a, b = (
        load_dataset(name, seed=3, n_train=60 if name != "digits" else None),
        load_dataset(name, seed=3, n_train=60 if name != "digits" else None),
    )
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert a.x_train.dtype == torch.float32 and a.x_train.ndim == 2
    if a.task == "classification":
        assert a.y_train.dtype == torch.int64
        assert set(a.y_train.tolist()) <= set(range(a.num_classes))


def test_digits_split_and_holdout():
    data = load_dataset("digits", seed=0, holdout_classes=(8, 9))
    total = load_digits()
    held = int(np.isin(total.target, (8, 9)).sum())
    assert data.x_train.shape[0] + data.x_test.shape[0] == total.data.shape[0] - held
    assert data.num_classes == 8 and data.classes == tuple(range(8))
    assert data.ood["heldout"].shape[1] == 64
    assert float(data.x_train.max()) <= 1.0 and data.shape == (8, 8)


def test_mnist1d_is_balanced_and_seeded():
    x, y = make_mnist1d(200, seed=1)
    assert x.shape == (200, 40) and np.bincount(y).tolist() == [20] * 10
    x2, _ = make_mnist1d(200, seed=2)
    assert not np.allclose(x, x2)


def test_corruptions_grow_with_severity():
    data = load_dataset("digits", seed=0)
    for kind in CORRUPTIONS:
        changes = [
            float((corrupt(data.x_test, kind, s, seed=0, shape=data.shape) - data.x_test).abs().mean())
            for s in (1, 3, 5)
        ]
        assert changes[0] > 0 and changes[0] <= changes[1] <= changes[2], (kind, changes)
    shifted = corrupt(data.x_test, "shift", 1, 0, data.shape).reshape(-1, 8, 8)
    torch.testing.assert_close(shifted[..., 1:], data.x_test.reshape(-1, 8, 8)[..., :-1])


def test_ood_sets():
    data = load_dataset("moons", seed=0)
    far = make_ood("far", data.x_train, 100, seed=0)
    dist = torch.cdist(far, data.x_train).min(1).values
    assert float(dist.min()) > 3 * float(data.x_train.std())
    uniform = make_ood("uniform", data.x_train, 100, seed=0)
    assert bool((uniform >= data.x_train.min(0).values - 1e-6).all())


def test_bad_names_raise():
    with pytest.raises(InvalidInputError, match="unknown dataset 'mnist'; choose one of"):
        load_dataset("mnist")
    with pytest.raises(InvalidInputError, match="not classes of 'digits'"):
        load_dataset("digits", holdout_classes=(11,))
    with pytest.raises(InvalidInputError, match="unknown corruption"):
        corrupt(torch.zeros(2, 4), "fog", 1, 0, ())
    with pytest.raises(InvalidInputError, match="severity must be 1..5"):
        corrupt(torch.zeros(2, 4), "blur", 6, 0, ())
