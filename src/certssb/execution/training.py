"""Training the whole ensemble: which chunks of models still need training (the rest are restored from
``certssb.execution.checkpoints``), and on which backend they run: ``sequential`` / ``vectorised`` locally
(``certssb.core.ensemble.train_chunk``) or ``ray`` (shards as Ray tasks, ``certssb.execution.ray``).
Model k depends only on (plan, k, data, sigma, config), so every backend computes the same ensemble."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from certssb.core import ensemble
from certssb.core.ensemble import BACKENDS, ChunkResult, TrainConfig, merge_chunks, resolve_device
from certssb.core.validation import ConfigError, choice, number, positive
from certssb.execution.checkpoints import (
    chunk_path,
    chunks_of,
    ensemble_fingerprint,
    load_chunk,
    move_aside,
    save_chunk,
    training_provenance,
)

log = logging.getLogger(__name__)


def train_threads(backend: str, ray_options: dict[str, Any] | None = None) -> int:
    """The torch threads the models train with: ``ensemble.ray.num_cpus_per_shard`` inside Ray shards (which
    set it themselves), else this process's (``certssb.execution.threads``, applied at the start of the
    run)."""
    if backend == "ray":
        return max(1, int((ray_options or {}).get("num_cpus_per_shard") or 1))
    return torch.get_num_threads()


def provenance(backend: str, ray_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``num_threads`` and ``training_code`` of this training (recorded in the ensemble's training config)."""
    return training_provenance(train_threads(backend, ray_options))


def _restore(path: Path) -> ChunkResult | None:
    """The chunk saved at ``path``, or None (after one warning naming it) when it cannot be read: the file
    is moved aside and its models are retrained."""
    try:
        return load_chunk(path)
    except Exception as exc:  # noqa: BLE001 - a truncated / damaged file: any reader error
        aside = move_aside(path)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning(
            "checkpoint %s cannot be read (%s): moved to %s, its models are retrained",
            path,
            first,
            aside.name,
        )
        return None


def train_ensemble(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    cfg: TrainConfig,
    *,
    num_classes: int,
    data_fingerprint: str,
    backend: str = "sequential",
    device: str = "auto",
    chunk_size: int = 8,
    checkpoint_dir: str | Path | None = None,
    num_models: int | None = None,
    ray_options: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[ChunkResult, str]:
    """Train the plan's models (the first ``num_models`` of them if given) and return them stacked.

    Returns the merged :class:`ChunkResult` and the ensemble fingerprint. ``progress(n)`` is called with
    the number of models just finished (also for chunks restored from ``checkpoint_dir``).
    """
    choice("ensemble.backend", backend, BACKENDS)
    positive("ensemble.chunk_size", chunk_size, integer=True)
    dev = resolve_device(device)
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    ensemble._check_data(x, y, sigma)
    if not bool(torch.all(sigma > 0)):
        raise ConfigError(
            f"parameter 'sigma' is invalid: every sample's sigma must be > 0 (min {float(sigma.min())})"
        )
    m = plan["num_models"] if num_models is None else int(num_models)
    number("noise.num_models", m, low=1, high=plan["num_models"], integer=True)
    threads = train_threads(backend, ray_options)
    fp = ensemble_fingerprint(data_fingerprint, sigma, plan, cfg, num_classes, threads)
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = Path(checkpoint_dir) / fp
        ckpt.mkdir(parents=True, exist_ok=True)
    todo: list[list[int]] = []
    done: list[ChunkResult] = []
    for idx in chunks_of(m, chunk_size):
        saved = ckpt is not None and chunk_path(ckpt, idx).exists()
        restored = _restore(chunk_path(ckpt, idx)) if saved else None
        if restored is not None:
            done.append(restored)
            if progress:
                progress(len(idx))
        else:
            todo.append(idx)
    if done:
        log.info("resuming: %d of %d models restored from %s", sum(len(d.indices) for d in done), m, ckpt)
    if backend == "vectorised" and dev.type == "cpu":
        log.warning(
            "backend 'vectorised' on CPU is about 0.5x as fast as 'sequential' (benchmarks/"
            "ensemble_training.py); it pays off on GPUs"
        )
    if backend == "ray":
        from certssb.execution.ray import train_shards_ray

        done += train_shards_ray(
            x, y, sigma, plan, todo, cfg, num_classes, dev, ckpt, ray_options or {}, progress
        )
    else:
        for idx in todo:
            t0 = time.perf_counter()
            part = ensemble.train_chunk(x, y, sigma, plan, idx, cfg, num_classes, dev, backend)
            for row in part.log:
                row["seconds"] = (time.perf_counter() - t0) / len(idx)
            if ckpt is not None:
                save_chunk(part, chunk_path(ckpt, idx))
            done.append(part)
            if progress:
                progress(len(idx))
    return merge_chunks(done), fp
