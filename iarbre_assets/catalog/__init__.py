"""The factor catalogue and territory files, loaded and validated.

    from iarbre_assets.catalog import load_catalog, load_territory
    catalogue = load_catalog()              # iarbre_assets/catalog/factors.yaml
    territory = load_territory("demo")      # a shipped territory name, or a path to a YAML file
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from .models import Catalogue, FactorDef, SourceDef
from .territory import Territory, expand_url
from .yaml_loader import ConfigFileError, format_validation_error, read_yaml

CATALOG_DIR = Path(__file__).resolve().parent
DEFAULT_CATALOG = CATALOG_DIR / "factors.yaml"
TERRITORIES_DIR = CATALOG_DIR / "territories"

__all__ = [
    "Catalogue",
    "ConfigFileError",
    "FactorDef",
    "SourceDef",
    "Territory",
    "expand_url",
    "load_catalog",
    "load_territory",
    "territory_path",
]


def load_catalog(path: str | Path | None = None) -> Catalogue:
    """Read and validate a factor catalogue (the shipped one by default).

    Raises ConfigFileError naming the file and the field on any problem.
    """
    path = Path(path) if path else DEFAULT_CATALOG
    if path.resolve() == DEFAULT_CATALOG:
        return _default_catalog(DEFAULT_CATALOG.stat().st_mtime_ns)
    return _load_catalog(path)


@lru_cache(maxsize=2)
def _default_catalog(_mtime: int) -> Catalogue:
    return _load_catalog(DEFAULT_CATALOG)


def _load_catalog(path: Path) -> Catalogue:
    data = read_yaml(path)
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(format_validation_error(path, exc, data)) from None


def territory_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        return candidate.resolve()
    shipped = TERRITORIES_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    known = sorted(p.stem for p in TERRITORIES_DIR.glob("*.yaml"))
    raise ConfigFileError(f"{name_or_path}: no such territory file; shipped territories are {known}")


def load_territory(name_or_path: str | Path, catalogue: Catalogue | None = None) -> Territory:
    """Read a territory file and check it against the catalogue."""
    path = territory_path(name_or_path)
    data = read_yaml(path)
    try:
        territory = Territory.model_validate({**data, "file": str(path)})
    except ValidationError as exc:
        raise ConfigFileError(format_validation_error(path, exc, data)) from None
    errors = territory.check_against(catalogue or load_catalog())
    if errors:
        raise ConfigFileError("\n".join(f"{path}: {line}" for line in errors))
    return territory
