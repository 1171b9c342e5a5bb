"""The default repo and its Hamilton twin behave as Feast repos should, from apply to teardown,
with sqlite and with Redis online.

The tests of the class work on temporary copies (see the `applied_repos` fixture) and run in
order, as a user would run the steps; every other test makes its own copy.
"""

import sqlite3
import sys

import numpy as np
import pandas as pd
import pytest
import redis
from cross_repo import APPLY, DEFAULT, PLAN, ROOT, SIMPLE

from feast import FeatureStore
from feast.data_source import PushMode
from hamilton_feast.testing import copy_repo, file_hashes, generate_data, run

REPOS = [DEFAULT, SIMPLE]
TTL = pd.Timedelta(days=1)
REQUEST_VALUES = {"val_to_add": [5, 7], "val_to_add_2": [50, 70]}
# Online lookups for drivers 1001 and 1002, each with its request-time values.
ENTITY_ROWS = [
    {"driver_id": 1001, "val_to_add": 5, "val_to_add_2": 50},
    {"driver_id": 1002, "val_to_add": 7, "val_to_add_2": 70},
]


def expected_point_in_time(entity_df: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Feast's documented semantics, by other means: for each entity row, the driver's latest
    stats row at or before its timestamp and no older than the TTL, else nothing."""
    stats = stats.astype({"event_timestamp": entity_df.event_timestamp.dtype})
    stats = stats.sort_values(["event_timestamp", "created"])
    return pd.merge_asof(
        entity_df.sort_values("event_timestamp"),
        stats.drop(columns=["created"]),
        on="event_timestamp",
        by="driver_id",
        direction="backward",
        tolerance=TTL,
    )


def read_parquet(repo_dir, relative_path: str) -> pd.DataFrame:
    return pd.read_parquet(repo_dir / relative_path)


@pytest.mark.parametrize("repo", REPOS)
def test_a_plan_right_after_apply_shows_no_changes_and_after_materialize_an_update(repo, tmp_path):
    """The second part is a Feast 0.67 quirk docs/correctness.md names: materializing changes the
    stored views (their intervals), so the next plan reports them as Updated."""
    repo_dir = copy_repo(ROOT / repo, tmp_path)
    generate_data(repo_dir)
    run(APPLY[repo], cwd=repo_dir)
    output = run(PLAN[repo], cwd=repo_dir).stdout
    assert "No changes to registry" in output and "No changes to infrastructure" in output
    FeatureStore(repo_path=str(repo_dir)).materialize_incremental(
        end_date=pd.Timestamp.now(tz="UTC").to_pydatetime())
    output = run(PLAN[repo], cwd=repo_dir).stdout
    assert "Updated feature view" in output and "driver_hourly_stats" in output


@pytest.mark.parametrize("repo", REPOS)
class TestRepoLifecycle:
    def test_materialized_online_features_are_each_drivers_latest_row(self, applied_repos, repo):
        repo_dir, _ = applied_repos[repo]
        store = FeatureStore(repo_path=str(repo_dir))
        now = pd.Timestamp.now(tz="UTC")
        store.materialize_incremental(end_date=now.to_pydatetime())

        response = store.get_online_features(
            features=store.get_feature_service("driver_activity_v1"),
            entity_rows=ENTITY_ROWS,
        ).to_df()

        stats = read_parquet(repo_dir, "data/driver_stats.parquet")
        latest = stats[stats.event_timestamp <= now].sort_values("event_timestamp")
        latest = latest.groupby("driver_id").last().loc[[1001, 1002]]
        np.testing.assert_allclose(response["conv_rate"], latest["conv_rate"], rtol=1e-6)
        np.testing.assert_allclose(
            response["conv_rate_plus_val1"],
            latest["conv_rate"].to_numpy() + REQUEST_VALUES["val_to_add"],
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            response["conv_rate_plus_val2"],
            latest["conv_rate"].to_numpy() + REQUEST_VALUES["val_to_add_2"],
            rtol=1e-6,
        )

    def test_a_training_set_takes_each_drivers_label_as_of_the_row(self, applied_repos, repo):
        """The label view: the driver's latest review at or before each row (it has no TTL)."""
        repo_dir, _ = applied_repos[repo]
        store = FeatureStore(repo_path=str(repo_dir))
        labels = read_parquet(repo_dir, "data/driver_quality_labels.parquet")
        rng = np.random.default_rng(11)
        start, span_s = labels.event_timestamp.min(), (labels.event_timestamp.max() - labels.event_timestamp.min())
        entity_df = pd.DataFrame({
            "driver_id": rng.choice([1001, 1002, 1003, 1004, 1005, 9999], 100),
            "event_timestamp": start + pd.to_timedelta(rng.integers(0, span_s.total_seconds(), 100), "s"),
        }).astype({"event_timestamp": labels.event_timestamp.dtype})
        actual = store.get_historical_features(
            entity_df=entity_df,
            features=["driver_quality_labels:is_reliable", "driver_quality_labels:quality_score"],
        ).to_df()
        expected = pd.merge_asof(
            entity_df.sort_values("event_timestamp"),
            labels.sort_values("event_timestamp")[["driver_id", "event_timestamp", "is_reliable", "quality_score"]],
            on="event_timestamp", by="driver_id", direction="backward",
        )
        merged = expected.merge(actual, on=["driver_id", "event_timestamp"], suffixes=("_expected", ""))
        assert len(merged) == 100
        assert merged["is_reliable"].isna().sum() == (merged.driver_id == 9999).sum() > 0
        np.testing.assert_array_equal(merged["is_reliable"].to_numpy(), merged["is_reliable_expected"].to_numpy())
        np.testing.assert_allclose(merged["quality_score"], merged["quality_score_expected"], rtol=1e-6)

    def test_historical_features_match_point_in_time_semantics(self, applied_repos, repo):
        repo_dir, _ = applied_repos[repo]
        store = FeatureStore(repo_path=str(repo_dir))
        stats = read_parquet(repo_dir, "data/driver_stats.parquet")
        rng = np.random.default_rng(7)
        n = 200
        # Within the data's time range. Feast's file offline store (this repo's, as in the
        # template) drops entity rows older than a driver's first stats row rather than
        # returning them without features; keeping those rows is the correctness issue's job.
        start = stats.event_timestamp.min()
        span_s = (stats.event_timestamp.max() - start).total_seconds()
        entity_df = pd.DataFrame(
            {
                "driver_id": rng.choice([1001, 1002, 1003, 1004, 1005, 9999], n),
                "event_timestamp": start + pd.to_timedelta(rng.integers(0, span_s, n), "s"),
                "val_to_add": rng.integers(0, 100, n),
                "val_to_add_2": rng.integers(0, 100, n),
            }
        )
        actual = store.get_historical_features(
            entity_df=entity_df,
            features=[
                "driver_hourly_stats:conv_rate",
                "driver_hourly_stats:avg_daily_trips",
                "transformed_conv_rate:conv_rate_plus_val1",
            ],
        ).to_df()
        expected = expected_point_in_time(entity_df, stats)

        key = ["driver_id", "event_timestamp", "val_to_add", "val_to_add_2"]
        merged = expected.merge(actual, on=key, suffixes=("_expected", ""), validate="1:1")
        assert len(merged) == n
        assert merged["conv_rate"].isna().sum() > 0, "driver 9999 has no features: expect nulls"
        np.testing.assert_allclose(merged["conv_rate"], merged["conv_rate_expected"], rtol=1e-6)
        np.testing.assert_array_equal(
            merged["avg_daily_trips"].astype("Float64"), merged["avg_daily_trips_expected"].astype("Float64")
        )
        np.testing.assert_allclose(
            merged["conv_rate_plus_val1"], merged["conv_rate_expected"] + merged["val_to_add"], rtol=1e-6
        )

    def test_pushed_event_is_served_online_and_stored_offline(self, applied_repos, repo):
        repo_dir, _ = applied_repos[repo]
        store = FeatureStore(repo_path=str(repo_dir))
        rows_before = len(read_parquet(repo_dir, "data/driver_stats.parquet"))
        now = pd.Timestamp.now(tz="UTC")
        event = pd.DataFrame(
            {
                "driver_id": [1001],
                "event_timestamp": [now],
                "created": [now],
                "conv_rate": [0.125],
                "acc_rate": [0.25],
                "avg_daily_trips": [4242],
                "driver_metadata": [{"vehicle_type": "truck", "rating": "5.0"}],
                "driver_config": ['{"max_distance_km": 500, "preferred_zones": ["north"]}'],
                "driver_profile": [{"name": "pushed", "age": "30"}],
            }
        )
        store.push("driver_stats_push_source", event, to=PushMode.ONLINE_AND_OFFLINE)

        served = store.get_online_features(
            features=store.get_feature_service("driver_activity_v3"),
            entity_rows=ENTITY_ROWS,
        ).to_dict()
        assert served["conv_rate"][0] == 0.125
        assert served["avg_daily_trips"][0] == 4242
        assert served["conv_rate_plus_val1"][0] == pytest.approx(0.125 + 5)
        assert served["driver_profile"][0] == {"name": "pushed", "age": "30"}
        assert served["avg_daily_trips"][1] != 4242, "driver 1002 was not pushed"
        assert len(read_parquet(repo_dir, "data/driver_stats.parquet")) == rows_before + 1

    def test_teardown_removes_the_online_tables(self, applied_repos, repo):
        repo_dir, _ = applied_repos[repo]
        online_db = repo_dir / "data" / "online_store.db"

        def online_tables():
            with sqlite3.connect(online_db) as connection:
                rows = connection.execute("select name from sqlite_master where type='table'")
                return {name for (name,) in rows if name.startswith(repo)}

        assert f"{repo}_driver_hourly_stats" in online_tables()
        run(["feast", "teardown"], cwd=repo_dir)
        assert online_tables() == set()

    def test_the_whole_lifecycle_leaves_the_repo_code_unchanged(self, applied_repos, repo):
        repo_dir, hashes_after_copy = applied_repos[repo]
        assert file_hashes(repo_dir) == hashes_after_copy


# --- Redis online ------------------------------------------------------------------------------


@pytest.mark.parametrize("repo", REPOS)
def test_redis_online_store_serves_materialized_and_pushed_features(repo, redis_server, tmp_path, monkeypatch):
    host, port = redis_server.split(":")
    client = redis.Redis(host=host, port=int(port))
    client.flushall()  # the server is shared by the session: start from nothing
    repo_dir = copy_repo(ROOT / repo, tmp_path)
    generate_data(repo_dir)
    monkeypatch.setenv("REDIS_CONNECTION_STRING", redis_server)
    command = {DEFAULT: ["feast", "--feature-store-yaml", "feature_store.redis.yaml", "apply"],
               SIMPLE: [sys.executable, "apply.py", "--feature-store-yaml", "feature_store.redis.yaml"]}
    run(command[repo], cwd=repo_dir, env={"REDIS_CONNECTION_STRING": redis_server})

    store = FeatureStore(repo_path=str(repo_dir), fs_yaml_file=repo_dir / "feature_store.redis.yaml")
    assert store.config.online_store.type == "redis"
    now = pd.Timestamp.now(tz="UTC")
    store.materialize_incremental(end_date=now.to_pydatetime())
    assert client.dbsize() > 0, "nothing was written to Redis"

    stats = read_parquet(repo_dir, "data/driver_stats.parquet")
    latest = stats.sort_values(["event_timestamp", "created"]).groupby("driver_id").last()
    row = {"driver_id": 1001, "val_to_add": 1, "val_to_add_2": 2}
    served = store.get_online_features(
        features=store.get_feature_service("driver_activity_v1"), entity_rows=[row]).to_dict()
    assert served["conv_rate"] == pytest.approx([latest.loc[1001, "conv_rate"]])

    pushed = stats[stats.driver_id == 1001].tail(1).assign(
        event_timestamp=now.floor("us"), created=now.floor("us"), avg_daily_trips=4242)
    store.push("driver_stats_push_source", pushed, to=PushMode.ONLINE)
    served = store.get_online_features(
        features=store.get_feature_service("driver_activity_v3"), entity_rows=[row]).to_dict()
    assert served["avg_daily_trips"] == [4242]
