"""Tests of certssb.io.mnist: the real embedded MNIST, and the MNIST downloader on fake idx files written here
in the real format (no network)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from certssb.core.validation import ConfigError
from certssb.io import fetch, mnist, prepare


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------
# embedded MNIST
# ------------------------------------------------------------------------------------------------
def test_embedded_mnist_shapes_range_balance():
    x, y, names = mnist.load_embedded_mnist()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (5000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert names == [str(d) for d in range(10)]
    assert torch.bincount(y).tolist() == [500] * 10
    # pixel values are k/255 exactly (uint8 source)
    assert torch.allclose(x * 255, torch.round(x * 255), atol=1e-4)
    # fresh tensors: mutating one result does not leak into the next
    x[0] = 0.5
    assert not torch.equal(mnist.load_embedded_mnist()[0][0], x[0])


# ------------------------------------------------------------------------------------------------
# MNIST downloader on fake idx files
# ------------------------------------------------------------------------------------------------
def _idx_bytes(arr: np.ndarray) -> bytes:
    """The real idx format: 00 00 08 <ndim>, big-endian uint32 dims, uint8 data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture()
def fake_mnist(tmp_path, monkeypatch):
    """Fake MNIST .gz files in a 'server' folder; MNIST_FILES points at their md5s."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(20, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(10, dtype=np.uint8) * 3) % 10,
    }
    server = tmp_path / "server"
    server.mkdir()
    table = {}
    for role, (name, _) in mnist.MNIST_FILES.items():
        path = server / name
        path.write_bytes(gzip.compress(_idx_bytes(arrays[role]), mtime=0))
        table[role] = (name, _md5(path))
    monkeypatch.setattr(mnist, "MNIST_FILES", table)
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", ("https://mirror.invalid/mnist/",))
    return server, arrays


def _check_mnist(d, arrays):
    assert d["x_train"].shape == (20, 1, 28, 28) and d["x_test"].shape == (10, 1, 28, 28)
    assert d["x_train"].dtype == torch.float32 and d["y_train"].dtype == torch.int64
    expected = torch.from_numpy(arrays["train_images"]).float().unsqueeze(1) / 255
    assert torch.equal(d["x_train"], expected)
    assert d["y_train"].tolist() == arrays["train_labels"].tolist()
    assert d["y_test"].tolist() == arrays["test_labels"].tolist()
    assert d["class_names"] == [str(i) for i in range(10)] and d["num_classes"] == 10
    assert d["dataset"] == "mnist"


def test_download_mnist_files_placed_by_hand(tmp_path, fake_mnist):
    server, arrays = fake_mnist
    root = tmp_path / "root"
    shutil.copytree(server, root / "mnist")
    _check_mnist(mnist.download_mnist(root, download=False), arrays)


def test_download_mnist_downloads_missing_files(tmp_path, fake_mnist, monkeypatch):
    server, arrays = fake_mnist
    calls = []

    def fake_download_url(url, root, filename=None, md5=None):
        calls.append(url)
        shutil.copy(server / url.rsplit("/", 1)[1], Path(root) / filename)

    monkeypatch.setattr(fetch, "download_url", fake_download_url)
    root = tmp_path / "root"
    _check_mnist(mnist.download_mnist(root), arrays)
    assert calls == [f"https://mirror.invalid/mnist/{n}" for n, _ in mnist.MNIST_FILES.values()]
    names = sorted(n for n, _ in mnist.MNIST_FILES.values())
    assert sorted(p.name for p in (root / "mnist").iterdir()) == names
    # second call: everything present, no download
    calls.clear()
    mnist.download_mnist(root)
    assert calls == []


def test_download_mnist_wrong_md5_is_reported_and_kept(tmp_path, fake_mnist):
    server, _ = fake_mnist
    root = tmp_path / "root"
    shutil.copytree(server, root / "mnist")
    name = mnist.MNIST_FILES["test_labels"][0]
    bad = root / "mnist" / name
    bad.write_bytes(b"corrupt")
    with pytest.raises(ConfigError) as err:
        mnist.download_mnist(root)
    msg = str(err.value)
    assert "md5" in msg and str(bad) in msg and mnist.MNIST_FILES["test_labels"][1] in msg
    assert _md5(bad) in msg and "delete" in msg
    assert bad.read_bytes() == b"corrupt"  # never overwritten


def test_download_mnist_missing_offline_names_paths(tmp_path, fake_mnist, monkeypatch):
    root = tmp_path / "root"
    with pytest.raises(ConfigError) as err:
        mnist.download_mnist(root, download=False)
    msg = str(err.value)
    for name, _ in mnist.MNIST_FILES.values():
        assert str((root / "mnist" / name).resolve()) in msg
        assert f"https://mirror.invalid/mnist/{name}" in msg
    assert "mnist" in msg

    def no_network(url, root, filename=None, md5=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fetch, "download_url", no_network)
    with pytest.raises(ConfigError, match="download failed") as err:
        mnist.download_mnist(root)
    assert str((root / "mnist" / mnist.MNIST_FILES["train_images"][0]).resolve()) in str(err.value)
    assert not (root / "mnist").exists() and not root.exists()  # no .part, and no empty folder left behind


def test_download_mnist_bad_magic(tmp_path, fake_mnist, monkeypatch):
    server, _ = fake_mnist
    root = tmp_path / "root"
    shutil.copytree(server, root / "mnist")
    name = mnist.MNIST_FILES["train_labels"][0]
    path = root / "mnist" / name
    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, 3]) + b"\x00" * 12))  # 3-d where 1-d expected
    table = dict(mnist.MNIST_FILES)
    table["train_labels"] = (name, _md5(path))
    monkeypatch.setattr(mnist, "MNIST_FILES", table)
    with pytest.raises(ConfigError, match="magic"):
        mnist.download_mnist(root, download=False)


def test_prepare_mnist_keeps_official_split(tmp_path, fake_mnist):
    server, arrays = fake_mnist
    shutil.copytree(server, tmp_path / "root" / "mnist")
    d = prepare.prepare_dataset("mnist", root=tmp_path / "root", classes=[0, 1], download=False)
    mask = np.isin(arrays["train_labels"], [0, 1])
    assert d["y_train"].tolist() == arrays["train_labels"][mask].tolist()
    assert d["x_train"].shape[0] == int(mask.sum()) == 4
