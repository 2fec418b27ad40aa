r"""The ``ray`` ensemble backend: shards of the M models trained as Ray tasks.

Kedro stays the orchestrator: the pipeline, its datasets, parameters, checkpoints and resumption are
unchanged, and ``certssb.execution.training.train_ensemble`` decides which chunks still need training. Ray
only executes that one wide step -- training M independent models -- on a local Ray instance or a cluster:

- the chunks still to train are regrouped into ``num_shards`` contiguous shards of whole chunks (a chunk
  file stays the unit of checkpointing);
- the inputs (images, labels, per-sample sigma, noise plan) go into the Ray object store once;
- every shard is one Ray task that runs ``ensemble.train_chunk`` on each of its chunks with a local
  backend (``sequential`` or ``vectorised``) on the worker's device, and is retried ``max_retries`` times;
- the driver saves each shard's chunks to the checkpoint folder as soon as the shard finishes, so a lost
  driver or worker never loses finished shards and a rerun trains only what is missing.

Model k depends only on (plan, k, data, sigma, config) -- its seeds come from the plan -- so the result
equals the ``sequential`` backend: bit-identical on CPU with the ``sequential`` local backend when the
driver and the workers use the same number of torch threads (the float order of a convolution depends
on it), equal up to floating-point order otherwise and with ``vectorised``.

Ray is an optional extra (``pip install -e ".[ray]"``); it is imported lazily, so the rest of ``certssb``
works without it. The ``ensemble.ray`` options, the address probing and connecting are in
:mod:`certssb.execution.ray_options`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from certssb.core import ensemble
from certssb.core.validation import ConfigError
from certssb.execution import checkpoints
from certssb.execution.ray_options import check_options, check_resources, connect, import_ray

log = logging.getLogger(__name__)


class ShardError(RuntimeError):
    """One or more shards still failed after ``ensemble.ray.max_retries`` retries."""


# ---------------------------------------------------------------------------------------------------
# The task


def make_shards(chunks: Sequence[Sequence[int]], num_shards: int | None) -> list[list[list[int]]]:
    """Split the chunk list into ``num_shards`` contiguous groups of whole chunks (None: one per chunk).

    The groups' chunk counts differ by at most one; never more groups than chunks, no empty group.
    """
    chunks = [list(c) for c in chunks]
    s = len(chunks) if num_shards is None else min(int(num_shards), len(chunks))
    if s == 0:
        return []
    q, r = divmod(len(chunks), s)
    out, start = [], 0
    for i in range(s):
        n = q + (1 if i < r else 0)
        out.append(chunks[start : start + n])
        start += n
    return out


def _train_shard(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    shard: list[list[int]],
    cfg: ensemble.TrainConfig,
    num_classes: int,
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """Body of the Ray task: train each chunk of the shard and return plain dicts of CPU tensors.

    ``settings``: ``num_cpus_per_shard``, ``num_gpus_per_shard``, ``local_backend`` and ``shard_id`` (the
    shard's number, which the tests use to make one shard fail)."""
    torch.set_num_threads(max(1, int(settings["num_cpus_per_shard"])))
    if settings["num_gpus_per_shard"] > 0 and torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        if settings["num_gpus_per_shard"] > 0:
            log.warning("shard got GPUs from Ray but torch sees no CUDA device; training on CPU")
        device = torch.device("cpu")
    out = []
    for chunk in shard:
        t0 = time.perf_counter()
        part = ensemble.train_chunk(
            x, y, sigma, plan, chunk, cfg, num_classes, device, settings["local_backend"]
        )
        for row in part.log:
            row["seconds"] = (time.perf_counter() - t0) / len(chunk)
        out.append(
            {
                "indices": list(part.indices),
                "params": {k: v.detach().cpu().contiguous() for k, v in part.params.items()},
                "log": part.log,
            }
        )
    return out


@functools.lru_cache(maxsize=1)
def _remote_train_shard() -> Any:
    return import_ray().remote(_train_shard)


def _models(shard: Sequence[Sequence[int]]) -> list[int]:
    return [k for chunk in shard for k in chunk]


def _ranges(indices: Sequence[int]) -> str:
    """[0, 1, 2, 5, 6] -> '0-2, 5-6'."""
    out: list[str] = []
    idx = sorted(indices)
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        out.append(f"{idx[i]}" if i == j else f"{idx[i]}-{idx[j]}")
        i = j + 1
    return ", ".join(out)


def _cause(err: Exception) -> BaseException:
    """The exception raised inside the task (``RayTaskError.cause``), else ``err`` itself."""
    return getattr(err, "cause", None) or err


def train_shards_ray(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    chunks: Sequence[Sequence[int]],
    cfg: ensemble.TrainConfig,
    num_classes: int,
    device: torch.device,
    checkpoint_dir: Path | None,
    options: dict[str, Any] | None,
    progress: Callable[[int], None] | None,
) -> list[ensemble.ChunkResult]:
    """Train ``chunks`` (lists of model indices) as Ray tasks and return their :class:`ChunkResult`\\ s.

    Called by ``certssb.execution.training.train_ensemble(backend="ray")`` with the chunks that are not yet
    checkpointed. Each finished shard's chunks are saved to ``checkpoint_dir`` (if given) and reported to
    ``progress(n_models)`` right away. ``device`` is the driver's device; the shards train on ``cuda`` when
    ``num_gpus_per_shard > 0`` (and the worker sees a GPU), else on CPU. Shards that still fail after
    ``max_retries`` retries raise :class:`ShardError` (or :class:`ConfigError` if every failure was one)
    after all other shards have finished and been saved, so a rerun resumes with only the failed models.
    """
    opts = check_options(options, int(plan["num_models"]))
    shards = make_shards(chunks, opts["num_shards"])
    if not shards:
        return []
    if device.type == "cuda" and opts["num_gpus_per_shard"] == 0:
        log.warning("device is cuda but ensemble.ray.num_gpus_per_shard is 0: the shards train on CPU")
    ray = import_ray()
    started = connect(opts)
    refs: dict[Any, int] = {}
    try:
        check_resources(ray, opts, started and opts["address"] is None)
        x_ref, y_ref, s_ref, p_ref = (
            ray.put(v) for v in (x.detach().cpu(), y.detach().cpu(), sigma.detach().cpu(), plan)
        )
        task = _remote_train_shard().options(
            num_cpus=opts["num_cpus_per_shard"],
            num_gpus=opts["num_gpus_per_shard"],
            max_retries=opts["max_retries"],
            retry_exceptions=True,
        )
        for i, shard in enumerate(shards):
            settings = {
                "num_cpus_per_shard": opts["num_cpus_per_shard"],
                "num_gpus_per_shard": opts["num_gpus_per_shard"],
                "local_backend": opts["local_backend"],
                "shard_id": i,
            }
            refs[task.remote(x_ref, y_ref, s_ref, p_ref, shard, cfg, num_classes, settings)] = i
        log.info(
            "ray: %d models in %d shards (%s local backend, %g CPU / %g GPU per shard)",
            len(_models([c for s in shards for c in s])),
            len(shards),
            opts["local_backend"],
            opts["num_cpus_per_shard"],
            opts["num_gpus_per_shard"],
        )
        results: list[ensemble.ChunkResult] = []
        failed: dict[int, BaseException] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = refs.pop(ref)
                try:
                    parts = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed[i] = _cause(exc)
                    log.error(
                        "ray: shard %d (models %s) failed after %d retries: %s",
                        i,
                        _ranges(_models(shards[i])),
                        opts["max_retries"],
                        failed[i],
                    )
                    continue
                for d in parts:
                    part = ensemble.ChunkResult(list(d["indices"]), d["params"], list(d["log"]))
                    if checkpoint_dir is not None:
                        checkpoints.save_chunk(part, checkpoints.chunk_path(checkpoint_dir, part.indices))
                    results.append(part)
                    if progress:
                        progress(len(part.indices))
                log.info("ray: shard %d (models %s) done", i, _ranges(_models(shards[i])))
    finally:
        for ref in refs:  # only left on an exception in the driver (e.g. KeyboardInterrupt)
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 -- best effort
                pass
        if started:
            ray.shutdown()
    if failed:
        models = sorted(k for i in failed for k in _models(shards[i]))
        saved = (
            f"the {len(results)} finished chunk(s) are saved in {checkpoint_dir}; a rerun resumes from "
            "them and trains only the failed models"
            if checkpoint_dir is not None
            else "set ensemble.checkpoint_dir so that a rerun resumes from the finished shards"
        )
        causes = "; ".join(
            f"shard {i} (models {_ranges(_models(shards[i]))}): "
            f"{e.__class__.__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            for i, e in sorted(failed.items())
        )
        msg = (
            f"ray backend: models {_ranges(models)} failed after ensemble.ray.max_retries="
            f"{opts['max_retries']} retries ({causes}); {saved}"
        )
        if all(isinstance(e, ConfigError) for e in failed.values()):
            raise ConfigError(msg)
        raise ShardError(msg)
    return results


# ---------------------------------------------------------------------------------------------------
# Certification of large ensembles: the votes of shards of models as Ray tasks


def _votes_shard(
    model: dict[str, Any],
    x: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    split: str,
    model_chunk: int,
    settings: dict[str, Any],
) -> dict[str, torch.Tensor]:
    """Body of the Ray task: ``votes.predict_votes`` on a sub-ensemble, on the worker's device."""
    from certssb.core.votes import predict_votes

    torch.set_num_threads(max(1, int(settings["num_cpus_per_shard"])))
    use_cuda = settings["num_gpus_per_shard"] > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    return predict_votes(model, x, sigma, plan, split, device=device, model_chunk=model_chunk)


@functools.lru_cache(maxsize=1)
def _remote_votes_shard() -> Any:
    return import_ray().remote(_votes_shard)


def predict_votes_ray(
    model: dict[str, Any],
    x: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    split: str,
    *,
    options: dict[str, Any] | None,
    model_chunk: int = 10,
    progress: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """``votes.predict_votes`` with the models split into ``num_shards`` shards run as Ray tasks.

    Each shard streams its models in chunks of ``model_chunk`` as the local path does; the votes and
    probabilities are concatenated in model order, so the result equals the local one (up to the float
    order of a different thread count). Failed shards are retried ``max_retries`` times.
    """
    m = len(model["model_indices"])
    opts = check_options(options, m)
    chunks = checkpoints.chunks_of(m, model_chunk)
    shards = make_shards(chunks, opts["num_shards"])
    ray = import_ray()
    started = connect(opts)
    try:
        check_resources(ray, opts, started and opts["address"] is None)
        x_ref, s_ref, p_ref = (
            ray.put(v) for v in (x.detach().cpu(), torch.as_tensor(sigma).detach().cpu(), plan)
        )
        task = _remote_votes_shard().options(
            num_cpus=opts["num_cpus_per_shard"],
            num_gpus=opts["num_gpus_per_shard"],
            max_retries=opts["max_retries"],
            retry_exceptions=True,
        )
        settings = {
            "num_cpus_per_shard": opts["num_cpus_per_shard"],
            "num_gpus_per_shard": opts["num_gpus_per_shard"],
        }
        refs = []
        for shard in shards:
            idx = _models(shard)
            sub = {
                **model,
                "params": {k: v[idx] for k, v in model["params"].items()},
                "model_indices": torch.as_tensor(model["model_indices"])[idx],
            }
            refs.append(task.remote(sub, x_ref, s_ref, p_ref, split, model_chunk, settings))
        parts = []
        for shard, ref in zip(shards, refs):
            parts.append(ray.get(ref))
            if progress:
                progress(len(_models(shard)))
    finally:
        if started:
            ray.shutdown()
    return {"votes": torch.cat([p["votes"] for p in parts]), "probs": torch.cat([p["probs"] for p in parts])}
