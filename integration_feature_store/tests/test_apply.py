"""integration_feature_store end to end: raw trips -> Hamilton -> Feast -> training and serving."""

import sys

import numpy as np
import pandas as pd
import pytest
from trip_repo import FEATURE_TABLE, FEATURE_VIEW_FIELDS, NAME, RAW_TRIPS, REPO, applied_copy, feature_table

from feast import FeatureStore
from feast.data_source import PushMode
from hamilton_feast import training_sets
from hamilton_feast.testing import copy_repo, edit, file_hashes, generate_data, registry_objects, run


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """A copy with fresh raw trips, registered by `python apply.py`; and its code's hashes."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("integration"))
    hashes = file_hashes(repo_dir)
    generate_data(repo_dir, "--trips", "5000", "--drivers", "20", "--days", "4")
    run([sys.executable, "apply.py"], cwd=repo_dir)
    return repo_dir, hashes


def entity_rows_for_trips(trips: pd.DataFrame) -> pd.DataFrame:
    """Ask about each trip at its own time, with its own distance, as a training set would."""
    entity_df = trips[["driver_id", "event_timestamp", "trip_dist"]].rename(
        columns={"trip_dist": "requested_trip_dist"}
    )
    entity_df = entity_df.astype({"event_timestamp": "datetime64[us, UTC]"}).reset_index(drop=True)
    entity_df["requested_at"] = entity_df["event_timestamp"]
    return entity_df


def test_saved_table_holds_one_validated_row_per_trip(applied):
    repo_dir, _ = applied
    table = feature_table(repo_dir)
    raw = pd.read_parquet(repo_dir / RAW_TRIPS)
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
    entity_df = entity_rows_for_trips(trips.assign(trip_dist=1.0))  # the distance does not matter here
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


def test_on_demand_features_equal_the_offline_transforms_offline_and_online(applied, modules):
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
    trip_features = modules["trip_features"]
    offline_day = trip_features.day_of_week(moments)
    assert served["request_day_of_week"].tolist() == offline_day.tolist() == [5, 6, 0]
    assert served["request_is_weekend"].tolist() == trip_features.is_weekend(offline_day).tolist()
    assert served["request_hour_of_day"].tolist() == trip_features.hour_of_day(moments).tolist()


def test_fast_training_set_path_equals_feasts_answer_for_the_whole_service(applied):
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    trips = pd.read_parquet(repo_dir / RAW_TRIPS).sample(400, random_state=6)
    entity_df = entity_rows_for_trips(trips)
    # Also moments between trips, and before any trip.
    entity_df.loc[::3, "event_timestamp"] -= pd.Timedelta(minutes=37)
    entity_df.loc[::7, "event_timestamp"] -= pd.Timedelta(days=30)
    service = store.get_feature_service("trip_rating_model_v1")
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
    repo_dir, hashes_of_the_repo = applied
    assert file_hashes(repo_dir) == hashes_of_the_repo


# --- plans, each on its own copy so that no test depends on another's order ---------------


def test_a_plan_right_after_apply_shows_no_changes_by_either_path(tmp_path):
    repo_dir = applied_copy(tmp_path, "--trips", "1000")
    for command in ([sys.executable, "apply.py", "--plan"], ["feast", "plan"]):
        output = run(command, cwd=repo_dir).stdout
        assert "No changes to registry" in output, command
        assert "No changes to infrastructure" in output, command


def test_after_materialize_feasts_plan_reports_the_view_as_updated(tmp_path):
    """A Feast 0.67 quirk docs/correctness.md names: materializing changes the stored view (its
    intervals), and the next plan shows it as Updated; applying again is harmless."""
    repo_dir = applied_copy(tmp_path, "--trips", "1000", apply_args=["--materialize"])
    output = run([sys.executable, "apply.py", "--plan"], cwd=repo_dir).stdout
    assert "Updated feature view" in output and "driver_trip_stats" in output
    run([sys.executable, "apply.py"], cwd=repo_dir)
    store = FeatureStore(repo_path=str(repo_dir))
    assert store.get_feature_view("driver_trip_stats").materialization_intervals


def test_plan_computes_and_writes_nothing(tmp_path):
    """After a transform changed, the plan shows the view's new code versions, and no file of
    data/ (table, registry, online store, lineage events) changes."""
    repo_dir = applied_copy(tmp_path, "--trips", "1000")
    files = lambda: {p: p.read_bytes() for p in sorted((repo_dir / "data").rglob("*")) if p.is_file()}
    before = files()
    edit(repo_dir / "trip_features.py", 'return event_timestamp.dt.month.astype("int64")',
         'return (event_timestamp.dt.month % 12 + 1).astype("int64")')
    output = run([sys.executable, "apply.py", "--plan"], cwd=repo_dir).stdout
    assert "Updated feature view" in output and "hamilton_code_versions" in output
    assert files() == before


def test_feast_apply_registers_what_the_apply_script_registers(tmp_path):
    repo_dir = applied_copy(tmp_path, "--trips", "2000")
    by_script = registry_objects(repo_dir)
    (repo_dir / "data" / "registry.db").unlink()
    (repo_dir / "data" / "online_store.db").unlink()
    run(["feast", "apply"], cwd=repo_dir)
    assert registry_objects(repo_dir) == by_script


def test_feast_apply_before_any_features_are_saved_says_what_to_run(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, "--trips", "100")
    result = run(["feast", "apply"], cwd=repo_dir, expect_success=False)
    assert "no feature table at" in result.stderr and "python apply.py" in result.stderr
    assert not (repo_dir / "data" / "registry.db").exists()


def test_a_failed_check_stops_the_run_and_writes_nothing(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, "--trips", "500")
    raw_path = repo_dir / RAW_TRIPS
    raw = pd.read_parquet(raw_path)
    raw.loc[10, "trip_dist"] = 50_000.0  # a plausible dtype, an impossible distance
    raw.to_parquet(raw_path)

    result = run([sys.executable, "apply.py"], cwd=repo_dir, expect_success=False)
    assert "error: nothing was registered" in result.stderr
    assert "driver_trip_dist_mean_3h:range_validator" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo_dir / FEATURE_TABLE).exists()
    assert not (repo_dir / "data" / "registry.db").exists()


def test_a_label_view_added_to_the_dag_is_registered(tmp_path):
    """Feast objects are found by type: a LabelView (not a FeatureView) registers too."""
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, "--trips", "1000")
    labels = pd.read_parquet(repo_dir / RAW_TRIPS)[["driver_id", "event_timestamp", "rider_rating"]]
    labels.to_parquet(repo_dir / "data" / "ratings.parquet")
    source = (repo_dir / "feast_objects.py").read_text()
    source += '''

def rider_ratings(driver: Entity) -> LabelView:
    """The ratings riders gave each driver's trips, a label for training."""
    return LabelView(
        name="rider_ratings",
        entities=[driver],
        schema=[Field(name="rider_rating", dtype=Int64)],
        source=PushSource(
            name="rider_ratings_push",
            batch_source=FileSource(name="rider_ratings_batch", path="data/ratings.parquet",
                                    timestamp_field="event_timestamp"),
        ),
    )
'''
    source = source.replace("from feast import (\n", "from feast import (\n    LabelView,\n")
    source = source.replace("from feast.types import Float64, UnixTimestamp",
                            "from feast.types import Float64, Int64, UnixTimestamp")
    (repo_dir / "feast_objects.py").write_text(source)
    output = run([sys.executable, "apply.py"], cwd=repo_dir).stdout
    assert "Created label view rider_ratings" in output
    store = FeatureStore(repo_path=str(repo_dir))
    assert [view.name for view in store.list_label_views()] == ["rider_ratings"]
    assert {s.name for s in store.list_data_sources()} >= {"rider_ratings_push", "rider_ratings_batch"}


def test_the_apply_script_is_short_and_builds_the_driver_in_plain_sight():
    source = (REPO / "apply.py").read_text()
    assert len(source.splitlines()) <= 40
    assert "driver.Builder()" in source and ".build()" in source and "dr.execute(" in source
    assert NAME == "integration_feature_store"


@pytest.mark.parametrize("unit, entity_unit, zone", [("ms", "s", "Asia/Kolkata"), ("ns", "ns", "America/New_York")])
def test_raw_trips_in_any_timestamp_unit_and_zone_give_the_same_features(applied, tmp_path, unit, entity_unit, zone):
    """pandas writes nanoseconds by default; other systems write milliseconds (parquet has no
    seconds), in their own zone. The same instants give the same saved table (UTC microseconds,
    as Feast stores them), the same training sets by both paths from entity frames in any unit,
    and the same online values."""
    repo_dir, _ = applied
    raw = pd.read_parquet(repo_dir / RAW_TRIPS)
    copy = copy_repo(REPO, tmp_path)
    (copy / "data").mkdir(exist_ok=True)
    # Whole seconds, so that every unit holds the same instants.
    whole = raw.assign(event_timestamp=raw.event_timestamp.dt.floor("s"), created=raw.created.dt.floor("s"))
    whole.to_parquet(copy / RAW_TRIPS)
    run([sys.executable, "apply.py"], cwd=copy)
    expected = feature_table(copy)
    in_unit = {c: whole[c].dt.tz_convert(zone).dt.as_unit(unit) for c in ("event_timestamp", "created")}
    whole.assign(**in_unit).to_parquet(copy / RAW_TRIPS)
    assert str(pd.read_parquet(copy / RAW_TRIPS).event_timestamp.dtype) == f"datetime64[{unit}, {zone}]"
    run([sys.executable, "apply.py", "--materialize"], cwd=copy)

    table = feature_table(copy)
    assert str(table.event_timestamp.dtype) == str(table.created.dtype) == "datetime64[us, UTC]"
    pd.testing.assert_frame_equal(table, expected)

    store = FeatureStore(repo_path=str(copy))
    entity_df = entity_rows_for_trips(whole.sample(200, random_state=7))
    entity_df.loc[::3, "event_timestamp"] -= pd.Timedelta(minutes=37)
    entity_df = entity_df.assign(
        event_timestamp=entity_df.event_timestamp.dt.tz_convert(zone).dt.as_unit(entity_unit),
        requested_at=entity_df.requested_at.dt.tz_convert(zone).dt.as_unit(entity_unit))
    service = store.get_feature_service("trip_rating_model_v1")
    by_feast = training_sets.get_training_set_from_feast(store, entity_df, service)
    fast = training_sets.get_training_set(store, entity_df, service)
    for name in [f.name for p in service.feature_view_projections for f in p.features]:
        np.testing.assert_array_equal(
            fast[name].astype("float64").to_numpy(), by_feast[name].astype("float64").to_numpy(), name)
    assert by_feast["driver_trips_24h"].notna().sum() > 100

    now = pd.Timestamp.now(tz="UTC")
    latest = expected.sort_values(["event_timestamp", "created"]).groupby("driver_id").last()
    fresh = latest[latest.event_timestamp > now - pd.Timedelta(days=1)].index.tolist()
    served = store.get_online_features(features=["driver_trip_stats:driver_trips_24h"],
                                       entity_rows=[{"driver_id": d} for d in fresh]).to_dict()
    assert fresh and served["driver_trips_24h"] == latest.loc[fresh, "driver_trips_24h"].tolist()
