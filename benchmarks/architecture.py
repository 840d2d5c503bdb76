"""Architecture figures for the closing notes of refactoring issues (#17).

One command, no arguments: ``PYTHONPATH=$PWD python benchmarks/architecture.py``. It prints

- the import cycles of ``aet`` (strongly connected components of the module import graph, every
  import counted, including those inside functions), their count and sizes;
- the upward imports core → facade (core: the subpackages ``io simulate preprocess reconstruct
  atoms analysis dynamics export core``; facade: ``aet.model`` and its modules other than the
  re-exports kept for old paths);
- the largest modules (lines) and functions (lines), and the public methods of each facade class.

The graph comes from ``grimp`` (installed with ``import-linter``, the ``test`` extra).
"""

from __future__ import annotations

import ast
import inspect
import pathlib

import grimp
import networkx as nx

ROOT = pathlib.Path(__file__).resolve().parents[1] / "aet"
CORE = ("io", "simulate", "preprocess", "reconstruct", "atoms", "analysis", "dynamics", "export",
        "core")
FACADE = "aet.model"
# modules of aet.model that are only re-exports of the ground floor (no facade code)
FACADE_REEXPORTS = {"aet.model._meta"}


def _graph() -> nx.DiGraph:
    g = grimp.build_graph("aet", include_external_packages=False)
    d = nx.DiGraph()
    for m in g.modules:
        d.add_node(m)
        for t in g.find_modules_directly_imported_by(m):
            d.add_edge(m, t)
    return d


def _is_core(m: str) -> bool:
    parts = m.split(".")
    return len(parts) > 1 and parts[1] in CORE


def _is_facade(m: str) -> bool:
    return (m == FACADE or m.startswith(FACADE + ".")) and m not in FACADE_REEXPORTS


def cycles(d: nx.DiGraph) -> list[list[str]]:
    return sorted((sorted(c) for c in nx.strongly_connected_components(d) if len(c) > 1),
                  key=len, reverse=True)


def upward(d: nx.DiGraph) -> list[tuple[str, str]]:
    return sorted((a, b) for a, b in d.edges if _is_core(a) and _is_facade(b))


def largest_modules(n: int = 10) -> list[tuple[int, str]]:
    rows = [(len(p.read_text().splitlines()), str(p.relative_to(ROOT.parent)))
            for p in ROOT.rglob("*.py")]
    return sorted(rows, reverse=True)[:n]


def largest_functions(n: int = 10) -> list[tuple[int, str]]:
    rows = []
    for p in ROOT.rglob("*.py"):
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                rows.append((node.end_lineno - node.lineno + 1,
                             f"{p.relative_to(ROOT.parent)}:{node.lineno} {node.name}"))
    return sorted(rows, reverse=True)[:n]


def public_methods() -> dict[str, int]:
    import aet

    out = {}
    for name in ("TiltSeries", "Volume", "AtomicModel", "NucleusTracker"):
        cls = getattr(aet, name)
        out[name] = sum(1 for k, v in inspect.getmembers(cls)
                        if not k.startswith("_") and (inspect.isfunction(v)
                                                      or isinstance(v, property)))
    return out


def main() -> None:
    d = _graph()
    cyc = cycles(d)
    print(f"modules: {d.number_of_nodes()}, import edges: {d.number_of_edges()}")
    print(f"import cycles (strongly connected components > 1 module): {len(cyc)}, "
          f"modules in them: {sum(map(len, cyc))}")
    for c in cyc:
        print(f"  [{len(c)}] " + " ".join(c))
    up = upward(d)
    n_sim = sum(a.startswith("aet.simulate") for a, _ in up)
    print(f"upward imports core -> facade: {len(up)} (of which from aet.simulate: {n_sim})")
    for a, b in up:
        print(f"  {a} -> {b}")
    # importing any module of aet.model first runs aet/model/__init__.py (every facade class)
    via = sorted((a, b) for a, b in d.edges
                 if _is_core(a) and b.startswith(FACADE + ".") and b in FACADE_REEXPORTS)
    print(f"core imports of aet.model re-exports (each runs aet/model/__init__): {len(via)}")
    print("largest modules (lines):")
    for k, s in largest_modules():
        print(f"  {k:5d} {s}")
    print("largest functions (lines):")
    for k, s in largest_functions():
        print(f"  {k:5d} {s}")
    print("public methods and properties per facade class:")
    for k, v in public_methods().items():
        print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
