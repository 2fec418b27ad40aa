r"""Inference-time randomized smoothing (Cohen, Rosenfeld, Kolter 2019): the ``cohen`` certifier.

Threat model: **test-time l2 perturbation of the input, model fixed; it certifies nothing about
poisoning.** One base classifier f is trained once on the (possibly poisoned) training set with Gaussian
data augmentation (fresh noise ``sigma * Z`` on every batch, ``ensemble.train_one(augment=True)``); the
smoothed classifier is

.. math::  g(x) = \arg\max_c P_{\varepsilon \sim N(0, \sigma^2 I)}[f(x + \varepsilon) = c].

CERTIFY (Cohen et al., Alg. 2): n0 selection draws pick the top class A, N separate estimation draws count
``k_A``; the draws are i.i.d. given the fixed f, so the one-sided Clopper-Pearson bound at level alpha on
``k_A / N`` is a valid ``p_lower_A`` and ``R = sigma * Phi^-1(p_lower_A)`` (abstain when
``p_lower_A <= 1/2``):
``g(x + delta) = A`` for every ``||delta||_2 < R``, with probability ``>= 1 - alpha`` over the draws
(``certify.certify_counts``). Radius ceiling (all N draws agree): ``sigma * Phi^-1(alpha^(1/N))`` =
``certify.radius_ceiling(N, alpha, "clopper_pearson")`` times sigma: 2.46 sigma at N = 1,000,
alpha = 0.001
(Cohen et al.'s N = 100,000: 3.81 sigma).

A poisoned training set changes f, hence g; the certificate is about g as trained and says nothing about
what g would have been without the poison. Lorenz et al.'s certifier attacks target exactly this certifier.

Noise: reproducible from one seed. The draws of test sample i come from a CPU generator seeded with
(seed, split, stage, chunk) for chunks of :data:`SAMPLE_CHUNK` samples (stage 0: selection, 1: estimation),
so the counts do not depend on the forward batch size, the device or the number of threads. Samples x draws
are batched: no Python loop per sample; each forward draws its own slice of the chunk's noise (the same
numbers as one draw of the whole, see ``_chunk_counts``), so the noise stays cache-sized. ``precision``
bfloat16 runs the forward passes under autocast (``core.precision``); the softmax and the counts stay
float32. The base classifier is still one fixed deterministic function (the same in selection and
estimation, whichever thread evaluates it), so the bound holds as stated for the model at that precision.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from .ensemble import with_inference_pooling
from .noise import SPLIT_IDS, _derive
from .precision import autocast
from .validation import ConfigError, positive
from .workers import one_thread_map

NAME = "cohen"
THREAT_MODEL = "test-time l2 perturbation of the input, model fixed; certifies nothing about poisoning"
POISONING_THREAT_MODEL = (
    "label-preserving l2 perturbation of the training features and the input "
    "(smoothing over the training set)"
)
SAMPLE_CHUNK = 8  # samples whose draws share one generator: part of the noise's definition (do not tune)
STAGES = {"selection": 0, "estimation": 1}


@torch.no_grad()
def noise_counts(
    model: torch.nn.Module,
    x: torch.Tensor,
    sigma: torch.Tensor,
    *,
    seed: int,
    split: str,
    stage: str,
    num_draws: int,
    num_classes: int,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    precision: str = "float32",
) -> dict[str, torch.Tensor]:
    """Class counts (N, C) int64 of ``argmax f(x_i + sigma_i eps)`` over ``num_draws`` draws per sample, and
    the softmax averaged over the draws (N, C) float32.

    ``model`` is on its device (evaluated in eval mode, as a ``channels_last`` copy on CPU); ``x``
    (N, C, H, W) on the CPU; ``sigma`` (N,) per sample. ``batch_size``: images per forward (draws of several
    samples together); None -> 256 on CPU (cache-sized, as ``votes.predict_votes``), 4096 on CUDA.
    On CPU with T > 1 torch threads, T chunks of samples run at once, each in its own thread with one torch
    thread (the small CNN uses a second intra-op thread poorly; the noise sampler is single-threaded). Each
    chunk's draws and forward passes are the same whichever thread runs them, so the counts do not depend
    on T.
    """
    positive("num_draws", num_draws, integer=True)
    device = next(model.parameters()).device
    batch_size = batch_size or (4096 if device.type == "cuda" else 256)
    positive("batch_size", batch_size, integer=True)
    if stage not in STAGES or split not in SPLIT_IDS:
        raise ConfigError(
            f"stage {stage!r} / split {split!r}: expected one of {list(STAGES)} / {list(SPLIT_IDS)}"
        )
    n = x.shape[0]
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    if sigma.shape != (n,):
        raise ConfigError(f"mismatched shapes: {n} samples but sigma has shape {tuple(sigma.shape)}")
    net = _inference_copy(model, device)
    counts = torch.zeros(n, num_classes, dtype=torch.int64)
    probs = torch.zeros(n, num_classes)
    starts = list(range(0, n, SAMPLE_CHUNK))

    def run(c: int) -> tuple[torch.Tensor, torch.Tensor]:
        sl = slice(starts[c], starts[c] + SAMPLE_CHUNK)
        seed_c = _derive(int(seed), SPLIT_IDS[split], STAGES[stage], c)
        return _chunk_counts(
            net, x[sl], sigma[sl], seed_c, num_draws, num_classes, batch_size, precision, device
        )

    results = one_thread_map(run, range(len(starts)), device)  # T chunks at once on CPU (core.workers)
    for start, (cnt, prb) in zip(starts, results, strict=True):
        counts[start : start + cnt.shape[0]] = cnt
        probs[start : start + cnt.shape[0]] = prb
        if progress:
            progress(cnt.shape[0])
    return {"counts": counts, "probs": probs}


def _inference_copy(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as evaluated by the draws: a copy in eval mode, ``channels_last`` on CPU (2.6-2.9x faster
    convolutions and max-pooling for the small CNN than contiguous weights fed channels_last inputs), its
    2 x 2 max-pools without indices (``ensemble.MaxPool2x2``: the same values). The caller's model is never
    changed."""
    net = with_inference_pooling(copy.deepcopy(model).eval())
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    return net


def _chunk_counts(
    net: torch.nn.Module,
    xb: torch.Tensor,
    sb: torch.Tensor,
    gen_seed: int,
    num_draws: int,
    num_classes: int,
    batch_size: int,
    precision: str,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts and mean softmax of one chunk of samples ``xb`` (b, C, H, W) over ``num_draws`` draws.

    The draws are generated batch by batch (``per`` draws of all b samples, one cache-sized forward), in the
    order of one ``randn((num_draws, b, C, H, W))`` call: the CPU generator's normal sampler fills and
    transforms blocks of 16 values, so pieces whose sizes are multiples of 16 give the same numbers as the
    whole (``_splittable``; otherwise the whole tensor is drawn at once, as before)."""
    b = xb.shape[0]
    g = torch.Generator().manual_seed(gen_seed)
    per = max(1, batch_size // b)  # draws per forward
    whole = None if _splittable(xb) else torch.randn((num_draws, *xb.shape), generator=g)
    scale = sb.view(1, -1, 1, 1, 1)
    logits = []
    with torch.inference_mode():
        for d in range(0, num_draws, per):
            k = min(per, num_draws - d)
            eps = torch.randn((k, *xb.shape), generator=g) if whole is None else whole[d : d + k]
            part = (xb.unsqueeze(0) + scale * eps).flatten(0, 1).to(device)
            if device.type == "cpu" and part.ndim == 4:
                part = part.contiguous(memory_format=torch.channels_last)
            with autocast(precision, device):
                logits.append(net(part).float().cpu())
        p = torch.softmax(torch.cat(logits), dim=1).view(num_draws, b, num_classes)
        return torch.nn.functional.one_hot(p.argmax(-1), num_classes).sum(0), p.mean(0)


def _splittable(xb: torch.Tensor) -> bool:
    """Whether one draw of the chunk (b x C x H x W values) is a whole number of the sampler's 16-blocks."""
    return xb.numel() % 16 == 0


def certify_votes(
    model: torch.nn.Module,
    x: torch.Tensor,
    sigma: torch.Tensor,
    *,
    seed: int,
    split: str,
    n0: int,
    num_draws: int,
    num_classes: int,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    precision: str = "float32",
) -> dict[str, torch.Tensor]:
    """The votes of one test set for :func:`certssb.core.certify.certify_counts`: ``selection`` (N, C) counts
    over ``n0`` draws, ``estimation`` (N, C) counts over ``num_draws`` separate draws; and, in the layout of
    the poisoning certifiers' votes (one "model": the smoothed base classifier), ``votes`` (1, N, C) = the
    estimation fractions and ``probs`` (1, N, C) = the mean softmax over the estimation draws."""
    positive("n0", n0, integer=True)
    kw = {
        "seed": seed,
        "split": split,
        "num_classes": num_classes,
        "batch_size": batch_size,
        "precision": precision,
    }
    sel = noise_counts(model, x, sigma, stage="selection", num_draws=n0, **kw)
    est = noise_counts(model, x, sigma, stage="estimation", num_draws=num_draws, progress=progress, **kw)
    return {
        "selection": sel["counts"],
        "estimation": est["counts"],
        "votes": (est["counts"].float() / num_draws).unsqueeze(0),
        "probs": est["probs"].unsqueeze(0),
    }
