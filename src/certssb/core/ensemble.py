r"""Training the ensemble of M smoothed models on M noised (possibly poisoned) training sets.

Model k is :math:`f_{A(D + E_k)}`: initialised from ``plan["model_seeds"][k]``, trained with Adam and a
cross-entropy loss on the noisy copy :math:`D + E_k` (``noise.noisy_training_copy``), visiting the
samples in an order drawn from the same seed. Everything model k sees is a function of
(plan, k, data, sigma, config), so the backends below compute the same ensemble:

- ``sequential``: one model after another (the CPU default; ``channels_last`` on CPU is ~1.5x faster). On
  a CPU with T > 1 torch threads, T models of a chunk train at once, each in its own thread with ONE torch
  thread (the small CNN uses a second intra-op thread poorly): each model's arithmetic is single-threaded,
  so its weights do not depend on T or on the scheduling (the same as with T = 1).
- ``vectorised``: a chunk of models at once with ``torch.func.stack_module_state`` + ``functional_call``
  + ``vmap``; the chunk's losses are summed, which gives each member exactly its own gradient, and Adam
  is elementwise, so each member's update is its own (equal to ``sequential`` up to floating-point order).
- ``ray``: shards of models as Ray tasks (``certssb.execution.ray``), each running one of the above.

``TrainConfig.precision`` ``bfloat16`` runs the forward passes under ``torch.autocast`` (``core.precision``):
the weights, Adam's state and the cross-entropy stay float32 (the logits are cast back before the loss).

This module trains one model or one chunk. Which chunks still need training, checkpoint files and resuming,
and the Ray shards live in ``certssb.execution`` (``training``, ``checkpoints``, ``ray``).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .models import ARCHITECTURES, build_model
from .noise import noisy_training_copy
from .precision import RESOLVED, autocast
from .validation import ConfigError, choice, number, positive
from .workers import one_thread_map

log = logging.getLogger(__name__)

BACKENDS = ("sequential", "vectorised", "ray")
DEVICES = ("auto", "cpu", "cuda")
_BUILD_LOCK = threading.Lock()  # build_model seeds the process-wide RNG: one model at a time


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    choice("device", device, DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "parameter 'device' = 'cuda' is invalid: no CUDA device is visible; use 'auto' or 'cpu'"
        )
    return torch.device(device)


@dataclass(frozen=True)
class TrainConfig:
    """How one base model is trained."""

    architecture: str = "small_cnn"
    epochs: int = 4
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    precision: str = "float32"  # resolved: float32 | bfloat16 (core.precision.resolve_precision)

    def __post_init__(self) -> None:
        choice("precision", self.precision, RESOLVED)
        choice("architecture", self.architecture, ARCHITECTURES)
        positive("epochs", self.epochs, integer=True)
        positive("batch_size", self.batch_size, integer=True)
        positive("lr", self.lr)
        number("weight_decay", self.weight_decay, low=0)


@dataclass
class ChunkResult:
    """Stacked parameters of models ``indices`` plus one log row per model and epoch."""

    indices: list[int]
    params: dict[str, torch.Tensor]
    log: list[dict[str, float]] = field(default_factory=list)


def _check_data(x: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> None:
    if x.ndim != 4 or y.shape != (x.shape[0],) or sigma.shape != (x.shape[0],):
        raise ConfigError(
            f"mismatched shapes: images {tuple(x.shape)}, labels {tuple(y.shape)}, "
            f"sigma {tuple(sigma.shape)}; "
            "expected (N, C, H, W), (N,), (N,)"
        )


def _use_channels_last(device: torch.device, architecture: str) -> bool:
    return device.type == "cpu" and architecture != "mlp"


def train_one(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    k: int,
    cfg: TrainConfig,
    num_classes: int,
    device: torch.device,
    noise: bool = True,
    augment: bool = False,
) -> ChunkResult:
    """Train model k of the plan on its noisy copy (``noise=False``: the clean/poisoned data as is).

    ``augment=True`` (Cohen et al.'s base classifier, ``certssb.core.smoothing``): no fixed noisy copy;
    every batch gets FRESH noise ``sigma_i * Z`` from a generator seeded with ``plan["train_seeds"][k]``
    (Gaussian data augmentation, not smoothing over the training set).
    """
    seed = int(plan["model_seeds"][k])
    with _BUILD_LOCK:
        model = build_model(cfg.architecture, x.shape[1:], num_classes, seed=seed).to(device)
    xk = (noisy_training_copy(x, sigma, plan, k) if noise and not augment else x).to(device)
    aug_gen = torch.Generator().manual_seed(int(plan["train_seeds"][k])) if augment else None
    sig_dev = sigma.to(device).view(-1, 1, 1, 1) if augment else None
    yk = y.to(device)
    if _use_channels_last(device, cfg.architecture):
        model = model.to(memory_format=torch.channels_last)
        xk = xk.contiguous(memory_format=torch.channels_last)
    # foreach: one kernel per step for all parameters, the same arithmetic (bit-identical weights)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    rows = []
    model.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        tot_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            xb = xk[idx]
            if aug_gen is not None:  # fresh noise per batch, drawn on the CPU (the same on every device)
                xb = xb + sig_dev[idx] * torch.randn(xb.shape, generator=aug_gen).to(device)
                if _use_channels_last(device, cfg.architecture):
                    xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(cfg.precision, device):
                out = model(xb).float()
            loss = nn.functional.cross_entropy(out, yk[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.detach() * idx.numel()
            correct += (out.argmax(1) == yk[idx]).sum()
        rows.append(
            {
                "model": k,
                "epoch": epoch,
                "loss": float(tot_loss) / n,
                "noisy_train_accuracy": float(correct) / n,
            }
        )
    state = {
        name: p.detach().to("cpu", memory_format=torch.contiguous_format).contiguous()
        for name, p in model.named_parameters()
    }
    return ChunkResult([k], {name: t.unsqueeze(0) for name, t in state.items()}, rows)


def train_chunk_vectorised(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    indices: Sequence[int],
    cfg: TrainConfig,
    num_classes: int,
    device: torch.device,
) -> ChunkResult:
    """Train the models ``indices`` at once: stacked parameters, ``vmap`` over members."""
    models = [
        build_model(cfg.architecture, x.shape[1:], num_classes, seed=int(plan["model_seeds"][k]))
        for k in indices
    ]
    params, buffers = stack_module_state(models)
    if buffers:
        raise ConfigError(f"architecture '{cfg.architecture}' has buffers; the vectorised backend needs none")
    params = {k: v.to(device).detach().requires_grad_(True) for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    m, n = len(indices), x.shape[0]
    xs = torch.stack([noisy_training_copy(x, sigma, plan, k) for k in indices]).to(device)  # (m, N, C, H, W)
    ys = y.to(device)
    opt = torch.optim.Adam(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gens = [torch.Generator().manual_seed(int(plan["model_seeds"][k])) for k in indices]
    member = torch.arange(m, device=device).unsqueeze(1)

    def loss_fn(
        p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(base, p, (xb,)).float()
        return nn.functional.cross_entropy(out, yb), (out.argmax(1) == yb).sum()

    batched = vmap(loss_fn)
    rows = []
    for epoch in range(cfg.epochs):
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # (m, N)
        tot_loss = torch.zeros(m, device=device)
        correct = torch.zeros(m, device=device, dtype=torch.int64)
        for start in range(0, n, cfg.batch_size):
            idx = perms[:, start : start + cfg.batch_size]
            with autocast(cfg.precision, device):
                losses, corr = batched(params, xs[member, idx], ys[idx])
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            tot_loss += losses.detach() * idx.shape[1]
            correct += corr
        for j, k in enumerate(indices):
            rows.append(
                {
                    "model": k,
                    "epoch": epoch,
                    "loss": float(tot_loss[j]) / n,
                    "noisy_train_accuracy": float(correct[j]) / n,
                }
            )
    return ChunkResult(list(indices), {k: v.detach().cpu() for k, v in params.items()}, rows)


def train_chunk(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    indices: Sequence[int],
    cfg: TrainConfig,
    num_classes: int,
    device: torch.device,
    local_backend: str = "sequential",
) -> ChunkResult:
    """Train one chunk of models with a local backend (``sequential`` or ``vectorised``)."""
    if local_backend == "vectorised":
        return train_chunk_vectorised(x, y, sigma, plan, indices, cfg, num_classes, device)

    def one(k: int) -> ChunkResult:
        return train_one(x, y, sigma, plan, k, cfg, num_classes, device)

    # CPU with T > 1 threads: T models at once, each on one torch thread (see the module docstring)
    return merge_chunks(list(one_thread_map(one, indices, device)))


def merge_chunks(parts: Sequence[ChunkResult]) -> ChunkResult:
    """Concatenate chunk results in model order."""
    parts = sorted(parts, key=lambda p: p.indices[0])
    return ChunkResult(
        [k for p in parts for k in p.indices],
        {name: torch.cat([p.params[name] for p in parts]) for name in parts[0].params},
        [row for p in parts for row in p.log],
    )


# ---------------------------------------------------------------------------------------------------
# Prediction with stacked parameters (used by sigma optimisation and certification)


def member_module(architecture: str, in_shape: Sequence[int], num_classes: int) -> nn.Module:
    """A parameter-less template (on the meta device) for ``functional_call`` with stacked params."""
    return build_model(architecture, in_shape, num_classes, seed=0).to("meta")


def load_member(
    architecture: str,
    in_shape: Sequence[int],
    num_classes: int,
    params: dict[str, torch.Tensor],
    k: int,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Model k of a stacked ensemble as an ordinary module in eval mode."""
    model = build_model(architecture, in_shape, num_classes, seed=0)
    model.load_state_dict({name: t[k] for name, t in params.items()})
    return model.to(device).eval()


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` for inference: the maximum of each 2 x 2 block as two elementwise maxima of strided
    views, the same values bit for bit. ``max_pool2d`` on CPU computes its argmax indices even at inference;
    this is 3-5x faster (``benchmarks/profile_targets.py``). Not for training: on ties its gradient is
    split where ``max_pool2d`` routes it to one element."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode: an odd last row / column is dropped
        rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _is_plain_2x2_pool(m: nn.Module) -> bool:
    if type(m) is not nn.MaxPool2d or m.ceil_mode or m.return_indices:
        return False
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    return (
        pair(m.kernel_size) == pair(m.stride) == (2, 2)
        and pair(m.padding) == (0, 0)
        and pair(m.dilation) == (1, 1)
    )


def with_inference_pooling(net: nn.Module) -> nn.Module:
    """``net`` with every plain 2 x 2 ``nn.MaxPool2d`` replaced in place by :class:`MaxPool2x2` (the same
    function; for evaluation only). Returns ``net``."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if _is_plain_2x2_pool(child):
                setattr(parent, name, MaxPool2x2())
    return net


def stacked_forward(template: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits of every member on its own inputs: params (m, ...), x (m, B, C, H, W) -> (m, B, classes)."""
    return vmap(lambda p, xb: functional_call(template, p, (xb,)))(params, x)
