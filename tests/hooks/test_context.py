"""The project's context: its parameter check runs before Kedro types the blocks, in one line."""

from __future__ import annotations


def test_kedros_parameter_error_becomes_the_projects_one_line():
    """Should Kedro's own validation refuse a block first, the user still reads the project's one line."""
    from kedro.validation import ParameterValidationError

    from certssb.hooks.context import one_line

    raw = {"noise": {"sigma": -1, "num_models": 50, "num_draws": 1, "materialise": 0}}
    kedro_error = ParameterValidationError("Parameter validation failed:\n- Parameter 'noise': ...")
    err = one_line(kedro_error, raw)
    assert str(err).startswith("parameter 'noise.sigma' = -1 is invalid: must be a number in (0, inf)")
    assert "\n" not in str(err)
    assert str(one_line(kedro_error, {})) == "Parameter 'noise': ..."  # none of ours refuses: Kedro's
