"""The house rules of DESIGN.md §5, checked on the source: no import cycle, pure layers stay pure, no
environment writes, the product never imports the demo."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("iarbre_assets", "quality", "iarbre_demo")
PURE = ("iarbre_assets.geo", "iarbre_assets.connectors", "iarbre_assets.compute", "iarbre_assets.catalog",
        "iarbre_assets.store", "quality")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if (ROOT / pkg).is_dir()}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the project `name` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _external(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}, modules


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle(graph):
    edges, _ = graph
    assert _cycles(edges) == []


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_pure_layers_import_neither_dagster_nor_the_demo(graph):
    edges, modules = graph
    offenders = []
    for name, path in modules.items():
        if not name.startswith(PURE):
            continue
        if "dagster" in _external(path) or "dagster_dbt" in _external(path):
            offenders.append(f"{name} imports dagster")
        # transitively, through the project's own modules
        seen, todo = set(), list(edges[name])
        while todo:
            dep = todo.pop()
            if dep in seen:
                continue
            seen.add(dep)
            todo += edges.get(dep, ())
        bad = sorted(d for d in seen if d.startswith("iarbre_demo") or not d.startswith(PURE + ("iarbre_assets.version",
                                                                                                  "iarbre_assets.provenance.prov")))
        if bad:
            offenders.append(f"{name} reaches {bad}")
    assert offenders == []


def test_the_product_never_imports_the_demo(graph):
    edges, _ = graph
    assert {m: sorted(d for d in deps if d.startswith("iarbre_demo"))
            for m, deps in edges.items() if m.startswith("iarbre_assets")
            and any(d.startswith("iarbre_demo") for d in deps)} == {}


def test_package_code_never_writes_the_environment():
    pattern = re.compile(r"os\.environ\s*\[[^\]]*\]\s*=(?!=)|os\.environ\.(update|setdefault|pop)\(|os\.putenv\(")
    hits = [f"{p.relative_to(ROOT)}:{i}" for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_asset_modules_are_one_concern_each():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "iarbre_assets" / "assets").glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 330} == {}
