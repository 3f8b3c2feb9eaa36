"""The layout's promises, checked on the import graph (grimp) and the files themselves.

Run alone with ``python3 -m pytest -q tests/unit/test_architecture.py``: it reads source, loads nothing.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "asr", "media", "protocol")

# Modules allowed past the size budget, each with its reason.
LONG_MODULES = {
    "server/storage/sql.py": "the one class implementing the Store protocol: every query shares its transaction"
                             " helpers and row conversions",
    "server/transports/realtime.py": "one Realtime session: the event reference (a third of the file) and the state"
                                     " machine that turns client events into server events",
    "media/decoders.py": "every audio format's decoder behind one factory; at the budget",
    "asr/diarization/diarizer.py": "one online diarizer: its windows, their clustering and the smoothing of their"
                                   " labels share one state of speakers and centroids",
}
MAX_LINES = 400


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # Imports under ``if TYPE_CHECKING:`` are annotations only: they never run, so they cannot form a cycle.
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring a package's import of its own
    children (``pkg/__init__`` re-exporting ``pkg.mod`` which imports a sibling is not a cycle of design)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def edges(m: str) -> set[str]:
        return {t for t in graph.find_modules_directly_imported_by(m) if not t.startswith(m + ".")}

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


def test_modules_stay_small() -> None:
    long = {str(p.relative_to(REPO)): n for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= set(LONG_MODULES), {k: v for k, v in long.items() if k not in LONG_MODULES}
