"""lib/ has no import circle, and every module imports on its own: a module that only worked because another
had been imported first would break the first caller that imports it alone (a bench, the service, a new asset)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "mlplatform" / "lib"


def _name(path: Path) -> str:
    parts = path.relative_to(LIB.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted(LIB.rglob("*.py"))}


def _runtime_imports(path: Path) -> set[str]:
    """The mlplatform.lib modules ``path`` imports at its top level, those for typing included: a circle hidden
    behind ``TYPE_CHECKING`` is still two modules that cannot be read, or moved, one without the other."""
    found: set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)

    visit(ast.parse(path.read_text()).body)
    edges = set()
    for name in found:
        # importing a.b.c runs a/__init__, a/b/__init__, then c
        parts = name.split(".")
        edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {name for name in edges if name in MODULES and name != _name(path)}


def test_lib_has_no_import_circle() -> None:
    graph = {name: _runtime_imports(path) for name, path in MODULES.items()}
    for name in graph:  # a package's __init__ may import its own modules
        graph[name] = {dep for dep in graph[name] if not name.startswith(dep + ".")}
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            pytest.fail("import circle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            walk(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])


def test_every_lib_module_imports_alone_in_a_fresh_interpreter() -> None:
    # One interpreter per module, all started at once: each must import with nothing imported before it.
    started = {
        name: subprocess.Popen([sys.executable, "-c", f"import {name}"], stderr=subprocess.PIPE, text=True)
        for name in MODULES
    }
    failed = {name: process.communicate(timeout=120)[1].strip().splitlines()[-1:] for name, process in started.items()}
    assert {name: error for name, error in failed.items() if started[name].returncode} == {}
