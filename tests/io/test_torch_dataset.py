"""Tests of certssb.io.torch_dataset.TorchDataset: plain-data roundtrip, versioning, refusals, atomic save."""

from __future__ import annotations

import os
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version

from certssb.io.torch_dataset import TorchDataset


def _nested() -> dict:
    return {
        "weights": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
        "labels": torch.arange(5),
        "class_names": ["cat", "dog"],
        "epochs": 7,
        "sigma": 0.25,
        "vectorised": True,
        "note": None,
        "history": [{"loss": torch.tensor(1.5), "step": 1}, {"loss": torch.tensor(0.5), "step": 2}],
        "shape": (28, 28),
        "by_id": {0: "zero", 1: "one"},
    }


def _assert_equal(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    else:
        assert a == b


def test_roundtrip_nested_dict(tmp_path):
    ds = TorchDataset(filepath=str(tmp_path / "sub" / "artifact.pt"))
    assert not ds.exists()
    data = _nested()
    ds.save(data)
    assert ds.exists()
    _assert_equal(ds.load(), data)
    # only the artifact is left in the folder: no temporary files
    assert os.listdir(tmp_path / "sub") == ["artifact.pt"]


def test_save_compacts_views_and_detaches(tmp_path):
    big = torch.zeros(100_000, requires_grad=True)
    ds = TorchDataset(filepath=str(tmp_path / "v.pt"))
    ds.save({"head": big[:10], "param": torch.nn.Parameter(torch.ones(2))})
    assert (tmp_path / "v.pt").stat().st_size < 20_000  # not the 400 kB storage of `big`
    out = ds.load()
    assert torch.equal(out["head"], torch.zeros(10)) and not out["head"].requires_grad
    assert type(out["param"]) is torch.Tensor


def test_versioned_saves_keep_both_and_load_older(tmp_path):
    path = str(tmp_path / "model.pt")
    ds = TorchDataset(filepath=path, version=Version(None, None))
    assert not ds.exists()
    ds.save({"v": torch.tensor([1])})
    time.sleep(0.002)  # version timestamps have millisecond resolution
    ds.save({"v": torch.tensor([2])})
    versions = sorted(os.listdir(path))
    assert len(versions) == 2
    assert ds.exists()
    assert ds.load()["v"].item() == 2  # latest
    older = TorchDataset(filepath=path, version=Version(load=versions[0], save=None))
    assert older.load()["v"].item() == 1


def test_catalog_entry_by_type_string(tmp_path):
    catalog = DataCatalog.from_config(
        {"art": {"type": "certssb.io.torch_dataset.TorchDataset", "filepath": str(tmp_path / "a.pt")}}
    )
    catalog.save("art", {"x": torch.ones(2)})
    assert torch.equal(catalog.load("art")["x"], torch.ones(2))


@pytest.mark.parametrize(
    "data, needle",
    [
        (torch.nn.Linear(2, 2), r"torch\.nn\.modules\.linear\.Linear at <root>"),
        ({"a": {"b": np.zeros(3)}}, r"numpy\.ndarray at \['a'\]\['b'\]"),
        ({"names": {"x", "y"}}, r"builtins\.set at \['names'\]"),
        ({"runs": [1, 2, np.float64(0.5)]}, r"numpy\.float64 at \['runs'\]\[2\]"),
        ({(1, 2): torch.ones(1)}, r"dict key of type builtins\.tuple"),
        ({"f": lambda: 0}, r"function at \['f'\]"),
    ],
)
def test_save_refuses_non_plain_data(tmp_path, data, needle):
    ds = TorchDataset(filepath=str(tmp_path / "bad.pt"))
    with pytest.raises(DatasetError, match=needle):
        ds.save(data)
    assert not (tmp_path / "bad.pt").exists()
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_no_artifact(tmp_path, monkeypatch):
    ds = TorchDataset(filepath=str(tmp_path / "a.pt"))
    ds.save({"x": torch.zeros(1)})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(DatasetError, match="disk full"):
        ds.save({"x": torch.ones(1)})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["a.pt"]  # temp file removed
    assert torch.equal(ds.load()["x"], torch.zeros(1))  # old artifact intact


def test_load_missing_names_path(tmp_path):
    path = tmp_path / "nowhere" / "missing.pt"
    with pytest.raises(DatasetError, match=r"missing\.pt.*does not exist"):
        TorchDataset(filepath=str(path)).load()
    with pytest.raises(DatasetError, match=r"missing\.pt.*does not exist"):
        TorchDataset(filepath=str(path), version=Version(None, None)).load()


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"d": OrderedDict(a=1), "obj": _Custom()}, path)
    with pytest.raises(DatasetError, match="weights_only"):
        TorchDataset(filepath=str(path)).load()


class _Custom:
    pass


def test_describe_and_repr(tmp_path):
    ds = TorchDataset(filepath=str(tmp_path / "a.pt"), metadata={"owner": "me"})
    assert "a.pt" in repr(ds)
    assert ds.metadata == {"owner": "me"}
