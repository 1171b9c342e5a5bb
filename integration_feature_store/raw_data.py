"""Loading the raw trip events: checked against the schema the transforms rely on."""

from pathlib import Path

import pandas as pd
from hamilton.function_modifiers import dataloader, extract_columns
from hamilton.io.utils import get_file_and_dataframe_metadata

# column -> what it must be; the transforms rely on exactly this
RAW_TRIP_SCHEMA = {
    "requested_at": "a timezone-aware datetime (any unit and zone)",
    "event_timestamp": "a timezone-aware datetime (any unit and zone)",
    "created": "a timezone-aware datetime (any unit and zone)",
    "driver_id": "an integer",
    "rider_id": "an integer",
    "trip_dist": "a number",
    "rider_rating": "an integer",
}


TIME_COLUMNS = [column for column, expected in RAW_TRIP_SCHEMA.items() if expected.startswith("a timezone-aware")]


def _schema_problems(trips: pd.DataFrame) -> list[str]:
    problems = []
    for column, expected in RAW_TRIP_SCHEMA.items():
        if column not in trips.columns:
            problems.append(f"column '{column}' is missing; expected {expected}")
            continue
        dtype = trips[column].dtype
        if expected.startswith("a timezone-aware"):
            ok = isinstance(dtype, pd.DatetimeTZDtype)
        elif expected == "an integer":
            ok = pd.api.types.is_integer_dtype(dtype)
        else:
            ok = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        if not ok:
            problems.append(f"column '{column}' has dtype {dtype}; expected {expected}")
    return problems


@dataloader()
def raw_trips(raw_trips_path: Path) -> tuple[pd.DataFrame, dict]:
    """Raw trip events as the trip system wrote them.

    A data loader: with the data it returns where the data came from and its schema, which
    Hamilton's lineage tooling (e.g. its OpenLineage adapter) reports as this run's input.
    """
    try:
        raw = pd.read_parquet(raw_trips_path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(
            f"raw trips in {raw_trips_path}: cannot be read ({error}); expected a parquet file of trips"
        ) from error
    return raw, get_file_and_dataframe_metadata(str(raw_trips_path), raw)


def _value_problems(raw: pd.DataFrame) -> list[str]:
    problems = []
    for column in RAW_TRIP_SCHEMA:  # integer columns cannot hold missing values
        nans = 0 if pd.api.types.is_integer_dtype(raw[column]) else int(raw[column].isna().sum())
        if nans:
            problems.append(f"column '{column}' has {nans} missing values; expected none")
    for column in TIME_COLUMNS:
        stamps = raw[column].dt.tz_convert("UTC")  # in UTC: local time repeats an hour when summer time ends
        if stamps.dt.unit == "ns" and (stamps.dt.floor("us") != stamps).any():
            problems.append(
                f"column '{column}' has {int((stamps.dt.floor('us') != stamps).sum())} times with "
                "sub-microsecond digits; expected whole microseconds, which Feast's stores keep "
                f"(floor them first, e.g. trips['{column}'].dt.floor('us'))"
            )
    if raw["trip_dist"].min() < 0:
        problems.append("column 'trip_dist' has negative distances; expected >= 0")
    now, latest = pd.Timestamp.now(tz="UTC"), raw["event_timestamp"].max()
    if latest > now:
        problems.append(
            f"column 'event_timestamp' has {int((raw['event_timestamp'] > now).sum())} trips "
            f"in the future (latest {latest}); expected none after now ({now})"
        )
    return problems


@extract_columns(*RAW_TRIP_SCHEMA)
def trips(raw_trips: pd.DataFrame) -> pd.DataFrame:
    """Raw trips checked and in event-time order (a stable sort), indexed 0..n-1; every feature
    shares this index. The checks run on whatever raw trips the DAG is given (a file, or a
    partition of them on Spark), before any feature is computed."""
    problems = _schema_problems(raw_trips)
    if raw_trips.empty:
        problems.append("it has no rows; expected at least one trip")
    if not problems:
        problems = _value_problems(raw_trips)
    if problems:
        raise ValueError("raw trips: " + "; ".join(problems))
    columns = {column: raw_trips[column] for column in RAW_TRIP_SCHEMA}  # no copy of the data
    for column in TIME_COLUMNS:  # any unit and zone in; UTC microseconds out,
        columns[column] = columns[column].dt.tz_convert("UTC").dt.as_unit("us")  # as Feast stores them
    ordered = pd.DataFrame(columns, copy=False)
    if not ordered["event_timestamp"].is_monotonic_increasing:
        ordered = ordered.sort_values("event_timestamp", kind="stable")
    if not ordered.index.equals(pd.RangeIndex(len(ordered))):
        ordered = ordered.reset_index(drop=True)
    return ordered
