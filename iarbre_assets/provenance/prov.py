"""W3C PROV documents of score records (one commune's score materialisation in one run).

A *score record* (schema ``iarbre.score-record/1``) is a JSON dict naming everything a commune's score
was computed from: the partner deliveries, the accepted source versions, the catalogue, the grid, the
scoring constants, the code and the input materialisations. This module maps it onto the PROV data
model (https://www.w3.org/TR/prov-dm/) with the ``prov`` package, and reads/writes PROV-JSON
(https://www.w3.org/submissions/prov-json/). Pure functions: no Dagster, no file I/O.

Mapping (every identifier in the ``iarbre`` namespace, ``https://iarbre.example/ns#``)::

    agent     partner/<partner>                prov:Organization, prov:label = partner_name
    agent     iarbre                           prov:SoftwareAgent, package_version, git_commit
    entity    raw/<source>/<raw_sha256>        iarbre:RawDelivery: origin, connector, licence, delivered_at,
                                               sha256; wasAttributedTo(raw, partner)
    entity    source/<source>/<version>        iarbre:SourceVersion: normalised_sha256, accepted_at, licence
    activity  ingest/<source>/<version>        iarbre:Ingest, endTime = accepted_at; used(raw),
                                               wasGeneratedBy(source version), wasAssociatedWith(iarbre),
                                               wasDerivedFrom(source version, raw)
    entity    catalogue/<catalogue_sha256>     iarbre:Catalogue: version, sha256
    entity    score/<commune>/<run_id>         iarbre:PlantabilityScore: outputs, grid, class thresholds,
                                               blocked_score
    activity  run/<run_id>/score/<commune>     iarbre:ScoreRun, endTime = materialised_at: run_id,
                                               score_code_version, inputs (JSON text), factors (JSON text);
                                               used(every source version, catalogue),
                                               wasGeneratedBy(score), wasAssociatedWith(iarbre),
                                               wasDerivedFrom(score, source version) for each source

Identifiers. The path above (segments joined by ``/``) is turned into an XML NCName local part, so
``iarbre:<local>`` is a valid QName in PROV-N, PROV-XML and PROV-JSON alike: the letters, digits, ``_`` and
``-`` stay as they are, every other character (``/``, ``:``, ``.``, space, non-ASCII…) is written as
``.`` followed by the two upper-case hex digits of each of its UTF-8 bytes — percent-encoding with
``.`` in place of ``%``. So ``raw/ore_gaz/3f2a…`` is ``iarbre:raw.2Fore_gaz.2F3f2a…`` and a catalogue
version ``2025.1`` in a path would read ``2025.2E1``. :func:`local_name` and :func:`path_of` are inverse.

Values: ISO-8601 timestamps become ``xsd:dateTime``, numbers ``xsd:int``/``xsd:double`` (JSON numbers in
PROV-JSON), lists and dicts (grid window, class breaks, inputs, factors) compact sorted JSON text.
Keys this module does not know are ignored; optional keys that are absent (or null) give no attribute,
and no record when they name one (no ``raw_sha256``: no raw-delivery entity; no ``partner``: no
attribution; no ``catalogue_sha256``: no catalogue entity). ``commune`` and ``run_id`` are required,
and every source needs a ``slug`` and a ``version``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prov.identifier import Namespace
from prov.model import PROV, PROV_LABEL, PROV_TYPE, ProvDocument, ProvRecord

NAMESPACE_URI = "https://iarbre.example/ns#"
PREFIX = "iarbre"
SCHEMA = "iarbre.score-record/1"
SOFTWARE_AGENT = "iarbre"
IARBRE = Namespace(PREFIX, NAMESPACE_URI)

# Characters kept as they are in a local part; everything else is escaped (see module doc).
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPE = "."
_ESCAPED = re.compile(r"(?:\.[0-9A-F]{2})+")


# -- identifiers ------------------------------------------------------------------------------------
def local_name(path: str) -> str:
    """NCName local part of an identifier path (``raw/ore_gaz/<sha>`` -> ``raw.2Fore_gaz.2F<sha>``).

    A path starting with a digit, ``-`` or an escaped character would not be an NCName: the paths built
    here always start with their kind (``raw``, ``source``…), and anything else raises ValueError."""
    out = []
    for char in path:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"{_ESCAPE}{byte:02X}" for byte in char.encode("utf-8"))
    local = "".join(out)
    if not local or not (local[0].isalpha() or local[0] == "_"):
        raise ValueError(f"identifier path {path!r} must start with a letter or '_'")
    return local


def path_of(local: str) -> str:
    """Inverse of :func:`local_name` (accepts ``iarbre:<local>`` too)."""
    if local.startswith(PREFIX + ":"):
        local = local[len(PREFIX) + 1:]
    return _ESCAPED.sub(lambda m: bytes.fromhex(m.group(0).replace(_ESCAPE, "")).decode("utf-8"), local)


def identifier(*segments: object) -> str:
    """``iarbre:<local>`` for the path ``segment/segment/…`` (see module doc)."""
    return f"{PREFIX}:{local_name('/'.join(str(s) for s in segments))}"


def partner_id(partner: str) -> str:
    return identifier("partner", partner)


def raw_id(source: str, raw_sha256: str) -> str:
    return identifier("raw", source, raw_sha256)


def source_version_id(source: str, version: str) -> str:
    return identifier("source", source, version)


def ingest_id(source: str, version: str) -> str:
    return identifier("ingest", source, version)


def catalogue_id(sha256: str) -> str:
    return identifier("catalogue", sha256)


def score_id(commune: str, run_id: str) -> str:
    return identifier("score", commune, run_id)


def score_run_id(run_id: str, commune: str) -> str:
    return identifier("run", run_id, "score", commune)


def _attr(name: str):
    return IARBRE[name]


def _type(name: str):
    """The ``prov:type`` of an iarbre record kind (a QName value, e.g. ``iarbre:RawDelivery``)."""
    return IARBRE[name]


# -- values -----------------------------------------------------------------------------------------
def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _timestamp(value: Any, key: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"score record: {key} is not an ISO-8601 timestamp: {value!r}")


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _literal(value: Any) -> Any:
    """A PROV attribute value for a JSON value (see module doc)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):  # numpy scalar
        value = value.item()
    if isinstance(value, (bool, int, str, dt.datetime)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN/inf: no xsd:double round trip
    return _json_text(value)


def _attributes(items: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(name, _literal(value)) for name, value in items if _present(value)]


def _section(record: Mapping, key: str) -> Mapping:
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"score record: {key} must be an object, got {type(value).__name__}")
    return value


def _list(record: Mapping, key: str) -> list:
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"score record: {key} must be a list, got {type(value).__name__}")
    return value


def _required(mapping: Mapping, key: str, where: str = "") -> str:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    if value is None or str(value).strip() == "":
        raise ValueError(f"score record is missing {where}{key!r}")
    return str(value)


# -- building ---------------------------------------------------------------------------------------
class _Builder:
    """One document, each identified record once (later attributes merged into it), each relation once."""

    def __init__(self) -> None:
        self.document = ProvDocument()
        self.document.add_namespace(IARBRE)
        self._elements: dict[str, ProvRecord] = {}
        self._relations: set[tuple] = set()

    def element(self, kind: str, ident: str, attributes: list[tuple[str, Any]], **formal: Any) -> None:
        existing = self._elements.get(ident)
        if existing is None:
            if kind == "entity":
                self._elements[ident] = self.document.entity(ident, attributes)
            elif kind == "agent":
                self._elements[ident] = self.document.agent(ident, attributes)
            else:
                self._elements[ident] = self.document.activity(ident, other_attributes=attributes, **formal)
            return
        # The same thing seen again (another run, another source of the same partner): keep one record,
        # with the union of the attribute values.
        have = set(existing.extra_attributes)
        new = [(name, value) for name, value in attributes if (name, value) not in have]
        if new:
            existing.add_attributes(new)

    def relation(self, method: str, *args: Any, **kwargs: Any) -> None:
        key = (method, args, tuple(sorted(kwargs.items())))
        if key in self._relations:
            return
        self._relations.add(key)
        getattr(self.document, method)(*args, **kwargs)

    def add(self, record: Mapping) -> str:
        """Add one score record; returns its commune."""
        if not isinstance(record, Mapping):
            raise ValueError(f"a score record is a JSON object, got {type(record).__name__}")
        schema = record.get("schema")
        if schema is not None and str(schema).split("/")[0] != SCHEMA.split("/")[0]:
            raise ValueError(f"score record: unknown schema {schema!r} (expected {SCHEMA!r})")
        commune = _required(record, "commune")
        run_id = _required(record, "run_id")
        materialised_at = (
            _timestamp(record["materialised_at"], "materialised_at")
            if _present(record.get("materialised_at")) else None
        )
        code = _section(record, "code")
        grid = _section(record, "grid")
        scoring = _section(record, "scoring")
        territory = _section(record, "territory")
        outputs = _section(record, "outputs")

        software = identifier(SOFTWARE_AGENT)
        self.element("agent", software, [
            (PROV_TYPE, PROV["SoftwareAgent"]), (PROV_LABEL, "iarbre"),
            *_attributes([(_attr("package_version"), code.get("package_version")),
                          (_attr("git_commit"), code.get("git_commit"))]),
        ])

        # partner deliveries and accepted source versions
        versions: list[str] = []
        for index, source in enumerate(_list(record, "sources")):
            where = f"sources[{index}]."
            if not isinstance(source, Mapping):
                raise ValueError(f"score record: sources[{index}] must be an object")
            slug = _required(source, "slug", where)
            version = _required(source, "version", where)
            partner = source.get("partner")
            if _present(partner):
                self.element("agent", partner_id(partner), [
                    (PROV_TYPE, PROV["Organization"]),
                    *_attributes([(PROV_LABEL, source.get("partner_name") or partner),
                                  (_attr("partner"), partner)]),
                ])
            raw = None
            if _present(source.get("raw_sha256")):
                raw = raw_id(slug, source["raw_sha256"])
                delivered = source.get("delivered_at")
                self.element("entity", raw, [
                    (PROV_TYPE, _type("RawDelivery")),
                    *_attributes([
                        (PROV_LABEL, source.get("label")), (_attr("source"), slug),
                        (_attr("origin"), source.get("origin")), (_attr("connector"), source.get("connector")),
                        (_attr("licence"), source.get("licence")),
                        (_attr("delivered_at"), _timestamp(delivered, where + "delivered_at")
                         if _present(delivered) else None),
                        (_attr("sha256"), source["raw_sha256"]),
                    ]),
                ])
                if _present(partner):
                    self.relation("wasAttributedTo", raw, partner_id(partner))
            accepted = source.get("accepted_at")
            accepted_at = _timestamp(accepted, where + "accepted_at") if _present(accepted) else None
            entity = source_version_id(slug, version)
            self.element("entity", entity, [
                (PROV_TYPE, _type("SourceVersion")),
                *_attributes([
                    (PROV_LABEL, source.get("label")), (_attr("source"), slug), (_attr("version"), version),
                    (_attr("normalised_sha256"), source.get("normalised_sha256")),
                    (_attr("accepted_at"), accepted_at), (_attr("licence"), source.get("licence")),
                ]),
            ])
            ingest = ingest_id(slug, version)
            self.element("activity", ingest, [(PROV_TYPE, _type("Ingest")), (_attr("source"), slug)],
                         endTime=accepted_at)
            self.relation("wasAssociatedWith", ingest, software)
            self.relation("wasGeneratedBy", entity, ingest, accepted_at)
            if raw is not None:
                self.relation("used", ingest, raw)
                self.relation("wasDerivedFrom", entity, raw, ingest)
            if entity not in versions:
                versions.append(entity)

        catalogue = None
        if _present(code.get("catalogue_sha256")):
            catalogue = catalogue_id(code["catalogue_sha256"])
            self.element("entity", catalogue, [
                (PROV_TYPE, _type("Catalogue")),
                *_attributes([(_attr("version"), code.get("catalogue_version")),
                              (_attr("sha256"), code["catalogue_sha256"])]),
            ])

        score = score_id(commune, run_id)
        self.element("entity", score, [
            (PROV_TYPE, _type("PlantabilityScore")),
            *_attributes([
                (PROV_LABEL, f"plantability score of {record.get('commune_name') or commune}"),
                (_attr("commune"), commune), (_attr("commune_name"), record.get("commune_name")),
                (_attr("run_id"), run_id),
                (_attr("score_sha256"), outputs.get("score_sha256")),
                (_attr("class_sha256"), outputs.get("class_sha256")),
                (_attr("cells"), outputs.get("cells")),
                (_attr("blocked_cells"), outputs.get("blocked_cells")),
                (_attr("score_mean"), outputs.get("score_mean")),
                (_attr("grid_crs"), grid.get("crs")),
                (_attr("grid_cell_size_m"), grid.get("cell_size_m")),
                (_attr("grid_subpixel_m"), grid.get("subpixel_m")),
                (_attr("grid_window"), grid.get("window")),
                (_attr("class_breaks"), scoring.get("class_breaks")),
                (_attr("class_above"), scoring.get("class_above")),
                (_attr("blocked_score"), scoring.get("blocked_score")),
            ]),
        ])

        run = score_run_id(run_id, commune)
        self.element("activity", run, [
            (PROV_TYPE, _type("ScoreRun")),
            *_attributes([
                (_attr("run_id"), run_id), (_attr("commune"), commune),
                (_attr("score_code_version"), code.get("score_code_version")),
                (_attr("package_version"), code.get("package_version")),
                (_attr("git_commit"), code.get("git_commit")),
                (_attr("territory"), territory.get("name")),
                (_attr("inputs"), _list(record, "inputs")),
                (_attr("factors"), _list(record, "factors")),
            ]),
        ], endTime=materialised_at)
        self.relation("wasAssociatedWith", run, software)
        for entity in versions:
            self.relation("used", run, entity)
        if catalogue is not None:
            self.relation("used", run, catalogue)
        self.relation("wasGeneratedBy", score, run, materialised_at)
        for entity in versions:
            self.relation("wasDerivedFrom", score, entity, run)
        return commune


def score_record_to_prov(record: dict) -> ProvDocument:
    """The PROV document of one score record (see module doc for the mapping).

    Raises ValueError naming the key when ``commune``, ``run_id`` or a source's ``slug``/``version`` is
    missing, or a timestamp is not ISO-8601."""
    builder = _Builder()
    builder.add(record)
    return builder.document


def prov_json(record: dict) -> str:
    """PROV-JSON text of one score record: keys sorted, indent 1, so equal records give equal text."""
    return score_record_to_prov(record).serialize(format="json", sort_keys=True, indent=1)


def read_prov_json(text: str) -> ProvDocument:
    """The document of a PROV-JSON text (inverse of :func:`prov_json`)."""
    return ProvDocument.deserialize(content=text, format="json")


def commune_prov(records: Sequence[dict]) -> ProvDocument:
    """One document for several score records (runs) of the same commune.

    Agents and entities shared by the runs (partners, the software agent, raw deliveries, source
    versions and their ingest, the catalogue) are held once, with the union of their attribute values;
    each relation is held once. Raises ValueError when there is no record or the communes differ."""
    if not records:
        raise ValueError("commune_prov needs at least one score record")
    builder = _Builder()
    communes = {builder.add(record) for record in records}
    if len(communes) > 1:
        raise ValueError(f"score records of several communes: {sorted(communes)}")
    return builder.document
