r"""Cert-SSB's sample-specific sigma by stochastic gradient ascent (data-dependent smoothing,
Alfarra et al. 2022; Qiao et al. 2025).

For a sample x with anchor class A (its label for training samples, the pilot's smoothed prediction for
test samples) and a fixed model f, the certified radius of the smoothed classifier at noise level sigma is

.. math::  R(\sigma) = \frac{\sigma}{2}\left(\Phi^{-1}(\psi_A) - \Phi^{-1}(\psi_B)\right),\qquad
           \psi = \frac{1}{n}\sum_{d=1}^{n} \mathrm{softmax}\, f(x + \sigma\,\varepsilon_d),

with :math:`\psi_B = \max_{c \ne A}\psi_c` and :math:`\psi` clamped to ``psi_clamp`` (default
[0.02, 0.98]) so that :math:`\Phi^{-1}` stays finite. K steps of
:math:`\sigma \leftarrow \mathrm{clip}(\sigma + \eta\,\nabla_\sigma \mathrm{ReLU}(R(\sigma)),
\sigma_{min}, \sigma_{max})` with fresh noise each step.

``gradient="reparam"`` (default) differentiates through the model via :math:`x + \sigma\varepsilon`;
``gradient="prefactor"`` follows the released code's idea -- the model output is detached, so the
gradient is the prefactor :math:`\tfrac12(\Phi^{-1}\psi_A - \Phi^{-1}\psi_B)` under the ReLU and sigma never
decreases -- but does NOT exactly reproduce it: here the gap is anchored at class A (a sample whose
anchor is not the top class has a negative gap, the ReLU is 0 and its sigma stays put), while the released
gap has no anchor: it is :math:`|\Phi^{-1}\psi_{(1)} - \Phi^{-1}\psi_{(2)}|` of the two largest classes, which
is never negative, so in the released code sigma grows at every step for every sample.

``rule="released"`` reproduces the released code's update and budget instead (Cert-SSB's ``get_sigma``):
ONE noise draw per step, the model output detached (prefactor only), the gap unanchored,
:math:`g = |\Phi^{-1}\psi_{(1)} - \Phi^{-1}\psi_{(2)}|` of the two largest clamped probabilities, and
:math:`\sigma \leftarrow \sigma + \eta\, g / 2` with NO clip to ``[sigma_min, sigma_max]``
(``max_increase`` and ``max_decrease`` do not apply; ``draws`` and ``gradient`` are unused). Each step adds
at most :math:`\eta\,(\Phi^{-1}(0.98) - \Phi^{-1}(0.02))/2 = 2.054\,\eta`, so sigma's growth is set by the
step budget: at :math:`\eta` = 1e-4 the released sigma files' largest increase (+0.1746 on MNIST 1-vs-0) is
~850 saturated steps (``conf/paper_mnist_embedded``). The default rule ``anchored`` is the one above.

All samples are optimised at once: sigma is a vector, the samples are processed in batches of
``batch_size`` (each batch runs its own K steps), and there is no per-sample Python loop. On CPU a
batch of 64 samples (256 images a step with 4 draws) is twice as fast as 1000, whose activations fall
out of the cache; on GPUs use large batches. The noise stream, hence sigma, depends on ``batch_size``.
On a CPU with T > 1 torch threads, T batches run at once, each in its own thread with one torch thread
(the small CNN's convolutions use a second intra-op thread poorly); every batch's draws are taken from the
one generator in batch order before it starts, so sigma is the same for every T.
``precision`` bfloat16 runs the model's forward passes under autocast (``core.precision``); the softmax,
psi, the radius and sigma's gradient stay float32.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .precision import autocast
from .validation import ConfigError, choice, number, positive
from .workers import one_thread_map

GRADIENTS = ("reparam", "prefactor")
RULES = ("anchored", "released")


@dataclass(frozen=True)
class SigmaConfig:
    """Parameters of the gradient ascent (the typed ``sigma_opt`` block of ``certssb.config`` builds one, with
    ``sigma_min``/``sigma_max`` = sigma_0 -/+ its ``max_decrease``/``max_increase``)."""

    steps: int = 30
    draws: int = 8
    lr: float = 0.04
    gradient: str = "reparam"
    sigma_min: float = 0.25
    sigma_max: float = 0.5
    psi_clamp: tuple[float, float] = (0.02, 0.98)
    batch_size: int = 64
    rule: str = "anchored"

    def __post_init__(self) -> None:
        choice("rule", self.rule, RULES)
        number("steps", self.steps, low=0, integer=True)
        positive("draws", self.draws, integer=True)
        positive("lr", self.lr)
        choice("gradient", self.gradient, GRADIENTS)
        positive("sigma_min", self.sigma_min)
        if not self.sigma_max >= self.sigma_min:
            raise ConfigError(
                f"SigmaConfig's bounds are inverted: sigma_min = {self.sigma_min} > "
                f"sigma_max = {self.sigma_max}; need 0 < sigma_min <= sigma_max"
            )
        lo, hi = self.psi_clamp
        if not 0 < lo < hi < 1:
            raise ConfigError(
                f"parameter 'psi_clamp' = {list(self.psi_clamp)} is invalid: need 0 < low < high < 1"
            )
        positive("batch_size", self.batch_size, integer=True)


def smoothed_psi(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigma: torch.Tensor,
    eps: torch.Tensor,
    precision: str = "float32",
) -> torch.Tensor:
    """psi (B, C): mean softmax of ``model(x + sigma * eps_d)`` over the draws ``eps`` (n, B, C, H, W)."""
    n, b = eps.shape[:2]
    noisy = x.unsqueeze(0) + sigma.view(1, -1, 1, 1, 1) * eps
    flat = noisy.reshape(n * b, *x.shape[1:])
    if flat.device.type == "cpu":  # channels_last: ~1.7x faster convolutions on CPU
        flat = flat.contiguous(memory_format=torch.channels_last)
    with autocast(precision, flat.device):
        logits = model(flat).float()
    probs = torch.softmax(logits, dim=1)
    return probs.view(n, b, -1).mean(0)


def radius_from_psi(
    psi: torch.Tensor, anchor: torch.Tensor, sigma: torch.Tensor, psi_clamp: tuple[float, float]
) -> torch.Tensor:
    """R = sigma/2 (Phi^-1(psi_A) - Phi^-1(psi_B)) with psi clamped; psi_B the best class other than A."""
    p = psi.clamp(*psi_clamp)
    p_a = p.gather(1, anchor.view(-1, 1)).squeeze(1)
    p_b = p.scatter(1, anchor.view(-1, 1), -1.0).max(1).values
    return sigma / 2 * (torch.special.ndtri(p_a) - torch.special.ndtri(p_b))


def released_gap(psi: torch.Tensor, psi_clamp: tuple[float, float]) -> torch.Tensor:
    """The released code's unanchored gap ``|Phi^-1(p_(1)) - Phi^-1(p_(2))|`` of the two largest entries of
    ``psi`` (B, C) clamped to ``psi_clamp``: never negative, whatever the sample's label or prediction."""
    top2 = psi.clamp(*psi_clamp).topk(2, dim=1).values
    return (torch.special.ndtri(top2[:, 0]) - torch.special.ndtri(top2[:, 1])).abs()


def optimise_sigma(
    model: torch.nn.Module,
    x: torch.Tensor,
    anchor: torch.Tensor | None,
    sigma0: float,
    cfg: SigmaConfig,
    *,
    seed: int,
    progress: Callable[[int], None] | None = None,
    precision: str = "float32",
) -> dict[str, torch.Tensor]:
    """Optimise one sigma per sample of ``x`` (N, C, H, W) for the fixed ``model``.

    ``anchor``: class A per sample (labels); ``None`` -> the model's smoothed prediction at ``sigma0``.
    Returns ``sigma`` (N,), ``anchor`` (N,), and the history ``sigma_history`` / ``radius_history``
    of shape (K + 1, N) (row 0: before the first step; the radius is the objective's estimate).
    """
    positive("sigma0", sigma0)
    if not cfg.sigma_min <= sigma0 <= cfg.sigma_max:
        raise ConfigError(
            f"parameter 'sigma0' = {sigma0} is invalid: must lie in [cfg.sigma_min, cfg.sigma_max] = "
            f"[{cfg.sigma_min}, {cfg.sigma_max}]"
        )
    device = next(model.parameters()).device
    model = copy.deepcopy(model).eval()  # never change the caller's model (flags, memory format)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    n = x.shape[0]
    if anchor is not None and anchor.shape != (n,):
        raise ConfigError(f"mismatched shapes: images {tuple(x.shape)} but anchors {tuple(anchor.shape)}")
    gen = torch.Generator().manual_seed(int(seed))
    sig_hist = torch.empty(cfg.steps + 1, n)
    rad_hist = torch.empty(cfg.steps + 1, n)
    anchors = torch.empty(n, dtype=torch.int64)
    starts = list(range(0, n, cfg.batch_size))

    def batch_noise(start: int) -> list[torch.Tensor]:
        """The batch's draws, in the generator's order: [anchor draws,] then one set per step."""
        shape = tuple(x[start : start + cfg.batch_size].shape)
        k = 1 if cfg.rule == "released" else cfg.draws
        head = [torch.randn((cfg.draws, *shape), generator=gen)] if anchor is None else []
        return head + [torch.randn((k, *shape), generator=gen) for _ in range(cfg.steps + 1)]

    def run(start: int, eps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xb = x[start : start + cfg.batch_size].to(device)
        ab = None if anchor is None else anchor[start : start + xb.shape[0]].to(device)
        return _optimise_batch(model, xb, ab, eps, sigma0, cfg, precision)

    # T batches at once on CPU, one torch thread each; the noise is drawn here, in order (module docstring)
    batches = ((start, batch_noise(start)) for start in starts)
    for start, (ab, sh, rh) in zip(starts, one_thread_map(lambda a: run(*a), batches, device), strict=True):
        b = ab.shape[0]
        anchors[start : start + b] = ab
        sig_hist[:, start : start + b] = sh
        rad_hist[:, start : start + b] = rh
        if progress:
            progress(b)
    return {
        "sigma": sig_hist[-1].clone(),
        "anchor": anchors,
        "sigma_history": sig_hist,
        "radius_history": rad_hist,
    }


def _optimise_batch(
    model: torch.nn.Module,
    xb: torch.Tensor,
    ab: torch.Tensor | None,
    eps: list[torch.Tensor],
    sigma0: float,
    cfg: SigmaConfig,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K steps for one batch ``xb`` with the draws ``eps`` (:func:`optimise_sigma`'s ``batch_noise``):
    the anchors (b,) and the sigma / radius histories (K + 1, b), on the CPU."""
    device, b = xb.device, xb.shape[0]
    draws = iter(eps)
    sig = torch.full((b,), float(sigma0), device=device)
    if ab is None:
        with torch.no_grad():
            ab = smoothed_psi(model, xb, sig, next(draws).to(device), precision).argmax(1)
    sig_hist = torch.empty(cfg.steps + 1, b)
    rad_hist = torch.empty(cfg.steps + 1, b)
    for step in range(cfg.steps + 1):
        e = next(draws).to(device)
        if cfg.rule == "released":  # one draw, prefactor only, unanchored gap, no clip
            with torch.no_grad():
                gap = released_gap(smoothed_psi(model, xb, sig, e, precision), cfg.psi_clamp)
            sig_hist[step] = sig.cpu()
            rad_hist[step] = (sig / 2 * gap).cpu()
            if step < cfg.steps:  # d ReLU(sigma/2 * gap) / d sigma = gap/2 (0 where gap = 0)
                sig = sig + cfg.lr * gap / 2
            continue
        s = sig.clone().requires_grad_(True)
        if cfg.gradient == "reparam":
            r = radius_from_psi(smoothed_psi(model, xb, s, e, precision), ab, s, cfg.psi_clamp)
        else:
            with torch.no_grad():
                psi = smoothed_psi(model, xb, s, e, precision)
            r = radius_from_psi(psi, ab, s, cfg.psi_clamp)
        sig_hist[step] = sig.cpu()
        rad_hist[step] = r.detach().cpu()
        if step == cfg.steps:
            break
        (grad,) = torch.autograd.grad(torch.relu(r).sum(), s)
        sig = (sig + cfg.lr * grad).clamp(cfg.sigma_min, cfg.sigma_max).detach()
    return ab.cpu(), sig_hist, rad_hist


def optimise_splits(
    model: torch.nn.Module,
    sets: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
    sigma0: float,
    cfg: SigmaConfig,
    *,
    seed: int,
    progress: Callable[[int], None] | None = None,
    precision: str = "float32",
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """:func:`optimise_sigma` on each named set ``{split: (x, anchor or None)}`` with seed ``seed + i``.

    Returns the sigma per split and, per split, a history record (anchor, final sigma, the objective's radius
    estimate before and after) for the report.
    """
    sigmas, history = {}, []
    for i, (split, (x, anchor)) in enumerate(sets.items()):
        res = optimise_sigma(
            model, x, anchor, sigma0, cfg, seed=seed + i, progress=progress, precision=precision
        )
        sigmas[split] = res["sigma"]
        history.append(
            {
                "split": split,
                "anchor": res["anchor"],
                "sigma": res["sigma"],
                "radius_estimate_initial": res["radius_history"][0],
                "radius_estimate_final": res["radius_history"][-1],
            }
        )
    return sigmas, history
