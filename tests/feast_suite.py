"""The data, objects and oracle of Feast's historical-retrieval tests, rewritten here as a
specification for tests/test_feast_suite.py: the "universal" repo of
sdk/python/tests/integration/offline_store/test_universal_historical_retrieval.py (customers,
drivers, orders, locations, global stats, a field-mapped source, an on-demand view), the typed
sources of test_universal_types.py, and an oracle in the manner of Feast's
`get_expected_training_df`: for each entity row and each projection, the latest source row by
(event time, created) among the rows of its entity at or before the row's time, within the TTL.

The datasets come from Feast's own generators (`feast.driver_test_data`, installed with Feast),
seeded, over a fixed three days; their `created` stamps (the wall clock there) are fixed too.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from feast import (Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, OnDemandFeatureView,
                   RepoConfig, RequestSource, ValueType, driver_test_data)
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.on_demand_feature_view import PandasTransformation
from feast.repo_config import RegistryConfig
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, Json, Map, String, Struct, UnixTimestamp

END = pd.Timestamp("2026-03-04", tz="UTC")
START = END - pd.Timedelta(days=3)
CREATED = pd.Timestamp("2026-03-05 12:00")  # naive, as Feast's generators write it
CUSTOMERS, DRIVERS, LOCATIONS = list(range(1001, 1020)), list(range(5001, 5020)), list(range(1, 50))
NO_OP_MAPPING = {"ts_1": "ts"}  # what Feast's file data source creator maps on every source


SPARK_CONF = {"spark.master": "local[2]", "spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "4"}


def new_store(folder: Path, offline_store: str = "duckdb") -> FeatureStore:
    """A throwaway repo on Feast's DuckDB store, or on its Spark store ("spark", local mode)."""
    spark = {"spark_conf": SPARK_CONF} if offline_store == "spark" else {}
    return FeatureStore(config=RepoConfig(
        project="feast_suite", registry=RegistryConfig(path=str(folder / "registry.db")), provider="local",
        offline_store={"type": offline_store, **spark}, online_store={"type": "sqlite", "path": str(folder / "online.db")},
        entity_key_serialization_version=3, repo_path=str(folder),
    ))


def file_source(folder: Path, rows: pd.DataFrame, name: str, timestamp_field="event_timestamp",
                created="created", field_mapping=None, spark: bool = False) -> FileSource | SparkSource:
    """A parquet file of the rows, as Feast's file data source creator writes and declares it;
    or, for Spark, a SparkSource of the file (its times in microseconds, which Spark reads)."""
    path = folder / f"{name}.parquet"
    rows.to_parquet(path, **({"coerce_timestamps": "us"} if spark else {}))
    options = dict(name=name, path=str(path), timestamp_field=timestamp_field, created_timestamp_column=created,
                   field_mapping=field_mapping or NO_OP_MAPPING)
    return SparkSource(file_format="parquet", **options) if spark else FileSource(**options)


@dataclass
class Universal:
    """The universal datasets and, once `views(folder)` wrote them, their views."""

    customers: pd.DataFrame
    drivers: pd.DataFrame
    locations: pd.DataFrame
    orders: pd.DataFrame
    global_stats: pd.DataFrame
    field_mapping: pd.DataFrame
    entity_df: pd.DataFrame  # the orders' keys and mixed-zone times, with a row number
    objects: dict = field(default_factory=dict)


def universal_datasets() -> Universal:
    np.random.seed(0)  # Feast's generators draw from numpy's global generator
    made = Universal(
        customers=driver_test_data.create_customer_daily_profile_df(CUSTOMERS, START, END),
        drivers=driver_test_data.create_driver_hourly_stats_df(DRIVERS, START, END),
        locations=driver_test_data.create_location_stats_df(LOCATIONS, START, END),
        orders=driver_test_data.create_orders_df(CUSTOMERS, DRIVERS, START, END, order_count=20, locations=LOCATIONS),
        global_stats=driver_test_data.create_global_daily_stats_df(START, END),
        field_mapping=driver_test_data.create_field_mapping_df(START, END),
        entity_df=pd.DataFrame(),
    )
    for frame in (made.customers, made.drivers, made.locations, made.global_stats, made.field_mapping):
        frame["created"] = CREATED
    made.entity_df = made.orders[["customer_id", "driver_id", "order_id", "origin_id", "destination_id",
                                  "event_timestamp"]].reset_index(drop=True).assign(row=lambda e: range(len(e)))
    return made


def conv_rate_plus_100(features: pd.DataFrame) -> pd.DataFrame:
    """Feast's universal on-demand view: three outputs from a feature and a request field."""
    out = pd.DataFrame()
    out["conv_rate_plus_100"] = features["conv_rate"] + 100
    out["conv_rate_plus_val_to_add"] = features["conv_rate"] + features["val_to_add"]
    out["conv_rate_plus_100_rounded"] = out["conv_rate_plus_100"].astype("float").round().astype(pd.Int32Dtype())
    return out


DRIVER = Entity(name="driver", join_keys=["driver_id"], description="driver id", value_type=ValueType.INT64)
CUSTOMER = Entity(name="customer_id", value_type=ValueType.INT64)
LOCATION = Entity(name="location_id", value_type=ValueType.INT64)


def universal_views(data: Universal, folder: Path, ttl_off: tuple[str, ...] = (), spark: bool = False) -> dict:
    """Feast's universal objects over the datasets, written to parquet in `folder` (as Spark
    sources with `spark`); the views named in `ttl_off` without a TTL (timedelta(0), as Feast's
    no-TTL test sets it)."""
    sources = {
        "customer_profile": file_source(folder, data.customers, "customer_profile", spark=spark),
        "driver_stats": file_source(folder, data.drivers, "driver_hourly", spark=spark),
        "location_stats": file_source(folder, data.locations, "location_hourly", spark=spark),
        "order": file_source(folder, data.orders, "orders", created=None, spark=spark),
        "global_stats": file_source(folder, data.global_stats, "global", spark=spark),
        "field_mapping": file_source(folder, data.field_mapping, "field_mapping",
                                     field_mapping={"column_name": "feature_name"}, spark=spark),
    }

    def ttl(name, default):
        return timedelta(0) if name in ttl_off else default

    views = {
        "driver_stats": FeatureView(name="driver_stats", entities=[DRIVER], source=sources["driver_stats"],
                                    ttl=ttl("driver_stats", timedelta(hours=2)), schema=[
            Field(name="conv_rate", dtype=Float32), Field(name="acc_rate", dtype=Float32),
            Field(name="avg_daily_trips", dtype=Int32), Field(name="driver_id", dtype=Int64),
            Field(name="driver_metadata", dtype=Map), Field(name="driver_config", dtype=Json),
            Field(name="driver_profile", dtype=Struct({"name": String, "age": String}))]),
        "customer_profile": FeatureView(name="customer_profile", entities=[CUSTOMER], source=sources["customer_profile"],
                                        ttl=ttl("customer_profile", timedelta(days=2)), schema=[
            Field(name="current_balance", dtype=Float32), Field(name="avg_passenger_count", dtype=Float32),
            Field(name="lifetime_trip_count", dtype=Int32)]),
        "global_stats": FeatureView(name="global_stats", entities=[], source=sources["global_stats"],
                                    ttl=ttl("global_stats", timedelta(days=2)), schema=[
            Field(name="num_rides", dtype=Int32), Field(name="avg_ride_length", dtype=Float32)]),
        "order": FeatureView(name="order", entities=[CUSTOMER, DRIVER], source=sources["order"],
                             ttl=ttl("order", timedelta(days=2)), schema=[
            Field(name="order_is_success", dtype=Int32), Field(name="driver_id", dtype=Int64)]),
        "location_stats": FeatureView(name="location_stats", entities=[LOCATION], source=sources["location_stats"],
                                      ttl=ttl("location_stats", timedelta(days=2)), schema=[
            Field(name="temperature", dtype=Int32), Field(name="location_id", dtype=Int64)]),
        "field_mapping": FeatureView(name="field_mapping", entities=[], source=sources["field_mapping"],
                                     ttl=ttl("field_mapping", timedelta(days=2)),
                                     schema=[Field(name="feature_name", dtype=Int32)]),
    }
    views["conv_rate_plus_100"] = OnDemandFeatureView(
        name="conv_rate_plus_100", mode="pandas",
        sources=[views["driver_stats"][["conv_rate"]],
                 RequestSource(name="conv_rate_input", schema=[Field(name="val_to_add", dtype=Int32)])],
        schema=[Field(name="conv_rate_plus_100", dtype=Float64), Field(name="conv_rate_plus_val_to_add", dtype=Float64),
                Field(name="conv_rate_plus_100_rounded", dtype=Int32)],
        feature_transformation=PandasTransformation(udf=conv_rate_plus_100, udf_string="conv_rate_plus_100"),
    )
    return views


def universal_services(views: dict) -> dict:
    location = views["location_stats"]
    return {
        "convrate_plus100": FeatureService(name="convrate_plus100", features=[
            views["driver_stats"][["conv_rate"]], views["conv_rate_plus_100"]]),
        "entity_mapping": FeatureService(name="entity_mapping", features=[
            location.with_name("origin").with_join_key_map({"location_id": "origin_id"}),
            location.with_name("destination").with_join_key_map({"location_id": "destination_id"})]),
    }


MAIN_FEATURES = [
    "driver_stats:conv_rate", "driver_stats:avg_daily_trips",
    "customer_profile:current_balance", "customer_profile:avg_passenger_count",
    "customer_profile:lifetime_trip_count",
    "conv_rate_plus_100:conv_rate_plus_100", "conv_rate_plus_100:conv_rate_plus_100_rounded",
    "conv_rate_plus_100:conv_rate_plus_val_to_add",
    "order:order_is_success", "global_stats:num_rides", "global_stats:avg_ride_length",
    "field_mapping:feature_name",
]


# --- the oracle ------------------------------------------------------------------------------


def utc(values) -> pd.Series:
    """Any timestamps (mixed zones, naive read as UTC) as UTC."""
    return pd.to_datetime(pd.Series(values, dtype=object).map(
        lambda t: t if pd.Timestamp(t).tzinfo else pd.Timestamp(t).tz_localize("UTC")), utc=True)


@dataclass
class Read:
    """One projection as the oracle reads it: source rows under Feast's column names."""

    rows: pd.DataFrame
    keys: dict  # source column -> entity_df column
    features: dict  # source column -> output column
    ttl: timedelta | None
    timestamp_field: str = "event_timestamp"
    created: str | None = "created"


def read(view: FeatureView, rows: pd.DataFrame, names: list[str], full: bool, alias: str | None = None,
         join_key_map: dict | None = None, renamed: dict | None = None) -> Read:
    """The oracle's reading of `names` of a view: the rows renamed by hand as its field mapping
    says (`renamed`: file column -> Feast name), joined through `join_key_map`."""
    rows = rows.rename(columns=renamed or {})
    keys = {c.name: (join_key_map or {}).get(c.name, c.name) for c in view.entity_columns
            if c.name != "__dummy_id"}
    prefix = alias or view.name
    source = view.batch_source
    return Read(rows, keys, {n: f"{prefix}__{n}" if full else n for n in names}, view.ttl or None,
                source.timestamp_field, source.created_timestamp_column)


def expected_training_set(entity_df: pd.DataFrame, timestamp_column: str, reads: list[Read],
                          filter_by_created_timestamp: bool = False) -> pd.DataFrame:
    """One entity row at a time: for each read, the latest row by (event time, created) of the
    row's entity with event time <= the row's time, no older than the TTL (inclusive), and
    created by then with the filter; None where there is none."""
    expected = entity_df.copy()
    times = utc(entity_df[timestamp_column]).tolist()
    for r in reads:
        rows = r.rows.assign(__ts=utc(r.rows[r.timestamp_field]).to_numpy())
        rows["__created"] = utc(rows[r.created]).to_numpy() if r.created else pd.NaT
        groups = {k if isinstance(k, tuple) else (k,): g for k, g in rows.groupby(list(r.keys))} if r.keys else None
        values = {out: [] for out in r.features.values()}
        for i, t in enumerate(times):
            key = tuple(entity_df[c].iloc[i] for c in r.keys.values())
            candidates = groups.get(key) if groups is not None else rows
            if candidates is not None:
                candidates = candidates[candidates.__ts <= t]
                if r.ttl:
                    candidates = candidates[candidates.__ts >= t - r.ttl]
                if filter_by_created_timestamp and r.created:
                    candidates = candidates[candidates.__created <= t]
            best = None if candidates is None or candidates.empty else \
                candidates.sort_values(["__ts", "__created"], kind="stable").iloc[-1]
            for column, out in r.features.items():
                values[out].append(None if best is None else best[column])
        for out, column_values in values.items():
            expected[out] = column_values
    return expected


def with_conv_rate_plus_100(expected: pd.DataFrame, full: bool, outputs=("conv_rate_plus_100",
                            "conv_rate_plus_val_to_add", "conv_rate_plus_100_rounded")) -> pd.DataFrame:
    """The on-demand view's outputs, computed from the oracle's conv_rate as Feast's expected
    answer computes them."""
    conv_rate = expected["driver_stats__conv_rate" if full else "conv_rate"].astype("float32")
    name = {o: f"conv_rate_plus_100__{o}" if full else o for o in outputs}
    plus_100 = conv_rate + 100
    computed = {"conv_rate_plus_100": plus_100,
                "conv_rate_plus_val_to_add": conv_rate + expected["val_to_add"] if "val_to_add" in expected else None,
                "conv_rate_plus_100_rounded": plus_100.astype("float").round().astype(pd.Int32Dtype())}
    return expected.assign(**{name[o]: computed[o] for o in outputs})


# --- the typed sources of test_universal_types.py ----------------------------------------------

NOW = pd.Timestamp("2026-03-04 12:00", tz="UTC")
VALUES = {
    "int32": [1, 2, 3, 4, 5], "int64": [1, 2, 3, 4, 5], "float": [1.0, None, 3.0, 4.0, 5.0],
    "bool": [True, None, False, True, False],
    "datetime": [datetime(1980, 1, 1), None, datetime(1981, 1, 1), datetime(1982, 1, 1), datetime(1982, 1, 1)],
}
FEAST_TYPES = {"int32": Int32, "int64": Int64, "float": Float32, "bool": Bool, "datetime": UnixTimestamp}
ENTITY_VALUES = {Int32: [1, 2, 1, 3, 3], Int64: [1, 2, 1, 3, 3], String: ["1", "2", "1", "3", "3"]}


def typed_driver_rows(entity_type=Int64, dtype: str = "int32", is_list: bool = False,
                      empty_lists: bool = False) -> pd.DataFrame:
    """Five rows of three drivers with one `value` column of the type, times in mixed zones in
    `ts_1` (the source maps it to `ts`), as Feast's basic driver dataset."""
    values = VALUES[dtype]
    if is_list:
        values = [[] for _ in values[:-1]] + [values[-1:]] if empty_lists else \
            [[v, v] if v is not None else None for v in values]
    return pd.DataFrame({
        "driver_id": ENTITY_VALUES[entity_type],
        "value": values,
        "ts_1": [NOW - timedelta(hours=4), NOW, NOW - timedelta(hours=3),
                 (NOW - timedelta(hours=4)).astimezone(ZoneInfo("Europe/Berlin")),
                 (NOW - timedelta(hours=1)).astimezone(ZoneInfo("US/Pacific"))],
        "created_ts": [NOW] * 5,
    })


def typed_view(folder: Path, rows: pd.DataFrame, name: str, dtype, entity_type=Int64) -> tuple[Entity, FeatureView]:
    """A driver entity whose key type Feast infers, and a view of `value` over the rows."""
    source = file_source(folder, rows, name, timestamp_field="ts", created="created_ts",
                         field_mapping={"ts_1": "ts"})
    driver = Entity(name="driver", join_keys=["driver_id"])
    return driver, FeatureView(name=name, entities=[driver], ttl=timedelta(days=5), source=source,
                               schema=[Field(name="driver_id", dtype=entity_type), Field(name="value", dtype=dtype)])


def list_type(dtype: str):
    return Array(FEAST_TYPES[dtype])


