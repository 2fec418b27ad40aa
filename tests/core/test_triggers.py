"""certssb.core.triggers: trigger positions and values, realised norms (closed forms), clamping,
bad options."""

from __future__ import annotations

import math

import pytest
import torch

from certssb.core.triggers import ADDITIVE_TRIGGERS, apply_trigger, trigger_perturbation
from certssb.core.validation import ConfigError

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)


def _nonzero_pixels(p: torch.Tensor) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in idx) for idx in torch.nonzero(p)}


def test_onepixel_positions_and_values():
    p = trigger_perturbation("onepixel", MNIST, 1.0)
    assert p.shape == MNIST and p.dtype == torch.float32
    assert _nonzero_pixels(p) == {(0, 23, 23)}
    assert p[0, 23, 23].item() == pytest.approx(1.0)
    q = trigger_perturbation("onepixel", CIFAR, 0.6)
    assert _nonzero_pixels(q) == {(c, 15, 15) for c in range(3)}
    assert torch.allclose(q[:, 15, 15], torch.full((3,), 0.6 / math.sqrt(3)))
    # documented generalisation: (H-5, W-5) for other sizes
    r = trigger_perturbation("onepixel", (2, 20, 16), 1.0)
    assert _nonzero_pixels(r) == {(0, 15, 11), (1, 15, 11)}


def test_fourpixel_positions_and_values():
    p = trigger_perturbation("fourpixel", MNIST, 1.0)
    assert _nonzero_pixels(p) == {(0, 18, 20), (0, 19, 19), (0, 20, 18), (0, 20, 20)}
    assert torch.allclose(p[p != 0], torch.full((4,), 0.5))
    q = trigger_perturbation("fourpixel", CIFAR, 1.0)
    expected = {(c, r, s) for c in range(3) for r, s in ((14, 16), (15, 15), (16, 14), (16, 16))}
    assert _nonzero_pixels(q) == expected
    assert torch.allclose(q[q != 0], torch.full((12,), 1 / math.sqrt(12)))
    # small images: the pattern is clipped inside and keeps four distinct pixels
    small = trigger_perturbation("fourpixel", (1, 5, 5), 1.0)
    assert len(_nonzero_pixels(small)) == 4
    assert small.norm().item() == pytest.approx(1.0, abs=1e-6)


def test_blending_pattern_norm_and_seed():
    a = trigger_perturbation("blending", MNIST, 1.3, pattern_seed=7)
    b = trigger_perturbation("blending", MNIST, 1.3, pattern_seed=7)
    c = trigger_perturbation("blending", MNIST, 1.3, pattern_seed=8)
    assert a.norm().item() == pytest.approx(1.3, abs=1e-5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a != 0).float().mean() > 0.99  # dense, Gaussian pattern
    assert trigger_perturbation("badnets", MNIST, 1.0) is None
    assert trigger_perturbation("blended_injection", MNIST, 1.0) is None


@pytest.mark.parametrize("shape", [MNIST, CIFAR])
@pytest.mark.parametrize("trigger", ADDITIVE_TRIGGERS)
@pytest.mark.parametrize("delta", [0.3, 1.0])
def test_additive_realised_norm_equals_delta_without_clamping(trigger, shape, delta):
    # pixel triggers on a black image (values reach at most delta <= 1); blending on mid-grey
    # (its entries are far below 0.5 in magnitude)
    base = 0.5 if trigger == "blending" else 0.0
    x = torch.full((3, *shape), base)
    p = trigger_perturbation(trigger, shape, delta)
    assert ((x + p) >= 0).all() and ((x + p) <= 1).all()  # so no clamping can happen here
    x_trig, norms = apply_trigger(x, trigger, delta)
    assert norms.shape == (3,)
    assert torch.allclose(norms, torch.full((3,), delta), atol=1e-5)
    assert torch.allclose(x_trig - x, p.expand_as(x), atol=1e-6)
    assert torch.equal(x, torch.full((3, *shape), base))  # not modified in place


@pytest.mark.parametrize("shape", [MNIST, CIFAR])
@pytest.mark.parametrize("trigger", ADDITIVE_TRIGGERS)
def test_additive_realised_norm_is_lower_when_clamped(trigger, shape):
    x = torch.ones((2, *shape))
    x_trig, norms = apply_trigger(x, trigger, 1.0)
    assert x_trig.max() <= 1.0 and x_trig.min() >= 0.0
    assert (norms < 1.0 - 1e-3).all()
    expected = (x_trig - x).flatten(1).norm(dim=1)
    assert torch.allclose(norms, expected, atol=1e-6)
    if trigger != "blending":
        assert torch.equal(norms, torch.zeros(2))  # all mass added to saturated pixels


def test_badnets_square_and_norm():
    x = torch.zeros((2, *MNIST))
    x_trig, norms = apply_trigger(x, "badnets", 1.0, badnets_size=3)
    changed = _nonzero_pixels(x_trig[0])
    assert changed == {(0, r, c) for r in (24, 25, 26) for c in (24, 25, 26)}
    assert (x_trig[0, 0, 24:27, 24:27] == 1.0).all()
    assert torch.allclose(norms, torch.full((2,), 3.0))  # sqrt(9 * 1^2)
    xc = torch.full((1, *CIFAR), 0.5)
    yc, nc = apply_trigger(xc, "badnets", 0.0, badnets_size=4)
    assert (yc[0, :, 27:31, 27:31] == 1.0).all()
    assert nc.item() == pytest.approx(math.sqrt(3 * 16 * 0.25), abs=1e-5)
    with pytest.raises(ConfigError, match="parameter 'badnets_size' = 28"):
        apply_trigger(x, "badnets", 1.0, badnets_size=28)


def test_blended_injection_mixes_with_fixed_pattern():
    x = torch.rand((4, *CIFAR), generator=torch.Generator().manual_seed(3))
    a1, n1 = apply_trigger(x, "blended_injection", 1.0, blend_alpha=0.25, pattern_seed=5)
    a2, _ = apply_trigger(x, "blended_injection", 1.0, blend_alpha=0.25, pattern_seed=5)
    a3, _ = apply_trigger(x, "blended_injection", 1.0, blend_alpha=0.25, pattern_seed=6)
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    pattern = (a1 - 0.75 * x) / 0.25  # the same image for every sample, in [0, 1]
    assert torch.allclose(pattern, pattern[0].expand_as(pattern), atol=1e-5)
    assert pattern.min() >= -1e-5 and pattern.max() <= 1 + 1e-5
    assert torch.allclose(n1, (a1 - x).flatten(1).norm(dim=1), atol=1e-6)
    same, zero = apply_trigger(x, "blended_injection", 1.0, blend_alpha=0.0)
    assert torch.equal(same, x) and torch.equal(zero, torch.zeros(4))


def test_apply_trigger_bad_options():
    x = torch.zeros((1, *MNIST))
    with pytest.raises(ConfigError, match="parameter 'trigger' = 'square'"):
        apply_trigger(x, "square", 1.0)
    with pytest.raises(ConfigError, match="parameter 'delta' = -1.0"):
        apply_trigger(x, "onepixel", -1.0)
    with pytest.raises(ConfigError, match="parameter 'blend_alpha' = 1.5"):
        apply_trigger(x, "blended_injection", 1.0, blend_alpha=1.5)
    with pytest.raises(ConfigError, match="parameter 'colour' = 1"):
        apply_trigger(x, "onepixel", 1.0, colour=1)
