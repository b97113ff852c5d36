"""No dead code ships: every function, class, method, constant and class attribute that hitl/ or
converters/ defines is read somewhere (the package, its templates, the tests or the scripts).

Read from the source: a name is used where the code loads it (``name``, ``x.name``, an import)
or where a string or a template names it; docstrings do not count, so a name that only a
docstring mentions (a capability read by nobody) is dead. Registered by a decorator (a click
command, a migration) or called by a framework (OVERRIDES) is use enough.
"""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("hitl", "converters")
READERS = (*SHIPPED, "tests", "scripts")
# methods a library calls, never hitl: click's group, scikit-learn's transformer, waitress's channel
OVERRIDES = {"list_commands", "transform", "to_response", "channel_class"}
PLAIN = {"classmethod", "staticmethod", "property", "cached_property"}  # decorators that register nothing


def _registered(node: ast.stmt) -> bool:
    """Is the function or class registered by a decorator (click, a migration), and so used?"""
    return any((d.id if isinstance(d, ast.Name) else "") not in PLAIN for d in getattr(node, "decorator_list", []))


def _definitions(tree: ast.Module) -> list[tuple[str, int]]:
    """Top-level functions, classes and constants; the classes' methods and attributes."""
    found = []

    def assigned(node: ast.stmt) -> list[str]:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        return [t.id for t in targets if isinstance(t, ast.Name)]

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not _registered(node):
            found.append((node.name, node.lineno))
        found += [(name, node.lineno) for name in assigned(node) if name != "__all__"]
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _registered(item):
                    found.append((item.name, item.lineno))
                found += [(name, item.lineno) for name in assigned(item)]
    return [(name, line) for name, line in found if not (name.startswith("__") and name.endswith("__"))]


def _docstrings(tree: ast.Module) -> set[int]:
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


@functools.lru_cache(maxsize=None)  # a tree read by both tests below is walked once (cleared by `parsed`)
def _names_in(tree: ast.Module) -> frozenset[str]:
    """Every name ``tree`` loads, imports or names in a string (docstrings aside)."""
    used: set[str] = set()
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.alias):
            used.add(node.name.rpartition(".")[2])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            used.update(re.findall(r"\w+", node.value))
    return frozenset(used)


def _used(trees: list[ast.Module], texts: list[str]) -> set[str]:
    """Every name code loads, imports or names in a string (docstrings aside), and every word of ``texts``."""
    used: set[str] = set().union(*map(_names_in, trees))
    for text in texts:
        used.update(re.findall(r"\w+", text))
    return used


def _dead(trees: dict[Path, ast.Module], texts: list[str]) -> list[str]:
    used = _used(list(trees.values()), texts) | OVERRIDES
    return [f"{path.relative_to(REPO).as_posix() if path.is_absolute() else path}:{line}: {name}"
            for path, tree in trees.items() if path.parts[len(REPO.parts) if path.is_absolute() else 0] in SHIPPED
            for name, line in _definitions(tree) if name not in used]


@pytest.fixture(scope="module")
def parsed():
    """Every .py file of READERS, parsed once for the module's two tests (~2 s of parsing and walking)."""
    yield {path: ast.parse(path.read_text(encoding="utf-8"), str(path))
           for top in READERS for path in sorted((REPO / top).rglob("*.py"))
           if path != Path(__file__).resolve()}  # its own made-up names would count as read
    _names_in.cache_clear()


def test_every_name_hitl_defines_is_read_somewhere(parsed):
    trees = parsed
    templates = [path.read_text(encoding="utf-8") for path in sorted((REPO / "hitl").rglob("*"))
                 if path.suffix in (".html", ".css", ".txt", ".xml")]
    assert _dead(trees, templates) == []


def test_the_statistics_ship_only_what_hitl_uses(parsed):
    """The agreement statistics hitl never calls are the tests' references (tests/reference_statistics.py),
    not shipped: everything hitl/analyse/statistics.py defines is read by hitl itself."""
    shipped = {path: tree for path, tree in parsed.items() if path.relative_to(REPO).parts[0] in SHIPPED}
    assert [dead for dead in _dead(shipped, []) if dead.startswith("hitl/analyse/statistics.py")] == []


def test_the_check_finds_a_dead_name():
    shipped = ast.parse('''
class Backend:
    """``supports_schema``: named in a docstring only."""
    supports_schema = False
    paid = False

    def to_json(self): ...

    @classmethod
    def from_json(cls): ...

UNUSED = ["x"]
USED = 1

def helper(): return USED
''')
    reader = ast.parse("from hitl.x import Backend, helper\nprint(Backend.paid, getattr(Backend, 'helper'))")
    dead = _dead({Path("hitl/x.py"): shipped, Path("tests/test_x.py"): reader}, ["{{ nothing }}"])
    assert dead == ["hitl/x.py:4: supports_schema", "hitl/x.py:7: to_json", "hitl/x.py:10: from_json",
                    "hitl/x.py:12: UNUSED"]
