"""Backdoor triggers: a name -> function registry, and the realised norms (docs/methods.md#backdoor-attacks).

Images are float32 tensors ``(N, C, H, W)`` in [0, 1]. Every trigger returns the triggered images
clamped to [0, 1] and the *realised* per-sample norms ``||x_trig - x||_2``, never only the nominal delta.

Additive, l2-bounded triggers (inside the certified threat model when labels are kept): a fixed pattern
``p`` with ``||p||_2 = delta`` is added, ``x <- clamp(x + p, 0, 1)``:

- ``onepixel``  -- one spatial location, every channel ``+= delta/sqrt(C)``. MNIST (1x28x28): pixel
  (23, 23) ``+= delta``; CIFAR (3x32x32): pixel (15, 15) of each channel ``+= delta/sqrt(3)``. Other
  sizes: a 32x32 image uses (15, 15); any other HxW uses (H-5, W-5), clipped into the image.
- ``fourpixel`` -- four locations around a centre ``(r, c)``: ``(r-1, c+1), (r, c), (r+1, c-1),
  (r+1, c+1)``, every channel of each ``+= delta/sqrt(4C)``. MNIST: centre (19, 19); CIFAR: centre
  (15, 15). Other sizes: a 32x32 image uses centre (15, 15); any other HxW uses (H-9, W-9), clipped to
  [1, H-2] x [1, W-2] (needs H, W >= 3).
- ``blending``  -- RAB / Cert-SSB's l2 blending trigger: a fixed standard-Gaussian pattern of shape
  (C, H, W) drawn from a CPU ``torch.Generator`` seeded with ``pattern_seed``, rescaled to
  ``||p||_2 = delta``, **added**. RAB and Cert-SSB's released code do not clamp the blended image to
  [0, 1]; we clamp (images stay images) and report the realised norms, which can be below delta.

Practical triggers (not norm-bounded by design; ``delta`` is ignored, the realised norm is reported):

- ``badnets`` -- a white ``badnets_size x badnets_size`` square in the bottom-right corner with a
  1-pixel margin (rows and columns ``[H-1-s, H-1)``), every channel set to 1.0.
- ``blended_injection`` -- Chen et al.'s blended injection ``x <- (1 - a) x + a pattern``, ``pattern``
  a fixed uniform-[0, 1] image of shape (C, H, W) from ``pattern_seed``, ``a = blend_alpha``. (Not the
  additive ``blending`` trigger above; it was called ``blend`` before.)

``TRIGGER_FUNCTIONS`` maps each name to ``fn(x, delta, **kw) -> x_triggered`` (unclamped for the
additive ones); :func:`apply_trigger` dispatches through it, clamps and measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from certssb.core.validation import choice, fail, number, positive

__all__ = [
    "TRIGGERS",
    "ADDITIVE_TRIGGERS",
    "TRIGGER_DEFAULTS",
    "TRIGGER_FUNCTIONS",
    "trigger_options",
    "trigger_perturbation",
    "apply_trigger",
    "realised_norms",
]

TRIGGER_DEFAULTS: dict[str, Any] = {"pattern_seed": 1234, "badnets_size": 3, "blend_alpha": 0.2}
"""The keyword arguments a trigger accepts (``**trigger_kwargs``) and their defaults."""


def trigger_options(block: Any) -> dict[str, Any]:
    """The trigger options (names of :data:`TRIGGER_DEFAULTS`) an attack's settings carry, read as
    attributes (e.g. ``certssb.config.AttackBlock``)."""
    return {k: getattr(block, k) for k in TRIGGER_DEFAULTS if getattr(block, k, None) is not None}


def check_trigger_kwargs(trigger_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Merge ``trigger_kwargs`` into the defaults; unknown names or bad values raise ConfigError."""
    for key in trigger_kwargs:
        if key not in TRIGGER_DEFAULTS:
            fail(
                key,
                trigger_kwargs[key],
                "unknown trigger option; allowed options are " + ", ".join(TRIGGER_DEFAULTS),
            )
    kw = {**TRIGGER_DEFAULTS, **trigger_kwargs}
    number("pattern_seed", kw["pattern_seed"], integer=True)
    positive("badnets_size", kw["badnets_size"], integer=True)
    number("blend_alpha", kw["blend_alpha"], low=0, high=1)
    return kw


def check_images(name: str, x: Any) -> torch.Tensor:
    """``x`` must be a floating tensor of shape (N, C, H, W)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        fail(name, got, "must be a floating-point tensor of shape (N, C, H, W) in [0, 1]")
    return x


def _clip(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def _onepixel_pattern(c: int, h: int, w: int, delta: float, **_: Any) -> torch.Tensor:
    p = torch.zeros((c, h, w), dtype=torch.float64)
    r, q = (15, 15) if (h, w) == (32, 32) else (_clip(h - 5, 0, h - 1), _clip(w - 5, 0, w - 1))
    p[:, r, q] = delta / math.sqrt(c)
    return p


def _fourpixel_pattern(c: int, h: int, w: int, delta: float, **_: Any) -> torch.Tensor:
    if h < 3 or w < 3:
        fail("shape", (c, h, w), "the fourpixel trigger needs images of at least 3×3 pixels")
    p = torch.zeros((c, h, w), dtype=torch.float64)
    r, q = (15, 15) if (h, w) == (32, 32) else (_clip(h - 9, 1, h - 2), _clip(w - 9, 1, w - 2))
    for dr, dq in ((-1, 1), (0, 0), (1, -1), (1, 1)):
        p[:, r + dr, q + dq] = delta / math.sqrt(4 * c)
    return p


def _blending_pattern(c: int, h: int, w: int, delta: float, *, pattern_seed: int, **_: Any) -> torch.Tensor:
    z = torch.randn((c, h, w), generator=torch.Generator().manual_seed(pattern_seed), dtype=torch.float64)
    return z * (delta / z.norm())


_PATTERNS: dict[str, Callable[..., torch.Tensor]] = {
    "onepixel": _onepixel_pattern,
    "fourpixel": _fourpixel_pattern,
    "blending": _blending_pattern,
}


def _additive(name: str) -> Callable[..., torch.Tensor]:
    def apply(x: torch.Tensor, delta: float, **kw: Any) -> torch.Tensor:
        _, c, h, w = x.shape
        p = _PATTERNS[name](c, h, w, delta, **kw)
        return x + p.to(device=x.device, dtype=x.dtype)

    apply.__name__ = f"{name}_trigger"
    apply.__doc__ = f"Add the fixed ``{name}`` pattern of l2 norm delta (see the module docstring)."
    return apply


def badnets_trigger(x: torch.Tensor, delta: float, *, badnets_size: int, **_: Any) -> torch.Tensor:
    """The BadNets square: rows/columns ``[H-1-s, H-1)`` set to 1.0 in every channel; delta is ignored."""
    _, _, h, w = x.shape
    s = badnets_size
    if s + 1 > min(h, w):
        fail(
            "badnets_size",
            s,
            f"the square plus its 1-pixel margin must fit in a {h}×{w} image (at most {min(h, w) - 1})",
        )
    out = x.clone()
    out[:, :, h - 1 - s : h - 1, w - 1 - s : w - 1] = 1.0
    return out


def blended_injection_trigger(
    x: torch.Tensor, delta: float, *, blend_alpha: float, pattern_seed: int, **_: Any
) -> torch.Tensor:
    """Chen et al.'s blended injection ``(1 - a) x + a pattern`` (uniform pattern from ``pattern_seed``);
    delta is ignored."""
    _, c, h, w = x.shape
    g = torch.Generator().manual_seed(pattern_seed)
    pattern = torch.rand((c, h, w), generator=g, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    return (1.0 - float(blend_alpha)) * x + float(blend_alpha) * pattern


TRIGGER_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "onepixel": _additive("onepixel"),
    "fourpixel": _additive("fourpixel"),
    "blending": _additive("blending"),
    "badnets": badnets_trigger,
    "blended_injection": blended_injection_trigger,
}
"""Registry: trigger name -> ``fn(x, delta, **trigger_kwargs)`` returning the (unclamped) triggered images."""

TRIGGERS: tuple[str, ...] = tuple(TRIGGER_FUNCTIONS)
"""All trigger names; each is also a backdoor attack name."""

ADDITIVE_TRIGGERS: tuple[str, ...] = tuple(_PATTERNS)
"""The triggers that are a fixed additive pattern with l2 norm exactly delta (before clamping)."""


def trigger_perturbation(
    trigger: str,
    shape: tuple[int, int, int],
    delta: float,
    *,
    pattern_seed: int = 1234,
    badnets_size: int = 3,
    blend_alpha: float = 0.2,
) -> torch.Tensor | None:
    """The additive pattern ``p`` (float32, shape ``(C, H, W)``) of an l2-bounded trigger,
    ``||p||_2 = delta``.

    ``badnets`` and ``blended_injection`` are not a fixed additive pattern (they overwrite / mix pixels),
    so for them this returns ``None``. ``badnets_size`` and ``blend_alpha`` are accepted (and ignored) so
    that one ``**trigger_kwargs`` fits every function.
    """
    choice("trigger", trigger, TRIGGERS)
    number("delta", delta, low=0)
    check_trigger_kwargs(
        {"pattern_seed": pattern_seed, "badnets_size": badnets_size, "blend_alpha": blend_alpha}
    )
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
    ):
        fail("shape", shape, "must be (C, H, W) with positive integers")
    if trigger not in ADDITIVE_TRIGGERS:
        return None
    c, h, w = (int(s) for s in shape)
    return _PATTERNS[trigger](c, h, w, delta, pattern_seed=pattern_seed).to(torch.float32)


def realised_norms(x_trig: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||x_trig - x||_2`` (computed in float64, returned as float32, shape (N,))."""
    return (x_trig.double() - x.double()).flatten(1).norm(dim=1).to(torch.float32)


def apply_trigger(
    x: torch.Tensor, trigger: str, delta: float, **trigger_kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``trigger`` (a name of ``TRIGGER_FUNCTIONS``) to every image of ``x`` (N, C, H, W) in [0, 1];
    ``x`` is never modified.

    Returns ``(x_triggered, norms)``: the triggered images clamped to [0, 1] and the realised per-sample
    l2 norms ``||x_triggered - x||_2`` (N,), which are <= delta for the additive triggers and lower than
    delta where clamping bites. ``trigger_kwargs``: ``pattern_seed`` (1234), ``badnets_size`` (3),
    ``blend_alpha`` (0.2).
    """
    check_images("x", x)
    choice("trigger", trigger, TRIGGERS)
    number("delta", delta, low=0)
    kw = check_trigger_kwargs(trigger_kwargs)
    x_trig = TRIGGER_FUNCTIONS[trigger](x, delta, **kw).clamp(0.0, 1.0)
    return x_trig, realised_norms(x_trig, x)
