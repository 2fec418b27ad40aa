"""evaluation pipeline: bad parameters are refused with the parameter's name."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"evaluation": {"alpha": 1.5}}, "evaluation.alpha"),
        ({"evaluation": {"alpha": 0.0}}, "evaluation.alpha"),
        ({"evaluation": {"bound": "bernstein"}}, "evaluation.bound"),
        ({"evaluation": {"aggregation": "median"}}, "evaluation.aggregation"),
        ({"evaluation": {"radii": [0.5, 0.25]}}, "evaluation.radii"),
        ({"evaluation": {"radii": [-0.25, 0.5]}}, "evaluation.radii"),
        ({"evaluation": {"aggregation": "soft"}}, "evaluation.aggregation"),  # CP needs hard votes
        ({"evaluation": {"n0": 4}}, "evaluation.n0"),  # leaves no estimation model of the 4
        ({"evaluation": {"storage_order_seed": -1}}, "evaluation.storage_order_seed"),
        ({"evaluation": {"degenerate_margin": 2.0}}, "evaluation.degenerate_margin"),
        ({"evaluation": {"selection": "best"}}, "evaluation.selection"),
        ({"evaluation": {"backend": "spark"}}, "evaluation.backend"),
        ({"evaluation": {"storage_rule": "align"}}, "evaluation.storage_rule"),
        ({"noise": {"num_draws": 3}}, "noise.num_draws"),  # K > 1 needs bound hoeffding
    ],
)
def test_bad_evaluation_parameters(project, params, name):
    with pytest.raises(Exception, match=name.replace(".", r"\.")):
        project.run(["evaluation"], params=params)
