"""certssb.core.validation: the one error form (the parameter's name, its value, what is allowed) and the
interval, choice and radii checks, at their boundaries."""

from __future__ import annotations

import math

import pytest

from certssb.core.validation import ConfigError, choice, fail, number, positive, sorted_radii


def test_the_error_form_names_the_parameter_the_value_and_what_is_allowed():
    with pytest.raises(ConfigError) as err:
        fail("noise.sigma", -0.5, "must be > 0")
    assert str(err.value) == "parameter 'noise.sigma' = -0.5 is invalid: must be > 0"
    assert isinstance(err.value, ValueError)  # callers that catch ValueError catch it too


def test_choice_returns_the_value_or_lists_the_allowed_ones():
    assert choice("data.dataset", "mnist", ("mnist", "cifar10")) == "mnist"
    allowed = (v for v in ("mnist", "cifar10"))  # any iterable, read once
    with pytest.raises(ConfigError, match=r"'data.dataset' = 'svhn'.*allowed values are 'mnist', 'cifar10'$"):
        choice("data.dataset", "svhn", allowed)


@pytest.mark.parametrize(
    "kw, inside, outside",
    [
        (dict(low=0, high=1), [0, 0.5, 1], [-1e-9, 1 + 1e-9]),
        (dict(low=0, high=1, low_open=True), [1e-9, 1], [0]),
        (dict(low=0, high=1, high_open=True), [0, 1 - 1e-9], [1]),
        (dict(low=2), [2, 1e300], [1.999]),
        (dict(high=-1), [-1e300, -1], [-0.5]),
    ],
)
def test_number_accepts_exactly_the_interval(kw, inside, outside):
    for v in inside:
        assert number("x", v, **kw) == v
    for v in outside:
        with pytest.raises(ConfigError, match=r"'x' = .* must be a number in"):
            number("x", v, **kw)


def test_the_interval_is_written_with_its_open_and_closed_ends():
    cases = [
        (dict(low=0, high=1), "[0, 1]"),
        (dict(low=0, high=1, low_open=True, high_open=True), "(0, 1)"),
        (dict(low=0), "[0, inf)"),
        (dict(high=1), "(-inf, 1]"),
        (dict(low=0, low_open=True, integer=True), "an integer in (0, inf)"),
    ]
    for kw, text in cases:
        with pytest.raises(ConfigError) as err:
            number("x", "1", **kw)  # a string is never a number
        assert str(err.value).endswith(text), (kw, str(err.value))


@pytest.mark.parametrize("bad", [True, False, float("nan"), "0.5", None, [1]])
def test_number_refuses_what_is_not_a_real_number(bad):
    with pytest.raises(ConfigError, match="'x'"):
        number("x", bad)


def test_integer_refuses_floats_even_whole_ones():
    assert number("n", 3, integer=True) == 3
    with pytest.raises(ConfigError, match="'n' = 3.0 .*an integer"):
        number("n", 3.0, integer=True)
    with pytest.raises(ConfigError, match="'n' = True"):
        number("n", True, integer=True)


def test_infinity_is_outside_a_bounded_interval():
    with pytest.raises(ConfigError, match="'x' = inf"):
        number("x", math.inf, low=0, high=10)
    with pytest.raises(ConfigError, match="'x' = -inf"):
        number("x", -math.inf, low=-10)


def test_positive_is_strictly_greater_than_zero():
    assert positive("lr", 1e-12) == 1e-12
    assert positive("n", 1, integer=True) == 1
    for bad in (0, -1, 0.0):
        with pytest.raises(ConfigError, match=r"must be a number in \(0, inf\)"):
            positive("lr", bad)
    with pytest.raises(ConfigError, match=r"'n' = 0 .*an integer in \(0, inf\)"):
        positive("n", 0, integer=True)


def test_sorted_radii_are_a_strictly_increasing_list_of_non_negative_floats():
    out = sorted_radii("evaluation.radii", (0, 0.25, 1))
    assert out == [0.0, 0.25, 1.0] and all(type(r) is float for r in out)
    for bad, text in [
        ([], "non-empty list"),
        ("0.5", "non-empty list"),
        (None, "non-empty list"),
        ([0.5, 0.25], "strictly increasing"),
        ([0, 0], "strictly increasing"),
    ]:
        with pytest.raises(ConfigError, match=f"'evaluation.radii' = .*{text}"):
            sorted_radii("evaluation.radii", bad)
    with pytest.raises(ConfigError, match=r"'evaluation.radii\[\]' = -0.1 .*\[0, inf\)"):
        sorted_radii("evaluation.radii", [-0.1, 0.5])


def test_infinity_is_refused_even_where_the_interval_is_unbounded():
    """A learning rate or a sigma of inf is a typo, not a value: the interval's open end is not a number."""
    with pytest.raises(ConfigError, match=r"'lr' = inf .*must be a number in \(0, inf\)"):
        positive("lr", math.inf)
    with pytest.raises(ConfigError, match="'x' = -inf"):
        number("x", -math.inf)
