"""Nothing mixes silently: runs whose artifacts come from different configurations stop with ONE lineage line
(a ConfigError, which ``kedro run`` prints as ``Error: ...`` with exit status 2) before any node writes.

The sequences are those of issue 22, on the tiny parameters of tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from certssb.core.validation import ConfigError

pytestmark = pytest.mark.slow
LINEAGE = r"was made from another .* \(fingerprints \S+ vs \S+\): rerun `kedro run --pipelines=\w+`"


def _files(project) -> set[Path]:
    return {p for p in (project.path / "data").rglob("*") if p.is_file()}


def _refused(project, pipelines, params, match=LINEAGE, **kwargs) -> str:
    """Run and expect one lineage line; nothing new under data/."""
    before = _files(project)
    with pytest.raises(ConfigError, match=match) as err:
        project.run(pipelines, params=params, **kwargs)
    assert "\n" not in str(err.value)
    assert _files(project) == before, "a refused run wrote files"
    return str(err.value)


def test_evaluation_refuses_an_ensemble_of_another_poison_rate(project):
    project.run()  # the default run, poison rate 2 %
    project.run(["data_engineering"], params={"attack": {"poison_rate": 0.05}})
    msg = _refused(project, ["evaluation"], {"attack": {"poison_rate": 0.05}})
    assert "poisoned_train" in msg or "noise_plan" in msg


def test_a_sigma_of_another_noise_plan_is_refused_in_training_and_evaluation(project):
    project.run()  # sigma_0 = 0.25
    project.run(["data_engineering"], params={"noise": {"sigma": 0.5}})
    msg = _refused(project, None, {"noise": {"sigma": 0.5}}, node_names=["uniform.train_ensemble"])
    assert msg.startswith("uniform.sigma was made from another noise_plan")
    _refused(project, ["evaluation"], {"noise": {"sigma": 0.5}})


def test_evaluation_refuses_parameters_that_are_not_the_noise_plans(project):
    project.run()  # sigma_0 = 0.25: a run named sigma_0 = 0.5 would be mislabelled
    msg = _refused(project, ["evaluation"], {"noise": {"sigma": 0.5}})
    assert msg.startswith("noise_plan was made from another parameter noise.sigma (fingerprints 0.25 vs 0.5)")


@pytest.mark.parametrize("damage", ["cut", "garbage", "other_run"])
def test_the_audit_refuses_a_damaged_certificate_table(project, damage):
    project.run()
    for method in ("uniform", "cert_ssb"):
        path = project.latest(f"data/07_model_output/{method}/certificates.csv")
        table = pd.read_csv(path)
        if damage == "cut":
            table = table.head(25)
        elif damage == "garbage":
            table["radius"] = table["radius"].astype(object)
            table.loc[3, "radius"] = "0.3x"
        else:
            table["sigma_fingerprint"] = "0123456789abcdef"
        table.to_csv(path, index=False)
    match = {
        "cut": r"certificates has 25 rows \(\d+ clean \+ \d+ triggered\), but its test sets have",
        "garbage": r"certificates column 'radius' must hold numbers",
        "other_run": r"certificates was made from another \w+\.sigma "
        r"\(fingerprints 0123456789abcdef vs",
    }[damage]
    _refused(project, ["audit"], {"audit": {"quick": True, "quick_points": 2}}, match=match)
