"""Training sets with Feast's point-in-time semantics that keep every entity row the caller
passed, in the caller's order, with the caller's own columns, or refuse with one line saying why.

Two ways to the same answer:
- `get_training_set`, the fast path: Feast resolves the request exactly as
  `FeatureStore.get_historical_features` does, with its own functions (feature services,
  projections and aliases, join key maps, views without entities, the fields a projection
  declares, on-demand views' request data, name collisions, the entity timestamp column); then
  one DuckDB ASOF JOIN per projection reads its parquet source directly (the field mapping
  applied); then Feast's own retrieval job computes the on-demand views. Feast's historical
  retrieval scenarios run in tests/test_feast_suite.py against Feast's DuckDB store and an
  oracle; the speed is in BENCHMARKS.md.
- `get_training_set_from_feast`: `FeatureStore.get_historical_features`, with its input and
  output checked. Some offline stores return fewer rows than they were given; a training set
  silently missing rows biases a model, so a short answer is an error here, and Feast's file
  store, which also breaks event-time ties against its own rule, is refused.
"""

import copy

import numpy as np
import pandas as pd
import pyarrow as pa

from feast import FeatureService, FeatureStore, FeatureView, OnDemandFeatureView, utils
from feast.errors import RequestDataNotFoundInEntityDfException
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df
from hamilton_feast import sources
from hamilton_feast.notices import known_notices_hidden

ROW_ID = "__entity_row"
# Feast's file offline store ("file", or "dask", its class's own name): drops duplicate entity rows
# and rows without features, and breaks event-time ties against the later `created`
# (tests/test_point_in_time.py).
UNTRUSTED_OFFLINE_STORES = dict.fromkeys(
    ["file", "dask"], "drops entity rows and breaks event-time ties against the later 'created'")


def _entity_frame(store: FeatureStore, entity_df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The entity frame as Feast's offline stores see it, and its timestamp column: datetime
    columns in UTC (naive ones read as UTC), the timestamp column found as Feast finds it
    (`event_timestamp`, else the one datetime column) and parsed as Feast parses it (mixed zones
    and strings to UTC), in microseconds, which Feast's DuckDB store requires."""
    if not isinstance(entity_df, pd.DataFrame):
        raise TypeError(
            f"entity_df must be a pandas DataFrame, not {type(entity_df).__name__}; for a SQL query "
            "or a date range without entity rows, use store.get_historical_features"
        )
    if ROW_ID in entity_df.columns:
        raise ValueError(f"entity_df has a column {ROW_ID!r}, a name this module uses itself: rename it")
    frame = entity_df.reset_index(drop=True)
    if store.config.coerce_tz_aware:
        frame = utils.make_df_tzaware(frame)
    column = infer_event_timestamp_from_entity_df(dict(zip(frame.columns, frame.dtypes)))
    stamps = frame[column].infer_objects()
    if pd.api.types.is_object_dtype(stamps) or pd.api.types.is_string_dtype(stamps):
        try:
            stamps = pd.to_datetime(stamps, utc=True)
        except (ValueError, TypeError) as error:
            raise ValueError(f"entity_df column {column!r} does not parse as timestamps: {error}") from None
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        raise ValueError(f"entity_df column {column!r} has dtype {stamps.dtype}; expected datetimes")
    if stamps.isna().any():
        raise ValueError(f"entity_df column {column!r} has {stamps.isna().sum()} missing values; expected none")
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    if (stamps.dt.floor("us") != stamps).any():
        raise ValueError(
            f"entity_df column {column!r} has sub-microsecond precision, which Feast's DuckDB "
            f"offline store rejects; round it first, e.g. df[{column!r}].dt.floor('us')"
        )
    frame[column] = stamps.astype("datetime64[us, UTC]")
    return frame, column


def _with_callers_columns(answer: pd.DataFrame | pa.Table, entity_df: pd.DataFrame) -> pd.DataFrame:
    """The caller's frame as given (index, columns, values), then the features of each row of
    `answer` (rows in the caller's order): side by side, without copying either."""
    if isinstance(answer, pa.Table):
        features = answer.drop_columns([c for c in answer.column_names if c in entity_df.columns])
        features = features.to_pandas(split_blocks=True, self_destruct=True)
    else:
        features = answer[[c for c in answer.columns if c not in entity_df.columns]]
    return pd.concat([entity_df, features.set_axis(entity_df.index, copy=False)], axis=1, copy=False)


def get_training_set_from_feast(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    features: FeatureService | list[str],
    full_feature_names: bool = False,
    filter_by_created_timestamp: bool = False,
) -> pd.DataFrame:
    """Point-in-time features for every row of `entity_df`, in its order, with its columns, by
    the offline store's `get_historical_features`.

    Raises ValueError, naming the column, for an entity_df Feast cannot join, and for an offline
    store known to answer wrongly; RuntimeError when the store answers with other rows than it
    was asked for.
    """
    store_type = store.config.offline_store.type
    if store_type in UNTRUSTED_OFFLINE_STORES:
        raise ValueError(
            f"the {store_type} offline store {UNTRUSTED_OFFLINE_STORES[store_type]}; use the duckdb "
            "offline store, or get_training_set, which joins the parquet sources itself"
        )
    query, _ = _entity_frame(store, entity_df)
    query[ROW_ID] = range(len(query))
    with known_notices_hidden():
        answer = store.get_historical_features(
            entity_df=query, features=features, full_feature_names=full_feature_names,
            filter_by_created_timestamp=filter_by_created_timestamp,
        ).to_df()
    returned = answer[ROW_ID]
    if len(answer) != len(query) or returned.duplicated().any() or set(returned) != set(query[ROW_ID]):
        missing = len(set(query[ROW_ID]) - set(returned))
        raise RuntimeError(
            f"the offline store ({store_type}) returned {len(answer)} rows for {len(query)} entity "
            f"rows ({missing} missing): it drops rows, e.g. duplicate (entity, timestamp) rows or rows "
            "with no feature inside the TTL. Use an offline store that keeps them, such as duckdb."
        )
    answer = answer.sort_values(ROW_ID).drop(columns=ROW_ID)
    return _with_callers_columns(answer, entity_df)


def _feast_request(
    store: FeatureStore, frame: pd.DataFrame, features: FeatureService | list[str], full_feature_names: bool
) -> tuple[list[FeatureView], list[str]]:
    """The feature views (each with its projection) and the feature references an offline store
    is handed for this request: resolved and checked by Feast's own functions, in the order
    `FeatureStore.get_historical_features` calls them, so that every error is Feast's."""
    registry, project = store.registry, store.project
    references = utils._get_features(registry, project, features, allow_cache=True)
    views, on_demand_views = utils._get_feature_views_to_use(registry, project, features)
    on_demand_views = copy.deepcopy(on_demand_views)
    for view in on_demand_views:  # computed from their sources, as Feast does offline
        view.write_to_online_store = False
    grouped, on_demand = utils._group_feature_refs(references, views, on_demand_views)
    # The on-demand views' inputs are read too, as Feast reads them.
    references_read = list(references)
    for view, names in grouped:
        references_read += [ref for ref in (f"{view.projection.name_to_use()}:{n}" for n in names)
                            if ref not in references_read]
    for view, _ in on_demand:
        for name in view.get_request_data_schema():
            if name not in frame.columns:
                raise RequestDataNotFoundInEntityDfException(feature_name=name, feature_view_name=view.name)
    utils._validate_feature_refs(references, full_feature_names)
    return [view for view, _ in grouped], references_read


def _join_keys(view: FeatureView) -> dict[str, str]:
    """{source column: entity_df column} for the view's projection; a join key map that maps
    some join keys only is refused (Feast's offline stores would join on those alone)."""
    keys = [column.name for column in view.entity_columns]
    mapped = view.projection.join_key_map
    if mapped and set(mapped) != set(keys):
        raise ValueError(
            f"projection {view.projection.name_to_use()!r} of feature view {view.name!r} maps the "
            f"join keys {sorted(mapped)}, but the view's join keys are {sorted(keys)}: map each of "
            "them (Feast's offline stores join on the mapped keys alone, its online store on all)"
        )
    return {key: mapped.get(key, key) for key in keys}


def _kind_of_column(values: pd.Series) -> str:
    """What a join compares, for an entity_df column (as sources.kind_of for a source column)."""
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        return "number"
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    return {"string": "text", "integer": "number", "floating": "number", "mixed-integer-float": "number",
            "decimal": "number", "boolean": "boolean"}.get(inferred, inferred)


def _output_name(view_name: str, feature: str, full_feature_names: bool) -> str:
    return f"{view_name}__{feature}" if full_feature_names else feature


def _projection_features(view: FeatureView, references: list[str], full_feature_names: bool) -> dict[str, str]:
    """{feature: output column} for a projection, in the order of the references (as Feast)."""
    prefix = f"{view.projection.name_to_use()}:"
    names = [ref[len(prefix):] for ref in references if ref.startswith(prefix)]
    return {n: _output_name(view.projection.name_alias or view.name, n, full_feature_names) for n in names}


def _join_of(view: FeatureView, table: sources.SourceTable) -> tuple:
    """What one ASOF JOIN reads and matches for a projection; projections alike in all of it
    (aliases of one view, say) share one join."""
    source = view.batch_source
    return (table.files, tuple(sorted(source.field_mapping.items())), source.timestamp_field,
            source.created_timestamp_column, tuple(_join_keys(view).items()), view.ttl)


def _asof_join(
    connection, table: sources.SourceTable, view: FeatureView, names: list[str], frame: pd.DataFrame,
    filter_by_created_timestamp: bool,
) -> dict[str, pa.ChunkedArray]:
    """The features `names` of a projection for every entity row, by Feast's rule: among the
    source rows of the row's entity (its join keys, through the projection's join key map) with
    an event time at or before the row's and, with `filter_by_created_timestamp`, created by
    then, the latest by (event time, created), nulled when older than the view's TTL.

    Without the filter this is an ASOF JOIN on event time over the rows that are latest-created
    per (entity, event time). With it, a row can be chosen once both its times have passed
    ("known" at the later of the two), and the rows that are the best so far, by (event time,
    created), in order of when they became known, are ASOF-joined on that moment: the latest of
    them known by the entity row's time is the best row known then.
    """
    source = view.batch_source
    keys = _join_keys(view)
    for key, entity_column in keys.items():
        if entity_column not in frame.columns:
            raise ValueError(
                f"entity_df has no column {entity_column!r}, which feature view {view.name!r} joins on"
                f"{'' if entity_column == key else f' (its join key {key!r}, mapped)'} (columns given: "
                f"{list(frame.columns)})"
            )
        table.column(key, "a join key")
        source_kind, entity_kind = sources.kind_of(table.types[key]), _kind_of_column(frame[entity_column])
        if source_kind != entity_kind:
            raise ValueError(
                f"entity_df column {entity_column!r} holds {entity_kind} values, but feature view "
                f"{view.name!r} joins it to its source column {key!r} of type {table.types[key]}: give "
                "both the same type"
            )

    key_columns = [table.column(k, "a join key") for k in keys]
    selected = [f'{c} AS "__k{i}"' for i, c in enumerate(key_columns)]
    selected += [f'{table.column(n, "a feature")} AS "__f{j}"' for j, n in enumerate(names)]
    ts = table.timestamp(source.timestamp_field, "the event timestamp")
    created_field = source.created_timestamp_column
    created = table.timestamp(created_field, "the created timestamp") if created_field else None
    present = " AND ".join(f"{c} IS NOT NULL" for c in [ts, *key_columns])
    partition = ", ".join(f'"__k{i}"' for i in range(len(keys)))
    if filter_by_created_timestamp and created:
        # (event time, created) as one 128-bit number, in the same order: the running maximum
        # of a number is several times cheaper than that of a pair.
        order = "(__ts::HUGEINT * 18446744073709551616 + __created::HUGEINT)"
        rows = f"""
            SELECT {", ".join(selected)}, {ts} AS __ts, {created} AS __created,
                   greatest({ts}, {created}) AS __known
            FROM read_parquet('{table.files}') WHERE {present} AND {created} IS NOT NULL
            QUALIFY {order} = max({order}) OVER ({f"PARTITION BY {partition} " if keys else ""}ORDER BY __known)"""
        known = "__known"
    else:
        latest_first = f"{created} DESC NULLS LAST" if created else "__ts"
        rows = f"""
            SELECT {", ".join(selected)}, {ts} AS __ts FROM read_parquet('{table.files}') WHERE {present}
            QUALIFY row_number() OVER (PARTITION BY {partition + ", " if keys else ""}__ts
                                       ORDER BY {latest_first}) = 1"""
        known = "__ts"
    ttl_ns = view.ttl // pd.Timedelta(1, "us") * 1000 if view.ttl else None
    picked = ", ".join(
        f'CASE WHEN f.__ts >= e.__ts - {ttl_ns} THEN f."__f{j}" END AS "__f{j}"' if ttl_ns else f'f."__f{j}"'
        for j in range(len(names))
    )
    matched = [f'e."{entity_column}" = f."__k{i}"' for i, entity_column in enumerate(keys.values())]
    joined = connection.sql(f"""
        WITH f AS ({rows})
        SELECT e.{ROW_ID}{", " + picked if names else ""}
        FROM entities e ASOF LEFT JOIN f ON {" AND ".join([*matched, f"e.__ts >= f.{known}"])}
        ORDER BY e.{ROW_ID}
    """).to_arrow_table()
    if not np.array_equal(joined.column(ROW_ID).to_numpy(), np.arange(len(frame))):
        raise RuntimeError(f"the join of feature view {view.name!r} returned other rows than it was given")
    return {name: joined.column(f"__f{j}") for j, name in enumerate(names)}


class _JoinedFeatures(RetrievalJob):
    """The joined table handed to Feast's own RetrievalJob, which computes the on-demand views
    (only the features requested of each) when it is read, as for any offline store's job."""

    def __init__(self, table: pa.Table, on_demand: list[OnDemandFeatureView], full_feature_names: bool,
                 metadata: RetrievalMetadata):
        self._table, self._on_demand, self._full, self._metadata = table, on_demand, full_feature_names, metadata

    def _to_arrow_internal(self, timeout=None) -> pa.Table:
        return self._table

    def _to_df_internal(self, timeout=None) -> pd.DataFrame:
        return self._table.to_pandas()

    @property
    def full_feature_names(self) -> bool:
        return self._full

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._on_demand

    @property
    def metadata(self) -> RetrievalMetadata:
        return self._metadata


def get_training_set(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    features: FeatureService | list[str],
    full_feature_names: bool = False,
    filter_by_created_timestamp: bool = False,
) -> pd.DataFrame:
    """The same training set as `get_training_set_from_feast` with Feast's DuckDB store, joined
    by DuckDB directly on the views' parquet sources, whichever offline store is configured.

    The arguments are those of `FeatureStore.get_historical_features`. Raises Feast's own errors
    where Feast raises them, and ValueError, naming the view and the column, for a source that is
    not parquet files or lacks a column the view needs, and for an entity_df it cannot join.
    """
    import duckdb

    frame, timestamp_column = _entity_frame(store, entity_df)
    views, references = _feast_request(store, frame, features, full_feature_names)
    outputs = [_output_name(ref.split(":")[0].split("@")[0], ref.split(":")[1], full_feature_names)
               for ref in references]
    clashing = sorted(set(outputs) & set(frame.columns))
    if clashing:
        raise ValueError(f"entity_df has columns named like requested features: {clashing}; rename them")

    entities = frame[list(dict.fromkeys(
        key for view in views for key in _join_keys(view).values() if key in frame.columns))].copy()
    entities[ROW_ID] = np.arange(len(frame))
    entities["__ts"] = frame[timestamp_column].astype("int64") * 1000  # microseconds -> nanoseconds
    connection = duckdb.connect()
    connection.register("entities", entities)
    joins: dict[tuple, tuple[FeatureView, sources.SourceTable, list[str]]] = {}
    requested = []  # (join, {feature: output column}) per projection, in Feast's order
    for view in views:  # one join for the projections alike, with all their features
        table = sources.source_table(store, view)
        join, features = _join_of(view, table), _projection_features(view, references, full_feature_names)
        _, _, names = joins.setdefault(join, (view, table, []))
        names += [n for n in features if n not in names]
        requested.append((join, features))
    joined = {join: _asof_join(connection, table, view, names, frame, filter_by_created_timestamp)
              for join, (view, table, names) in joins.items()}
    with known_notices_hidden():
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for join, features in requested:
            for name, output in features.items():
                table = table.append_column(output, joined[join][name])
        job = _JoinedFeatures(
            table, OnDemandFeatureView.get_requested_odfvs(references, store.project, store.registry),
            full_feature_names,
            RetrievalMetadata(features=references, keys=list(frame.columns.drop(timestamp_column)),
                              min_event_timestamp=frame[timestamp_column].min().to_pydatetime(),
                              max_event_timestamp=frame[timestamp_column].max().to_pydatetime()),
        )
        answer = job.to_arrow()  # Feast's own job: it computes the on-demand views
    return _with_callers_columns(answer, entity_df)
