"""The layering of cutover's modules, read from their source: the loader does not import the
estimator, and the stages and the validation do not import each other in a cycle.

Imports are read with ``ast``: every ``import cutover...`` and ``from cutover... import`` at
module level or inside a function (a deferred import still runs, and still closes a cycle),
but not those under ``if TYPE_CHECKING:`` (annotations only). ``from pkg import name`` counts
as importing ``pkg.name`` when that is a module, else ``pkg``; importing ``a.b.c`` also runs
``a/__init__`` and ``a/b/__init__``, which count too, except for the importer's own packages
(they are initialised before it runs)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import cutover

pytestmark = pytest.mark.unit

ROOT = Path(cutover.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ("cutover", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST, *, typing_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    children: list[ast.AST] | Iterator[ast.AST] = ast.iter_child_nodes(node)
    if isinstance(node, ast.If) and _is_type_checking(node.test) and not typing_only:
        children = list(node.orelse)
    for child in children:
        yield from _import_nodes(child, typing_only=typing_only)


def _with_parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


def imports_of(module: str, *, typing_only: bool = False) -> set[str]:
    """The cutover modules that importing ``module`` runs directly (its own imports); with
    ``typing_only`` those under ``if TYPE_CHECKING:`` as well."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in _import_nodes(tree, typing_only=typing_only):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        for name in names:
            if name == "cutover" or name.startswith("cutover."):
                found |= _with_parents(name)
    # a module's own packages are initialised before it runs: no edge to them
    return found - _with_parents(module)


GRAPH: dict[str, set[str]] = {m: imports_of(m) for m in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def reaches(graph: dict[str, set[str]], start: str, target: str) -> bool:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def test_the_reader_sees_deferred_and_relative_imports_and_skips_type_checking() -> None:
    assert "cutover.errors" in imports_of("cutover.dynamo_item_size")
    # rate_limit names the contract model for annotations only
    assert "cutover.contract.model" not in imports_of("cutover.load.rate_limit")
    assert "cutover.contract.model" in imports_of("cutover.load.rate_limit", typing_only=True)
    # stages imports the stage functions inside its functions
    assert "cutover.validate.reconcile" in imports_of("cutover.stages")
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_loader_does_not_import_the_estimator() -> None:
    loader = [m for m in MODULES if m == "cutover.load" or m.startswith("cutover.load.")]
    assert loader
    offenders = {
        m: sorted(i for i in imports_of(m, typing_only=True) if i.startswith("cutover.estimate"))
        for m in loader
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_item_size_rules_are_a_leaf() -> None:
    assert imports_of("cutover.dynamo_item_size") <= {"cutover", "cutover.errors"}


def test_stages_and_validate_are_not_in_a_cycle() -> None:
    validate = [m for m in MODULES if m == "cutover.validate" or m.startswith("cutover.validate.")]
    back = sorted(m for m in validate if reaches(GRAPH, m, "cutover.stages"))
    assert back == [], f"{back} import cutover.stages, which imports cutover.validate"
    for cycle in find_cycles(GRAPH):
        assert not ("cutover.stages" in cycle and set(cycle) & set(validate)), cycle
