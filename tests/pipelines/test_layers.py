"""The catalog's kedro-viz layers follow the data along every registered pipeline: a dataset's layer never
comes after the layer of a dataset made from it, in the order raw -> ... -> reporting. kedro-viz draws a
namespace (a certifier, a study cell) collapsed into one node whose inputs precede all its outputs, so the
check walks those edges too; one layer out of order and kedro-viz shows no layers at all ("circular
dependency detected among layers")."""

from __future__ import annotations

from graphlib import TopologicalSorter
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io.catalog_config_resolver import CatalogConfigResolver
from kedro.pipeline import Pipeline

from certssb.pipeline_registry import register_pipelines

ROOT = Path(__file__).resolve().parents[2]
ORDER = (
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
)
IN_MEMORY = {"noise_preview", "mlflow_runs", "poison_metrics"}  # not catalogued in a study cell


def _layers(names: set[str]) -> dict[str, str | None]:
    """The kedro-viz layer of each dataset name (resolving the dataset factories); None: not catalogued or
    catalogued without a layer."""
    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="base")
    resolver = CatalogConfigResolver(loader["catalog"])
    out: dict[str, str | None] = {}
    for name in names:
        conf = resolver.resolve_pattern(name) or {}
        out[name] = ((conf.get("metadata") or {}).get("kedro-viz") or {}).get("layer")
    return out


def _namespaces(pipe: Pipeline) -> set[str]:
    """Every namespace and its parents (``study.abstain_s050.uniform`` -> ``study``, ``study.abstain_s050``,
    ``study.abstain_s050.uniform``): kedro-viz draws each as one node."""
    out = set()
    for parts in (n.namespace.split(".") for n in pipe.nodes if n.namespace):
        out |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    return out


def _children(pipe: Pipeline) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """The graph kedro-viz sorts layers on: dataset -> node -> dataset, and every namespace as one more node
    from its free inputs to its outputs (less the inputs made downstream of it: kedro-viz drops them)."""
    children: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def edge(a: tuple[str, str], b: tuple[str, str]) -> None:
        children.setdefault(a, set()).add(b)
        children.setdefault(b, set())

    for n in pipe.nodes:
        for i in n.inputs:
            edge(("data", i), ("node", n.name))
        for o in n.outputs:
            edge(("node", n.name), ("data", o))
    grouped = {}
    for ns in _namespaces(pipe):
        inside = [n for n in pipe.nodes if n.namespace == ns or (n.namespace or "").startswith(ns + ".")]
        sub, rest = Pipeline(inside), Pipeline([n for n in pipe.nodes if n not in inside])
        grouped[ns] = (sub.inputs(), sub.outputs() | (rest.inputs() & sub.all_outputs()))
    for ns, (ins, outs) in grouped.items():
        for i in ins:
            edge(("data", i), ("ns", ns))
        for o in outs:
            edge(("ns", ns), ("data", o))
    for ns, (ins, _) in grouped.items():
        seen, todo = set(), [("ns", ns)]
        while todo:
            for c in children[todo.pop()] - seen:
                seen.add(c)
                todo.append(c)
        for i in ins:
            if ("data", i) in seen:
                children[("data", i)].discard(("ns", ns))
    return children


def layer_edges(pipe: Pipeline, layer: dict[str, str | None]) -> set[tuple[str, str]]:
    """``(a, b)``: a dataset of layer ``a`` leads (directly, through unlayered datasets or through a
    namespace) to a dataset of layer ``b != a`` (``layer``: dataset name -> layer or None)."""
    children = _children(pipe)

    def own(x: tuple[str, str]) -> str | None:
        return layer.get(x[1]) if x[0] == "data" else None

    parents: dict[tuple[str, str], set[tuple[str, str]]] = {x: set() for x in children}
    for x, cs in children.items():
        for c in cs:
            parents[c].add(x)
    below: dict[tuple[str, str], set[str]] = {}
    for x in reversed(list(TopologicalSorter(parents).static_order())):  # the graph itself is acyclic
        below[x] = set().union(*({own(c)} | below[c] for c in children[x])) - {None}
    return {(a, b) for x in children if (a := own(x)) is not None for b in below[x] if b != a}


def _backwards(edges: set[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, b in edges if ORDER.index(a) > ORDER.index(b))


@pytest.mark.parametrize("name", ["__default__", "study", "audit", "attack_strength"])
def test_layers_follow_the_data(name):
    pipe = register_pipelines()[name]
    datasets = {d for n in pipe.nodes for d in (*n.inputs, *n.outputs) if not d.startswith("params:")}
    layers = _layers(datasets)
    assert set(layers.values()) - {None} <= set(ORDER)
    assert not _backwards(layer_edges(pipe, layers)), f"{name}: a layer feeds an earlier one"
    # every artifact but the in-memory ones lies in a layer
    unlayered = sorted(d for d, v in layers.items() if v is None)
    assert all(d.rsplit(".", 1)[-1] in IN_MEMORY for d in unlayered), unlayered


def test_a_namespace_collapsed_into_one_node_orders_its_inputs_before_its_outputs():
    """The circle kedro-viz found: a reporting input of a certifier's namespace (which also writes
    model_output) -- invisible node by node, caught through the namespace."""
    from kedro.pipeline import node, pipeline

    def f(*x):
        return x[0]

    body = Pipeline(
        [node(f, "model", "votes", name="votes"), node(f, ["votes", "summary"], "metrics", name="metrics")]
    )
    pipe = pipeline(body, namespace="uniform", inputs={"model", "summary"}) + Pipeline(
        [node(f, "model", "summary", name="summary"), node(f, "uniform.votes", "table", name="table")]
    )
    layers = {"model": "models", "summary": "reporting", "uniform.votes": "model_output"}
    layers |= {"uniform.metrics": "reporting", "table": "reporting"}
    assert _backwards(layer_edges(pipe, layers)) == [("reporting", "model_output")]
    assert _backwards(layer_edges(pipe, {**layers, "summary": "models"})) == []
