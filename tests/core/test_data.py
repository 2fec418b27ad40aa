"""Tests of certssb.core.data: real embedded MNIST, splits, local .npz, and the MNIST / CIFAR-10
downloaders on fake files written here in the real formats (no network)."""
from __future__ import annotations

import gzip
import hashlib
import io
import re
import shutil
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from certssb.core import data
from certssb.core.validation import ConfigError


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------
# embedded MNIST
# ------------------------------------------------------------------------------------------------
def test_embedded_mnist_shapes_range_balance():
    x, y, names = data.load_embedded_mnist()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (5000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert names == [str(d) for d in range(10)]
    assert torch.bincount(y).tolist() == [500] * 10
    # pixel values are k/255 exactly (uint8 source)
    assert torch.allclose(x * 255, torch.round(x * 255), atol=1e-4)
    # fresh tensors: mutating one result does not leak into the next
    x[0] = 0.5
    assert not torch.equal(data.load_embedded_mnist()[0][0], x[0])


def test_prepare_embedded_default_is_4000_1000_balanced_and_fingerprint_stable():
    d = data.prepare_dataset("mnist_embedded", root="unused")
    assert d["x_train"].shape == (4000, 1, 28, 28) and d["x_test"].shape == (1000, 1, 28, 28)
    assert torch.bincount(d["y_train"]).tolist() == [400] * 10
    assert torch.bincount(d["y_test"]).tolist() == [100] * 10
    assert d["num_classes"] == 10 and d["dataset"] == "mnist_embedded"
    assert len(d["fingerprint"]) == 16 and int(d["fingerprint"], 16) >= 0
    again = data.prepare_dataset("mnist_embedded", root="unused")
    assert again["fingerprint"] == d["fingerprint"]
    assert torch.equal(again["x_train"], d["x_train"])
    other = data.prepare_dataset("mnist_embedded", root="unused", seed=1)
    assert other["fingerprint"] != d["fingerprint"]
    # train and test are disjoint images of the 5,000
    x, _, _ = data.load_embedded_mnist()
    flat = {hash(row.numpy().tobytes()) for row in d["x_train"].reshape(4000, -1)}
    assert not any(hash(row.numpy().tobytes()) in flat for row in d["x_test"].reshape(1000, -1))


def test_prepare_embedded_classes_and_subsampling():
    d = data.prepare_dataset(
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
        data.prepare_dataset(root="unused", **kwargs)


# ------------------------------------------------------------------------------------------------
# splits and class selection
# ------------------------------------------------------------------------------------------------
def test_stratified_split_proportions_and_determinism():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 21)
    tr, te = data.stratified_split(y, 0.2, seed=0)
    assert torch.equal(tr, torch.sort(tr).values) and torch.equal(te, torch.sort(te).values)
    assert sorted(torch.cat([tr, te]).tolist()) == list(range(101))
    # per class round(0.2 * n_c): 10, 6, round(4.2) = 4
    assert torch.bincount(y[te]).tolist() == [10, 6, 4]
    assert torch.bincount(y[tr]).tolist() == [40, 24, 17]
    tr2, te2 = data.stratified_split(y, 0.2, seed=0)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)
    _, te3 = data.stratified_split(y, 0.2, seed=1)
    assert not torch.equal(te, te3)


def test_stratified_subsample():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = data.stratified_subsample(y, 10, seed=0)
    assert idx.numel() == 10 and torch.equal(idx, torch.sort(idx).values)
    assert torch.bincount(y[idx]).tolist() == [6, 3, 1]
    assert torch.equal(idx, data.stratified_subsample(y, 10, seed=0))
    assert not torch.equal(idx, data.stratified_subsample(y, 10, seed=5))
    assert data.stratified_subsample(y, 11, seed=0).numel() == 11  # remainders fill exactly
    assert torch.equal(data.stratified_subsample(y, None, seed=0), torch.arange(100))
    assert torch.equal(data.stratified_subsample(y, 1000, seed=0), torch.arange(100))


def test_select_classes_relabels_in_given_order():
    x = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    xs, ys, names = data.select_classes(x, y, ["zero", "one", "two"], [1, 0])
    assert names == ["one", "zero"]
    assert ys.tolist() == [1, 0, 0, 1]  # samples keep their order: 0,1,3,4
    assert xs.flatten().tolist() == [0.0, 1.0, 3.0, 4.0]
    same = data.select_classes(x, y, ["a", "b", "c"], None)
    assert torch.equal(same[1], y) and same[2] == ["a", "b", "c"]


@pytest.mark.parametrize("classes", [[0, 3], [1, 1], [2], [], [0, True], "01"])
def test_select_classes_errors(classes):
    x = torch.zeros(3, 1, 1, 1)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ConfigError, match=r"data\.classes"):
        data.select_classes(x, y, ["a", "b", "c"], classes)


def test_tensor_fingerprint_sees_dtype_shape_and_extra():
    a = torch.arange(6, dtype=torch.int64)
    f = data.tensor_fingerprint(a, extra="x")
    assert f == data.tensor_fingerprint(a.clone(), extra="x") and len(f) == 16
    assert f != data.tensor_fingerprint(a.reshape(2, 3), extra="x")
    assert f != data.tensor_fingerprint(a.to(torch.int32), extra="x")
    assert f != data.tensor_fingerprint(a, extra="y")
    assert data.tensor_fingerprint(a[::2]) == data.tensor_fingerprint(a[::2].contiguous())


# ------------------------------------------------------------------------------------------------
# local .npz
# ------------------------------------------------------------------------------------------------
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
    x, yt, names = data.load_local(path)
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
    assert data.load_local(path)[2] == ["cat", "dog", "eel", "fox"]
    d = data.prepare_dataset("local", root="unused", local_path=path, classes=[3, 1], test_fraction=0.3)
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
        data.load_local(path)
    assert re.search(needle, str(err.value)), str(err.value)


def test_load_local_missing_file_and_pickled_content(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.local_path.*not found.*\.npz"):
        data.load_local(tmp_path / "nope.npz")
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([object(), 1], dtype=object), y=np.zeros(2, np.int64))
    with pytest.raises(ConfigError, match=r"data\.local_path.*pickle"):
        data.load_local(obj)


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
    for role, (name, _) in data.MNIST_FILES.items():
        path = server / name
        path.write_bytes(gzip.compress(_idx_bytes(arrays[role]), mtime=0))
        table[role] = (name, _md5(path))
    monkeypatch.setattr(data, "MNIST_FILES", table)
    monkeypatch.setattr(data, "MNIST_MIRRORS", ("https://mirror.invalid/mnist/",))
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
    _check_mnist(data.download_mnist(root, download=False), arrays)


def test_download_mnist_downloads_missing_files(tmp_path, fake_mnist, monkeypatch):
    server, arrays = fake_mnist
    calls = []

    def fake_download_url(url, root, filename=None, md5=None):
        calls.append(url)
        shutil.copy(server / url.rsplit("/", 1)[1], Path(root) / filename)

    monkeypatch.setattr(data, "download_url", fake_download_url)
    root = tmp_path / "root"
    _check_mnist(data.download_mnist(root), arrays)
    assert calls == [f"https://mirror.invalid/mnist/{n}" for n, _ in data.MNIST_FILES.values()]
    names = sorted(n for n, _ in data.MNIST_FILES.values())
    assert sorted(p.name for p in (root / "mnist").iterdir()) == names
    # second call: everything present, no download
    calls.clear()
    data.download_mnist(root)
    assert calls == []


def test_download_mnist_wrong_md5_is_reported_and_kept(tmp_path, fake_mnist):
    server, _ = fake_mnist
    root = tmp_path / "root"
    shutil.copytree(server, root / "mnist")
    name = data.MNIST_FILES["test_labels"][0]
    bad = root / "mnist" / name
    bad.write_bytes(b"corrupt")
    with pytest.raises(ConfigError) as err:
        data.download_mnist(root)
    msg = str(err.value)
    assert "md5" in msg and str(bad) in msg and data.MNIST_FILES["test_labels"][1] in msg
    assert _md5(bad) in msg and "delete" in msg
    assert bad.read_bytes() == b"corrupt"  # never overwritten


def test_download_mnist_missing_offline_names_paths(tmp_path, fake_mnist, monkeypatch):
    root = tmp_path / "root"
    with pytest.raises(ConfigError) as err:
        data.download_mnist(root, download=False)
    msg = str(err.value)
    for name, _ in data.MNIST_FILES.values():
        assert str((root / "mnist" / name).resolve()) in msg
        assert f"https://mirror.invalid/mnist/{name}" in msg
    assert "mnist" in msg

    def no_network(url, root, filename=None, md5=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data, "download_url", no_network)
    with pytest.raises(ConfigError, match="download failed") as err:
        data.download_mnist(root)
    assert str((root / "mnist" / data.MNIST_FILES["train_images"][0]).resolve()) in str(err.value)
    assert not any(p.name.endswith(".part") for p in (root / "mnist").iterdir())


def test_download_mnist_bad_magic(tmp_path, fake_mnist, monkeypatch):
    server, _ = fake_mnist
    root = tmp_path / "root"
    shutil.copytree(server, root / "mnist")
    name = data.MNIST_FILES["train_labels"][0]
    path = root / "mnist" / name
    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, 3]) + b"\x00" * 12))  # 3-d where 1-d expected
    table = dict(data.MNIST_FILES)
    table["train_labels"] = (name, _md5(path))
    monkeypatch.setattr(data, "MNIST_FILES", table)
    with pytest.raises(ConfigError, match="magic"):
        data.download_mnist(root, download=False)


def test_prepare_mnist_keeps_official_split(tmp_path, fake_mnist):
    server, arrays = fake_mnist
    shutil.copytree(server, tmp_path / "root" / "mnist")
    d = data.prepare_dataset("mnist", root=tmp_path / "root", classes=[0, 1], download=False)
    mask = np.isin(arrays["train_labels"], [0, 1])
    assert d["y_train"].tolist() == arrays["train_labels"][mask].tolist()
    assert d["x_train"].shape[0] == int(mask.sum()) == 4


# ------------------------------------------------------------------------------------------------
# CIFAR-10 downloader on a fake binary archive
# ------------------------------------------------------------------------------------------------
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _cifar_archive(path: Path, rng, extra_member: str | None = None) -> dict:
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for i, n in enumerate([3, 3, 3, 3, 3, 4]):
            name = f"data_batch_{i + 1}.bin" if i < 5 else "test_batch.bin"
            images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n, dtype=np.uint8)
            records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
            _add(tar, f"cifar-10-batches-bin/{name}", records.tobytes())
            batches[name] = (images, labels)
        _add(tar, "cifar-10-batches-bin/batches.meta.txt", ("\n".join(CIFAR_NAMES) + "\n\n").encode())
        if extra_member:
            _add(tar, extra_member, b"pwned")
    return batches


@pytest.fixture()
def cifar_root(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    archive = root / "cifar10" / "cifar-10-binary.tar.gz"
    batches = _cifar_archive(archive, np.random.default_rng(0))
    table = {"filename": archive.name, "url": "https://cifar.invalid/c.tgz", "md5": _md5(archive)}
    monkeypatch.setattr(data, "CIFAR10_ARCHIVE", table)
    return root, batches


def test_download_cifar10_parses_binary_records(cifar_root):
    root, batches = cifar_root
    d = data.download_cifar10(root, download=False)
    assert d["class_names"] == CIFAR_NAMES and d["num_classes"] == 10 and d["dataset"] == "cifar10"
    assert d["x_train"].shape == (15, 3, 32, 32) and d["x_test"].shape == (4, 3, 32, 32)
    train_imgs = np.concatenate([batches[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    train_lbls = np.concatenate([batches[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    assert torch.equal(d["x_train"], torch.from_numpy(train_imgs).float() / 255)
    assert d["y_train"].tolist() == train_lbls.tolist() and d["y_train"].dtype == torch.int64
    assert torch.equal(d["x_test"], torch.from_numpy(batches["test_batch.bin"][0]).float() / 255)
    assert (root / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    again = data.download_cifar10(root, download=False)  # already extracted: same result
    assert torch.equal(again["x_train"], d["x_train"])


def test_download_cifar10_wrong_md5_and_missing(tmp_path, cifar_root, monkeypatch):
    root, _ = cifar_root
    monkeypatch.setitem(data.CIFAR10_ARCHIVE, "md5", "0" * 32)
    with pytest.raises(ConfigError, match="md5.*0{32}.*delete"):
        data.download_cifar10(root, download=False)
    assert (root / "cifar10" / "cifar-10-binary.tar.gz").is_file()

    empty = tmp_path / "empty"
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data, "download_url", no_network)
    with pytest.raises(ConfigError) as err:
        data.download_cifar10(empty)
    msg = str(err.value)
    assert "cifar10" in msg and "https://cifar.invalid/c.tgz" in msg
    assert str((empty / "cifar10" / "cifar-10-binary.tar.gz").resolve()) in msg


@pytest.mark.parametrize("evil", ["../evil", "/tmp/certssb_evil_abs", "cifar-10-batches-bin/../../evil"])
def test_download_cifar10_rejects_unsafe_members(tmp_path, monkeypatch, evil):
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    archive = root / "cifar10" / "cifar-10-binary.tar.gz"
    _cifar_archive(archive, np.random.default_rng(1), extra_member=evil)
    monkeypatch.setattr(data, "CIFAR10_ARCHIVE", {"filename": archive.name, "url": "u", "md5": _md5(archive)})
    with pytest.raises(ConfigError, match="unsafe member"):
        data.download_cifar10(root, download=False)
    assert not (root / "evil").exists() and not (tmp_path / "evil").exists()
    assert not (root / "cifar10" / "cifar-10-batches-bin").exists()  # nothing extracted


def test_download_cifar10_rejects_symlink_member(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    archive = root / "cifar10" / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    monkeypatch.setattr(data, "CIFAR10_ARCHIVE", {"filename": archive.name, "url": "u", "md5": _md5(archive)})
    with pytest.raises(ConfigError, match="not a regular file"):
        data.download_cifar10(root, download=False)
