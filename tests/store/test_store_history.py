"""The score history keeps every run's outputs by run id and label, without copies, and prunes safely."""

from __future__ import annotations

import os

import pytest

from iarbre_assets.store import Store
from iarbre_assets.store.history import UnknownRunError


def _write(store: Store, run: str, commune: str, text: str, at: str) -> None:
    path = store.score(commune)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # the way every store write lands: a rename over the current file
    store.history.register_run(run, [commune], at=at)
    store.history.keep(run, commune, "score", path)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    _write(s, "run-a", "001", "A1", "2026-01-01T00:00:00+00:00")
    _write(s, "run-a", "002", "A2", "2026-01-01T00:00:00+00:00")
    _write(s, "run-b", "001", "B1", "2026-02-01T00:00:00+00:00")  # a partner update touching 001 only
    return s


def test_the_map_as_of_a_run_takes_each_commune_from_its_latest_run(store):
    before, after = store.history.state("run-a"), store.history.state("run-b")
    assert before["001"]["score"].read_text() == "A1" and before["002"]["score"].read_text() == "A2"
    assert after["001"]["score"].read_text() == "B1" and after["002"]["score"].read_text() == "A2"
    assert store.score("001").read_text() == "B1"


def test_kept_outputs_are_hard_links_not_copies(store):
    assert os.path.samefile(store.history.state("run-b")["001"]["score"], store.score("001"))


def test_runs_resolve_by_id_prefix_label_latest_and_previous(store):
    history = store.history
    assert history.resolve("latest").run_id == "run-b" and history.resolve("previous").run_id == "run-a"
    assert history.resolve("run-a").run_id == "run-a"
    history.label("before GRDF 2026-12", "run-a")
    assert history.resolve("before GRDF 2026-12").run_id == "run-a"
    assert history.resolve("run-a").labels == ("before GRDF 2026-12",)
    with pytest.raises(UnknownRunError, match="unknown run or label 'nope'"):
        history.resolve("nope")
    with pytest.raises(UnknownRunError, match="matches 2 runs"):
        history.resolve("run-")


def test_pruning_keeps_the_current_map_and_pinned_runs(store):
    _write(store, "run-c", "002", "C2", "2026-03-01T00:00:00+00:00")
    store.history.label("pinned", "run-a")
    assert store.history.prune(keep_runs=1) == ["run-b"]
    ids = [r.run_id for r in store.history.runs()]
    assert ids == ["run-a", "run-c"]
    current = store.history.state("latest")
    # the current map still reads run-b's entry for 001 (no later run touched it): it was not deleted
    assert current["001"]["score"].read_text() == "B1" and current["002"]["score"].read_text() == "C2"
    assert store.history.state("pinned")["001"]["score"].read_text() == "A1"
    with pytest.raises(UnknownRunError):
        store.history.resolve("run-b")


def test_pruning_deletes_what_no_kept_map_reads(store):
    _write(store, "run-c", "001", "C1", "2026-03-01T00:00:00+00:00")
    forgotten = store.history.prune(keep_runs=1)
    assert forgotten == ["run-a", "run-b"]
    assert not store.history.entry_path("run-b", "001", "score").exists()
    assert store.history.entry_path("run-a", "002", "score").exists()  # 002 as of run-c is run-a's
    assert store.history.state("latest")["002"]["score"].read_text() == "A2"
