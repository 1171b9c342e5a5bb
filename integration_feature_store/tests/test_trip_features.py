"""The integration repo's transforms, each on small hand-made frames or against a brute-force
reference on random data; and the raw trips' checks."""

import numpy as np
import pandas as pd
import pytest
from this_repo import RAW_DATA, SMALL, applied_copy, entity_rows, saved_table

from feast import FeatureStore


@pytest.fixture(scope="module")
def features(modules):
    return modules["trip_features"]


@pytest.fixture(scope="module")
def raw_data(modules):
    return modules["raw_data"]


def utc(*stamps: str) -> pd.Series:
    """Timestamps in UTC; a stamp without an offset is read as UTC."""
    parsed = [pd.Timestamp(stamp) for stamp in stamps]
    return pd.Series(
        [p.tz_localize("UTC") if p.tzinfo is None else p.tz_convert("UTC") for p in parsed],
        dtype="datetime64[ns, UTC]",
    )


def random_trips(seed: int, n: int = 600, drivers: int = 4, hours: int = 12) -> pd.DataFrame:
    """Trips in time order with repeated timestamps and repeated distances, to exercise ties."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, hours * 3600, n) // 60 * 60)  # whole minutes: time ties
    return pd.DataFrame(
        {
            "event_timestamp": pd.Timestamp("2026-05-01", tz="UTC") + pd.to_timedelta(seconds, "s"),
            "driver_id": rng.integers(1, drivers + 1, n),
            "trip_dist": rng.integers(1, 30, n).astype("float64"),  # whole km: value ties
        }
    )


def trailing(trips: pd.DataFrame, i: int, window: pd.Timedelta) -> pd.DataFrame:
    """Rows up to and including row i (input order) whose time is in (t_i - window, t_i]."""
    t_i = trips.event_timestamp.iloc[i]
    earlier = trips.iloc[: i + 1]
    return earlier[earlier.event_timestamp > t_i - window]


def test_calendar_features_are_utc(features):
    # 2026-03-01 is a Sunday; 01:30 at +02:00 is still Saturday 23:30 in UTC.
    stamps = utc("2026-03-02 08:15", "2026-03-01 01:30+02:00", "2026-12-31 23:59")
    assert features.day_of_week(stamps).tolist() == [0, 5, 3]
    assert features.is_weekend(features.day_of_week(stamps)).tolist() == [False, True, False]
    assert features.month(stamps).tolist() == [3, 2, 12]
    assert features.hour_of_day(stamps).tolist() == [8, 23, 23]
    assert features.day_of_week(stamps).dtype == np.int64


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_calendar_features_equal_pandas_for_every_unit_and_zone_and_for_one_timestamp(features, unit, zone):
    """The calendar functions count days and hours from the epoch (so the on-demand view can
    call them on one request's time): the same answers as pandas' calendar, in UTC."""
    seconds = np.random.default_rng(3).integers(-2 * 10**9, 4 * 10**9, 2000)  # 1906-2096
    stamps = pd.Series(pd.to_datetime(seconds, unit="s", utc=True)).astype(f"datetime64[{unit}, UTC]")
    local = stamps.dt.tz_convert(zone)
    day, hour = features.day_of_week(local), features.hour_of_day(local)
    assert day.dtype == hour.dtype == np.int64
    np.testing.assert_array_equal(day, stamps.dt.dayofweek)
    np.testing.assert_array_equal(hour, stamps.dt.hour)
    for moment, expected_day, expected_hour in list(zip(local, day, hour))[:50]:
        assert features.day_of_week(moment) == expected_day
        assert features.day_of_week(moment.to_pydatetime()) == expected_day
        assert features.hour_of_day(moment) == expected_hour


def test_the_stored_on_demand_udf_runs_alone_and_equals_the_live_one(modules):
    """Feast rebuilds the UDF from its stored source with only pandas and numpy in scope: it
    must run (constants included) and answer as the live function does, for request times sent
    as epoch seconds, zoned or zone-less (UTC) times, and missing values."""
    from feast.transformation.udf_rehydrate import rehydrate_udf_from_source

    objects, features = modules["feast_objects"], modules["trip_features"]
    source = objects.udf_source(objects._trip_request_features, objects._request_time,
                                features.day_of_week, features.is_weekend, features.hour_of_day)
    rebuilt = rehydrate_udf_from_source(source, preferred_name="_trip_request_features")
    assert rebuilt is not objects._trip_request_features and rebuilt.__module__ != objects.__name__
    sunday_late = pd.Timestamp("2026-03-08 23:30", tz="UTC")
    inputs = {
        "requested_at": [int(sunday_late.timestamp()), sunday_late.to_pydatetime(),
                         sunday_late.tz_convert("Asia/Tokyo"), sunday_late.tz_localize(None), None],
        "requested_trip_dist": [3.0, 3.0, 6.0, 1.5, 3.0],
        "driver_trip_dist_mean_3h": [1.5, 0.0, 2.0, None, 1.0],
    }
    answer = rebuilt(inputs)
    assert answer == objects._trip_request_features(inputs)
    assert answer == {
        "request_day_of_week": [6, 6, 6, 6, None],
        "request_is_weekend": [True, True, True, True, None],
        "request_hour_of_day": [23, 23, 23, 23, None],
        "requested_dist_vs_driver_mean_3h": [2.0, None, 3.0, None, 3.0],
    }


def test_percentile_rank_on_a_hand_made_window(features):
    stamps = utc("2026-05-01 00:00", "2026-05-01 01:00", "2026-05-01 02:00", "2026-05-01 03:30")
    dist = pd.Series([10.0, 30.0, 20.0, 5.0])
    # row 2: among 10, 30, 20 -> 20 ranks 2nd of 3; row 3: window (00:30, 03:30] holds 30, 20, 5.
    ranks = features.trip_dist_pct_rank_3h_all_drivers(dist, stamps)
    assert ranks.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3])


def test_percentile_rank_matches_brute_force_on_random_trips(features):
    trips = random_trips(seed=1)
    actual = features.trip_dist_pct_rank_3h_all_drivers(trips.trip_dist, trips.event_timestamp)
    window = pd.Timedelta(hours=3)
    expected = []
    for i, dist in enumerate(trips.trip_dist):
        in_window = trailing(trips, i, window).trip_dist
        below, equal = (in_window < dist).sum(), (in_window == dist).sum()
        expected.append((below + (equal + 1) / 2) / len(in_window))  # average rank of ties
    np.testing.assert_allclose(actual, expected, rtol=1e-12)
    assert actual.index.equals(trips.index)


@pytest.mark.parametrize("window, name", [("3h", "driver_trip_dist_3h"), ("24h", "driver_trip_dist_24h")])
def test_per_driver_windows_match_brute_force_on_random_trips(features, window, name):
    trips = random_trips(seed=2, hours=60)
    stats = getattr(features, name)(trips.trip_dist, trips.driver_id, trips.event_timestamp)
    for i in range(len(trips)):
        mine = trailing(trips, i, pd.Timedelta(window))
        mine = mine[mine.driver_id == trips.driver_id.iloc[i]].trip_dist
        assert stats.loc[i, "count"] == len(mine)
        assert stats.loc[i, "mean"] == pytest.approx(mine.mean())
        if window == "3h":  # the 24 h statistics are mean and count only
            assert stats.loc[i, "max"] == mine.max() and stats.loc[i, "min"] == mine.min()


def test_per_driver_windows_hold_for_many_drivers_over_a_long_span(features):
    """5,000 drivers over 80 years: a (driver, nanosecond) key would overflow int64 here."""
    rng = np.random.default_rng(3)
    n = 20_000
    stamps = pd.Series(np.sort(pd.Timestamp("2000-01-01", tz="UTC")
                               + pd.to_timedelta(rng.integers(0, 80 * 365 * 24 * 3600, n), "s")))
    driver = pd.Series(rng.integers(0, 5_000, n))
    dist = pd.Series(rng.random(n))
    stats = features.driver_trip_dist_3h(dist, driver, stamps)
    frame = pd.DataFrame({"driver": driver, "t": stamps, "d": dist})
    reference = frame.groupby("driver").rolling("3h", on="t")["d"].agg(["count", "max"])
    reference.index = driver.sort_values(kind="stable").index
    reference = reference.reindex(dist.index)
    np.testing.assert_array_equal(stats["count"].to_numpy(), reference["count"].to_numpy())
    np.testing.assert_array_equal(stats["max"].to_numpy(), reference["max"].to_numpy())


def test_per_driver_features_on_a_hand_made_frame(features):
    stamps = utc("2026-05-01 00:00", "2026-05-01 00:30", "2026-05-01 01:00", "2026-05-01 03:15")
    driver = pd.Series([7, 8, 7, 7])
    dist = pd.Series([2.0, 50.0, 4.0, 9.0])
    stats_3h = features.driver_trip_dist_3h(dist, driver, stamps)
    assert features.driver_trip_dist_mean_3h(stats_3h).tolist() == [2.0, 50.0, 3.0, 6.5]
    assert features.driver_trip_dist_max_3h(stats_3h).tolist() == [2.0, 50.0, 4.0, 9.0]
    assert features.driver_trip_dist_min_3h(stats_3h).tolist() == [2.0, 50.0, 2.0, 4.0]
    assert features.driver_trips_3h(stats_3h).tolist() == [1, 1, 2, 2]
    stats_24h = features.driver_trip_dist_24h(dist, driver, stamps)
    assert features.driver_trips_24h(stats_24h).tolist() == [1, 1, 2, 3]
    assert features.driver_trip_dist_mean_24h(stats_24h).tolist() == [2.0, 50.0, 3.0, 5.0]
    assert features.driver_trips_24h(stats_24h).dtype == np.int64


def two_raw_trips(first_hour: str, second_hour: str) -> pd.DataFrame:
    """Two valid raw trips on 2026-05-01 at the given hours (HH:MM), drivers 1 and 2."""
    return pd.DataFrame(
        {
            "event_timestamp": utc(f"2026-05-01 {first_hour}", f"2026-05-01 {second_hour}"),
            "created": utc(f"2026-05-01 {first_hour}:30", f"2026-05-01 {second_hour}:30"),
            "requested_at": utc(f"2026-05-01 {first_hour}", f"2026-05-01 {second_hour}") - pd.Timedelta(minutes=20),
            "driver_id": [1, 2],
            "rider_id": [10, 20],
            "trip_dist": [3.0, 4.0],
            "rider_rating": [5, 4],
        }
    )


def test_trips_are_put_in_event_time_order_with_a_fresh_index(raw_data):
    raw = two_raw_trips("02:00", "01:00").assign(ignored=["x", "y"]).set_axis([40, 41])
    trips = raw_data.trips(raw)
    assert trips.driver_id.tolist() == [2, 1]
    assert trips.index.tolist() == [0, 1]
    assert "ignored" not in trips.columns


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns=["trip_dist"]), "column 'trip_dist' is missing; expected a number"),
        (lambda f: f.assign(driver_id=f.driver_id.astype(str)), "column 'driver_id' has dtype object; expected an integer"),
        (lambda f: f.assign(event_timestamp=f.event_timestamp.dt.tz_localize(None)), "column 'event_timestamp' has dtype datetime64[ns]; expected a timezone-aware datetime (any unit and zone)"),
        (lambda f: f.assign(trip_dist=[1.0, np.nan]), "column 'trip_dist' has 1 missing values; expected none"),
        (lambda f: f.assign(trip_dist=[1.0, -2.0]), "column 'trip_dist' has negative distances; expected >= 0"),
        (lambda f: f.iloc[:0], "it has no rows; expected at least one trip"),
        (lambda f: f.assign(created=f.created.dt.as_unit("ns") + pd.Timedelta(nanoseconds=1)),
         "column 'created' has 2 times with sub-microsecond digits; expected whole microseconds"),
    ],
    ids=["missing column", "wrong dtype", "naive timestamps", "NaN", "negative", "empty", "sub-microsecond"],
)
def test_bad_raw_trips_get_an_error_naming_the_column(raw_data, change, message):
    """From any source of raw trips: the checks are the trips node's, not the file loader's."""
    with pytest.raises(ValueError) as error:
        raw_data.trips(change(two_raw_trips("01:00", "02:00")))
    assert str(error.value).startswith("raw trips: ")
    assert message in str(error.value)


def test_an_unreadable_raw_file_names_the_file(raw_data, tmp_path):
    path = tmp_path / "raw_trips.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="cannot be read") as error:
        raw_data.raw_trips(path)
    assert str(path) in str(error.value) and "expected a parquet file of trips" in str(error.value)


# --- this repo's features through Feast (moved here from the generic tests: they name them) ---


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    return applied_copy(tmp_path_factory.mktemp("trip_features"), *SMALL)


def test_the_saved_table_holds_one_row_per_trip(applied):
    table, raw = saved_table(applied), pd.read_parquet(applied / RAW_DATA)
    assert len(table) == len(raw)
    assert not table.isna().any().any()


def test_on_demand_features_equal_the_offline_transforms_offline_and_online(applied, features):
    """No training/serving skew: the on-demand view computes the request's calendar features
    with the same functions that computed the stored ones, in retrieval and in serving."""
    store = FeatureStore(repo_path=str(applied))
    table = saved_table(applied)
    trips = table.drop_duplicates(["driver_id", "event_timestamp"], keep=False).sample(300, random_state=4)
    training = store.get_historical_features(
        entity_df=entity_rows(trips).assign(requested_trip_dist=2.0),
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
    offline_day = features.day_of_week(moments)
    assert served["request_day_of_week"].tolist() == offline_day.tolist() == [5, 6, 0]
    assert served["request_is_weekend"].tolist() == features.is_weekend(offline_day).tolist()
    assert served["request_hour_of_day"].tolist() == features.hour_of_day(moments).tolist()
