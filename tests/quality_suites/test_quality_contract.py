"""The quality package's boundary: it imports nothing of the product, and the product's mapping onto its spec."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import quality
from iarbre_assets.catalog.quality_spec import normalise_summary, suite_spec
from iarbre_assets.geo.normalise import FAMILY_TYPE_NAMES, normalise
from quality import BufferSpec, FilterSpec, NormaliseSummary, SuiteSpec, Thresholds, build_suite
from quality_layers import BOUNDS, QUALITY, raw_layer

PACKAGE_DIR = Path(quality.__file__).resolve().parent
REPO = PACKAGE_DIR.parent
MODULES = sorted(
    "quality" if path.stem == "__init__" else f"quality.{path.stem}" for path in PACKAGE_DIR.glob("*.py")
)


def test_quality_imports_neither_the_product_nor_dagster():
    # a fresh interpreter: nothing else of the test session is loaded
    code = (
        "import importlib, json, sys\n"
        f"modules = {MODULES!r}\n"
        "for name in modules:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({'file': sys.modules['quality'].__file__, 'loaded': sorted(sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert Path(report["file"]).resolve() == PACKAGE_DIR / "__init__.py"
    loaded = set(report["loaded"])
    assert set(MODULES) <= loaded and {"quality.spec", "quality.suites", "quality.families", "quality.runner"} <= loaded
    for banned in ("iarbre_assets", "dagster", "great_expectations"):  # GX: imported on the first run only
        assert not {m for m in loaded if m == banned or m.startswith(banned + ".")}, banned


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions, relative imports resolved."""
    package = "quality"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = package + (f".{base}" if base else "")
                # `from . import x` may name submodules
                found.update(f"{base}.{alias.name}" for alias in node.names if not node.module)
            found.add(base)
    return found


def test_quality_modules_import_no_product_code_even_lazily_and_form_no_cycle():
    graph = {}
    for name in MODULES:
        path = PACKAGE_DIR / ("__init__.py" if name == "quality" else f"{name.split('.')[1]}.py")
        imports = _imports(path)
        outside = {m for m in imports if m.split(".")[0] in ("iarbre_assets", "iarbre_demo", "dagster", "dagster_dbt")}
        assert not outside, f"{name} imports {sorted(outside)}"
        graph[name] = {m for m in imports if m in MODULES and m != "quality"}
    assert "quality.suites" in graph["quality.runner"] and "quality.families" in graph["quality.suites"]
    assert "quality.suites" not in graph["quality.families"]

    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                pytest.fail(f"import cycle in quality: {' -> '.join(trail + [nxt])}")
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_suite_spec_maps_the_catalogue(catalogue, sources):
    trees = suite_spec(sources["arbres_alignement"], catalogue.factors, QUALITY, BOUNDS)
    assert (trees.source, trees.family, trees.geometry, trees.connector) == (
        "arbres_alignement", "trees", "point", "wfs")
    assert trees.label == sources["arbres_alignement"].label
    assert trees.geometry_types == FAMILY_TYPE_NAMES["point"] == {"Point", "MultiPoint"}
    assert trees.columns == {"gid": "int", "genre": "str", "circonference_cm": "float"}
    assert trees.paging_key == "gid" and trees.territory_bounds == BOUNDS
    # only the factors reading this source, in catalogue order, `not_in` kept as negated
    assert trees.filters == (
        FilterSpec("souches_emplacements_libres", "genre", ("Emplacement libre", "Souche"), negated=False),
        FilterSpec("arbres", "genre", ("Emplacement libre", "Souche"), negated=True),
    )
    assert trees.buffers == (BufferSpec("arbres", "circonference_cm", "cm", 0.01, missing_m=1.0, max_m=10.0),)
    assert trees.thresholds == Thresholds(row_count_band=0.5, filter_values="blocking", bounds_margin_m=1000.0,
                                          min_valid_share=0.99)

    buildings = suite_spec(sources["batiments_bdtopo"], catalogue.factors, QUALITY, BOUNDS)
    assert (buildings.connector, buildings.paging_key, buildings.buffers) == ("ign_wfs", "cleabs", ())
    assert suite_spec(sources["espaces_publics"], catalogue.factors, QUALITY, BOUNDS).paging_key is None  # a file
    communes = suite_spec(sources["communes"], catalogue.factors, QUALITY, BOUNDS)
    assert list(communes.columns) == ["insee", "nom"] and communes.filters == ()  # code field first
    vegetation = suite_spec(sources["eva_2015"], catalogue.factors, QUALITY, BOUNDS)
    assert vegetation.known_values["gl_2015"] == tuple(sources["eva_2015"].known_values["gl_2015"])
    assert pickle.loads(pickle.dumps(trees)) == trees  # crosses process pools as it is


def test_suite_spec_refuses_what_a_suite_cannot_honour(catalogue, sources):
    source = sources["lignes_tram"]
    with pytest.raises(ValueError, match="lignes_tram.*territory_bounds .* not a finite, non-degenerate box"):
        suite_spec(source, catalogue.factors, QUALITY, (0.0, 0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="lignes_tram.*territory_bounds must be"):
        suite_spec(source, catalogue.factors, QUALITY, (0.0, 1.0))
    base = dict(source="x", label="X", family="networks", geometry="line", geometry_types={"LineString"},
                territory_bounds=BOUNDS)
    with pytest.raises(ValueError, match="column types {'a': 'bool'}"):
        SuiteSpec(**base, columns={"a": "bool"})
    with pytest.raises(ValueError, match="known_values name undeclared columns \\['b'\\]"):
        SuiteSpec(**base, columns={"a": "str"}, known_values={"b": ["v"]})
    with pytest.raises(ValueError, match="geometry must be one of"):
        SuiteSpec(**{**base, "geometry": "surface"})
    with pytest.raises(ValueError, match="filter_values must be one of"):
        Thresholds(filter_values="ignore")
    with pytest.raises(ValueError, match="min_valid_share"):
        Thresholds(min_valid_share=1.5)


def test_normalise_summary_from_the_report_or_its_dict(catalogue, sources):
    source = sources["espaces_publics"]
    raw = raw_layer(source, catalogue.factors, n=20)
    raw.loc[:1, "geometry"] = None
    raw["surfacecalc"] = raw["surfacecalc"].astype(object)
    raw.loc[5, "surfacecalc"] = "x"
    _, report = normalise(raw, source)
    summary = normalise_summary(report)
    assert summary == NormaliseSummary(rows_in=20, dropped={"null geometry": 2},
                                       cast_failures={"typeespacepublic": 0, "surfacecalc": 1},
                                       dropped_examples={"null geometry": ["row 0", "row 1"]})
    assert summary.dropped_total == 2 and NormaliseSummary.coerce(report.as_dict()) == summary

    spec = suite_spec(source, catalogue.factors, QUALITY, BOUNDS)
    by_summary = build_suite(spec, normalise_summary=summary).checks
    by_dict = build_suite(spec, normalise_summary=report.as_dict()).checks
    described = [(c.name, c.column, c.description, c.evaluate(None, None)) for c in by_summary if c.evaluate]
    assert described == [(c.name, c.column, c.description, c.evaluate(None, None)) for c in by_dict if c.evaluate]
    assert described == [
        ("normalise.dropped_share", None, "normalisation dropped at most 1.0% of the features",
         (False, "2 of 20 features dropped (10.00%) — null geometry: 2 (e.g. row 0, row 1)")),
        ("normalise.cast_failures", "typeespacepublic", "at most 1.0% of values fail conversion to the declared type",
         (True, "0 of 18 values not convertible to str (0.00%)")),
        ("normalise.cast_failures", "surfacecalc", "at most 1.0% of values fail conversion to the declared type",
         (False, "1 of 18 values not convertible to float (5.56%)")),
    ]
    with pytest.raises(TypeError, match="normalise_summary must be"):
        build_suite(spec, normalise_summary=report)  # the product maps its report; quality does not read it
