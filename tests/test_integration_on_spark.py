"""integration_feature_store on Spark (feature_store.spark.yaml), in local mode: the DAG's transforms run by
Spark equal the one-process run, checks still stop a bad run, and Feast's Spark store and engine
serve the same values as the local configuration. `pytest -k test_spark` selects these; they
need the `spark` extra and Java 17, and fail (not skip) without them."""

import sys

import numpy as np
import pandas as pd
import pytest
from hamilton import driver
from this_repo import RAW_DATA, REPO, SMALL, VIEW

from feast import FeatureStore
from hamilton_feast import Repo, feast_operations, spark, streaming, training_sets
from hamilton_feast.testing import copy_repo, generate_data, registry_objects, run

pytestmark = pytest.mark.xdist_group("spark")  # one worker, one Spark session
SPARK_YAML = "feature_store.spark.yaml"
SPARK_TABLE = "data/spark/driver_trip_features"


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """One copy with 20,000 trips over 14 days (several ranges of 4 days), applied and
    materialized twice: in one process, and with the Spark configuration. The raw times are
    pandas' default unit, nanoseconds, in New York time, which Spark reads only as numbers."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("spark"))
    generate_data(repo_dir, "--trips", "20000", "--drivers", "30")
    raw = pd.read_parquet(repo_dir / RAW_DATA)
    nanoseconds = {c: raw[c].dt.tz_convert("America/New_York").dt.as_unit("ns") for c in ("event_timestamp", "created")}
    raw.assign(**nanoseconds).to_parquet(repo_dir / RAW_DATA)
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    run([sys.executable, "apply.py", "--feature-store-yaml", SPARK_YAML, "--materialize"], cwd=repo_dir)
    return repo_dir


def spark_store(repo_dir) -> FeatureStore:
    """The Spark configuration's store, its session started as apply.py starts it."""
    store = FeatureStore(repo_path=str(repo_dir), fs_yaml_file=repo_dir / SPARK_YAML)
    spark.session(store)
    return store


def same_rows(one: pd.DataFrame, other: pd.DataFrame, order) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (one.sort_values(order, kind="stable").reset_index(drop=True),
            other.sort_values(order, kind="stable").reset_index(drop=True))


def test_spark_transforms_equal_the_one_process_run(both):
    local = pd.read_parquet(both / VIEW.table)
    on_spark = pd.read_parquet(both / SPARK_TABLE)
    assert list(on_spark.columns) == list(local.columns) and len(on_spark) == len(local) == 20000
    assert str(on_spark.event_timestamp.dtype).endswith("UTC]"), "times come back in UTC"
    on_spark = on_spark.astype({"event_timestamp": local.event_timestamp.dtype, "created": local.created.dtype})
    order = ["event_timestamp", "created", "driver_id", "trip_dist_pct_rank_3h_all_drivers"]
    local, on_spark = same_rows(local, on_spark, order)
    for column in local.columns:
        if pd.api.types.is_float_dtype(local[column]):
            np.testing.assert_allclose(on_spark[column], local[column], rtol=1e-9, atol=0, err_msg=column)
        else:
            np.testing.assert_array_equal(on_spark[column].to_numpy(), local[column].to_numpy(), column)


def test_spark_configuration_registers_a_spark_source_by_either_path(both):
    source = FeatureStore(repo_path=str(both), fs_yaml_file=both / SPARK_YAML).get_data_source("driver_trip_features_source")
    assert type(source).__name__ == "SparkSource" and source.path == str(both / SPARK_TABLE)
    by_script = registry_objects(both, fs_yaml_file=both / SPARK_YAML)
    (both / "data/spark/registry.db").rename(both / "data/spark/registry.by_script.db")
    try:
        run(["feast", "-f", SPARK_YAML, "apply"], cwd=both)  # feature_definitions.py sees the file
        by_cli = registry_objects(both, fs_yaml_file=both / SPARK_YAML)
    finally:
        (both / "data/spark/registry.by_script.db").replace(both / "data/spark/registry.db")
    strip = lambda objects: {k: {**v, "meta": {}} for k, v in objects.items()}  # materialization intervals
    assert strip(by_cli) == strip(by_script)


def test_spark_engine_serves_what_the_local_configuration_serves(both):
    drivers = [{"driver_id": d} for d in range(1001, 1031)]
    features = [f"driver_trip_stats:{f}" for f in VIEW.fields]
    local = FeatureStore(repo_path=str(both)).get_online_features(features=features, entity_rows=drivers).to_df()
    served = spark_store(both).get_online_features(features=features, entity_rows=drivers).to_df()
    assert local["driver_trips_24h"].notna().sum() >= 10
    pd.testing.assert_frame_equal(served, local, check_exact=False, rtol=1e-9)


def test_spark_training_sets_equal_duckdbs_by_feasts_store_and_the_fast_path(both):
    trips = pd.read_parquet(both / RAW_DATA).sample(1500, random_state=8)
    entity_df = trips[["driver_id", "event_timestamp", "trip_dist"]].rename(columns={"trip_dist": "requested_trip_dist"})
    entity_df = entity_df.reset_index(drop=True)
    entity_df.loc[::4, "event_timestamp"] -= pd.Timedelta(minutes=41)
    entity_df = pd.concat([entity_df, entity_df.head(25)], ignore_index=True)  # duplicate rows
    entity_df["requested_at"] = entity_df["event_timestamp"]
    store = spark_store(both)
    service = store.get_feature_service("trip_rating_model_v1")
    by_spark = training_sets.get_training_set_from_feast(store, entity_df, service)
    fast_on_spark_table = training_sets.get_training_set(store, entity_df, service)
    local_store = FeatureStore(repo_path=str(both))
    by_duckdb = training_sets.get_training_set_from_feast(local_store, entity_df, local_store.get_feature_service("trip_rating_model_v1"))
    assert len(by_spark) == len(by_duckdb) == 1525
    for answer in (by_spark, fast_on_spark_table):  # the caller's columns as given (Spark's times have no zone)
        pd.testing.assert_frame_equal(answer[list(entity_df.columns)], entity_df)
    assert by_duckdb["driver_trips_3h"].isna().sum() > 0, "some rows fall outside the TTL"
    for name in [f.name for p in service.feature_view_projections for f in p.features]:
        for answer in (by_spark, fast_on_spark_table):
            np.testing.assert_allclose(answer[name].astype("float64"), by_duckdb[name].astype("float64"),
                                       rtol=1e-9, equal_nan=True, err_msg=name)


def test_spark_check_output_still_stops_a_bad_run(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, "--trips", "3000", "--drivers", "10", "--days", "3")
    raw = pd.read_parquet(repo_dir / RAW_DATA)
    raw.loc[1500, "trip_dist"] = 50_000.0  # a plausible dtype, an impossible distance
    raw.to_parquet(repo_dir / RAW_DATA)
    repo = Repo(repo_dir, SPARK_YAML)
    dr = driver.Builder().with_modules(*repo.modules, repo.saved_tables, feast_operations).with_config(repo.config).build()
    with pytest.raises(ValueError, match=r"a Spark task failed: .*\[driver_trip_dist_\w+:range_validator\] validator failed"):
        dr.execute(["registered"], inputs=repo.inputs)
    assert not (repo_dir / "data/spark/registry.db").exists()


def test_spark_stream_foreach_batch_equals_the_one_process_answer(tmp_path):
    """stream.py --landing with the Spark configuration: raw files landing in a folder, read by
    Spark Structured Streaming's file source, a micro-batch a file, each handed in foreachBatch to
    the one-process consumer's micro-batch function (padded, the repo's DAG, the push source).
    The rows equal the one-process DAG over the same raw trips, and each streamed trip is added once."""
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL, "--stream-days", "1")
    repo = Repo(repo_dir, SPARK_YAML)
    repo.driver().execute(["registered"], inputs=repo.inputs)  # apply.py, in this process's Spark session
    trips = pd.read_parquet(repo_dir / "data/stream_trips.parquet")
    landing = repo_dir / "data/landing"
    landing.mkdir()
    for part, rows in enumerate(np.array_split(trips, 2)):
        rows.to_parquet(landing / f"part-{part}.parquet", index=False)
    dag = driver.Builder().with_modules(*repo.modules, repo.table_nodes).with_config(repo.hamilton_config).build()
    counts = streaming.run(repo, dag, streaming.arguments("stream.py", ["--feature-store-yaml", SPARK_YAML,
                                                                        "--landing", "data/landing", "--until-idle"]))
    assert counts.rows == counts.flushed == len(trips) > 500
    keys = ["driver_id", "event_timestamp", "created"]
    on_spark = pd.read_parquet(repo_dir / SPARK_TABLE)
    on_spark = on_spark.astype({"event_timestamp": "datetime64[us, UTC]", "created": "datetime64[us, UTC]"})
    [table] = repo.saved_table_names
    one_process = dag.execute([table], inputs=repo.inputs)[table]
    assert not on_spark.duplicated(keys).any() and len(on_spark) == len(one_process)
    on_spark, one_process = same_rows(on_spark[list(one_process.columns)], one_process, keys)
    for column in one_process.columns:
        if column.startswith("driver_trip_dist_mean"):
            np.testing.assert_allclose(on_spark[column], one_process[column], rtol=1e-9, atol=0, err_msg=column)
        else:
            np.testing.assert_array_equal(on_spark[column].to_numpy(), one_process[column].to_numpy(), column)
    raw = pd.read_parquet(repo_dir / RAW_DATA)
    assert len(raw) == len(one_process) and not raw.duplicated().any()
    latest = one_process.sort_values(keys[1:]).groupby("driver_id").tail(1).set_index("driver_id")
    drivers = sorted(int(d) for d in latest.index)
    served = spark_store(repo_dir).get_online_features(
        features=[f"{VIEW.name}:driver_trips_24h"], entity_rows=[{"driver_id": d} for d in drivers]).to_dict()
    fresh = latest.event_timestamp > pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)
    assert fresh.sum() >= 5
    assert served["driver_trips_24h"] == [int(latest.loc[d, "driver_trips_24h"]) if fresh[d] else None for d in drivers]
