"""Tests for certssb.core.models: shapes, seeding, RNG isolation, size limits, no buffers, validation."""

from __future__ import annotations

import pytest
import torch

from certssb.core.models import _MIN_SIZE, ARCHITECTURES, build_model, check_input_shape
from certssb.core.validation import ConfigError


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("in_shape", [(1, 28, 28), (3, 32, 32)])
def test_builds_and_outputs_batch_by_classes(arch, in_shape):
    model = build_model(arch, in_shape, 10, seed=0)
    x = torch.rand(3, *in_shape, generator=torch.Generator().manual_seed(1))
    for mode in (model.train, model.eval):
        mode()
        out = model(x)
        assert out.shape == (3, 10)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_num_classes_sets_output_width(arch):
    model = build_model(arch, (1, 28, 28), 2, seed=0)
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 2)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_smallest_allowed_size_builds_and_one_less_is_refused(arch):
    """_MIN_SIZE is exactly the smallest square input each architecture can run on."""
    s = _MIN_SIZE[arch]
    model = build_model(arch, (1, s, s), 3, seed=0)
    assert model(torch.rand(2, 1, s, s)).shape == (2, 3)
    if s > 1:
        with pytest.raises(ConfigError, match="too small"):
            build_model(arch, (1, s - 1, s - 1), 3, seed=0)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_same_seed_same_weights_different_seed_different(arch):
    a = build_model(arch, (1, 28, 28), 10, seed=5).state_dict()
    b = build_model(arch, (1, 28, 28), 10, seed=5).state_dict()
    c = build_model(arch, (1, 28, 28), 10, seed=6).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every weight tensor (those initialised randomly) differs for another seed
    weights = [k for k in a if k.endswith("weight") and a[k].ndim > 1]
    assert weights
    assert all(not torch.equal(a[k], c[k]) for k in weights)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_building_does_not_touch_the_global_rng(arch):
    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    build_model(arch, (1, 28, 28), 10, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    # and the next global draw is the one it would have been without building
    drawn = torch.rand(5)
    torch.manual_seed(123)
    assert torch.equal(drawn, torch.rand(5))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_no_buffers_so_vmap_works(arch):
    model = build_model(arch, (3, 32, 32), 10, seed=0)
    assert list(model.buffers()) == []
    # and the module runs under functional_call + vmap with stacked parameters
    from torch.func import functional_call, stack_module_state, vmap

    models = [build_model(arch, (1, 16, 16), 4, seed=s) for s in (0, 1)]
    params, buffers = stack_module_state(models)
    assert buffers == {}
    base = build_model(arch, (1, 16, 16), 4, seed=0).to("meta")
    x = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    out = vmap(lambda p, xb: functional_call(base, p, (xb,)))(params, x)
    with torch.no_grad():
        want = torch.stack([m.eval()(x[i]) for i, m in enumerate(models)])
    torch.testing.assert_close(out.detach(), want, atol=1e-5, rtol=1e-5)


def test_unknown_architecture():
    with pytest.raises(ConfigError, match="parameter 'architecture' = 'resnet50'"):
        build_model("resnet50", (1, 28, 28), 10)


@pytest.mark.parametrize("in_shape", [(1, 28, 27), (3, 32, 16)])
def test_non_square_input_refused(in_shape):
    with pytest.raises(ConfigError, match="square"):
        build_model("small_cnn", in_shape, 10)


@pytest.mark.parametrize("in_shape", [(28, 28), (1, 1, 28, 28)])
def test_input_shape_must_be_chw(in_shape):
    with pytest.raises(ConfigError, match=r"\(C, H, W\)"):
        build_model("mlp", in_shape, 10)


@pytest.mark.parametrize("arch, size", [("small_cnn", 3), ("mnist_cnn", 8), ("preact_resnet", 2)])
def test_too_small_input_refused(arch, size):
    with pytest.raises(ConfigError, match=f"too small for '{arch}'"):
        build_model(arch, (1, size, size), 10)


@pytest.mark.parametrize("num_classes", [1, 0, -3])
def test_num_classes_below_two_refused(num_classes):
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("mlp", (1, 8, 8), num_classes)


def test_check_input_shape():
    check_input_shape("mlp", (1, 8, 8), torch.Size([1, 8, 8]), "the test set")  # no error
    with pytest.raises(ConfigError, match=r"the test set has per-sample shape \(1, 12, 12\).*\(1, 8, 8\)"):
        check_input_shape("mlp", (1, 8, 8), (1, 12, 12), "the test set")
    with pytest.raises(ConfigError):
        check_input_shape("small_cnn", (1, 8, 8), (3, 8, 8), "x")
