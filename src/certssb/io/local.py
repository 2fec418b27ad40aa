"""The user's own data: an ``.npz`` with arrays ``x``, ``y`` and optionally ``class_names``, loaded with
``allow_pickle=False`` (an archive that needs pickle is refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from certssb.core.splits import to_unit_float
from certssb.core.validation import ConfigError, fail


def _local_fail(path: Any, what: str) -> None:
    fail("data.local_path", str(path), what)


def load_local(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The user's own data: an ``.npz`` with arrays ``x``, ``y`` and optionally ``class_names``.

    ``x`` is ``(N, H, W)`` (one channel), ``(N, C, H, W)`` or ``(N, H, W, C)`` with ``C <= 4``
    (``(N, C, H, W)`` is assumed when both axis 1 and the last axis could be channels), either
    uint8 in [0, 255] (divided by 255) or float in [0, 1]. ``y`` is ``(N,)`` non-negative integers.
    Labels must lie in ``[0, K)``, ``K`` the number of classes: ``len(class_names)`` when given, else
    ``max(y) + 1`` with the names ``"0".."K-1"`` -- and then every class ``0..K-1`` must have a sample (a
    stray label 1000 among ten digits would otherwise make a 1001-class task). Loaded with
    ``allow_pickle=False``: an archive that needs pickle is refused; a file that is no ``.npz`` (zip) at all
    is called so.
    """
    p = Path(path).expanduser()
    expected = "expected an .npz file with arrays 'x' and 'y' (optional 'class_names')"
    if not p.is_file():
        _local_fail(path, f"file not found; {expected}")
    with open(p, "rb") as fh:
        head = fh.read(6)
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):  # zip (.npz) or .npy
        _local_fail(
            path, f"is not an .npz archive (a zip file; it starts with the bytes {head!r}); {expected}"
        )
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
            _local_fail(
                path,
                f"'x' has shape {x.shape}: no channel axis of size <= 4 at position 1 or 3; "
                "expected (N,H,W), (N,C,H,W) or (N,H,W,C)",
            )
    else:
        _local_fail(
            path, f"'x' has {x.ndim} dimensions (shape {x.shape}); expected (N,H,W), (N,C,H,W) or (N,H,W,C)"
        )
    if x.shape[0] != y.shape[0]:
        _local_fail(path, f"'x' has {x.shape[0]} samples but 'y' has {y.shape[0]}; expected the same N")
    if min(x.shape[1:]) < 1:
        _local_fail(path, f"'x' has an empty axis (shape {x.shape})")

    if x.dtype == np.uint8:
        xt = to_unit_float(x)
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            _local_fail(path, "'x' has NaN or inf values; expected float in [0, 1]")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            _local_fail(
                path,
                f"'x' is float with values in [{lo}, {hi}]; expected float in [0, 1] (or uint8 in [0, 255])",
            )
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        _local_fail(path, f"'x' has dtype {x.dtype}; expected uint8 in [0, 255] or float in [0, 1]")
        raise AssertionError  # unreachable

    # --- class names: K classes, labels in [0, K)
    k = int(y.max()) + 1
    if names_arr is None:
        present = np.unique(y).size
        if present < k:
            _local_fail(
                path,
                f"'y' has labels up to {k - 1} but only {present} of the classes 0..{k - 1} "
                f"have a sample; labels must lie in [0, K) with K = the highest label + 1 = {k} when "
                "there is no 'class_names' (add 'class_names' to declare K, or relabel 0..K-1)",
            )
        class_names = [str(i) for i in range(k)]
    else:
        if names_arr.ndim != 1 or names_arr.dtype.kind not in "US":
            _local_fail(
                path,
                f"'class_names' has shape {names_arr.shape} and dtype {names_arr.dtype}; "
                "expected a 1-d array of strings",
            )
        class_names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names_arr.tolist()]
        if len(class_names) < k:
            _local_fail(
                path,
                f"'class_names' has {len(class_names)} names but 'y' has labels up to {k - 1}; "
                f"labels must lie in [0, {len(class_names)}) (K = the number of class names)",
            )
        if len(set(class_names)) != len(class_names):
            _local_fail(path, f"'class_names' has duplicates: {class_names}")
    return xt, torch.from_numpy(y.astype(np.int64)), class_names
