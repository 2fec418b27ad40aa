"""modelling pipeline: bad input is refused before anything is written."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"noise": {"sigma": -0.1}}, "noise.sigma"),
        ({"sigma_opt": {"max_decrease": 0.3}}, "sigma_opt.max_decrease"),
        ({"model": {"architecture": "vit"}}, "model.architecture"),
        ({"ensemble": {"backend": "spark"}}, "ensemble.backend"),
        ({"sigma_opt": {"gradient": "finite_difference"}}, "sigma_opt.gradient"),
    ],
)
def test_bad_modelling_parameters(project, params, name):
    project.run(["data_engineering"])
    with pytest.raises(Exception, match=name.replace(".", r"\.")):
        project.run(["modelling"], params=params)
    assert project.versions("data/06_models/pilot_model.pt") == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_refused(project):
    project.run(["data_engineering"])
    with pytest.raises(Exception, match="cuda"):
        project.run(["modelling"], params={"device": "cuda"})


def test_one_method_alone_via_namespace(project):
    project.run(["data_engineering"])
    project.run(["modelling"], node_names=["train_pilot", "train_undefended"])
    project.run(["modelling"], namespaces=["cert_ssb"])
    assert project.versions("data/06_models/cert_ssb/ensemble.pt")
    assert not project.versions("data/06_models/uniform/ensemble.pt")
