"""The split dict and the framework-free operations on it: class selection, stratified splits and
subsamples, and the content fingerprint.

Every data source (``certssb.io``) ends as the *split dict*::

    {"x_train", "y_train", "x_test", "y_test",   # float32 images (N, C, H, W) in [0, 1], int64 labels (N,)
     "class_names": list[str], "num_classes": int, "dataset": str}

built by :func:`split_dict`; :func:`to_unit_float` turns uint8 pixels into those images.
``certssb.io.prepare_dataset`` then applies :func:`select_classes`, :func:`stratified_split` and
:func:`stratified_subsample` and adds ``"fingerprint"`` (:func:`tensor_fingerprint`), a 16-hex-digit sha256
prefix of the tensors' bytes and the class names, so that two runs can tell whether they saw the same data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .validation import fail, number, positive


# ----------------------------------------------------------------------------------------------
# the split dict and its tensors
# ----------------------------------------------------------------------------------------------
def to_unit_float(x: np.ndarray) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float32 ``x / 255`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).div_(255.0)


def split_dict(
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
        fail("classes", classes, allowed)
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= int(c) < k:
            fail("classes", list(classes), f"{allowed}; {c!r} is not one")
    ids = [int(c) for c in classes]
    if len(set(ids)) != len(ids):
        fail("classes", list(classes), f"{allowed}; it has duplicates")
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
    number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
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
