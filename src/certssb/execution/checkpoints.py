"""Checkpoints of a trained ensemble: one file per chunk of models under ``<checkpoint_dir>/<fingerprint>/``,
written durably (temporary file, fsync, rename, fsync of the folder) as each chunk finishes, so an interrupted
run -- killed or crashed -- resumes where it stopped and a rerun with the same inputs and parameters retrains
nothing. Loaded with ``torch.load(weights_only=True)``; a chunk that cannot be read is moved aside and
retrained (``certssb.execution.training``).

The fingerprint covers everything that determines the trained weights: the data, the noise plan, the sigma
vector, the training config, the number of classes, the torch thread count (it changes the floating-point
summation order) and :func:`training_code_version`."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from certssb.core import ensemble as _ensemble_code
from certssb.core import models as _models_code
from certssb.core import noise as _noise_code
from certssb.core import precision as _precision_code
from certssb.core.ensemble import ChunkResult, TrainConfig
from certssb.io.fsync import fsync_dir

#: The modules whose source determines what training computes.
TRAINING_CODE = (_ensemble_code, _models_code, _noise_code, _precision_code)


@functools.lru_cache(maxsize=1)
def training_code_version() -> str:
    """A hash of the source of the training code (:data:`TRAINING_CODE`: ``certssb.core.ensemble``,
    ``models``, ``noise``, ``precision``), computed, not bumped by hand: any edit of these modules -- even of
    a comment --
    gives new checkpoints instead of silently resuming with chunks of the old code."""
    h = hashlib.sha256()
    for module in TRAINING_CODE:
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()[:12]


def training_provenance(threads: int | None = None) -> dict[str, Any]:
    """What the trained weights depend on besides data, plan, sigma and config: the torch thread count
    (``threads``, default ``torch.get_num_threads()``) and :func:`training_code_version`."""
    return {
        "num_threads": int(threads if threads is not None else torch.get_num_threads()),
        "training_code": training_code_version(),
    }


def ensemble_fingerprint(
    data_fingerprint: str,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    cfg: TrainConfig,
    num_classes: int,
    threads: int | None = None,
) -> str:
    """Hash of everything that determines the trained ensemble (not the backend or device): the inputs, the
    config and :func:`training_provenance` (``threads``: the torch threads the models train with)."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "data": data_fingerprint,
                "plan": plan["fingerprint"],
                "cfg": asdict(cfg),
                "classes": num_classes,
                **training_provenance(threads),
            },
            sort_keys=True,
        ).encode()
    )
    h.update(sigma.detach().cpu().to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def _save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync it, rename it over ``path``, fsync the folder."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def move_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to ``<name>.corrupt-<unix time>`` (kept for inspection); returns the new
    path."""
    dest = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    os.replace(path, dest)
    fsync_dir(path.parent)
    return dest


def chunk_path(checkpoint_dir: Path, indices: Sequence[int]) -> Path:
    return checkpoint_dir / f"chunk_{indices[0]:05d}_{indices[-1]:05d}.pt"


def load_chunk(path: Path) -> ChunkResult:
    d = torch.load(path, map_location="cpu", weights_only=True)
    return ChunkResult(list(d["indices"]), d["params"], list(d["log"]))


def save_chunk(result: ChunkResult, path: Path) -> None:
    _save_atomic({"indices": result.indices, "params": result.params, "log": result.log}, path)


def chunks_of(num_models: int, chunk_size: int) -> list[list[int]]:
    return [list(range(s, min(s + chunk_size, num_models))) for s in range(0, num_models, chunk_size)]
