"""Feast's own historical-retrieval tests as a specification of `get_training_set`.

Each scenario of Feast's test_universal_historical_retrieval.py, test_universal_types.py and
the ibis point-in-time unit test (rewritten here; the data from Feast's generators, see
feast_suite.py), and the cases found beside them, runs three ways on the same data: Feast's
DuckDB offline store, the fast path, and the oracle. Rows are aligned by a row number, never
deduplicated; every feature column must agree in value, and the fast path's dtypes must be
Feast's. Where Feast raises, the fast path raises the same error; where the fast path refuses
what Feast answers, the test shows that Feast's answer is wrong.
"""

import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for feast_suite.py

import feast_suite as suite  # noqa: E402
from feast_suite import DRIVER, MAIN_FEATURES, Read  # noqa: E402

from feast import Entity, FeatureService, FeatureView, Field  # noqa: E402
from feast.errors import FeatureNameCollisionError, RequestDataNotFoundInEntityDfException  # noqa: E402
from feast.types import Float32, Int32, Int64, String  # noqa: E402
from hamilton_feast import training_sets  # noqa: E402

FULL = pytest.mark.parametrize("full", [False, True], ids=["short names", "full names"])


@pytest.fixture(scope="module")
def universal(tmp_path_factory):
    """Feast's universal repo, applied once; the tests only read it."""
    folder = tmp_path_factory.mktemp("universal")
    data = suite.universal_datasets()
    data.objects = suite.universal_views(data, folder)
    services = suite.universal_services(data.objects)
    store = suite.new_store(folder)
    store.apply([DRIVER, suite.CUSTOMER, suite.LOCATION, *data.objects.values(), *services.values()])
    return data, store


def with_request_data(entity_df: pd.DataFrame) -> pd.DataFrame:
    """Feast's main entity frame: the orders with the on-demand view's request field, another
    column, and (beyond Feast's test) five repeated rows, each with its own row number."""
    frame = pd.concat([entity_df, entity_df.sample(5, random_state=1)], ignore_index=True)
    return frame.assign(row=range(len(frame)), val_to_add=range(len(frame)),
                        driver_age=range(100, 100 + len(frame)))


def plain(values) -> list:
    """Values compared across answers: arrays as lists, every kind of missing as None."""
    out = []
    for value in values:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
            value = None
        out.append(value)
    return out


def both_answers(store, entity_df, features, **options):
    """Feast's DuckDB store's answer, in the entity rows' order (by `row`), and the fast path's."""
    by_feast = store.get_historical_features(entity_df=entity_df, features=features, **options).to_df()
    assert len(by_feast) == len(entity_df) and by_feast.row.is_unique
    by_feast = by_feast.set_index("row").loc[entity_df.row].reset_index()
    fast = training_sets.get_training_set(store, entity_df, features, **options)
    return by_feast, fast


def assert_all_agree(by_feast, fast, expected, entity_df, features: list[str]):
    """The fast path keeps the caller's rows and columns as given, answers with Feast's columns
    and dtypes, and its features, Feast's and the oracle's agree on every row."""
    assert fast.index.equals(entity_df.index)
    pd.testing.assert_frame_equal(fast[list(entity_df.columns)], entity_df)
    assert sorted(fast.columns) == sorted(by_feast.columns)
    assert set(features) <= set(fast.columns), sorted(set(features) - set(fast.columns))
    for column in features:
        assert fast[column].dtype == by_feast[column].dtype, column
        assert plain(fast[column]) == plain(by_feast[column]), f"{column}: fast path vs Feast"
        assert plain(fast[column]) == plain(expected[column]), f"{column}: fast path vs the oracle"
    values = fast[features]
    assert values.notna().any().all(), "every feature must have values in the scenario"


def main_reads(data: suite.Universal, full: bool) -> list[Read]:
    views = data.objects
    return [
        suite.read(views["driver_stats"], data.drivers, ["conv_rate", "avg_daily_trips"], full),
        suite.read(views["customer_profile"], data.customers,
                   ["current_balance", "avg_passenger_count", "lifetime_trip_count"], full),
        suite.read(views["order"], data.orders, ["order_is_success"], full),
        suite.read(views["global_stats"], data.global_stats, ["num_rides", "avg_ride_length"], full),
        suite.read(views["field_mapping"], data.field_mapping, ["feature_name"], full,
                   renamed={"column_name": "feature_name"}),
    ]


def names(references: list[str], full: bool) -> list[str]:
    return [ref.replace(":", "__") if full else ref.split(":")[1] for ref in references]


@FULL
def test_feast_suite_main_features_of_six_views_with_an_on_demand_view(universal, full):
    """test_historical_features_main: twelve features of five views (two without entities, one
    with a field mapping) and an on-demand view, for orders whose times mix zones."""
    data, store = universal
    entity_df = with_request_data(data.entity_df)
    zones = {str(getattr(t, "tzinfo", None)) for t in entity_df.event_timestamp}
    assert zones == {'UTC', 'UTC+01:00', 'US/Pacific'} and entity_df.event_timestamp.dtype == object  # Feast converts them
    by_feast, fast = both_answers(store, entity_df, MAIN_FEATURES, full_feature_names=full)
    expected = suite.with_conv_rate_plus_100(
        suite.expected_training_set(entity_df, "event_timestamp", main_reads(data, full)), full)
    assert_all_agree(by_feast, fast, expected, entity_df, names(MAIN_FEATURES, full))


@FULL
def test_feast_suite_feature_service_with_an_on_demand_view(universal, full):
    """assert_feature_service_correctness: a service of one feature and an on-demand view."""
    data, store = universal
    entity_df = with_request_data(data.entity_df)
    service = store.get_feature_service("convrate_plus100")
    by_feast, fast = both_answers(store, entity_df, service, full_feature_names=full)
    reads = [suite.read(data.objects["driver_stats"], data.drivers, ["conv_rate"], full)]
    expected = suite.with_conv_rate_plus_100(suite.expected_training_set(entity_df, "event_timestamp", reads), full)
    outputs = ["conv_rate_plus_100", "conv_rate_plus_val_to_add", "conv_rate_plus_100_rounded"]
    features = names(["driver_stats:conv_rate", *(f"conv_rate_plus_100:{o}" for o in outputs)], full)
    assert_all_agree(by_feast, fast, expected, entity_df, features)


@pytest.mark.parametrize("fallback", [False, True], ids=["keys mapped only", "location_id also given"])
def test_feast_suite_origin_and_destination_through_join_key_maps(universal, fallback):
    """assert_feature_service_entity_mapping_correctness: one view joined twice, on origin_id
    and on destination_id; with a location_id column of other locations beside them, too,
    which neither join may read."""
    data, store = universal
    entity_df = data.entity_df.copy()
    if fallback:
        entity_df["location_id"] = entity_df.origin_id.sample(frac=1, random_state=2).to_numpy() + 1
    service = store.get_feature_service("entity_mapping")
    by_feast, fast = both_answers(store, entity_df, service, full_feature_names=True)
    view = data.objects["location_stats"]
    reads = [suite.read(view, data.locations, ["temperature"], True, alias=alias, join_key_map={"location_id": key})
             for alias, key in [("origin", "origin_id"), ("destination", "destination_id")]]
    expected = suite.expected_training_set(entity_df, "event_timestamp", reads)
    assert_all_agree(by_feast, fast, expected, entity_df, ["origin__temperature", "destination__temperature"])
    assert (expected.origin__temperature != expected.destination__temperature).any()


def test_feast_suite_one_view_twice_without_full_names_is_a_collision(universal):
    data, store = universal
    service = store.get_feature_service("entity_mapping")
    for get in (lambda: store.get_historical_features(entity_df=data.entity_df, features=service).to_df(),
                lambda: training_sets.get_training_set(store, data.entity_df, service)):
        with pytest.raises(FeatureNameCollisionError, match="Duplicate features named temperature"):
            get()


@FULL
def test_feast_suite_views_without_entities_join_on_time_alone(universal, full):
    data, store = universal
    features = ["global_stats:num_rides", "global_stats:avg_ride_length", "field_mapping:feature_name"]
    by_feast, fast = both_answers(store, data.entity_df, features, full_feature_names=full)
    expected = suite.expected_training_set(data.entity_df, "event_timestamp", main_reads(data, full)[3:])
    assert_all_agree(by_feast, fast, expected, data.entity_df, names(features, full))


@FULL
def test_feast_suite_a_feature_the_view_does_not_declare_is_an_error(tmp_path, full):
    """test_historical_features_with_shared_batch_source: two views over one file; the one that
    does not declare conv_rate does not serve it."""
    data = suite.universal_datasets()
    source = suite.file_source(tmp_path, data.drivers, "driver_hourly")
    v1 = FeatureView(name="driver_stats_v1", entities=[DRIVER], source=source,
                     schema=[Field(name="avg_daily_trips", dtype=Int32)])
    v2 = FeatureView(name="driver_stats_v2", entities=[DRIVER], source=source,
                     schema=[Field(name="avg_daily_trips", dtype=Int32), Field(name="conv_rate", dtype=Float32)])
    store = suite.new_store(tmp_path)
    store.apply([DRIVER, v1, v2])
    for get in (lambda: store.get_historical_features(entity_df=data.entity_df, features=["driver_stats_v1:conv_rate"],
                                                      full_feature_names=full).to_df(),
                lambda: training_sets.get_training_set(store, data.entity_df, ["driver_stats_v1:conv_rate"],
                                                       full_feature_names=full)):
        with pytest.raises(KeyError, match="Feature conv_rate not found in projection driver_stats_v1"):
            get()
    by_feast, fast = both_answers(store, data.entity_df, ["driver_stats_v2:conv_rate"], full_feature_names=full)
    expected = suite.expected_training_set(data.entity_df, "event_timestamp",
                                           [suite.read(v2, data.drivers, ["conv_rate"], full)])
    assert_all_agree(by_feast, fast, expected, data.entity_df, names(["driver_stats_v2:conv_rate"], full))


def test_feast_suite_missing_request_data_names_the_on_demand_view(universal):
    """test_historical_features_with_missing_request_data."""
    data, store = universal
    features = ["customer_profile:current_balance", "conv_rate_plus_100:conv_rate_plus_100"]
    for get in (lambda: store.get_historical_features(entity_df=data.entity_df, features=features),
                lambda: training_sets.get_training_set(store, data.entity_df, features)):
        with pytest.raises(RequestDataNotFoundInEntityDfException,
                           match="Feature val_to_add not found in the entity dataframe, but required by feature "
                                 "view conv_rate_plus_100"):
            get()


FEATURES_WITHOUT_ON_DEMAND = ["customer_profile:current_balance", "customer_profile:avg_passenger_count",
                              "customer_profile:lifetime_trip_count", "order:order_is_success",
                              "global_stats:num_rides", "global_stats:avg_ride_length", "field_mapping:feature_name"]


@FULL
def test_feast_suite_entity_frame_of_the_needed_keys_only(universal, full):
    """test_historical_features_persisting and _with_entities_from_query: the request without
    the on-demand view, for a frame of the keys it needs (no order, origin or destination)."""
    data, store = universal
    entity_df = data.entity_df.drop(columns=["order_id", "origin_id", "destination_id"])
    by_feast, fast = both_answers(store, entity_df, FEATURES_WITHOUT_ON_DEMAND, full_feature_names=full)
    expected = suite.expected_training_set(entity_df, "event_timestamp", main_reads(data, full)[1:])
    assert_all_agree(by_feast, fast, expected, entity_df, names(FEATURES_WITHOUT_ON_DEMAND, full))


@FULL
def test_feast_suite_views_without_a_ttl_reach_any_age(tmp_path, full):
    """test_historical_features_with_no_ttl: four views with a TTL of zero, which is none."""
    data = suite.universal_datasets()
    views = suite.universal_views(data, tmp_path, ttl_off=("customer_profile", "order", "global_stats",
                                                             "field_mapping"))
    store = suite.new_store(tmp_path)
    store.apply([DRIVER, suite.CUSTOMER, suite.LOCATION, *views.values()])
    data.objects = views
    entity_df = data.entity_df.drop(columns=["order_id", "origin_id", "destination_id"])
    # Later than every row: without a TTL each entity still finds its latest row.
    entity_df = entity_df.assign(event_timestamp=suite.utc(entity_df.event_timestamp) + pd.Timedelta(days=5))
    by_feast, fast = both_answers(store, entity_df, FEATURES_WITHOUT_ON_DEMAND, full_feature_names=full)
    expected = suite.expected_training_set(entity_df, "event_timestamp", main_reads(data, full)[1:])
    assert_all_agree(by_feast, fast, expected, entity_df, names(FEATURES_WITHOUT_ON_DEMAND, full))
    assert expected[names(FEATURES_WITHOUT_ON_DEMAND, full)].notna().all().all()


def tiny_store(folder, rows: pd.DataFrame, ttl: timedelta | None = None, spark: bool = False, **source_options):
    """Feast's backfill and field-mapping scenarios: one driver view over the given rows (on
    Feast's Spark store with `spark`)."""
    source = suite.file_source(folder, rows, "driver_stats", spark=spark, **source_options)
    view = FeatureView(name="driver_stats", entities=[DRIVER], schema=[Field(name="avg_daily_trips", dtype=Int32)],
                       source=source, ttl=ttl)
    store = suite.new_store(folder, "spark" if spark else "duckdb")
    store.apply([DRIVER, view])
    return store, view


NOW = pd.Timestamp("2026-03-04 10:00")
TOMORROW, DAY_AFTER = NOW + pd.Timedelta(days=1), NOW + pd.Timedelta(days=2)


def test_feast_suite_backfills_take_the_latest_created(tmp_path):
    """test_historical_features_containing_backfills: an event time written twice takes the
    later `created`; a later event time wins over an earlier one created later."""
    rows = pd.DataFrame([
        {"driver_id": 1001, "avg_daily_trips": 10, "event_timestamp": NOW, "created": NOW},
        {"driver_id": 1001, "avg_daily_trips": 20, "event_timestamp": NOW, "created": TOMORROW},
        {"driver_id": 1002, "avg_daily_trips": 30, "event_timestamp": NOW, "created": TOMORROW},
        {"driver_id": 1002, "avg_daily_trips": 40, "event_timestamp": TOMORROW, "created": NOW},
    ])
    store, _ = tiny_store(tmp_path, rows)
    entity_df = pd.DataFrame({"driver_id": [1001, 1002], "event_timestamp": [DAY_AFTER] * 2, "row": [0, 1]})
    by_feast, fast = both_answers(store, entity_df, ["driver_stats:avg_daily_trips"])
    expected = entity_df.assign(avg_daily_trips=[20, 40])
    assert_all_agree(by_feast, fast, expected, entity_df, ["avg_daily_trips"])


def test_feast_suite_the_ttl_reaches_back_inclusively(tmp_path):
    """A row exactly one TTL before the entity row is read; a microsecond more, and it is not."""
    rows = pd.DataFrame([{"driver_id": 1001, "avg_daily_trips": 10, "event_timestamp": NOW, "created": NOW}])
    store, _ = tiny_store(tmp_path, rows, ttl=timedelta(hours=2))
    at = [NOW, NOW + pd.Timedelta(hours=2), NOW + pd.Timedelta(hours=2, microseconds=1), NOW - pd.Timedelta(1, "us")]
    entity_df = pd.DataFrame({"driver_id": [1001] * 4, "event_timestamp": at, "row": range(4)})
    by_feast, fast = both_answers(store, entity_df, ["driver_stats:avg_daily_trips"])
    assert_all_agree(by_feast, fast, entity_df.assign(avg_daily_trips=[10, 10, None, None]), entity_df,
                     ["avg_daily_trips"])


def test_feast_suite_a_field_mapping_renames_the_join_key(tmp_path):
    """test_historical_features_field_mapping: the file's `id` is the view's driver_id."""
    rows = pd.DataFrame([
        {"id": 1001, "avg_daily_trips": 20, "event_timestamp": NOW, "created": TOMORROW},
        {"id": 1002, "avg_daily_trips": 40, "event_timestamp": TOMORROW, "created": NOW},
    ])
    store, _ = tiny_store(tmp_path, rows, field_mapping={"id": "driver_id"})
    entity_df = pd.DataFrame({"driver_id": [1001, 1002], "event_timestamp": [DAY_AFTER] * 2, "row": [0, 1]})
    by_feast, fast = both_answers(store, entity_df, ["driver_stats:avg_daily_trips"])
    assert_all_agree(by_feast, fast, entity_df.assign(avg_daily_trips=[20, 40]), entity_df, ["avg_daily_trips"])


@pytest.mark.parametrize("filtered", [False, True], ids=["default", "filter_by_created_timestamp"])
def test_feast_suite_filter_by_created_timestamp(tmp_path, filtered):
    """test_historical_features_filter_by_created_timestamp: values backfilled after the entity
    row's time win by default and are left out with the filter."""
    rows = pd.DataFrame([
        {"driver_id": 1001, "avg_daily_trips": 10, "event_timestamp": NOW, "created": NOW},
        {"driver_id": 1002, "avg_daily_trips": 30, "event_timestamp": NOW, "created": NOW},
        {"driver_id": 1001, "avg_daily_trips": 20, "event_timestamp": NOW, "created": DAY_AFTER},
        {"driver_id": 1002, "avg_daily_trips": 40, "event_timestamp": NOW, "created": DAY_AFTER},
    ])
    store, _ = tiny_store(tmp_path, rows)
    entity_df = pd.DataFrame({"driver_id": [1001, 1002], "event_timestamp": [TOMORROW] * 2, "row": [0, 1]})
    by_feast, fast = both_answers(store, entity_df, ["driver_stats:avg_daily_trips"],
                                  filter_by_created_timestamp=filtered)
    expected = entity_df.assign(avg_daily_trips=[10, 30] if filtered else [20, 40])
    assert_all_agree(by_feast, fast, expected, entity_df, ["avg_daily_trips"])


def test_feast_suite_filter_by_created_timestamp_on_many_rows(universal, tmp_path):
    """Beyond Feast's four rows: random backfills of Feast's hourly driver rows, each created
    up to a day after its event, so the best row known at an entity time is often not the
    latest by event time; the filtered and the default answers, each against the oracle."""
    data, _ = universal
    rng = np.random.default_rng(7)
    hourly = data.drivers.drop_duplicates(["driver_id", "event_timestamp"])
    rows = pd.concat([hourly.assign(created=hourly.event_timestamp.dt.tz_localize(None) + pd.Timedelta(copy, "s")
                                    + pd.to_timedelta(rng.integers(0, 24 * 60, len(hourly)), "min"))
                      for copy in range(2)], ignore_index=True)  # no two rows tie on (event time, created)
    rows["conv_rate"] = rng.random(len(rows)).astype("float32")
    source = suite.file_source(tmp_path, rows, "backfilled")
    view = FeatureView(name="driver_stats", entities=[DRIVER], source=source, ttl=timedelta(hours=6),
                       schema=[Field(name="conv_rate", dtype=Float32)])
    store = suite.new_store(tmp_path)
    store.apply([DRIVER, view])
    entity_df = pd.DataFrame({
        "driver_id": rng.choice(suite.DRIVERS, 400),
        "event_timestamp": suite.START + pd.to_timedelta(rng.integers(0, 3 * 24 * 3600, 400), "s"),
    }).assign(row=range(400))
    answers = {}
    for filtered in (False, True):
        by_feast, fast = both_answers(store, entity_df, ["driver_stats:conv_rate"], filter_by_created_timestamp=filtered)
        expected = suite.expected_training_set(entity_df, "event_timestamp",
                                               [suite.read(view, rows, ["conv_rate"], False)], filtered)
        assert_all_agree(by_feast, fast, expected, entity_df, ["conv_rate"])
        answers[filtered] = fast.conv_rate
    assert (plain(answers[False]) != np.array(plain(answers[True]), dtype=object)).sum() > 50


@pytest.mark.parametrize("outputs", [["conv_rate_plus_100"], ["conv_rate_plus_100", "conv_rate_plus_val_to_add"]],
                         ids=["one of three", "two of three"])
@FULL
def test_feast_suite_on_demand_outputs_as_requested(universal, outputs, full):
    """test_odfv_projection: only the requested outputs of an on-demand view (and its input)."""
    data, store = universal
    entity_df = with_request_data(data.entity_df)
    features = [f"conv_rate_plus_100:{o}" for o in outputs]
    by_feast, fast = both_answers(store, entity_df, features, full_feature_names=full)
    reads = [suite.read(data.objects["driver_stats"], data.drivers, ["conv_rate"], full)]
    expected = suite.with_conv_rate_plus_100(suite.expected_training_set(entity_df, "event_timestamp", reads), full)
    assert_all_agree(by_feast, fast, expected, entity_df, names(features, full))
    left_out = {"conv_rate_plus_100", "conv_rate_plus_val_to_add", "conv_rate_plus_100_rounded"} - set(outputs)
    assert not set(names([f"conv_rate_plus_100:{o}" for o in left_out], full)) & set(fast.columns)


@pytest.mark.parametrize("entity_type", [Int32, Int64, String], ids=lambda t: t.name)
def test_feast_suite_entity_keys_of_each_type(tmp_path, entity_type):
    """test_entity_inference_types_match, retrieved: keys of each type join; the entity
    frame's time column, `ts`, is found as Feast finds it."""
    rows = suite.typed_driver_rows(entity_type, "int32")
    entity, view = suite.typed_view(tmp_path, rows, "typed", Int32, entity_type)
    store = suite.new_store(tmp_path)
    store.apply([entity, view])
    keys = suite.ENTITY_VALUES[entity_type][:4]
    entity_df = pd.DataFrame({"driver_id": keys, "ts": [suite.NOW - timedelta(hours=h) for h in (3, 1, 2, 2)],
                              "row": range(4)})
    by_feast, fast = both_answers(store, entity_df, ["typed:value"])
    expected = suite.expected_training_set(entity_df, "ts", [suite.read(view, rows.rename(
        columns={"ts_1": "ts"}), ["value"], False)])
    assert_all_agree(by_feast, fast, expected, entity_df, ["value"])


TYPE_CASES = [(dtype, is_list, empty) for dtype in suite.VALUES for is_list in (False, True)
              for empty in ((False, True) if is_list else (False,))]


@pytest.mark.parametrize("dtype, is_list, empty", TYPE_CASES,
                         ids=[f"{d}{'-list' if l else ''}{'-empty' if e else ''}" for d, l, e in TYPE_CASES])
def test_feast_suite_feature_types(tmp_path, dtype, is_list, empty):
    """test_feature_get_historical_features_types_match: every feature type, as a value and as
    a list (with empty lists), from a source whose times mix zones, under Feast's dtypes."""
    rows = suite.typed_driver_rows(suite.Int64, dtype, is_list, empty)
    feast_type = suite.list_type(dtype) if is_list else suite.FEAST_TYPES[dtype]
    entity, view = suite.typed_view(tmp_path, rows, "typed", feast_type)
    store = suite.new_store(tmp_path)
    store.apply([entity, view])
    entity_df = pd.DataFrame({"driver_id": [1, 3, 2], "ts": [suite.NOW - timedelta(hours=h) for h in (4, 2, 5)],
                              "row": range(3)})
    by_feast, fast = both_answers(store, entity_df, ["typed:value"])
    expected = suite.expected_training_set(entity_df, "ts", [suite.read(view, rows.rename(
        columns={"ts_1": "ts"}), ["value"], False)])
    assert_all_agree(by_feast, fast, expected, entity_df, ["value"])
    assert fast.value.isna().iloc[2] if not empty else True  # driver 2's row is after the entity time


def test_feast_suite_ibis_point_in_time_join(tmp_path):
    """test_ibis.py's point_in_time_join: ties on event time broken by `created`, a row older
    than the TTL left out, an entity row before any feature row."""
    day = lambda d: pd.Timestamp(d, tz="UTC")  # noqa: E731
    rows = pd.DataFrame({
        "customer_id": [1, 1, 1, 2, 3, 3],
        "event_timestamp": [day("2023-12-31"), day("2024-01-02"), day("2024-01-03"), day("2023-01-03"),
                            day("2024-01-01"), day("2024-01-01")],
        "created": [day("2023-12-31"), day("2024-01-02"), day("2024-01-03"), day("2023-01-03"),
                    day("2024-01-03"), day("2024-01-02")],
        "feature1": [11, 22, 33, 22, 10, 20],
    })
    customer = Entity(name="customer", join_keys=["customer_id"])
    source = suite.file_source(tmp_path, rows, "features_1")
    view = FeatureView(name="features_1", entities=[customer], ttl=timedelta(days=10), source=source,
                       schema=[Field(name="feature1", dtype=Int64)])
    store = suite.new_store(tmp_path)
    store.apply([customer, view])
    entity_df = pd.DataFrame({"customer_id": [1, 1, 2, 3],
                              "event_timestamp": [day("2024-01-01"), day("2024-01-02"), day("2024-01-01"),
                                                  day("2024-01-03")], "row": range(4)})
    by_feast, fast = both_answers(store, entity_df, ["features_1:feature1"])
    assert_all_agree(by_feast, fast, entity_df.assign(feature1=[11, 22, None, 10]), entity_df, ["feature1"])


@FULL
def test_feast_suite_aliased_projections_of_one_view(universal, tmp_path, full):
    """Two (and four) aliased projections of one view in one service, each with its own
    features, each read: none may replace another."""
    data, _ = universal
    view = data.objects["driver_stats"]
    service = FeatureService(name="aliases", features=[view.with_name("a")[["conv_rate"]],
                                                       view.with_name("b")[["acc_rate"]]])
    four = FeatureService(name="four", features=[view.with_name(f"p{i}")[[feature]] for i, feature in
                                                 enumerate(["conv_rate", "acc_rate", "avg_daily_trips", "conv_rate"])])
    store = suite.new_store(tmp_path)
    store.apply([DRIVER, suite.universal_views(data, tmp_path)["driver_stats"], service, four])
    for name, picks in [("aliases", [("a", "conv_rate"), ("b", "acc_rate")]),
                        ("four", [("p0", "conv_rate"), ("p1", "acc_rate"), ("p2", "avg_daily_trips"),
                                  ("p3", "conv_rate")])]:
        if name == "four" and not full:  # p0 and p3 both give conv_rate
            with pytest.raises(FeatureNameCollisionError):
                training_sets.get_training_set(store, data.entity_df, store.get_feature_service(name))
            continue
        by_feast, fast = both_answers(store, data.entity_df, store.get_feature_service(name), full_feature_names=full)
        reads = [suite.read(view, data.drivers, [feature], full, alias=alias) for alias, feature in picks]
        expected = suite.expected_training_set(data.entity_df, "event_timestamp", reads)
        assert_all_agree(by_feast, fast, expected, data.entity_df,
                         [f"{alias}__{feature}" if full else feature for alias, feature in picks])


def test_feast_suite_a_missing_entity_column_is_an_error_naming_it(universal):
    """Feast's DuckDB store: ibis's "Column 'customer_id' is not found"; the fast path names the
    view that needs it."""
    data, store = universal
    entity_df = data.entity_df.drop(columns=["customer_id"])
    with pytest.raises(Exception, match="Column 'customer_id' is not found in table"):
        store.get_historical_features(entity_df=entity_df, features=["customer_profile:current_balance"]).to_df()
    with pytest.raises(ValueError, match="entity_df has no column 'customer_id', which feature view "
                                         "'customer_profile' joins on"):
        training_sets.get_training_set(store, entity_df, ["customer_profile:current_balance"])
    with pytest.raises(ValueError, match=r"entity_df has no column 'origin_id', which feature view 'location_stats' "
                                         r"joins on \(its join key 'location_id', mapped\)"):
        training_sets.get_training_set(store, entity_df.drop(columns=["origin_id"]),
                                       store.get_feature_service("entity_mapping"), full_feature_names=True)


def test_feast_suite_a_join_key_map_of_some_keys_is_refused(universal, tmp_path):
    """The order view has two join keys; a map of one of them makes Feast's offline store join
    on that key alone (shown here: its answer differs from the oracle's), so the fast path
    refuses it, naming the key left out."""
    data, _ = universal
    view = suite.universal_views(data, tmp_path)["order"]
    service = FeatureService(name="other_driver", features=[view.with_join_key_map({"driver_id": "other_driver"})])
    store = suite.new_store(tmp_path)
    store.apply([DRIVER, suite.CUSTOMER, view, service])
    entity_df = data.entity_df.assign(other_driver=data.entity_df.driver_id)
    entity_df["customer_id"] = np.roll(entity_df.customer_id.to_numpy(), 1)  # other customers
    by_feast = store.get_historical_features(entity_df=entity_df, features=store.get_feature_service("other_driver")).to_df()
    by_feast = by_feast.set_index("row").loc[entity_df.row]
    reads = [suite.read(view, data.orders, ["order_is_success"], False, join_key_map={"driver_id": "other_driver"})]
    expected = suite.expected_training_set(entity_df, "event_timestamp", reads)
    assert plain(by_feast.order_is_success) != plain(expected.order_is_success)
    with pytest.raises(ValueError, match=r"projection 'order' of feature view 'order' maps the join keys \['driver_id'\], "
                                         r"but the view's join keys are \['customer_id', 'driver_id'\]: map each"):
        training_sets.get_training_set(store, entity_df, store.get_feature_service("other_driver"))


def test_feast_suite_keys_of_different_types_are_refused(tmp_path):
    """Text keys in the source and numbers in the frame: Feast's DuckDB store refuses to compare
    them, and so does the fast path (DuckDB itself would cast '01' to 1)."""
    rows = suite.typed_driver_rows(String, "int32")
    entity, view = suite.typed_view(tmp_path, rows, "typed", Int32, String)
    store = suite.new_store(tmp_path)
    store.apply([entity, view])
    entity_df = pd.DataFrame({"driver_id": [1, 3], "ts": [suite.NOW] * 2, "row": [0, 1]})
    with pytest.raises(Exception, match="not comparable"):
        store.get_historical_features(entity_df=entity_df, features=["typed:value"]).to_df()
    with pytest.raises(ValueError, match="entity_df column 'driver_id' holds number values, but feature view 'typed' "
                                         "joins it to its source column 'driver_id' of type VARCHAR"):
        training_sets.get_training_set(store, entity_df, ["typed:value"])


def test_feast_suite_retrieval_without_an_entity_frame_is_refused(universal):
    """test_historical_features_non_entity_retrieval (a date range), which Feast 0.67's DuckDB
    store does not take either, and entity rows from a SQL query: the fast path says where to go."""
    data, store = universal
    for entity_df in (None, "SELECT * FROM orders"):
        with pytest.raises(TypeError, match="entity_df must be a pandas DataFrame, not .*; for a SQL query or a "
                                            "date range without entity rows, use store.get_historical_features"):
            training_sets.get_training_set(store, entity_df, ["customer_profile:current_balance"])
    with pytest.raises(TypeError, match="unexpected keyword argument 'start_date'"):  # not in 0.67's DuckDB store
        store.get_historical_features(features=["driver_stats:avg_daily_trips"], start_date=suite.START.to_pydatetime(),
                                      end_date=suite.END.to_pydatetime())


def test_feast_suite_entity_columns_named_like_features_are_refused(universal):
    data, store = universal
    entity_df = data.entity_df.assign(current_balance=1.0)
    with pytest.raises(ValueError, match=r"entity_df has columns named like requested features: \['current_balance'\]"):
        training_sets.get_training_set(store, entity_df, ["customer_profile:current_balance"])


def test_feast_suite_get_training_set_from_feast_passes_the_options_on(universal):
    """The checked Feast path takes the same options and keeps the caller's frame as given."""
    data, store = universal
    entity_df = with_request_data(data.entity_df)
    for full in (False, True):
        from_feast = training_sets.get_training_set_from_feast(store, entity_df, MAIN_FEATURES, full_feature_names=full)
        fast = training_sets.get_training_set(store, entity_df, MAIN_FEATURES, full_feature_names=full)
        pd.testing.assert_frame_equal(from_feast[list(entity_df.columns)], entity_df)
        for column in names(MAIN_FEATURES, full):
            assert plain(from_feast[column]) == plain(fast[column]), column


# --- the Spark path: Feast's Spark store, the fast path on Spark sources, the oracle ----------


@pytest.fixture(scope="module")
def universal_on_spark(tmp_path_factory):
    """The universal repo with Spark sources and Feast's Spark store (one shared session)."""
    from hamilton_feast import spark

    folder = tmp_path_factory.mktemp("universal_spark")
    data = suite.universal_datasets()
    data.objects = suite.universal_views(data, folder, spark=True)
    services = suite.universal_services(data.objects)
    store = suite.new_store(folder, "spark")
    spark.session(store)
    store.apply([DRIVER, suite.CUSTOMER, suite.LOCATION, *data.objects.values(), *services.values()])
    return data, store


def spark_answers(store, entity_df, features, **options):
    """The Spark store's answer through get_training_set_from_feast (checked, in the caller's
    order), and the fast path's."""
    return (training_sets.get_training_set_from_feast(store, entity_df, features, **options),
            training_sets.get_training_set(store, entity_df, features, **options))


@pytest.mark.xdist_group("spark")
@FULL
def test_spark_feast_suite_main_features(universal_on_spark, full):
    data, store = universal_on_spark
    entity_df = with_request_data(data.entity_df)
    by_feast, fast = spark_answers(store, entity_df, MAIN_FEATURES, full_feature_names=full)
    expected = suite.with_conv_rate_plus_100(
        suite.expected_training_set(entity_df, "event_timestamp", main_reads(data, full)), full)
    assert_all_agree(by_feast, fast, expected, entity_df, names(MAIN_FEATURES, full))


@pytest.mark.xdist_group("spark")
def test_spark_feast_suite_origin_and_destination_through_join_key_maps(universal_on_spark):
    data, store = universal_on_spark
    entity_df = data.entity_df.assign(location_id=data.entity_df.destination_id.to_numpy()[::-1] + 1)
    by_feast, fast = spark_answers(store, entity_df, store.get_feature_service("entity_mapping"),
                                   full_feature_names=True)
    view = data.objects["location_stats"]
    reads = [suite.read(view, data.locations, ["temperature"], True, alias=alias, join_key_map={"location_id": key})
             for alias, key in [("origin", "origin_id"), ("destination", "destination_id")]]
    expected = suite.expected_training_set(entity_df, "event_timestamp", reads)
    assert_all_agree(by_feast, fast, expected, entity_df, ["origin__temperature", "destination__temperature"])


@pytest.mark.xdist_group("spark")
@pytest.mark.parametrize("filtered", [False, True], ids=["default", "filter_by_created_timestamp"])
def test_spark_feast_suite_backfills_and_created_filtering(tmp_path, filtered):
    rows = pd.DataFrame([
        {"driver_id": 1001, "avg_daily_trips": 10, "event_timestamp": NOW, "created": NOW},
        {"driver_id": 1001, "avg_daily_trips": 20, "event_timestamp": NOW, "created": DAY_AFTER},
        {"driver_id": 1002, "avg_daily_trips": 30, "event_timestamp": NOW, "created": TOMORROW},
        {"driver_id": 1002, "avg_daily_trips": 40, "event_timestamp": TOMORROW, "created": NOW},
    ])
    store, _ = tiny_store(tmp_path, rows, spark=True)
    entity_df = pd.DataFrame({"driver_id": [1001, 1002, 1002], "event_timestamp": [TOMORROW, TOMORROW, DAY_AFTER],
                              "row": range(3)})
    by_feast, fast = spark_answers(store, entity_df, ["driver_stats:avg_daily_trips"],
                                   filter_by_created_timestamp=filtered)
    expected = entity_df.assign(avg_daily_trips=[10, 40, 40] if filtered else [20, 40, 40])
    assert_all_agree(by_feast, fast, expected, entity_df, ["avg_daily_trips"])
