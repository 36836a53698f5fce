"""Partner drops are matched to a source by name, whatever the case, copies, spaces or Unicode form."""

from __future__ import annotations

import os
import unicodedata

import pytest

from iarbre_assets.catalog import load_catalog, load_territory
from iarbre_assets.store import Store
from iarbre_assets.store.inbox import name_key, source_names


@pytest.fixture(scope="module")
def sources():
    catalogue = load_catalog()
    return load_territory("demo", catalogue).source_defs(catalogue)


def _by_partner(sources):
    out = {}
    for s in sources.values():
        out.setdefault(s.partner, []).append(s)
    return out


@pytest.mark.parametrize("name", ["assainissement.geojson", "Assainissement.geojson", "assainissement (1).geojson",
                                  "ASSAINISSEMENT - Copie.geojson", "assainissement_copy.geojson"])
def test_a_drop_matches_its_source_whatever_the_case_or_copy_marker(name, sources):
    assert name_key(name) == "assainissement"
    assert name_key(name) in source_names(sources["assainissement"])


def test_unicode_forms_and_spaces_give_the_same_key():
    nfd = unicodedata.normalize("NFD", "Réseau gaz.geojson")
    assert name_key(nfd) == name_key("réseau_gaz.geojson") == name_key("RÉSEAU-GAZ.geojson")


def test_remote_sources_take_drops_too_by_slug_or_dataset_id(sources):
    assert {"ore_gaz", "infrastructures_reseau_gaz"} <= source_names(sources["ore_gaz"])
    assert "abrarbre" in source_names(sources["arbres_alignement"])


def test_scan_classifies_every_file_once(tmp_path, sources):
    store = Store(tmp_path)
    grdf, enedis = store.inbox("grdf"), store.inbox("enedis")
    grdf.mkdir(parents=True)
    enedis.mkdir(parents=True)
    (grdf / "anything.geojson").write_text("{}")          # GRDF has one source: any data file is for it
    (grdf / "notice.pdf").write_bytes(b"%PDF")             # a document, not a delivery
    (enedis / "lignes.geojson").write_text("{}")          # Enedis has two sources: the name must say which
    (enedis / "ore_bt_aerien.geojson").write_text("{}")
    os.symlink("/etc/hostname", enedis / "ore_bt_souterrain.geojson")
    verdicts = {v.drop.path.name: v for v in store.drops.scan(_by_partner(sources))}
    assert (verdicts["anything.geojson"].state, verdicts["anything.geojson"].source) == ("candidate", "ore_gaz")
    assert verdicts["notice.pdf"].state == "ignored"
    assert verdicts["lignes.geojson"].state == "quarantined" and "ore_bt_aerien" in verdicts["lignes.geojson"].reason
    assert verdicts["ore_bt_aerien.geojson"].source == "ore_bt_aerien"
    link = verdicts["ore_bt_souterrain.geojson"]
    assert link.state == "quarantined" and "symbolic link" in link.reason and link.drop.sha256 == ""


def test_pending_drops_end_once_the_ledger_gives_them_a_state(tmp_path, sources):
    store = Store(tmp_path)
    folder = store.inbox("metropole_eau")
    folder.mkdir(parents=True)
    (folder / "assainissement.geojson").write_text('{"a": 1}')
    source = sources["assainissement"]
    partner_sources = _by_partner(sources)["metropole_eau"]
    [drop] = store.drops.pending(source, partner_sources)
    store.drops.record(drop, "accepted", source="assainissement", reason="version x")
    assert store.drops.pending(source, partner_sources) == []
    (folder / "assainissement.geojson").write_text('{"a": 2}')  # new bytes under the same name: a new delivery
    assert len(store.drops.pending(source, partner_sources)) == 1
