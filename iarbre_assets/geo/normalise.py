"""Normalisation of a source layer to the platform's canonical form.

Canonical form: EPSG:2154, 2-D, valid geometries of the family the catalogue declares, one row per
feature (or per part when the source asks `split_multipart`), declared columns typed, index 0..n-1,
active geometry column named `geometry`. Every change is counted in a `NormaliseReport`, so the quality
suite (quality/) and the provenance metadata can say what normalisation did.

Decisions (docs/decisions.md):
- A missing CRS is an error, never guessed (connectors apply `FileLocation.crs` before this step).
- Invalid geometries are repaired with `shapely.make_valid` (default "linework" method: keeps ESRI-style
  inverted holes as holes), keeping only the parts of the feature's own dimension; a feature with no such
  part left is dropped ("collapsed on repair"). Fix of reference defect #7 (invalid rows were dropped).
- Reprojection happens before validation, so what is checked and repaired is the EPSG:2154 geometry.
- Undeclared text columns are stripped and put in NFC too (counted in `unicode_normalised`), not typed.
- `str` columns: surrounding whitespace is stripped, blank strings become null (counted in
  `blank_to_null`) and text is put in Unicode NFC (counted in `unicode_normalised`): a desktop tool that
  writes `e` + combining accent (NFD) delivers the same category as one writing `é`. Nothing else is
  touched: no case folding, accent or internal-space change, so a renamed category stays renamed and the
  quality suite sees it.
- `int`/`float` columns: values that do not parse (including decimal commas and non-integral values in
  an `int` column) become null and are counted in `cast_failures`; blanks become null (not failures).
- Declared columns that are missing are not invented (listed in `missing_columns`; the suite fails).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from iarbre_assets.catalog.models import SourceDef

from .grid import PLATFORM_CRS

# shapely type ids: 0 Point, 1 LineString, 2 LinearRing, 3 Polygon, 4 MultiPoint, 5 MultiLineString,
# 6 MultiPolygon, 7 GeometryCollection
TYPE_NAMES = {
    0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon",
    4: "MultiPoint", 5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection",
}
FAMILY_TYPE_IDS: dict[str, frozenset[int]] = {
    "point": frozenset({0, 4}),
    "line": frozenset({1, 2, 5}),
    "polygon": frozenset({3, 6}),
    "any": frozenset(range(8)),
}
FAMILY_TYPE_NAMES: dict[str, frozenset[str]] = {
    kind: frozenset(TYPE_NAMES[i] for i in ids) for kind, ids in FAMILY_TYPE_IDS.items()
}

DROP_NULL = "null geometry"
DROP_EMPTY = "empty geometry"
DROP_NON_FINITE = "non-finite coordinates"
DROP_COLLAPSED = "collapsed on repair"
DROP_STILL_INVALID = "still invalid after repair"

_INT_TEXT = r"[+-]?\d+"
_INT64_LIMIT = 2.0**63


class NormaliseError(ValueError):
    """A layer that cannot be normalised without guessing (names the source)."""


@dataclass
class NormaliseReport:
    source: str
    rows_in: int
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_examples: dict[str, list] = field(default_factory=dict)  # reason -> up to 5 feature ids
    repaired: int = 0
    rings_closed: int = 0  # rings a parser closed (their last point was not their first)
    flattened_3d: int = 0
    parts_added: int = 0
    cast_failures: dict[str, int] = field(default_factory=dict)
    blank_to_null: dict[str, int] = field(default_factory=dict)
    unicode_normalised: dict[str, int] = field(default_factory=dict)
    missing_columns: list[str] = field(default_factory=list)
    crs_in: str = ""
    crs_out: str = PLATFORM_CRS
    bounds: tuple[float, float, float, float] | None = None
    geometry_types: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict:
        data = asdict(self)
        data["bounds"] = list(self.bounds) if self.bounds is not None else None
        return data


def normalise(
    gdf: gpd.GeoDataFrame, source: SourceDef, target_crs: str = PLATFORM_CRS
) -> tuple[gpd.GeoDataFrame, NormaliseReport]:
    """Return the layer in canonical form and what was done to get there (see module docstring)."""
    slug = source.slug
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf._geometry_column_name not in gdf.columns:
        raise NormaliseError(f"source {slug!r}: expected a GeoDataFrame with an active geometry column")
    if gdf.crs is None:
        raise NormaliseError(
            f"source {slug!r}: the layer declares no CRS; refusing to guess one "
            "(declare it in the territory file, e.g. `crs: EPSG:3946` on a file location)"
        )
    target = CRS.from_user_input(target_crs)
    report = NormaliseReport(source=slug, rows_in=len(gdf), crs_in=gdf.crs.to_string(), crs_out=target.to_string())
    geom_name = gdf._geometry_column_name
    if geom_name != "geometry" and "geometry" in gdf.columns:
        raise NormaliseError(
            f"source {slug!r}: the active geometry column is {geom_name!r} but an attribute is named 'geometry'"
        )

    geoms = np.array(gdf.geometry.array, dtype=object, copy=True)  # never write into the caller's frame
    positions = np.arange(len(geoms))  # row of `gdf` each kept geometry comes from
    dropped: Counter[str] = Counter()

    def note(reason: str, rows: np.ndarray) -> None:
        """Count dropped rows (positions in `gdf`) under `reason`, naming up to five."""
        dropped[reason] += len(rows)
        examples = report.dropped_examples.setdefault(reason, [])
        examples.extend(_feature_id(gdf, p) for p in rows[: max(0, 5 - len(examples))])

    def drop(mask: np.ndarray, reason: str) -> None:
        nonlocal geoms, positions
        if mask.any():
            note(reason, positions[mask])
            geoms, positions = geoms[~mask], positions[~mask]

    drop(shapely.is_missing(geoms), DROP_NULL)
    drop(shapely.is_empty(geoms), DROP_EMPTY)
    drop(_non_finite(geoms), DROP_NON_FINITE)  # a NaN or Inf ordinate: no repair can place the feature
    report.rings_closed = int(gdf.attrs.get("rings_closed", 0))

    with_z = shapely.has_z(geoms)
    report.flattened_3d = int(with_z.sum())
    if report.flattened_3d:
        geoms[with_z] = shapely.force_2d(geoms[with_z])

    type_ids = shapely.get_type_id(geoms)
    unexpected = ~np.isin(type_ids, sorted(FAMILY_TYPE_IDS[source.geometry]))
    for type_id in np.unique(type_ids[unexpected]).tolist():
        note(f"unexpected geometry type {TYPE_NAMES[type_id]}", positions[type_ids == type_id])
    geoms, positions = geoms[~unexpected], positions[~unexpected]

    source_crs = CRS.from_user_input(gdf.crs)
    if source_crs != target:
        geoms = np.asarray(gpd.GeoSeries(geoms, crs=source_crs).to_crs(target).array, dtype=object)
        drop(_non_finite(geoms), DROP_NON_FINITE)  # a point outside the projection's domain

    geoms, positions, repaired = _repair(geoms, positions, note)
    report.repaired = repaired

    # Typed once per source feature (before any split), so failures count features, not parts.
    attributes = pd.DataFrame(gdf.drop(columns=geom_name)).iloc[positions].reset_index(drop=True)
    for column, kind in source.columns.items():
        if column not in attributes.columns:
            report.missing_columns.append(column)
            continue
        typed, failures, blanks = _cast(attributes[column], kind)
        if kind == "str":
            composed = typed.str.normalize("NFC")
            report.unicode_normalised[column] = int((composed != typed).fillna(False).sum())
            typed = composed
        attributes[column] = typed
        report.cast_failures[column] = failures
        report.blank_to_null[column] = blanks
    for column in attributes.columns:  # undeclared text too: the same label in NFD is the same label
        if column not in source.columns:
            _compose_text(attributes, column, report)

    if source.split_multipart:
        parts, part_index = shapely.get_parts(geoms, return_index=True)
        report.parts_added = len(parts) - len(geoms)
        geoms = parts
        attributes = attributes.iloc[part_index].reset_index(drop=True)

    out = gpd.GeoDataFrame(attributes, geometry=gpd.GeoSeries(geoms, crs=target), crs=target)
    report.rows_out = len(out)
    report.dropped = dict(sorted(dropped.items()))
    if len(out):
        report.bounds = tuple(float(v) for v in shapely.total_bounds(geoms))
    type_counts = Counter(shapely.get_type_id(geoms).tolist())
    report.geometry_types = {TYPE_NAMES[t]: n for t, n in sorted(type_counts.items())}
    return out, report


# ----------------------------------------------------------------------------------------------
# Geometry repair
# ----------------------------------------------------------------------------------------------
ID_COLUMNS = ("gml_id", "id", "gid", "_id", "fid")


def _feature_id(gdf: gpd.GeoDataFrame, position: int) -> str:
    """How a dropped feature is named in the report: its delivered id when there is one, else its row."""
    for column in ID_COLUMNS:
        if column in gdf.columns:
            value = gdf[column].iloc[position]
            if value is not None and value == value:
                return f"{column} {value}"
            break
    return f"row {position}"


def _non_finite(geoms: np.ndarray) -> np.ndarray:
    """True for the geometries holding a NaN or infinite ordinate (GEOS cannot orient or repair them)."""
    mask = np.zeros(len(geoms), dtype=bool)
    if len(geoms):
        coords, index = shapely.get_coordinates(geoms, return_index=True)  # x, y (z is dropped later)
        bad = ~np.isfinite(coords).all(axis=1)
        mask[np.unique(index[bad])] = True
    return mask


def _make_valid(geoms: np.ndarray) -> np.ndarray:
    """make_valid, one geometry at a time when GEOS refuses the batch; None where it refuses one."""
    try:
        return shapely.make_valid(geoms)
    except shapely.errors.GEOSException:
        out = np.empty(len(geoms), dtype=object)
        for i, geom in enumerate(geoms):
            try:
                out[i] = shapely.make_valid(geom)
            except shapely.errors.GEOSException:
                out[i] = None
        return out


def _repair(geoms: np.ndarray, positions: np.ndarray, note) -> tuple[np.ndarray, np.ndarray, int]:
    """make_valid the invalid geometries; those that collapse or stay invalid are dropped through
    `note(reason, rows)`. Returns the kept geometries, their rows and how many were repaired."""
    invalid = ~shapely.is_valid(geoms)
    if not invalid.any():
        return geoms, positions, 0
    idx = np.flatnonzero(invalid)
    dims = shapely.get_dimensions(geoms[idx])
    fixed = _keep_dimension(_make_valid(geoms[idx]), dims)
    collapsed = shapely.is_missing(fixed) | shapely.is_empty(fixed)
    still_invalid = ~collapsed & ~shapely.is_valid(fixed)
    geoms = geoms.copy()
    geoms[idx] = fixed
    keep = np.ones(len(geoms), dtype=bool)
    keep[idx[collapsed]] = False
    keep[idx[still_invalid]] = False
    if collapsed.any():
        note(DROP_COLLAPSED, positions[idx[collapsed]])
    if still_invalid.any():
        note(DROP_STILL_INVALID, positions[idx[still_invalid]])
    return geoms[keep], positions[keep], int((~collapsed & ~still_invalid).sum())


def _keep_dimension(repaired: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Keep, per geometry, only the parts of dimension `dims[i]`; None where nothing of it is left."""
    n = len(repaired)
    parts, owner = repaired, np.arange(n)
    while True:  # flatten nested collections (a GeometryCollection may hold a MultiPolygon)
        collection = shapely.get_type_id(parts) >= 4
        if not collection.any():
            break
        sub, sub_index = shapely.get_parts(parts[collection], return_index=True)
        parts = np.concatenate([parts[~collection], sub])
        owner = np.concatenate([owner[~collection], owner[collection][sub_index]])
    order = np.argsort(owner, kind="stable")
    parts, owner = parts[order], owner[order]
    keep = (shapely.get_dimensions(parts) == dims[owner]) & ~shapely.is_empty(parts)
    parts, owner = parts[keep], owner[keep]

    out = np.full(n, None, dtype=object)
    if not len(parts):
        return out
    counts = np.bincount(owner, minlength=n)
    single = counts[owner] == 1
    out[owner[single]] = parts[single]
    multi_owner = owner[~single]
    if len(multi_owner):
        groups, inverse = np.unique(multi_owner, return_inverse=True)
        builders = {0: shapely.multipoints, 1: shapely.multilinestrings, 2: shapely.multipolygons}
        for dim, build in builders.items():
            of_dim = dims[groups] == dim
            if of_dim.any():
                rows = of_dim[inverse]
                _, local = np.unique(inverse[rows], return_inverse=True)
                out[groups[of_dim]] = build(parts[~single][rows], indices=local)
    return out


# ----------------------------------------------------------------------------------------------
# Attribute typing
# ----------------------------------------------------------------------------------------------
def _compose_text(attributes: pd.DataFrame, column, report: "NormaliseReport") -> None:
    """Strip and NFC the text values of an undeclared column (other values untouched, nothing typed)."""
    values = attributes[column]
    if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
        return
    is_text = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    if not is_text.any():
        return
    text = values[is_text]
    composed = text.map(lambda v: unicodedata.normalize("NFC", v.strip()))
    changed = int((composed != text.map(str.strip)).sum())  # changed form, not just trimmed
    if changed:
        report.unicode_normalised[str(column)] = changed
    if (composed != text).any():
        values = values.astype(object).copy()
        values[is_text] = composed
        attributes[column] = values


def _cast(series: pd.Series, kind: str) -> tuple[pd.Series, int, int]:
    """Return (typed series, values that could not be converted, blank strings turned into null)."""
    if kind == "str":
        return _to_string(series)
    if kind == "int":
        return _to_int(series)
    return _to_float(series)


def _as_text(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Stripped text and the mask of blank (whitespace-only) values."""
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.astype("Float64")
        integral = values.isna() | (values == values.round())
        if bool(integral.all()) and bool((values.abs() < _INT64_LIMIT).fillna(True).all()):
            series = values.astype("Int64")  # a code read as float because of nulls: "69123", not "69123.0"
    text = series.astype("string").str.strip()
    blank = (text == "").fillna(False).astype(bool)
    return text.mask(blank), blank


def _to_string(series: pd.Series) -> tuple[pd.Series, int, int]:
    text, blank = _as_text(series)
    return text, 0, int(blank.sum())


def _to_int(series: pd.Series) -> tuple[pd.Series, int, int]:
    if pd.api.types.is_integer_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("Int64"), 0, 0
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.astype("Float64")
        ok = values.isna() | ((values == values.round()) & (values.abs() < _INT64_LIMIT))
        ok = ok.fillna(False).astype(bool)
        return values.where(ok).astype("Int64"), int((~ok).sum()), 0
    text, blank = _as_text(series)
    result = pd.Series(pd.NA, index=series.index, dtype="Int64")
    exact = text.str.fullmatch(_INT_TEXT).fillna(False).astype(bool)
    if exact.any():
        try:
            result[exact] = text[exact].astype("Int64")
        except (OverflowError, ValueError, TypeError):
            exact[:] = False
    rest = ~exact & text.notna()
    if rest.any():
        numbers = pd.to_numeric(text[rest], errors="coerce", dtype_backend="numpy_nullable").astype("Float64")
        integral = (numbers == numbers.round()) & (numbers.abs() < _INT64_LIMIT)
        integral = integral.fillna(False).astype(bool)
        result[integral[integral].index] = numbers[integral].astype("Int64")
    failures = int((text.notna() & result.isna()).sum())
    return result, failures, int(blank.sum())


def _to_float(series: pd.Series) -> tuple[pd.Series, int, int]:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("Float64"), 0, 0
    text, blank = _as_text(series)
    numbers = pd.to_numeric(text, errors="coerce", dtype_backend="numpy_nullable").astype("Float64")
    failures = int((text.notna() & numbers.isna()).sum())
    return numbers, failures, int(blank.sum())
