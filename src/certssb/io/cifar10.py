"""CIFAR-10, the *binary* archive (50,000 / 10,000, the official split): md5-checked, extracted with path
checks (no absolute paths, no ``..``, no links or devices), parsed with numpy. The python version of
CIFAR-10 is a pickle and is never loaded.

The download table (:data:`CIFAR10_ARCHIVE`) is a module constant: the tests point it at fixtures.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from certssb.core.splits import split_dict, to_unit_float
from certssb.core.validation import ConfigError
from certssb.io.fetch import ensure_files

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


# ----------------------------------------------------------------------------------------------
# tar safety
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


# ----------------------------------------------------------------------------------------------
# the binary records
# ----------------------------------------------------------------------------------------------
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
    return to_unit_float(images), torch.from_numpy(labels)


def download_cifar10(root: str | Path, download: bool = True) -> dict[str, Any]:
    """CIFAR-10 with its official split (``data_batch_1..5`` train, ``test_batch`` test).

    The binary archive :data:`CIFAR10_ARCHIVE` is looked up in ``<root>/cifar10/``, downloaded when
    missing (and ``download``), md5-checked, extracted there after checking every member path, and
    parsed with numpy: each record is 1 label byte + 3,072 image bytes in CHW order. Images become
    float32 ``(N, 3, 32, 32)`` = pixel / 255; class names come from ``batches.meta.txt``.
    """
    folder = Path(root).expanduser() / "cifar10"
    archive = folder / CIFAR10_ARCHIVE["filename"]
    ensure_files("cifar10", [(archive, [CIFAR10_ARCHIVE["url"]], CIFAR10_ARCHIVE["md5"])], download)
    _extract_cifar10(archive, folder)
    base = folder / CIFAR10_DIR
    class_names = [
        line.strip() for line in (base / CIFAR10_META_FILE).read_text("utf-8").splitlines() if line.strip()
    ]
    if len(class_names) < 2:
        raise ConfigError(f"dataset 'cifar10': {base / CIFAR10_META_FILE} lists {len(class_names)} classes")
    train = [_read_cifar10_bin(base / n, len(class_names)) for n in CIFAR10_TRAIN_FILES]
    x_test, y_test = _read_cifar10_bin(base / CIFAR10_TEST_FILE, len(class_names))
    return split_dict(
        torch.cat([x for x, _ in train]),
        torch.cat([y for _, y in train]),
        x_test,
        y_test,
        class_names,
        "cifar10",
    )
