"""The gateway's import graph: no circles, no model-service code, a transport-agnostic conversation.

Every import counts, wherever it is written: at module level, inside a function (a lazy import)
or under ``if TYPE_CHECKING:``; a circle hidden in any of them is still a circle a reader must
untangle (the old ones: ``call_control`` ↔ ``session`` through a TYPE_CHECKING mixin, and
``config`` → ``db.engine`` → ``db.migrate`` → ``config`` through lazy imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "shared")


def module_name(path: Path) -> str:
    """``gateway/conversation/session.py`` → ``gateway.conversation.session``; an ``__init__`` → its package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of :data:`PACKAGES` (migrations' version scripts aside: Alembic loads them by path)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "versions" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The known modules ``path`` imports anywhere in its body (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:  # ``import gateway.x.y`` where y is a name, not a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports."""
    modules = all_modules()
    known = set(modules)
    return {name: imports_of(path, name, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_gateway_and_shared_have_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "gateway.conversation.session" in graph
    assert cycles(graph) == []


def test_nothing_in_the_gateway_or_shared_imports_the_model_services() -> None:
    offending = {}
    for name, path in all_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            bad = [m for m in mods if m == "services" or m.startswith("services.")]
            if bad:
                offending[name] = bad
    assert offending == {}


def test_the_conversation_knows_no_carrier_web_framework_or_database() -> None:
    banned = ("fastapi", "starlette", "sqlalchemy", "twilio", "gateway.telephony", "gateway.db", "gateway.admin")
    offending = {}
    for name, path in all_modules().items():
        if not name.startswith("gateway.conversation"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            bad = [m for m in mods if m.startswith(banned)]
            if bad:
                offending[name] = bad
    assert offending == {}


def test_the_cycle_finder_sees_a_circle_through_a_lazy_and_a_type_checking_import(tmp_path: Path) -> None:
    known = {"pkg.a", "pkg.b", "pkg.c"}
    a = tmp_path / "a.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    b = tmp_path / "b.py"
    b.write_text("def f():\n    from pkg import c\n")
    c = tmp_path / "c.py"
    c.write_text("import pkg.a\n")
    graph = {
        "pkg.a": imports_of(a, "pkg.a", known),
        "pkg.b": imports_of(b, "pkg.b", known),
        "pkg.c": imports_of(c, "pkg.c", known),
    }
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert cycles({"x": {"y"}, "y": set()}) == []
