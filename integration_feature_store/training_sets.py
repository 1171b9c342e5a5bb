"""Training sets from Feast that keep every entity row the caller passed, in the caller's order.

`FeatureStore.get_historical_features` is the point-in-time join; this checks its input and its
output around it. Some offline stores return fewer rows than they were given (Feast's file
store drops duplicate (entity, timestamp) rows and rows with no feature inside the TTL); a
training set silently missing rows biases a model, so a short answer is an error here.
"""

import pandas as pd

from feast import FeatureService, FeatureStore

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


def get_training_set(
    store: FeatureStore, entity_df: pd.DataFrame, features: FeatureService | list[str]
) -> pd.DataFrame:
    """Point-in-time features for every row of `entity_df`, in its order, with its columns.

    Raises ValueError, naming the column, for an entity_df Feast cannot join; and RuntimeError
    when the offline store answers with other rows than it was asked for.
    """
    query = entity_df.reset_index(drop=True)
    query["event_timestamp"] = _entity_timestamps(query)
    query[ROW_ID] = range(len(query))
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
    return answer.set_axis(entity_df.index)
