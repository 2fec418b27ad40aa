"""The one entry point of the data sources: :func:`prepare_dataset` dispatches on ``data.dataset``
(:data:`DATASETS`) and selects, splits and subsamples with ``certssb.core.splits``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from certssb.core.splits import (
    select_classes,
    split_dict,
    stratified_split,
    stratified_subsample,
    tensor_fingerprint,
)
from certssb.core.validation import ConfigError, choice, fail, number, positive
from certssb.io.cifar10 import download_cifar10
from certssb.io.local import load_local
from certssb.io.mnist import download_mnist, load_embedded_mnist

DATASETS: tuple[str, ...] = ("mnist_embedded", "mnist", "cifar10", "local")


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
                fail(
                    "data.local_path",
                    local_path,
                    "dataset 'local' needs the path of an .npz file with arrays 'x' and 'y'",
                )
            x, y, names = load_local(local_path)  # type: ignore[arg-type]
        train_idx, test_idx = stratified_split(y, test_fraction, seed)
        split = split_dict(x[train_idx], y[train_idx], x[test_idx], y[test_idx], names, dataset)
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

    if y_tr.unique().numel() < 2:
        where = f" (data.local_path = {str(local_path)!r})" if dataset == "local" else ""
        raise ConfigError(
            f"dataset {dataset!r}{where} has a single class in its training split (label {int(y_tr[0])}, "
            f"{y_tr.numel()} samples): a classifier needs at least 2 classes; check the dataset's labels and "
            "data.classes"
        )

    out = split_dict(x_tr.contiguous(), y_tr, x_te.contiguous(), y_te, names, dataset)
    out["fingerprint"] = tensor_fingerprint(x_tr, y_tr, x_te, y_te, extra=json.dumps(out["class_names"]))
    return out
