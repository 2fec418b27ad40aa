"""certssb.pipeline_registry: the registered pipelines; the default run is exactly data_engineering,
modelling and evaluation; study and attack_strength bring their own download; audit does not train data."""

from __future__ import annotations

from certssb.pipeline_registry import register_pipelines


def test_the_registered_pipelines_and_what_the_default_run_is():
    p = register_pipelines()
    assert set(p) == {
        "__default__",
        "data_engineering",
        "modelling",
        "evaluation",
        "study",
        "audit",
        "attack_strength",
    }
    three = {n.name for k in ("data_engineering", "modelling", "evaluation") for n in p[k].nodes}
    assert {n.name for n in p["__default__"].nodes} == three
    for extra in ("study", "audit", "attack_strength"):  # never part of the default run
        only_extra = {n.name for n in p[extra].nodes} - {n.name for n in p["data_engineering"].nodes}
        assert only_extra and not only_extra & three, extra
    for name in ("study", "attack_strength"):  # they fetch the dataset themselves, and only that of DE
        de = {n.name for n in p[name].nodes} & {n.name for n in p["data_engineering"].nodes}
        assert de == {"download"}, name
    assert not {n.name for n in p["audit"].nodes} & {n.name for n in p["data_engineering"].nodes}
