"""Deployment profiles: the single and cluster instances, chosen by configuration, and how the cluster
splits a run into phases. No server is started here (tests/integration/test_cluster.py does)."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from dagster._core.instance.config import dagster_instance_config

from iarbre_assets.automation.refresh import REFRESH_TRIGGER
from iarbre_assets.deployment.profiles import (
    CELERY_SETTINGS,
    Profile,
    ProfileError,
    backfill_policy_for,
    executor_for,
    load_profile,
    worker_config_module,
    write_instance_config,
)
from iarbre_assets.runner import cluster_phases

CLUSTER = Profile(name="cluster", postgres_url="postgresql+psycopg2://postgres@127.0.0.1:5999/iarbre",
                  broker_url="redis://127.0.0.1:6999/0", communes_per_run=2)


def test_a_home_without_a_profile_is_single_with_sqlite_and_the_in_process_executor(tmp_path):
    profile = write_instance_config(tmp_path)
    config, _ = dagster_instance_config(str(tmp_path))
    assert profile.name == "single"
    assert config["event_log_storage"]["class"] == "PooledSqliteEventLogStorage"
    assert "storage" not in config
    assert executor_for(profile).name == "in_process"
    assert backfill_policy_for(profile) == dg.BackfillPolicy.single_run()


def test_the_cluster_profile_writes_postgres_storage_a_queue_with_tag_limits_and_the_celery_executor(tmp_path):
    write_instance_config(tmp_path, CLUSTER)
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_url"] == CLUSTER.postgres_url
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "iarbre/trigger", "value": REFRESH_TRIGGER, "limit": 1} in limits  # the refresh sensor's runs
    assert config["concurrency"]["pools"]["default_limit"] == 1  # one DuckDB writer, on every profile
    assert "event_log_storage" not in config
    assert load_profile(tmp_path) == CLUSTER  # saved with the instance, read back by the code location
    assert executor_for(CLUSTER).name == "celery_executor"
    assert backfill_policy_for(CLUSTER) == dg.BackfillPolicy.multi_run(2)


def test_the_workers_and_the_executor_share_one_broker_and_one_set_of_celery_settings():
    namespace: dict = {}
    exec(worker_config_module(CLUSTER), namespace)  # noqa: S102 - the module we write for the workers
    assert namespace["broker_url"] == CLUSTER.broker_url == namespace["result_backend"]
    for key, value in CELERY_SETTINGS.items():
        assert namespace[key] == value, key
    assert namespace["task_acks_late"] and namespace["task_reject_on_worker_lost"]


def test_a_cluster_profile_without_its_servers_or_with_a_bad_field_is_refused_naming_what_is_wrong(tmp_path):
    with pytest.raises(ProfileError, match="postgres_url and broker_url"):
        Profile(name="cluster")
    with pytest.raises(ProfileError, match="unknown profile 'kubernetes'"):
        Profile(name="kubernetes")
    with pytest.raises(ProfileError, match="communes_per_run must be at least 1"):
        CLUSTER.with_updates(communes_per_run=0)
    (tmp_path / "profile.json").write_text(json.dumps({"name": "single", "workers": 3}))
    with pytest.raises(ProfileError, match=r"profile\.json.*workers"):
        load_profile(tmp_path)


def _graph():
    parts = dg.StaticPartitionsDefinition(["a", "b", "c", "d", "e"])

    @dg.asset
    def source():
        ...

    @dg.asset(deps=[source], partitions_def=parts)
    def per_commune():
        ...

    @dg.asset(deps=[per_commune])
    def mosaic():
        ...

    @dg.asset(deps=[source])
    def inventory():  # reads only the sources, but is not read by any per-commune asset
        ...

    return dg.Definitions(assets=[source, per_commune, mosaic, inventory]).resolve_asset_graph()


def test_a_cluster_run_is_the_sources_then_commune_batches_at_once_then_every_territory_output():
    graph = _graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    phases = cluster_phases(graph, keys, ["a", "b", "c", "d", "e"], batch=2)
    names = [[(sorted(k.to_user_string() for k in run), span) for run, span in phase] for phase in phases]
    assert names == [
        [(["source"], None)],
        [(["per_commune"], ("a", "b")), (["per_commune"], ("c", "d")), (["per_commune"], ("e", "e"))],
        [(["inventory", "mosaic"], None)],
    ]


def test_a_selection_without_per_commune_assets_is_one_run():
    graph = _graph()
    keys = [dg.AssetKey("source"), dg.AssetKey("inventory")]
    assert cluster_phases(graph, keys, ["a", "b"], batch=1) == [[(keys, None)]]
