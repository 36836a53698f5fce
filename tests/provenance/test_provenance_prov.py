"""A score record becomes a W3C PROV document: partners and software as agents, deliveries, source
versions, catalogue and score as entities, ingests and the score run as activities; PROV-JSON round-trips."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
import warnings

import pytest
from prov.constants import (
    PROV_ASSOCIATION,
    PROV_ATTRIBUTION,
    PROV_DERIVATION,
    PROV_GENERATION,
    PROV_USAGE,
)
from prov.identifier import QualifiedName
from prov.model import PROV, PROV_TYPE, ProvActivity, ProvAgent, ProvElement, ProvEntity, ProvRelation

from iarbre_assets.provenance.prov import (
    IARBRE,
    NAMESPACE_URI,
    commune_prov,
    identifier,
    local_name,
    path_of,
    prov_json,
    read_prov_json,
    score_record_to_prov,
)

RUN_A = "9f1c4b2a-1d3e-4c5f-8a9b-0c1d2e3f4a5b"
RUN_B = "0b7e6d5c-4a3b-4c2d-9e1f-a0b1c2d3e4f5"
# XML NCName (ASCII subset): what a QName's local part may hold
NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _source(slug, label, partner, partner_name, version, connector="datafair"):
    return {
        "slug": slug, "label": label, "partner": partner, "partner_name": partner_name,
        "origin": f"http://127.0.0.1:2345/data-fair/api/v1/datasets/{slug}/lines?format=geojson&size=10000",
        "connector": connector, "raw_sha256": _sha("raw " + slug), "normalised_sha256": _sha("norm " + slug),
        "version": version, "delivered_at": "2026-11-30T10:00:00+00:00",
        "accepted_at": "2026-11-30T10:00:05+00:00", "licence": "Licence Ouverte 2.0",
    }


def _record(run_id=RUN_A, materialised_at="2026-12-02T18:00:00+00:00", sources=None):
    sources = sources if sources is not None else [
        _source("ore_gaz", "Réseau de gaz (ORE)", "grdf", "GRDF", "0123456789abcdef-n1"),
        _source("enedis_bt", "Réseau basse tension", "enedis", "Enedis", "1111222233334444-n1"),
        _source("enedis_hta", "Réseau HTA", "enedis", "Enedis", "5555666677778888-n2", connector="files"),
    ]
    return {
        "schema": "iarbre.score-record/1", "commune": "99101", "commune_name": "Ville A", "run_id": run_id,
        "materialised_at": materialised_at,
        "territory": {"name": "demo", "file": "/home/iarbre/.iarbre/demo/territory.yaml"},
        "grid": {"crs": "EPSG:2154", "cell_size_m": 5.0, "subpixel_m": 1.0,
                 "window": [843000.0, 6518000.0, 845000.0, 6520000.0]},
        "scoring": {"blocked_score": -5.0, "class_breaks": [[-1.0, 0], [0.0, 2], [1.0, 4], [2.0, 6], [3.0, 8]],
                    "class_above": 10},
        "code": {"score_code_version": "score1-abc", "catalogue_version": "2025.1",
                 "catalogue_sha256": _sha("catalogue"), "package_version": "0.1.0",
                 "git_commit": "0123abcd4567ef890123abcd4567ef890123abcd"},
        "factors": [
            {"slug": "reseau_gaz", "label": "Réseau de gaz", "weight": -1.0, "blocking": False, "meta": "reseaux",
             "coverage_sha256": _sha("cov gaz"), "footprint_sha256": _sha("fp gaz"), "sources": ["ore_gaz"]},
            {"slug": "reseau_souterrain_enedis", "label": "Réseau souterrain Enedis", "weight": -1.0,
             "blocking": False, "meta": "reseaux", "coverage_sha256": _sha("cov enedis"),
             "footprint_sha256": _sha("fp enedis"), "sources": ["enedis_bt", "enedis_hta"]},
        ],
        "sources": sources,
        "inputs": [
            {"asset_key": "coverage/reseau_gaz", "partition": "99101", "run_id": run_id, "storage_id": 1234},
            {"asset_key": "coverage/reseau_souterrain_enedis", "partition": "99101", "run_id": run_id,
             "storage_id": 1235},
        ],
        "outputs": {"score_sha256": _sha("score " + run_id), "class_sha256": _sha("class " + run_id),
                    "cells": 81234, "blocked_cells": 100, "score_mean": 1.23},
    }


def _elements(doc, cls):
    return {str(r.identifier): r for r in doc.get_records(cls)}


def _relations(doc, kind):
    return [tuple(str(v) if isinstance(v, QualifiedName) else v for v in r.args)
            for r in doc.get_records(ProvRelation) if r.get_type() == kind]


def _types(doc, cls):
    return sorted(str(t) for r in doc.get_records(cls) for t in r.get_attribute(PROV_TYPE))


def _one(record, name):
    (value,) = record.get_attribute(IARBRE[name])
    return value


def test_partners_are_organisations_and_iarbre_the_software_agent():
    doc = score_record_to_prov(_record())
    agents = _elements(doc, ProvAgent)
    assert set(agents) == {"iarbre:partner.2Fgrdf", "iarbre:partner.2Fenedis", "iarbre:iarbre"}
    assert agents["iarbre:partner.2Fgrdf"].get_attribute(PROV_TYPE) == {PROV["Organization"]}
    assert agents["iarbre:partner.2Fgrdf"].label == "GRDF"
    assert agents["iarbre:partner.2Fenedis"].label == "Enedis"  # two sources, one agent
    software = agents["iarbre:iarbre"]
    assert software.get_attribute(PROV_TYPE) == {PROV["SoftwareAgent"]}
    assert _one(software, "package_version") == "0.1.0"
    assert _one(software, "git_commit") == "0123abcd4567ef890123abcd4567ef890123abcd"


def test_each_delivery_version_the_catalogue_and_the_score_are_entities_each_ingest_and_the_run_activities():
    record = _record()
    doc = score_record_to_prov(record)
    entities, activities = _elements(doc, ProvEntity), _elements(doc, ProvActivity)
    assert len(entities) == 3 + 3 + 1 + 1 and len(activities) == 3 + 1
    assert _types(doc, ProvEntity) == sorted(
        ["iarbre:RawDelivery"] * 3 + ["iarbre:SourceVersion"] * 3 + ["iarbre:Catalogue", "iarbre:PlantabilityScore"])
    assert _types(doc, ProvActivity) == ["iarbre:Ingest"] * 3 + ["iarbre:ScoreRun"]

    gaz = record["sources"][0]
    raw = entities[identifier("raw", "ore_gaz", gaz["raw_sha256"])]
    assert (_one(raw, "origin"), _one(raw, "connector"), _one(raw, "licence"), _one(raw, "sha256")) == (
        gaz["origin"], "datafair", "Licence Ouverte 2.0", gaz["raw_sha256"])
    assert _one(raw, "delivered_at") == dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.timezone.utc)
    version = entities[identifier("source", "ore_gaz", "0123456789abcdef-n1")]
    assert _one(version, "normalised_sha256") == gaz["normalised_sha256"]
    assert _one(version, "accepted_at") == dt.datetime(2026, 11, 30, 10, 0, 5, tzinfo=dt.timezone.utc)
    catalogue = entities[identifier("catalogue", record["code"]["catalogue_sha256"])]
    assert _one(catalogue, "version") == "2025.1"

    score = entities[identifier("score", "99101", RUN_A)]
    assert (_one(score, "score_sha256"), _one(score, "class_sha256"), _one(score, "cells")) == (
        record["outputs"]["score_sha256"], record["outputs"]["class_sha256"], 81234)
    assert (_one(score, "grid_crs"), _one(score, "grid_cell_size_m"), _one(score, "grid_subpixel_m")) == (
        "EPSG:2154", 5.0, 1.0)
    assert json.loads(_one(score, "grid_window")) == record["grid"]["window"]
    assert json.loads(_one(score, "class_breaks")) == record["scoring"]["class_breaks"]
    assert (_one(score, "class_above"), _one(score, "blocked_score")) == (10, -5.0)

    run = activities[identifier("run", RUN_A, "score", "99101")]
    assert (_one(run, "run_id"), _one(run, "score_code_version")) == (RUN_A, "score1-abc")
    assert json.loads(_one(run, "inputs")) == record["inputs"]
    assert [f["slug"] for f in json.loads(_one(run, "factors"))] == ["reseau_gaz", "reseau_souterrain_enedis"]
    assert run.get_endTime() == dt.datetime(2026, 12, 2, 18, 0, tzinfo=dt.timezone.utc)
    ingest = activities[identifier("ingest", "ore_gaz", "0123456789abcdef-n1")]
    assert ingest.get_endTime() == dt.datetime(2026, 11, 30, 10, 0, 5, tzinfo=dt.timezone.utc)


def test_every_relation_joins_records_of_the_document():
    doc = score_record_to_prov(_record())
    known = {r.identifier for r in doc.get_records(ProvElement)}
    relations = list(doc.get_records(ProvRelation))
    assert relations
    for relation in relations:
        endpoints = [v for _, v in relation.formal_attributes if isinstance(v, QualifiedName)]
        assert len(endpoints) >= 2, relation
        assert set(endpoints) <= known, relation


def test_lineage_runs_from_partner_through_ingest_and_score_run_to_the_score():
    record = _record()
    doc = score_record_to_prov(record)
    software, score = "iarbre:iarbre", identifier("score", "99101", RUN_A)
    run = identifier("run", RUN_A, "score", "99101")
    catalogue = identifier("catalogue", record["code"]["catalogue_sha256"])
    versions = {identifier("source", s["slug"], s["version"]) for s in record["sources"]}
    accepted = dt.datetime(2026, 11, 30, 10, 0, 5, tzinfo=dt.timezone.utc)
    for s in record["sources"]:
        raw, version = identifier("raw", s["slug"], s["raw_sha256"]), identifier("source", s["slug"], s["version"])
        ingest = identifier("ingest", s["slug"], s["version"])
        assert (raw, identifier("partner", s["partner"])) in _relations(doc, PROV_ATTRIBUTION)
        assert (ingest, raw, None) in _relations(doc, PROV_USAGE)
        assert (version, ingest, accepted) in _relations(doc, PROV_GENERATION)
        assert (ingest, software, None) in _relations(doc, PROV_ASSOCIATION)
        assert (version, raw, ingest, None, None) in _relations(doc, PROV_DERIVATION)
    assert {e for a, e, _ in _relations(doc, PROV_USAGE) if a == run} == versions | {catalogue}
    assert (score, run, dt.datetime(2026, 12, 2, 18, 0, tzinfo=dt.timezone.utc)) in _relations(doc, PROV_GENERATION)
    assert (run, software, None) in _relations(doc, PROV_ASSOCIATION)
    assert {u for g, u, *_ in _relations(doc, PROV_DERIVATION) if g == score} == versions
    assert len(_relations(doc, PROV_DERIVATION)) == 3 + 3


def test_identifiers_are_valid_qnames_whose_local_part_decodes_to_the_path():
    doc = score_record_to_prov(_record())
    for element in doc.get_records(ProvElement):
        qname = element.identifier
        assert qname.namespace.uri == NAMESPACE_URI and qname.namespace.prefix == "iarbre"
        assert NCNAME.match(qname.localpart), qname
    assert local_name("raw/ore_gaz/ab12") == "raw.2Fore_gaz.2Fab12"
    assert local_name("source/x:y/2025.1 é") == "source.2Fx.3Ay.2F2025.2E1.20.C3.A9"
    for path in ("raw/ore_gaz/ab12", "source/x:y/2025.1 é", "run/9f1c-4b/score/2A004"):
        assert path_of(local_name(path)) == path
        assert path_of(identifier(*path.split("/"))) == path
    with pytest.raises(ValueError):
        local_name("2A004")  # an NCName cannot start with a digit


def test_prov_json_round_trips_and_is_stable_text():
    record = _record()
    text = prov_json(record)
    assert text == prov_json(copy.deepcopy(record))
    assert text.startswith('{\n "activity": {')  # sorted keys, indent 1
    container = json.loads(text)
    assert container["prefix"]["iarbre"] == NAMESPACE_URI
    assert set(container) >= {"agent", "entity", "activity", "used", "wasGeneratedBy", "wasDerivedFrom",
                              "wasAttributedTo", "wasAssociatedWith"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no prov warning either way (identifiers, literals)
        assert read_prov_json(text) == score_record_to_prov(record)
        assert read_prov_json(prov_json(record)) != score_record_to_prov(_record(run_id=RUN_B))


def test_commune_prov_holds_a_source_version_shared_by_two_runs_once():
    first = _record(RUN_A, "2026-12-02T18:00:00+00:00")
    second = _record(RUN_B, "2026-12-09T18:00:00+00:00")
    # the gas network was re-delivered between the runs, the two Enedis versions were not
    gaz = dict(second["sources"][0], raw_sha256=_sha("raw gaz v2"), version="fedcba9876543210-n2")
    second["sources"] = [gaz] + second["sources"][1:]
    doc = commune_prov([first, second])
    entities, activities, agents = (_elements(doc, c) for c in (ProvEntity, ProvActivity, ProvAgent))
    assert len(agents) == 3
    assert _types(doc, ProvEntity).count("iarbre:SourceVersion") == 4  # 3 + the new gas version
    assert _types(doc, ProvEntity).count("iarbre:RawDelivery") == 4
    assert _types(doc, ProvEntity).count("iarbre:Catalogue") == 1
    assert {identifier("score", "99101", RUN_A), identifier("score", "99101", RUN_B)} <= set(entities)
    assert len(activities) == 4 + 2
    shared = identifier("source", "enedis_bt", "1111222233334444-n1")
    assert [str(r.identifier) for r in doc.get_records(ProvEntity)].count(shared) == 1
    relations = [(r.get_type(), r.args) for r in doc.get_records(ProvRelation)]
    assert len(relations) == len(set(relations))  # the shared ingest's relations are not repeated
    runs_using_shared = {a for a, e, _ in _relations(doc, PROV_USAGE) if e == shared and a.startswith("iarbre:run.")}
    assert runs_using_shared == {identifier("run", RUN_A, "score", "99101"), identifier("run", RUN_B, "score", "99101")}
    known = {r.identifier for r in doc.get_records(ProvElement)}
    for relation in doc.get_records(ProvRelation):
        assert {v for _, v in relation.formal_attributes if isinstance(v, QualifiedName)} <= known
    assert read_prov_json(doc.serialize(format="json")) == doc


def test_commune_prov_refuses_no_record_and_records_of_two_communes():
    with pytest.raises(ValueError):
        commune_prov([])
    with pytest.raises(ValueError, match="99102"):
        commune_prov([_record(), dict(_record(RUN_B), commune="99102")])


def test_a_record_without_optional_keys_still_converts():
    record = _record()
    del record["code"]["git_commit"], record["inputs"]
    doc = score_record_to_prov(record)
    software = _elements(doc, ProvAgent)["iarbre:iarbre"]
    assert software.get_attribute(IARBRE["git_commit"]) == set()
    run = _elements(doc, ProvActivity)[identifier("run", RUN_A, "score", "99101")]
    assert run.get_attribute(IARBRE["inputs"]) == set()
    assert len(_elements(doc, ProvEntity)) == 8
    assert read_prov_json(prov_json(record)) == doc

    bare = {"commune": "99101", "run_id": RUN_A, "sources": [{"slug": "ore_gaz", "version": "v1"}]}
    doc = score_record_to_prov(bare)
    assert _types(doc, ProvEntity) == ["iarbre:PlantabilityScore", "iarbre:SourceVersion"]
    assert set(_elements(doc, ProvAgent)) == {"iarbre:iarbre"}
    assert read_prov_json(prov_json(bare)) == doc


def test_unknown_keys_are_ignored():
    record = _record()
    record["weather"] = {"sunny": True}
    record["sources"][0]["mirror"] = "ftp://elsewhere"
    assert score_record_to_prov(record) == score_record_to_prov(_record())


@pytest.mark.parametrize("key", ["commune", "run_id"])
@pytest.mark.parametrize("how", ["absent", "null", "empty"])
def test_a_record_without_commune_or_run_id_is_refused_naming_the_key(key, how):
    record = _record()
    if how == "absent":
        del record[key]
    else:
        record[key] = None if how == "null" else ""
    with pytest.raises(ValueError, match=repr(key)):
        score_record_to_prov(record)


def test_a_source_without_version_or_a_bad_timestamp_is_refused_naming_it():
    record = _record()
    del record["sources"][1]["version"]
    with pytest.raises(ValueError, match=r"sources\[1\]\.'version'"):
        score_record_to_prov(record)
    record = _record(materialised_at="yesterday")
    with pytest.raises(ValueError, match="materialised_at"):
        score_record_to_prov(record)
