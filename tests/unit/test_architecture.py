"""The layout's promises, checked on the import graph (grimp) and the files themselves.

Run alone with ``python3 -m pytest -q tests/unit/test_architecture.py``: it reads source, loads nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "asr", "media", "protocol")

# A long module is fine when it holds one concept; past REVIEW_LINES it names that concept here, for its reviewer.
LONG_MODULES = {
    "server/storage/sql.py": "the one class implementing the Store protocol: every query shares its transaction"
                             " helpers and row conversions",
}
REVIEW_LINES = 600
FLOORS = {"server.routes": 7, "server.transports": 6, "server.features": 5, "server.jobs": 4, "server.pipeline": 3,
          "server.fanout": 2, "server.storage": 2, "asr": 1, "media": 1, "protocol": 1}
"""The layer order of docs/how-it-works.md: a module imports only its own floor and the ones below."""
ROOTS = ("server.services", "server.app", "server.worker", "server.tasks", "server.cli")
"""The composition roots: the only modules that know every part and wire each consumer with what it declares."""


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # Imports under ``if TYPE_CHECKING:`` count: an annotation that names a higher module ties the two as surely
    # as a call does (a reader, a type checker and the next refactoring all follow it).
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False, cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan). A package's import of its own children
    counts: importing ``pkg`` runs ``pkg/__init__``, so a child that imports its package's names, or a module
    that imports the package whose child imports that module, ties a loop all the same."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def edges(m: str) -> set[str]:
        return set(graph.find_modules_directly_imported_by(m))

    def visit(v: str) -> None:
        work = [(v, iter(sorted(edges(v))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges(w)))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return out


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == []


def test_the_asr_core_knows_nothing_of_the_wire_or_the_server(graph: grimp.ImportGraph) -> None:
    for module in graph.find_children("asr") | {"asr"} | graph.find_descendants("asr"):
        for imported in graph.find_modules_directly_imported_by(module):
            assert not imported.startswith(("protocol", "server")), f"{module} imports {imported}"


def test_media_and_protocol_stand_alone(graph: grimp.ImportGraph) -> None:
    for package, forbidden in (("media", ("server", "asr", "protocol")), ("protocol", ("server", "asr", "media"))):
        for module in graph.find_descendants(package) | {package}:
            for imported in graph.find_modules_directly_imported_by(module):
                assert not imported.startswith(forbidden), f"{module} imports {imported}"


def test_the_server_does_not_carry_the_benchmarks() -> None:
    """``bench`` is a package of its own (the ``bench`` extra, not in the server image): the server's packages
    reach it only through the ``voxlane bench`` command's guarded import."""
    graph = grimp.build_graph(*PACKAGES, "bench", exclude_type_checking_imports=False, cache_dir=None)
    for package in PACKAGES:
        for module in graph.find_descendants(package) | {package}:
            imported = {m for m in graph.find_modules_directly_imported_by(module) if m.split(".")[0] == "bench"}
            assert module == "server.cli" or not imported, f"{module} imports {imported}"


def _floor(module: str) -> int | None:
    return next((floor for pkg, floor in FLOORS.items() if module == pkg or module.startswith(pkg + ".")), None)


def test_layers_only_point_down(graph: grimp.ImportGraph) -> None:
    upward = [f"{m} -> {t}" for m in sorted(graph.modules) if (a := _floor(m)) is not None
              for t in sorted(graph.find_modules_directly_imported_by(m)) if (b := _floor(t)) is not None and b > a]
    assert upward == []


def test_only_the_roots_know_the_container(graph: grimp.ImportGraph) -> None:
    """Each consumer declares the parts it reads (plain arguments, or a Protocol of its own) and a root hands them
    in: a worker node, an API node and a test each build only what they need."""
    importers = graph.find_modules_that_directly_import("server.services")
    assert {m for m in importers if not m.startswith(ROOTS)} == set()


def test_each_module_says_what_it_holds() -> None:
    """What a line budget was meant to protect: one concept per module, which its docstring names. A long module
    is fine when it is one concept: past REVIEW_LINES it is listed in LONG_MODULES with the concept it holds."""
    missing, long = [], {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            text = path.read_text()
            if text.strip() and not ast.get_docstring(ast.parse(text)):
                missing.append(str(path.relative_to(REPO)))
            if len(text.splitlines()) > REVIEW_LINES:
                long[str(path.relative_to(REPO))] = len(text.splitlines())
    assert missing == []
    assert set(long) <= set(LONG_MODULES), {k: v for k, v in long.items() if k not in LONG_MODULES}
    assert all((REPO / name).exists() for name in LONG_MODULES)
