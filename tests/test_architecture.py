"""The import graph of scoreboard/: every arrow points one way.

Data flows handler -> session / service -> (store, ranking) -> hub -> connections, and the
graph of imports says the same. `python tests/test_architecture.py` prints the graph in
Graphviz dot (`... | dot -Tsvg > imports.svg` draws it).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scoreboard"
#: The composition root: builds the services and the route table, so it may import anything.
ROOT = {"scoreboard.app", "scoreboard.cli"}
#: Modules longer than this say in their docstring why they stay one module.
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports (anywhere in its body): scoreboard modules and top names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from . import frames` imports the module scoreboard.frames.
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
    return {t for t in found if t in known or not t.startswith("scoreboard")}


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {
        name: {t for t in imports_of(name, path, known) if t != name}
        for name, path in found.items()
    }


def internal(edges: set[str]) -> set[str]:
    return {t for t in edges if t.startswith("scoreboard.") and t != "scoreboard"}


def test_nothing_but_the_composition_root_imports_the_handlers():
    for name, edges in graph().items():
        if name in ROOT or name.startswith("scoreboard.handlers"):
            continue
        assert not {t for t in edges if t.startswith("scoreboard.handlers")}, name


def test_the_ranking_engine_is_pure():
    edges = graph()["scoreboard.ranking"]
    assert not {t for t in edges if t.split(".")[0] in ("tornado", "sqlalchemy")}
    assert internal(edges) <= {"scoreboard.errors", "scoreboard.validation"}


@pytest.mark.parametrize(
    ("module", "never"),
    [
        # The hub is told what changed; it never asks the use cases or the protocol. In cluster
        # mode it is handed the other processes' figures, and never touches Redis itself.
        (
            "scoreboard.hub",
            {
                "scoreboard.service",
                "scoreboard.session",
                "scoreboard.store",
                "scoreboard.cluster.presence",
                "redis",
            },
        ),
        # The use cases take a SharedLimiter (limits.py): the Redis one is the root's choice.
        ("scoreboard.service", {"scoreboard.cluster.limits", "redis"}),
        ("scoreboard.accounts", {"scoreboard.cluster.limits", "redis"}),
        ("scoreboard.connections", {"scoreboard.hub", "scoreboard.service", "scoreboard.session"}),
        ("scoreboard.frames", {"scoreboard.hub", "scoreboard.service", "scoreboard.session"}),
        ("scoreboard.service", {"scoreboard.session", "scoreboard.hub"}),
        ("scoreboard.store", {"scoreboard.service", "scoreboard.session", "scoreboard.hub"}),
        # The writer thread knows no SQL and no store; the tables run nothing.
        ("scoreboard.writer", {"scoreboard.store", "scoreboard.tables", "sqlalchemy"}),
        ("scoreboard.tables", {"scoreboard.store", "scoreboard.writer", "scoreboard.service"}),
        ("scoreboard.schemas", {"scoreboard.store", "scoreboard.service", "tornado", "sqlalchemy"}),
        ("scoreboard.validation", {"scoreboard.schemas", "tornado", "sqlalchemy"}),
    ],
)
def test_arrows_point_down_the_layers(module, never):
    edges = graph()[module]
    tops = {t.split(".")[0] for t in edges}
    assert not (edges | tops) & never


def test_the_graph_has_no_cycle():
    edges = {name: internal(targets) for name, targets in graph().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges.get(name, set())):
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, name, target]))
            if target not in state:
                visit(target, [*path, name])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [])


def test_a_long_module_says_why_in_its_docstring():
    for name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert "lines" in docstring, f"{name} has {text.count(chr(10))} lines and no reason"


def short(name: str) -> str:
    return name.removeprefix("scoreboard.")


def main() -> None:
    print("digraph scoreboard {")
    for name, targets in sorted(graph().items()):
        for target in sorted(internal(targets)):
            print(f'  "{short(name)}" -> "{short(target)}";')
    print("}")


if __name__ == "__main__":
    sys.exit(main())
