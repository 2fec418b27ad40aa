"""The certifiers a run builds: one `methods:` parameter, read from conf/ at registration (issue 19)."""

from __future__ import annotations

import pytest

from certssb.config import METHODS
from certssb.pipelines import audit, evaluation, modelling, study
from certssb.pipelines.registered import configured_methods
from certssb.pipelines.study.grid import Cell


def _namespaces(p) -> set[str]:
    return {n.namespace.split(".")[0] for n in p.nodes if n.namespace}


def test_the_pipelines_build_one_namespace_per_selected_certifier():
    assert _namespaces(modelling.create_pipeline(METHODS)) == set(METHODS)
    assert _namespaces(evaluation.create_pipeline(("uniform", "cohen"))) == {"uniform", "cohen"}
    assert _namespaces(audit.create_pipeline(METHODS)) == {"uniform", "cert_ssb"}  # no evasion-cert audit
    ev = evaluation.create_pipeline(METHODS)
    compare = next(n for n in ev.nodes if n.name == "compare_methods")
    assert [i for i in compare.inputs if i.endswith(".metrics")] == [f"{m}.metrics" for m in METHODS]
    # cohen reads its own block (epochs, n0, num_draws), not the ensemble's
    cohen_params = {
        i
        for n in modelling.create_pipeline(("cohen",)).nodes + ev.nodes
        if n.namespace == "cohen"
        for i in n.inputs
        if i.startswith("params:")
    }
    assert {"params:cohen.epochs", "params:cohen.n0", "params:cohen.num_draws"} <= cohen_params
    assert "params:ensemble" not in cohen_params
    grid = [Cell("abstain", 0.25, 0.01)]
    st = study.create_pipeline(grid, methods=METHODS)
    summary = next(n for n in st.nodes if n.name == "summarise_study")
    assert {i.split(".")[2] for i in summary.inputs if i.startswith("study.")} == set(METHODS)


def test_methods_come_from_conf_and_a_runtime_change_is_refused(project):
    assert configured_methods(project.path) == METHODS
    (project.path / "conf" / "local" / "parameters.yml").write_text("methods: [uniform, cert_ssb]\n")
    assert configured_methods(project.path) == ("uniform", "cert_ssb")
    with pytest.raises(
        Exception,
        match=r"parameter 'methods' = \['uniform'\] differs from the certifiers "
        r"the pipelines were registered with \(\['uniform', 'cert_ssb'\]",
    ):
        project.run(["data_engineering"], params={"methods": ["uniform"]})
