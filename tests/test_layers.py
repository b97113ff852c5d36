"""The import layering, read from the source (every import, those inside functions too):
cli -> stages -> store / analyse / converters / hitl's shared modules, and no cycles.

A stage (`hitl/<stage>/`) may use another stage only where the two never use each other, even
through a third; a module never takes part in an import cycle (store/bursts <-> store/ratings
was one, inside one package). The layers below the stages never import a stage or the command
line; converters import nothing of hitl; the command line is imported by no one but
``python -m hitl``.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOP = ("hitl", "converters")
STAGES = {"select", "score", "embed", "vllm", "review", "learn", "similar", "compare", "publish"}
BELOW = {"store", "analyse"}  # hitl's packages under the stages; its top-level modules are too
ENTRY = "hitl.__main__"  # the one importer of the command line


def _module_files() -> dict[str, Path]:
    """Every module of hitl and converters by dotted name (a package by its own name)."""
    modules = {}
    for top in TOP:
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _from_module(node: ast.ImportFrom, name: str, path: Path) -> str:
    """The module a ``from ... import`` in module ``name`` (at ``path``) names, relative ones resolved."""
    if not node.level:
        return node.module or ""
    package = (name if path.name == "__init__.py" else name.rpartition(".")[0]).split(".")
    return ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))


def _imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``name``'s source imports, at any depth of its code.

    ``from pkg import x`` imports the module ``pkg.x`` when there is one, else the package.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _from_module(node, name, path)
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    # `import a.b.c` names a.b.c; a name that is no module of ours (numpy, ...) is left out
    return {m for m in found if m in known and m != name}


Graph = dict[str, set[str]]  # a module (or unit) -> what it imports


@pytest.fixture(scope="module")
def graph() -> Graph:
    modules = _module_files()
    return {name: _imported(name, path, set(modules)) for name, path in modules.items()}


def _edges(g: Graph) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in g.items() for b in targets)


def _layer(module: str) -> str:
    """cli, stage, below (store, analyse, hitl's shared modules) or converters."""
    parts = module.split(".")
    if parts[0] == "converters":
        return "converters"
    if len(parts) == 1:
        return "below"  # hitl/__init__.py
    if parts[1] == "cli" or module == ENTRY:
        return "cli"
    if parts[1] in STAGES:
        return "stage"
    if parts[1] in BELOW or (REPO / "hitl" / f"{parts[1]}.py").is_file():
        return "below"
    raise AssertionError(f"{module}: a new package of hitl; name its layer in tests/test_layers.py")


def _unit(module: str) -> str:
    """What a package-level cycle is counted between: hitl's packages, its modules, converters."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "hitl" else parts[0]


def _cycle(g: Graph) -> list[str]:
    """One import cycle of ``g`` (its first module repeated at the end), or [] when there is none."""
    try:
        TopologicalSorter(g).prepare()
    except CycleError as error:
        return list(reversed(error.args[1]))  # graphlib lists it against the arrows
    return []


def _where(g: Graph, cycle: list[str]) -> list[str]:
    """The imports that make up a cycle between units."""
    steps = set(zip(cycle, cycle[1:]))
    return [f"{a} imports {b}" for a, b in _edges(g) if (_unit(a), _unit(b)) in steps]


def test_the_graph_is_read(graph):
    """The checks below rest on the graph: it holds the imports we know are there."""
    assert "hitl.cli.context" in graph["hitl.cli"]  # `from hitl.cli.context import ...`
    assert "hitl.select.run" in graph["hitl.cli.select"]  # inside the command's function
    assert "converters.common" in graph["converters.cct"]  # relative: `from .common import ...`
    assert "hitl.store.bursts" in graph["hitl.select.run"]  # `from hitl.store import bursts as ...`
    assert {"hitl.store", "hitl.store.queries"} <= graph["hitl.score.targets"]  # a name and a module
    assert len(graph) > 100


def test_no_module_is_in_an_import_cycle(graph):
    cycle = _cycle(graph)
    assert not cycle, " -> ".join(cycle)


def test_no_import_cycle_between_packages(graph):
    """Between hitl's packages (stages, store, analyse, cli), its top-level modules and converters."""
    units: Graph = defaultdict(set)
    for a, b in _edges(graph):
        if _unit(a) != _unit(b):
            units[_unit(a)].add(_unit(b))
    cycle = _cycle(units)
    assert not cycle, " -> ".join(cycle) + ": " + "; ".join(_where(graph, cycle))


def test_each_layer_imports_only_downward(graph):
    allowed = {"cli": {"cli", "stage", "below", "converters"}, "stage": {"stage", "below", "converters"},
               "below": {"below", "converters"}, "converters": {"converters"}}
    wrong = defaultdict(list)
    for a, b in _edges(graph):
        if _layer(b) not in allowed[_layer(a)]:
            wrong[f"{_layer(a)} imports {_layer(b)}"].append(f"{a} -> {b}")
    assert dict(wrong) == {}


def test_only_python_m_hitl_imports_the_command_line(graph):
    importers = {a for a, b in _edges(graph) if _layer(b) == "cli" and _layer(a) != "cli"}
    assert importers == set()
    assert "hitl.cli" in graph[ENTRY]


def _reached(g: Graph, start: str) -> set[str]:
    """Every module ``start`` imports, at any depth."""
    seen, todo = set(), [start]
    while todo:
        for module in g.get(todo.pop(), ()):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen


def test_the_report_imports_none_of_the_code_that_learns(graph):
    """`hitl report` shows what `learn` stored (hitl.store.queries.latest_run) in words (hitl.learn.words):
    the modules that fit import scikit-learn and SciPy's statistics, 2 of the 4.5 s the report of
    the sample took when it imported them."""
    learning = {m for m in _reached(graph, "hitl.publish.report") if m.startswith("hitl.learn")}
    assert learning <= {"hitl.learn", "hitl.learn.words"}, sorted(learning)
    assert "hitl.learn.model" in _reached(graph, "hitl.learn.run")  # the check sees a module that learns


def _private_imports(name: str, path: Path) -> list[str]:
    """The names starting with _ that ``name`` imports from another module of ours."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = _from_module(node, name, path)
            if module.split(".")[0] in TOP:
                found += [f"{module}.{a.name}" for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    return found


def test_no_module_imports_another_modules_private_names():
    """What other modules use is public (no leading _): the interface between modules says so."""
    found = {name: _private_imports(name, path) for name, path in _module_files().items()}
    assert {name: names for name, names in found.items() if names} == {}


PROCESS_MODULES = {"multiprocessing", "concurrent", "subprocess", "signal", "ctypes", "threading", "pickle", "socket"}
PROCESS_CALLS = {"fork", "forkpty", "pipe", "kill", "killpg", "waitpid", "wait", "system", "popen", "posix_spawn",
                 "_exit"}


def _starts_processes(tree: ast.AST) -> list[str]:
    """What in a module's code starts, feeds or ends a process: modules for it, os.fork and kin."""
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        found += [f"import {name}" for name in names if name.split(".")[0] in PROCESS_MODULES]
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                and (node.attr in PROCESS_CALLS or node.attr.startswith(("spawn", "exec")))):
            found.append(f"os.{node.attr}")
    return found


def test_converters_start_no_process():
    """Converters are pure format functions: the processes that read a big file are the select stage's."""
    found = {path.relative_to(REPO).as_posix(): _starts_processes(ast.parse(path.read_text(encoding="utf-8")))
             for path in sorted((REPO / "converters").rglob("*.py"))}
    assert {path: what for path, what in found.items() if what} == {}


def test_the_checks_catch_what_they_forbid():
    """Each rule, on a made-up graph that breaks it: a check that cannot fail checks nothing."""
    g = {"hitl.store.bursts": {"hitl.store.ratings"}, "hitl.store.ratings": {"hitl.store.bursts", "hitl.store.db"}}
    assert _cycle(g) in (["hitl.store.bursts", "hitl.store.ratings", "hitl.store.bursts"],
                         ["hitl.store.ratings", "hitl.store.bursts", "hitl.store.ratings"])
    assert _cycle({"a": {"b"}, "b": {"c"}}) == []
    assert _layer("hitl.files") == _layer("hitl.store.db") == _layer("hitl.analyse.statistics") == "below"
    assert _layer("hitl.compare.push") == "stage" and _layer("hitl.cli.select") == "cli"
    assert _layer("converters.cct") == "converters"
    assert _unit("hitl.compare.push") == "hitl.compare" and _unit("converters.cct") == "converters"
    assert _unit("hitl.files") == "hitl.files"
    with pytest.raises(AssertionError, match="name its layer"):
        _layer("hitl.somewhere.new")
    forking = ast.parse("import os\nfrom concurrent.futures import ProcessPoolExecutor\npid = os.fork()\nos.fstat(0)")
    assert _starts_processes(forking) == ["import concurrent.futures", "os.fork"]
    assert _starts_processes(ast.parse((REPO / "hitl/select/two_processes.py").read_text())) != []
