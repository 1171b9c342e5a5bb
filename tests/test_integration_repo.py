"""integration_feature_store end to end: raw trips -> Hamilton -> Feast -> training and serving."""

import json
import sys

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from conftest import (
    FEATURE_VIEW_FIELDS,
    ROOT,
    copy_repo,
    file_hashes,
    generate_data,
    repo_modules,
    run,
)
from feast import FeatureStore
from feast.data_source import PushMode
from registry_protos import registry_objects

NAME = "integration_feature_store"
REPO = ROOT / NAME
FEATURE_TABLE = "data/driver_trip_features.parquet"
RAW_COLUMNS = {"event_timestamp", "created", "driver_id", "rider_id", "trip_dist", "rider_rating"}


@pytest.fixture(scope="module")
def dag():
    with repo_modules(REPO) as import_module:
        dataflow = import_module("dataflow")
        yield dataflow, dataflow.build_driver()


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """A copy with fresh raw trips, registered by `python apply.py`; and its code's hashes."""
    repo_dir = copy_repo(NAME, tmp_path_factory.mktemp("integration"))
    hashes = file_hashes(repo_dir)
    generate_data(repo_dir, "--trips", "5000", "--drivers", "20", "--days", "4")
    run([sys.executable, "apply.py"], cwd=repo_dir)
    return repo_dir, hashes


def feature_table(repo_dir) -> pd.DataFrame:
    return pd.read_parquet(repo_dir / FEATURE_TABLE)


def entity_rows_for_trips(trips: pd.DataFrame) -> pd.DataFrame:
    """Ask about each trip at its own time, with its own distance, as a training set would."""
    entity_df = trips[["driver_id", "event_timestamp", "trip_dist"]].rename(
        columns={"trip_dist": "requested_trip_dist"}
    )
    entity_df = entity_df.astype({"event_timestamp": "datetime64[us, UTC]"}).reset_index(drop=True)
    entity_df["requested_at"] = entity_df["event_timestamp"]
    return entity_df


# --- the DAG ------------------------------------------------------------------------------


def upstream(dr, name: str) -> set[str]:
    """The nodes `name` depends on, directly or not (Hamilton's answer includes `name` itself)."""
    return {node.name for node in dr.what_is_upstream_of(name)} - {name}


def test_feature_service_lineage_reaches_the_raw_columns(dag):
    _, dr = dag
    reached = upstream(dr, "trip_rating_model_v1")
    assert {"event_timestamp", "created", "driver_id", "trip_dist", "raw_trips_path"} <= reached
    assert set(FEATURE_VIEW_FIELDS) <= reached
    assert {"saved_driver_trip_features", "driver_trip_features_source", "driver_trip_stats",
            "trip_request_features", "trip_request", "driver"} <= reached
    assert not {"rider_id", "rider_rating"} & reached, "the model must not see its label or rider ids"


@pytest.mark.parametrize(
    "feast_object, expected_feast_upstream",
    [
        ("driver_trip_features_source", set()),
        ("driver_trip_features_push_source", {"driver_trip_features_source"}),
        ("driver_trip_stats", {"driver", "driver_trip_features_source", "driver_trip_features_push_source"}),
        ("trip_request_features", {"driver", "driver_trip_features_source", "driver_trip_features_push_source",
                                   "driver_trip_stats", "trip_request"}),
        ("project", set()),
    ],
)
def test_each_feast_object_depends_on_exactly_its_feast_objects(dag, feast_object, expected_feast_upstream):
    dataflow, dr = dag
    feast_nodes = set(dataflow.feast_object_names(dr))
    assert upstream(dr, feast_object) & feast_nodes == expected_feast_upstream


def test_a_change_to_trip_dist_reaches_the_distance_features_only(dag):
    _, dr = dag
    downstream = {node.name for node in dr.what_is_downstream_of("trip_dist")}
    assert {"trip_dist_pct_rank_3h_all_drivers", "driver_trip_dist_mean_3h", "driver_trips_24h",
            "driver_trip_stats", "trip_rating_model_v1"} <= downstream
    assert not {"day_of_week", "is_weekend", "month", "hour_of_day", "trip_request"} & downstream


def test_feature_view_fields_are_the_saved_columns_described_by_the_transforms(dag):
    dataflow, dr = dag
    variables = {v.name: v for v in dr.list_available_variables()}
    table_inputs = set(variables["driver_trip_features"].required_dependencies)
    assert table_inputs == {"event_timestamp", "created", "driver_id", *FEATURE_VIEW_FIELDS}
    feast_objects, trip_features = dataflow.feast_objects, dataflow.trip_features
    fields = [feast_objects._field(t, d) for t, d in feast_objects.DRIVER_TRIP_FIELDS]
    assert [f.name for f in fields] == FEATURE_VIEW_FIELDS
    for field in fields:
        docstring = getattr(trip_features, field.name).__doc__.strip().splitlines()[0]
        assert field.description == docstring == variables[field.name].documentation.splitlines()[0]


def test_committed_dag_picture_is_current():
    """dag.dot and dag.png are drawn from the code by `python dataflow.py`; redraw after a change."""
    with repo_modules(REPO) as import_module:
        drawn = import_module("dataflow").dag_picture().source
    assert (REPO / "dag.dot").read_text() == drawn


# --- the repo, applied ---------------------------------------------------------------------


def test_second_plan_shows_no_changes_by_either_path(applied):
    repo_dir, _ = applied
    for command in ([sys.executable, "apply.py", "--plan"], ["feast", "plan"]):
        output = run(command, cwd=repo_dir).stdout
        assert "No changes to registry" in output, command


def test_saved_table_holds_one_validated_row_per_trip(applied):
    repo_dir, _ = applied
    table = feature_table(repo_dir)
    raw = pd.read_parquet(repo_dir / "data/raw_trips.parquet")
    assert len(table) == len(raw) == 5000
    assert list(table.columns) == ["event_timestamp", "created", "driver_id", *FEATURE_VIEW_FIELDS]
    assert str(table.event_timestamp.dtype).endswith("UTC]")
    assert table.event_timestamp.is_monotonic_increasing
    assert not table.isna().any().any()


def test_historical_features_are_the_saved_rows_of_each_trip(applied):
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    table = feature_table(repo_dir)
    # One trip per (driver, time), so "the latest row at that time" is the trip's own row.
    trips = table.drop_duplicates(["driver_id", "event_timestamp"], keep=False).sample(500, random_state=3)
    entity_df = entity_rows_for_trips(
        trips.assign(trip_dist=1.0)  # the requested distance does not matter here
    )
    actual = store.get_historical_features(
        entity_df=entity_df, features=[f"driver_trip_stats:{f}" for f in FEATURE_VIEW_FIELDS]
    ).to_df()
    assert len(actual) == 500
    key = ["driver_id", "event_timestamp"]
    expected = trips.astype({"event_timestamp": "datetime64[us, UTC]"})
    merged = actual.merge(expected, on=key, suffixes=("", "_saved"), validate="1:1")
    assert len(merged) == 500
    for field in FEATURE_VIEW_FIELDS:
        np.testing.assert_array_equal(merged[field].to_numpy(), merged[f"{field}_saved"].to_numpy(), field)


def test_on_demand_features_equal_the_offline_transforms_offline_and_online(applied):
    """No training/serving skew: the on-demand view computes the request's calendar features
    with the same functions that computed the stored ones, in retrieval and in serving."""
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    table = feature_table(repo_dir)
    trips = table.drop_duplicates(["driver_id", "event_timestamp"], keep=False).sample(300, random_state=4)
    training = store.get_historical_features(
        entity_df=entity_rows_for_trips(trips.assign(trip_dist=2.0)),
        features=store.get_feature_service("trip_rating_model_v1"),
    ).to_df()
    for on_demand, stored in [("request_day_of_week", "day_of_week"),
                              ("request_is_weekend", "is_weekend"),
                              ("request_hour_of_day", "hour_of_day")]:
        assert (training[on_demand].to_numpy() == training[stored].to_numpy()).all(), on_demand
    np.testing.assert_allclose(
        training["requested_dist_vs_driver_mean_3h"], 2.0 / training["driver_trip_dist_mean_3h"]
    )

    store.materialize_incremental(end_date=pd.Timestamp.now(tz="UTC").to_pydatetime())
    moments = pd.Series(pd.to_datetime(
        ["2026-03-07 23:59:59", "2026-03-08 00:00:00", "2026-06-15 13:30:00"], utc=True))
    served = store.get_online_features(
        features=store.get_feature_service("trip_rating_model_v1"),
        entity_rows=[{"driver_id": 1001, "requested_at": m.to_pydatetime(), "requested_trip_dist": 3.0}
                     for m in moments],
    ).to_df()
    with repo_modules(REPO) as import_module:
        trip_features = import_module("trip_features")
        offline_day = trip_features.day_of_week(moments)
        offline_weekend = trip_features.is_weekend(offline_day)
        offline_hour = trip_features.hour_of_day(moments)
    assert served["request_day_of_week"].tolist() == offline_day.tolist() == [5, 6, 0]
    assert served["request_is_weekend"].tolist() == offline_weekend.tolist()
    assert served["request_hour_of_day"].tolist() == offline_hour.tolist()


def test_fast_training_set_path_equals_feasts_answer_for_the_whole_service(applied):
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    trips = pd.read_parquet(repo_dir / "data/raw_trips.parquet").sample(400, random_state=6)
    entity_df = entity_rows_for_trips(trips)
    # Also moments between trips, and before any trip.
    entity_df.loc[::3, "event_timestamp"] -= pd.Timedelta(minutes=37)
    entity_df.loc[::7, "event_timestamp"] -= pd.Timedelta(days=30)
    service = store.get_feature_service("trip_rating_model_v1")
    with repo_modules(REPO) as import_module:
        training_sets = import_module("training_sets")
        by_feast = training_sets.get_training_set_from_feast(store, entity_df, service)
        fast = training_sets.get_training_set(store, entity_df, service)
    names = [f.name for p in service.feature_view_projections for f in p.features]
    assert len(names) == 15 and len(fast) == len(by_feast) == 400
    assert by_feast["driver_trips_24h"].isna().sum() > 0
    for name in names:
        np.testing.assert_array_equal(
            fast[name].astype("float64").to_numpy(), by_feast[name].astype("float64").to_numpy(), name)


def test_online_features_are_each_drivers_latest_saved_row(applied):
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    now = pd.Timestamp.now(tz="UTC")
    store.materialize_incremental(end_date=now.to_pydatetime())
    table = feature_table(repo_dir)
    latest = table[table.event_timestamp <= now].sort_values(["event_timestamp", "created"])
    latest = latest.groupby("driver_id").last()
    # Only drivers whose last trip is within the one-day TTL are served.
    fresh = latest[latest.event_timestamp > now - pd.Timedelta(days=1)].index[:5].tolist()
    served = store.get_online_features(
        features=[f"driver_trip_stats:{f}" for f in FEATURE_VIEW_FIELDS],
        entity_rows=[{"driver_id": d} for d in fresh],
    ).to_df().set_index("driver_id")
    assert len(fresh) == 5
    for field in FEATURE_VIEW_FIELDS:
        np.testing.assert_array_equal(served.loc[fresh, field].to_numpy(), latest.loc[fresh, field].to_numpy(), field)


def test_pushed_trip_features_are_served(applied):
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    now = pd.Timestamp.now(tz="UTC").floor("us")
    row = feature_table(repo_dir).iloc[[-1]].assign(
        driver_id=1003, event_timestamp=now, created=now, driver_trips_24h=777
    )
    store.push("driver_trip_features_push_source", row, to=PushMode.ONLINE)
    served = store.get_online_features(
        features=["driver_trip_stats:driver_trips_24h"], entity_rows=[{"driver_id": 1003}]
    ).to_dict()
    assert served["driver_trips_24h"] == [777]


def test_the_whole_lifecycle_leaves_the_repo_code_unchanged(applied):
    repo_dir, hashes_after_copy = applied
    assert file_hashes(repo_dir) == hashes_after_copy


def test_feast_apply_registers_what_the_apply_script_registers(tmp_path):
    repo_dir = copy_repo(NAME, tmp_path)
    generate_data(repo_dir, "--trips", "2000")
    run([sys.executable, "apply.py"], cwd=repo_dir)
    by_script = registry_objects(repo_dir)
    (repo_dir / "data" / "registry.db").unlink()
    (repo_dir / "data" / "online_store.db").unlink()
    run(["feast", "apply"], cwd=repo_dir)
    assert registry_objects(repo_dir) == by_script


def test_feast_apply_before_any_features_are_saved_says_what_to_run(tmp_path):
    repo_dir = copy_repo(NAME, tmp_path)
    generate_data(repo_dir, "--trips", "100")
    result = run(["feast", "apply"], cwd=repo_dir, expect_success=False)
    assert "no feature table at" in result.stderr and "python apply.py" in result.stderr
    assert not (repo_dir / "data" / "registry.db").exists()


def test_a_failed_check_stops_the_run_and_writes_nothing(tmp_path):
    repo_dir = copy_repo(NAME, tmp_path)
    generate_data(repo_dir, "--trips", "500")
    raw_path = repo_dir / "data" / "raw_trips.parquet"
    raw = pd.read_parquet(raw_path)
    raw.loc[10, "trip_dist"] = 50_000.0  # a plausible dtype, an impossible distance
    raw.to_parquet(raw_path)

    result = run([sys.executable, "apply.py"], cwd=repo_dir, expect_success=False)
    assert "error: nothing was registered" in result.stderr
    assert "driver_trip_dist_mean_3h:range_validator" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo_dir / FEATURE_TABLE).exists()
    assert not (repo_dir / "data" / "registry.db").exists()


# --- the notebook --------------------------------------------------------------------------


def test_retrieval_notebook_runs_top_to_bottom_and_produces_the_expected_values(tmp_path):
    repo_dir = copy_repo(NAME, tmp_path)
    generate_data(repo_dir)
    notebook = nbformat.read(repo_dir / "retrieval.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook with its outputs cleared"
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_dir)}}
    ).execute()

    summary_cell = next(c for c in notebook.cells if "summary" in c.metadata.get("tags", []))
    summary = json.loads(summary_cell.outputs[0]["text"])
    assert summary["training_rows"] == summary["entity_rows"] == 2000
    assert summary["training_labels_in_order"] is True
    assert summary["label_present"] == summary["features_present"] == 2000
    assert summary["odfv_skew_rows"] == 0
    assert summary["raw_columns_upstream"] == ["created", "driver_id", "event_timestamp", "trip_dist"]
    assert "trip_rating_model_v1" in summary["feast_objects_downstream_of_trip_dist"]
    assert summary["online_driver_ids"] == [1001, 1002]

    # Independently of Feast and Hamilton: each driver's trips in the 24 h up to its last trip.
    raw = pd.read_parquet(repo_dir / "data/raw_trips.parquet")
    for driver_id, served in zip([1001, 1002], summary["online_trips_24h"]):
        times = raw.loc[raw.driver_id == driver_id, "event_timestamp"]
        assert served == int((times > times.max() - pd.Timedelta(hours=24)).sum())
