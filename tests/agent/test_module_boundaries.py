"""The agent's import rules (docs/architecture.md, "The member agent's modules"): the decisions
stay pure functions, and the etcd client stays mountable on its own by the Web UI."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from agent_harness import AGENT

MODULES = {path.stem: path for path in AGENT.glob("*.py") if path.stem != "__main__"}
# Standard-library modules that do no I/O of their own.
PURE_STDLIB = {"__future__", "collections.abc", "dataclasses", "ipaddress", "re", "typing"}
PURE_STDLIB |= {"urllib.parse", "datetime"}
PURE_AGENT = {
    "urls",
    "members",
    "start_decision",
    "scale_down_decision",
    "defrag_decision",
    "errors",
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_module_is_a_standard_library_or_agent_module_and_small() -> None:
    for name, path in MODULES.items():
        for imported in imports_of(path):
            top = imported.split(".")[0]
            assert imported in MODULES or top in sys.stdlib_module_names, (name, imported)
        assert len(path.read_text().splitlines()) <= 500, name


@pytest.mark.parametrize("name", sorted(PURE_AGENT))
def test_the_decisions_import_nothing_that_does_io(name: str) -> None:
    assert imports_of(MODULES[name]) <= PURE_STDLIB | PURE_AGENT


def test_the_etcd_client_needs_only_errors_from_the_agent() -> None:
    agent_imports = imports_of(MODULES["etcd_client"]) & set(MODULES)
    assert agent_imports == {"errors"}
    assert imports_of(MODULES["errors"]) <= {"__future__"}
