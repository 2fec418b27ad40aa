"""Tests of certssb.io.prepare_dataset on the real embedded MNIST: the default split, classes, subsampling,
parameter checks."""

from __future__ import annotations

import pytest
import torch

from certssb.core.validation import ConfigError
from certssb.io import mnist, prepare


def test_prepare_embedded_default_is_4000_1000_balanced_and_fingerprint_stable():
    d = prepare.prepare_dataset("mnist_embedded", root="unused")
    assert d["x_train"].shape == (4000, 1, 28, 28) and d["x_test"].shape == (1000, 1, 28, 28)
    assert torch.bincount(d["y_train"]).tolist() == [400] * 10
    assert torch.bincount(d["y_test"]).tolist() == [100] * 10
    assert d["num_classes"] == 10 and d["dataset"] == "mnist_embedded"
    assert len(d["fingerprint"]) == 16 and int(d["fingerprint"], 16) >= 0
    again = prepare.prepare_dataset("mnist_embedded", root="unused")
    assert again["fingerprint"] == d["fingerprint"]
    assert torch.equal(again["x_train"], d["x_train"])
    other = prepare.prepare_dataset("mnist_embedded", root="unused", seed=1)
    assert other["fingerprint"] != d["fingerprint"]
    # train and test are disjoint images of the 5,000
    x, _, _ = mnist.load_embedded_mnist()
    flat = {hash(row.numpy().tobytes()) for row in d["x_train"].reshape(4000, -1)}
    assert not any(hash(row.numpy().tobytes()) in flat for row in d["x_test"].reshape(1000, -1))


def test_prepare_embedded_classes_and_subsampling():
    d = prepare.prepare_dataset(
        "mnist_embedded", root="unused", classes=[7, 1], max_train=100, max_test=30, seed=3
    )
    assert d["class_names"] == ["7", "1"] and d["num_classes"] == 2
    assert torch.bincount(d["y_train"]).tolist() == [50, 50]
    assert torch.bincount(d["y_test"]).tolist() == [15, 15]
    assert d["x_train"].shape == (100, 1, 28, 28)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"dataset": "svhn"}, "data.dataset"),
        ({"dataset": "mnist_embedded", "test_fraction": 0.0}, "data.test_fraction"),
        ({"dataset": "mnist_embedded", "test_fraction": 1.0}, "data.test_fraction"),
        ({"dataset": "mnist_embedded", "max_train": 0}, "data.max_train"),
        ({"dataset": "local"}, "data.local_path"),
    ],
)
def test_prepare_dataset_rejects_bad_parameters(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        prepare.prepare_dataset(root="unused", **kwargs)
