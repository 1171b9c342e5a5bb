"""Training sets that keep every entity row the caller passed, in the caller's order.

Two ways to the same answer, Feast's documented point-in-time semantics:
- `get_training_set`: one DuckDB ASOF JOIN per feature view, straight on its parquet source,
  then Feast computes the on-demand views; many times faster than Feast's offline stores on
  large entity frames (the figures are in BENCHMARKS.md). The tests check it row for row
  against Feast and against a brute-force oracle.
- `get_training_set_from_feast`: `FeatureStore.get_historical_features`, with its input and
  output checked. Some offline stores return fewer rows than they were given (Feast's file
  store drops duplicate (entity, timestamp) rows and rows with no feature inside the TTL); a
  training set silently missing rows biases a model, so a short answer is an error here.
"""

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa

from feast import FeatureService, FeatureStore, FeatureView, FileSource, OnDemandFeatureView
from feast.errors import FeastObjectNotFoundException
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from hamilton_feast.notices import known_notices_hidden

ROW_ID = "__entity_row"


def _entity_timestamps(entity_df: pd.DataFrame) -> pd.Series:
    """event_timestamp as UTC microseconds; naive stamps are taken as UTC, as Feast takes them."""
    if "event_timestamp" not in entity_df.columns:
        raise ValueError(
            "entity_df has no 'event_timestamp' column; expected one timezone-aware datetime per "
            f"row, the moment to join features as of (columns given: {list(entity_df.columns)})"
        )
    stamps = entity_df["event_timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        raise ValueError(f"entity_df column 'event_timestamp' has dtype {stamps.dtype}; expected datetimes")
    if stamps.isna().any():
        raise ValueError(f"entity_df column 'event_timestamp' has {stamps.isna().sum()} missing values; expected none")
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    if (stamps.dt.floor("us") != stamps).any():
        raise ValueError(
            "entity_df column 'event_timestamp' has sub-microsecond precision, which the DuckDB "
            "offline store rejects; round it first, e.g. df.event_timestamp.dt.floor('us')"
        )
    return stamps.astype("datetime64[us, UTC]")


def get_training_set_from_feast(
    store: FeatureStore, entity_df: pd.DataFrame, features: FeatureService | list[str]
) -> pd.DataFrame:
    """Point-in-time features for every row of `entity_df`, in its order, with its columns.

    Raises ValueError, naming the column, for an entity_df Feast cannot join; and RuntimeError
    when the offline store answers with other rows than it was asked for.
    """
    query = entity_df.reset_index(drop=True)
    query["event_timestamp"] = _entity_timestamps(query)
    query[ROW_ID] = range(len(query))
    with known_notices_hidden():
        answer = store.get_historical_features(entity_df=query, features=features).to_df()

    returned = answer[ROW_ID]
    if len(answer) != len(query) or returned.duplicated().any() or set(returned) != set(query[ROW_ID]):
        missing = len(set(query[ROW_ID]) - set(returned))
        raise RuntimeError(
            f"the offline store ({store.config.offline_store.type}) returned {len(answer)} rows for "
            f"{len(query)} entity rows ({missing} missing): it drops rows, e.g. duplicate "
            "(entity, event_timestamp) rows or rows with no feature inside the TTL. Use an "
            "offline store that keeps them, such as duckdb."
        )
    answer = answer.sort_values(ROW_ID).drop(columns=ROW_ID).reset_index(drop=True)
    # The entity columns as given (some stores, such as Spark's, return times without a zone).
    for column in query.columns.drop(ROW_ID):  # both indexed 0..n-1, in the caller's order
        answer[column] = query[column]
    return answer.set_axis(entity_df.index)


def _views_and_features(store: FeatureStore, features) -> dict:
    """{view: [feature names]} for a feature service or a list of "view:feature" references."""
    if isinstance(features, FeatureService):
        wanted = [(p.name, [f.name for f in p.features]) for p in features.feature_view_projections]
    else:
        grouped: dict[str, list[str]] = {}
        for reference in features:
            view_name, feature = reference.split(":")
            grouped.setdefault(view_name, []).append(feature)
        wanted = list(grouped.items())
    views = {}
    for name, names in wanted:
        try:
            view = store.get_feature_view(name)
        except FeastObjectNotFoundException:
            view = store.get_on_demand_feature_view(name)
        views[view] = names
    return views


def parquet_files(store: FeatureStore, view: FeatureView) -> str:
    """What DuckDB reads for the view's source: a parquet file (a FileSource), or the parquet
    files of a folder (a SparkSource with a path); refused, naming the view, for anything else."""
    source = view.batch_source
    if isinstance(source, FileSource) and not source.field_mapping:
        return FileSource.get_uri_for_file_path(store.repo_path, source.path)
    if isinstance(source, SparkSource) and source.path and (source.file_format or "") == "parquet" \
            and not source.field_mapping:
        path = source.path if source.path.startswith("/") else str(Path(store.repo_path) / source.path)
        return f"{path}/*.parquet" if Path(path).is_dir() else path
    raise ValueError(
        f"{view.name!r} reads {type(source).__name__} {source.name!r}; get_training_set joins parquet "
        "files only (a FileSource, or a SparkSource of parquet files). Use "
        "get_training_set_from_feast for it, which asks the offline store"
    )


def _asof_join(connection, store: FeatureStore, view: FeatureView, names: list[str]) -> pd.DataFrame:
    """One view's features for every entity row: its source rows deduplicated by `created`,
    ASOF-joined backwards on time within the view's join keys, nulled beyond the TTL.

    Times are compared as nanoseconds since the epoch, so a source in any unit (s, ms, us, ns),
    in any zone or none (read as UTC, as Feast reads it), joins exactly, whatever the session's
    time zone.
    """
    source = view.batch_source
    path = parquet_files(store, view)
    keys = [column.name for column in view.entity_columns]
    ts, created = source.timestamp_field, source.created_timestamp_column
    latest_first = f'"{created}" DESC' if created else f'"{ts}"'
    if view.ttl:
        ttl_ns = view.ttl // timedelta(microseconds=1) * 1000
        picked = ", ".join(f'CASE WHEN f.__ts >= e.__ts - {ttl_ns} THEN f."{n}" END AS "{n}"' for n in names)
    else:
        picked = ", ".join(f'f."{n}"' for n in names)
    key_list = ", ".join(f'"{k}"' for k in keys)
    key_match = " AND ".join(f'e."{k}" = f."{k}"' for k in keys)
    return connection.execute(f"""
        WITH e AS (SELECT {ROW_ID}, {key_list}, epoch_ns(event_timestamp) AS __ts FROM entities),
        f AS (
            SELECT {key_list}, epoch_ns("{ts}") AS __ts, {", ".join(f'"{n}"' for n in names)}
            FROM read_parquet('{path}')
            QUALIFY row_number() OVER (PARTITION BY {key_list}, "{ts}" ORDER BY {latest_first}) = 1
        )
        SELECT e.{ROW_ID}, {picked}
        FROM e ASOF LEFT JOIN f ON {key_match} AND e.__ts >= f.__ts
        ORDER BY e.{ROW_ID}
    """).df()


def get_training_set(
    store: FeatureStore, entity_df: pd.DataFrame, features: FeatureService | list[str]
) -> pd.DataFrame:
    """The same training set as `get_training_set_from_feast`, joined by DuckDB directly.

    Feast's semantics (latest row at or before each entity timestamp, within the TTL, ties on
    event time broken by the later `created`) as one ASOF JOIN per feature view over its parquet
    source; on-demand views are then computed by Feast itself. For feature views backed by plain
    parquet files; the tests check it row for row against Feast and a brute-force oracle.
    """
    import duckdb

    query = entity_df.reset_index(drop=True)
    query["event_timestamp"] = _entity_timestamps(query)
    query[ROW_ID] = range(len(query))
    views = _views_and_features(store, features)
    batch_views = {v: names for v, names in views.items() if isinstance(v, FeatureView)}
    on_demand = {v: names for v, names in views.items() if isinstance(v, OnDemandFeatureView)}
    for odfv in on_demand:  # their inputs, too
        for projection in odfv.source_feature_view_projections.values():
            view = store.get_feature_view(projection.name)
            needed = batch_views.setdefault(view, [])
            needed.extend(f.name for f in projection.features if f.name not in needed)

    connection = duckdb.connect()
    connection.register("entities", query)
    result = query
    for view, names in batch_views.items():
        joined = _asof_join(connection, store, view, names)
        result = result.merge(joined, on=ROW_ID, how="left", validate="1:1")
    for odfv, names in on_demand.items():
        computed = odfv.transform_arrow(pa.Table.from_pandas(result), full_feature_names=False)
        for name in names:
            result[name] = computed.column(name).to_pandas()
    return result.drop(columns=ROW_ID).set_axis(entity_df.index)
