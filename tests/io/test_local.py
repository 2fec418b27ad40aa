"""Tests of certssb.io.local: the user's own .npz (layouts, dtypes, class names, refusals)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from certssb.core.validation import ConfigError
from certssb.io import local, prepare


@pytest.mark.parametrize("layout", ["nhw", "nchw", "nhwc"])
@pytest.mark.parametrize("dtype", ["uint8", "float"])
def test_load_local_layouts(tmp_path, layout, dtype):
    rng = np.random.default_rng(0)
    c = 1 if layout == "nhw" else 3
    chw = rng.integers(0, 256, size=(8, c, 5, 6)).astype(np.uint8)
    arr = {"nhw": chw[:, 0], "nchw": chw, "nhwc": chw.transpose(0, 2, 3, 1)}[layout]
    if dtype == "float":
        arr = arr.astype(np.float64) / 255.0
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    path = tmp_path / "d.npz"
    np.savez(path, x=arr, y=y)
    x, yt, names = local.load_local(path)
    assert x.dtype == torch.float32 and x.shape == (8, c, 5, 6)
    assert torch.allclose(x, torch.from_numpy(chw).float() / 255, atol=1e-6)
    assert yt.dtype == torch.int64 and yt.tolist() == y.tolist()
    assert names == ["0", "1", "2"]


def test_load_local_class_names_and_prepare(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(40, 4, 4)).astype(np.uint8)
    y = np.repeat(np.arange(4), 10)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, class_names=np.array(["cat", "dog", "eel", "fox"]))
    assert local.load_local(path)[2] == ["cat", "dog", "eel", "fox"]
    d = prepare.prepare_dataset("local", root="unused", local_path=path, classes=[3, 1], test_fraction=0.3)
    assert d["class_names"] == ["fox", "dog"]
    assert torch.bincount(d["y_train"]).tolist() == [7, 7]
    assert torch.bincount(d["y_test"]).tolist() == [3, 3]


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays, needle",
    [
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(2, np.int64)}, "3 samples but 'y' has 2"),
        ({"x": np.zeros((3, 4), np.uint8), "y": np.zeros(3, np.int64)}, "2 dimensions"),
        ({"x": np.zeros((3, 1, 4, 4, 1), np.uint8), "y": np.zeros(3, np.int64)}, "5 dimensions"),
        ({"x": np.full((3, 4, 4), 1.5), "y": np.zeros(3, np.int64)}, r"expected float in \[0, 1\]"),
        ({"x": np.full((3, 4, 4), -0.1), "y": np.zeros(3, np.int64)}, r"expected float in \[0, 1\]"),
        ({"x": np.zeros((3, 4, 4), np.int32), "y": np.zeros(3, np.int64)}, "dtype int32"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(3)}, r"expected \(N,\) integers"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, -1, 0])}, "negative label"),
        ({"x": np.zeros((3, 8, 8, 8), np.uint8), "y": np.zeros(3, np.int64)}, "no channel axis"),
        ({"images": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(3, np.int64)}, "arrays 'x' and 'y'"),
        (
            {"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, 1, 2]), "class_names": np.array(["a"])},
            "'class_names' has 1 names",
        ),
    ],
)
def test_load_local_errors(tmp_path, arrays, needle):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ConfigError, match=r"data\.local_path") as err:
        local.load_local(path)
    assert re.search(needle, str(err.value)), str(err.value)


def test_load_local_missing_file_and_pickled_content(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.local_path.*not found.*\.npz"):
        local.load_local(tmp_path / "nope.npz")
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([object(), 1], dtype=object), y=np.zeros(2, np.int64))
    with pytest.raises(ConfigError, match=r"data\.local_path.*pickle"):
        local.load_local(obj)


def test_a_stray_label_is_refused_not_taken_as_more_classes(tmp_path):
    """A label of 1000 among ten classes is not a 1001-class task."""
    y = np.append(np.arange(10).repeat(3), 1000)
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((31, 4, 4), np.uint8), y=y)
    with pytest.raises(
        ConfigError,
        match=r"data\.local_path.*labels up to 1000 but only 11 of the classes "
        r"0\.\.1000 have a sample; labels must lie in \[0, K\)",
    ):
        local.load_local(path)
    names = np.array([str(i) for i in range(10)])
    _write_npz(tmp_path / "n.npz", x=np.zeros((31, 4, 4), np.uint8), y=y, class_names=names)
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 10\)"):
        local.load_local(tmp_path / "n.npz")


def test_a_single_class_dataset_names_the_dataset(tmp_path):
    path = _write_npz(tmp_path / "one.npz", x=np.zeros((20, 4, 4), np.uint8), y=np.zeros(20, np.int64))
    with pytest.raises(
        ConfigError,
        match=r"dataset 'local' \(data\.local_path = '.*one\.npz'\) has a single "
        r"class in its training split",
    ) as err:
        prepare.prepare_dataset("local", root="unused", local_path=path, test_fraction=0.25)
    assert "poison_rate" not in str(err.value)


def test_random_bytes_are_not_called_pickled_data(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ConfigError, match=r"data\.local_path.*is not an \.npz archive \(a zip file") as err:
        local.load_local(path)
    assert "pickle" not in str(err.value)
