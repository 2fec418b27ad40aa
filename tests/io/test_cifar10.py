"""Tests of certssb.io.cifar10: the CIFAR-10 downloader on a fake binary archive written here in the real
format (no network), and its refusal of unsafe archive members."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from certssb.core.validation import ConfigError
from certssb.io import cifar10, fetch


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


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
    monkeypatch.setattr(cifar10, "CIFAR10_ARCHIVE", table)
    return root, batches


def test_download_cifar10_parses_binary_records(cifar_root):
    root, batches = cifar_root
    d = cifar10.download_cifar10(root, download=False)
    assert d["class_names"] == CIFAR_NAMES and d["num_classes"] == 10 and d["dataset"] == "cifar10"
    assert d["x_train"].shape == (15, 3, 32, 32) and d["x_test"].shape == (4, 3, 32, 32)
    train_imgs = np.concatenate([batches[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    train_lbls = np.concatenate([batches[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    assert torch.equal(d["x_train"], torch.from_numpy(train_imgs).float() / 255)
    assert d["y_train"].tolist() == train_lbls.tolist() and d["y_train"].dtype == torch.int64
    assert torch.equal(d["x_test"], torch.from_numpy(batches["test_batch.bin"][0]).float() / 255)
    assert (root / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    again = cifar10.download_cifar10(root, download=False)  # already extracted: same result
    assert torch.equal(again["x_train"], d["x_train"])


def test_download_cifar10_wrong_md5_and_missing(tmp_path, cifar_root, monkeypatch):
    root, _ = cifar_root
    monkeypatch.setitem(cifar10.CIFAR10_ARCHIVE, "md5", "0" * 32)
    with pytest.raises(ConfigError, match="md5.*0{32}.*delete"):
        cifar10.download_cifar10(root, download=False)
    assert (root / "cifar10" / "cifar-10-binary.tar.gz").is_file()

    empty = tmp_path / "empty"

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fetch, "download_url", no_network)
    with pytest.raises(ConfigError) as err:
        cifar10.download_cifar10(empty)
    msg = str(err.value)
    assert "cifar10" in msg and "https://cifar.invalid/c.tgz" in msg
    assert str((empty / "cifar10" / "cifar-10-binary.tar.gz").resolve()) in msg


@pytest.mark.parametrize("evil", ["../evil", "/tmp/certssb_evil_abs", "cifar-10-batches-bin/../../evil"])
def test_download_cifar10_rejects_unsafe_members(tmp_path, monkeypatch, evil):
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    archive = root / "cifar10" / "cifar-10-binary.tar.gz"
    _cifar_archive(archive, np.random.default_rng(1), extra_member=evil)
    monkeypatch.setattr(
        cifar10, "CIFAR10_ARCHIVE", {"filename": archive.name, "url": "u", "md5": _md5(archive)}
    )
    with pytest.raises(ConfigError, match="unsafe member"):
        cifar10.download_cifar10(root, download=False)
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
    monkeypatch.setattr(
        cifar10, "CIFAR10_ARCHIVE", {"filename": archive.name, "url": "u", "md5": _md5(archive)}
    )
    with pytest.raises(ConfigError, match="not a regular file"):
        cifar10.download_cifar10(root, download=False)
