"""Tests of certssb.core.splits: stratified splits and subsamples, class selection, fingerprints, the split
dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from certssb.core import splits
from certssb.core.validation import ConfigError


def test_stratified_split_proportions_and_determinism():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 21)
    tr, te = splits.stratified_split(y, 0.2, seed=0)
    assert torch.equal(tr, torch.sort(tr).values) and torch.equal(te, torch.sort(te).values)
    assert sorted(torch.cat([tr, te]).tolist()) == list(range(101))
    # per class round(0.2 * n_c): 10, 6, round(4.2) = 4
    assert torch.bincount(y[te]).tolist() == [10, 6, 4]
    assert torch.bincount(y[tr]).tolist() == [40, 24, 17]
    tr2, te2 = splits.stratified_split(y, 0.2, seed=0)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)
    _, te3 = splits.stratified_split(y, 0.2, seed=1)
    assert not torch.equal(te, te3)


def test_stratified_subsample():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = splits.stratified_subsample(y, 10, seed=0)
    assert idx.numel() == 10 and torch.equal(idx, torch.sort(idx).values)
    assert torch.bincount(y[idx]).tolist() == [6, 3, 1]
    assert torch.equal(idx, splits.stratified_subsample(y, 10, seed=0))
    assert not torch.equal(idx, splits.stratified_subsample(y, 10, seed=5))
    assert splits.stratified_subsample(y, 11, seed=0).numel() == 11  # remainders fill exactly
    assert torch.equal(splits.stratified_subsample(y, None, seed=0), torch.arange(100))
    assert torch.equal(splits.stratified_subsample(y, 1000, seed=0), torch.arange(100))


def test_select_classes_relabels_in_given_order():
    x = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    xs, ys, names = splits.select_classes(x, y, ["zero", "one", "two"], [1, 0])
    assert names == ["one", "zero"]
    assert ys.tolist() == [1, 0, 0, 1]  # samples keep their order: 0,1,3,4
    assert xs.flatten().tolist() == [0.0, 1.0, 3.0, 4.0]
    same = splits.select_classes(x, y, ["a", "b", "c"], None)
    assert torch.equal(same[1], y) and same[2] == ["a", "b", "c"]


@pytest.mark.parametrize("classes", [[0, 3], [1, 1], [2], [], [0, True], "01"])
def test_select_classes_errors(classes):
    x = torch.zeros(3, 1, 1, 1)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ConfigError, match=r"parameter 'classes' = "):
        splits.select_classes(x, y, ["a", "b", "c"], classes)


def test_tensor_fingerprint_sees_dtype_shape_and_extra():
    a = torch.arange(6, dtype=torch.int64)
    f = splits.tensor_fingerprint(a, extra="x")
    assert f == splits.tensor_fingerprint(a.clone(), extra="x") and len(f) == 16
    assert f != splits.tensor_fingerprint(a.reshape(2, 3), extra="x")
    assert f != splits.tensor_fingerprint(a.to(torch.int32), extra="x")
    assert f != splits.tensor_fingerprint(a, extra="y")
    assert splits.tensor_fingerprint(a[::2]) == splits.tensor_fingerprint(a[::2].contiguous())


def test_to_unit_float_and_split_dict():
    x = splits.to_unit_float(np.array([[0, 51, 255]], dtype=np.uint8))
    assert x.dtype == torch.float32 and torch.equal(x, torch.tensor([[0.0, 51.0, 255.0]]) / 255)
    d = splits.split_dict(x, torch.tensor([0]), x, torch.tensor([1]), [0, "b"], "toy")
    assert d["class_names"] == ["0", "b"] and d["num_classes"] == 2 and d["dataset"] == "toy"
    assert sorted(d) == ["class_names", "dataset", "num_classes", "x_test", "x_train", "y_test", "y_train"]
