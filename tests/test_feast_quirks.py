"""Feast 0.67 quirks docs/correctness.md names, each pinned on a throwaway store: if Feast changes,
a test here fails and docs/correctness.md (and any workaround) should follow. The others are
pinned where they matter: the file store's rows (test_point_in_time), teardown then apply
(test_consistency), plan after materialize (test_repo_lifecycle, the integration repo's
test_apply)."""

import json
from datetime import timedelta

import pandas as pd
import pytest

from feast import (Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, OnDemandFeatureView, Project,
                   RepoConfig, ValueType)
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.repo_config import RegistryConfig
from feast.repo_operations import apply_total_with_repo_instance
from feast.types import Float64, Json
from hamilton_feast import feast_operations, objects

NOW = pd.Timestamp("2026-03-01T12:00:00Z")


def throwaway_store(folder) -> FeatureStore:
    return FeatureStore(config=RepoConfig(
        project="quirks", registry=RegistryConfig(path=str(folder / "registry.db")), provider="local",
        online_store={"type": "sqlite", "path": str(folder / "online.db")},
        entity_key_serialization_version=3, repo_path=str(folder),
    ))


def _double(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"doubled": inputs["x"] * 2})


def definitions(folder, on_demand_tags: dict, on_demand_description: str = "") -> list:
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(name="stats", path=str(folder / "stats.parquet"), timestamp_field="event_timestamp")
    view = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=1), source=source,
                       schema=[Field(name="x", dtype=Float64), Field(name="config", dtype=Json)])
    on_demand = OnDemandFeatureView(
        name="doubled", sources=[view], mode="pandas", udf=_double,
        udf_string="def _double(inputs):\n    return pd.DataFrame({'doubled': inputs['x'] * 2})\n",
        schema=[Field(name="doubled", dtype=Float64, description=on_demand_description)], tags=on_demand_tags,
    )
    return [Project(name="quirks"), driver, source, view, on_demand]


def register(store: FeatureStore, objects_: list) -> None:
    apply_total_with_repo_instance(store, "quirks", store.registry, objects.repo_contents(objects_, "quirks"),
                                   skip_source_validation=True)


def test_feast_applies_no_change_of_tags_alone_to_an_on_demand_view_and_registered_does(tmp_path):
    store = throwaway_store(tmp_path)
    register(store, definitions(tmp_path, {"version": "1"}))
    retagged = objects.repo_contents(definitions(tmp_path, {"version": "2"}), "quirks")
    registry_diff, _, _ = store.plan(retagged)
    assert {d.name: d.transition_type.name for d in registry_diff.feast_object_diffs}["doubled"] == "UNCHANGED"
    register(store, definitions(tmp_path, {"version": "2"}))
    read = lambda: store.registry.get_on_demand_feature_view("doubled", "quirks", allow_cache=False).tags
    assert read() == {"version": "1"}, "Feast now applies tag-only changes: drop the workaround in registered"
    feast_operations.registered(store, objects.repo_contents(definitions(tmp_path, {"version": "2"}), "quirks"))
    assert read() == {"version": "2"}


def test_feast_applies_no_change_of_a_feature_services_logging_alone_and_registered_does(tmp_path, capsys):
    def service(logged: bool) -> FeatureService:
        logging = LoggingConfig(destination=FileLoggingDestination(path=str(tmp_path / "logs"))) if logged else None
        return FeatureService(name="service", features=[definitions(tmp_path, {})[3]], logging_config=logging)

    store = throwaway_store(tmp_path)
    register(store, [*definitions(tmp_path, {}), service(logged=False)])
    logged = objects.repo_contents([*definitions(tmp_path, {}), service(logged=True)], "quirks")
    registry_diff, _, _ = store.plan(logged)
    assert {d.name: d.transition_type.name for d in registry_diff.feast_object_diffs}["service"] == "UNCHANGED"
    register(store, [*definitions(tmp_path, {}), service(logged=True)])
    read = lambda: store.registry.get_feature_service("service", "quirks", allow_cache=False).logging_config  # noqa: E731
    assert read() is None, "Feast now applies logging-only changes: drop the workaround in registered"
    capsys.readouterr()
    feast_operations.registered(store, objects.repo_contents([*definitions(tmp_path, {}), service(logged=True)], "quirks"))
    assert "Updated feature service service: logging_config" in capsys.readouterr().out
    assert read().destination.path == str(tmp_path / "logs")


def test_an_on_demand_field_with_a_description_fails_apply(tmp_path):
    store = throwaway_store(tmp_path)
    with pytest.raises(Exception, match="not found in inferred list of features"):
        register(store, definitions(tmp_path, {}, on_demand_description="twice x"))


def test_a_json_field_is_text_in_training_sets_and_parsed_online(tmp_path):
    config = {"zones": ["north"], "max_km": 50}
    pd.DataFrame({
        "driver_id": [1], "event_timestamp": [NOW - pd.Timedelta(hours=1)], "x": [1.5],
        "config": [json.dumps(config)],
    }).to_parquet(tmp_path / "stats.parquet")
    store = throwaway_store(tmp_path)
    register(store, definitions(tmp_path, {}))
    store.materialize(start_date=(NOW - pd.Timedelta(days=1)).to_pydatetime(), end_date=NOW.to_pydatetime())
    training = store.get_historical_features(
        entity_df=pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]}), features=["stats:config"]).to_df()
    online = store.get_online_features(features=["stats:config"], entity_rows=[{"driver_id": 1}]).to_dict()
    assert isinstance(training["config"][0], str) and json.loads(training["config"][0]) == config
    assert online["config"] == [config]
