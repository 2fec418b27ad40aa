"""The shape of the house, read from the code's own imports (ast, nothing is imported or run):

- no import cycle among certssb's modules (module-level and function-level imports both count);
- ``certssb.core`` is the framework-free science: it never imports ``certssb.execution``, ``certssb.io``,
  ``certssb.pipelines``, Kedro, MLflow or Ray;
- a module longer than 350 lines says why in a docstring line starting with "Length:".
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "certssb"
MAX_LINES = 350
CORE_MAY_NOT_IMPORT = (
    "certssb.execution",
    "certssb.io",
    "certssb.pipelines",
    "kedro",
    "kedro_mlflow",
    "mlflow",
    "ray",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, resolved to a certssb module where the target is one."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from pkg import module` imports pkg.module
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod)
    return out


GRAPH = {
    name: {m for m in _imports(name, path) if m in MODULES and m != name} for name, path in MODULES.items()
}


def test_the_source_tree_was_found():
    assert "certssb.core.certify" in MODULES and "certssb.pipelines.evaluation.nodes" in MODULES
    assert "certssb.io.prepare" in MODULES and "certssb.core.splits" in MODULES  # the io rule is not vacuous


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(GRAPH[n]):
            if state.get(m) == 1:
                return path[path.index(m) :] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        state[n] = 2
        path.pop()
        return None

    for n in sorted(GRAPH):
        if n not in state and (cycle := visit(n)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if n == "certssb.core" or n.startswith("certssb.core."))
)
def test_core_is_framework_free(name):
    bad = sorted(
        m
        for m in _imports(name, MODULES[name])
        if any(m == f or m.startswith(f + ".") for f in CORE_MAY_NOT_IMPORT)
    )
    assert not bad, (
        f"{name} imports {bad}: certssb.core must stay free of execution, io, pipelines and frameworks"
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_long_modules_say_why(name):
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    n = text.count("\n") + 1
    if n <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert any(line.strip().startswith("Length:") for line in doc.splitlines()), (
        f"{path.relative_to(SRC)} has {n} lines (> {MAX_LINES}) "
        "and no 'Length:' line in its docstring saying why"
    )


def test_the_checker_sees_a_cycle_and_a_core_import(tmp_path, monkeypatch):
    """The checks can fail: a two-module cycle and a kedro import in core are found."""
    a = ast.parse("from certssb.core import b\n")
    assert any(isinstance(n, ast.ImportFrom) and n.module == "certssb.core" for n in ast.walk(a))
    graph = {"x": {"y"}, "y": {"x"}}
    monkeypatch.setitem(GRAPH, "certssb._probe_x", {"certssb._probe_y"})
    monkeypatch.setitem(GRAPH, "certssb._probe_y", {"certssb._probe_x"})
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycle()
    assert graph["x"] == {"y"}
