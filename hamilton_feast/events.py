"""Raw rows as stream events and back: an event is one row, a field per column, each value text
(as a Redis stream entry holds it). The columns and their types are those of the raw data file
the DAG's data loader reads, so the stream carries exactly what the batch reads.

- `encode`: rows -> events; times in ISO 8601 with their zone and every digit they have (a time
  with sub-microsecond digits keeps them, for the repo's own check to refuse), numbers in full.
- `decode`: events -> a frame of the raw file's columns (times in UTC), and the events refused,
  each with one line naming the field, what it held and what was expected. A field missing, a
  number that is not one, a time without its zone: refused here, one event at a time, so the
  rest of a batch proceeds. The value checks (negative distances, sub-microsecond or future
  times, the features' @check_output) stay the repo's own: streaming.py runs them.
"""

import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa

# A time with its zone: Z or an offset such as +00:00 at the end.
_ZONED = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$")
_INTEGER = re.compile(r"^[+-]?\d+$")
EXPECTED = {
    "time": "a time with its zone, such as 2026-01-01T12:00:00.000001+00:00",
    "integer": "an integer",
    "number": "a finite number",
    "boolean": "true or false",
    "text": "text",
}


def kind_of(arrow_type: pa.DataType) -> str:
    """The kind of an event field for a column of this type: time, integer, number, boolean, text."""
    if pa.types.is_timestamp(arrow_type):
        return "time"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    raise ValueError(f"a raw column of type {arrow_type} cannot be carried by a stream event; expected times, "
                     "integers, numbers, booleans or text")


def _text(value, kind: str) -> str:
    if kind == "time":
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is None:
            raise ValueError(f"time {value} has no zone; expected timezone-aware times")
        return stamp.isoformat()
    if kind == "number":
        return repr(float(value))
    if kind == "boolean":
        return "true" if value else "false"
    return str(value)


def encode(rows: pd.DataFrame, schema: pa.Schema) -> list[dict[str, str]]:
    """Each row as an event: {column: text} for the columns of `schema`."""
    kinds = {field.name: kind_of(field.type) for field in schema}
    columns = {name: [_text(v, kind) for v in rows[name]] for name, kind in kinds.items()}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _parsed(texts: pd.Series, kind: str) -> tuple[pd.Series, pd.Series]:
    """The values of a column of texts (None where missing), and which parsed."""
    present = texts.notna()
    if kind == "time":
        zoned = present & texts.fillna("").str.contains(_ZONED)
        values = pd.to_datetime(texts.where(zoned), format="ISO8601", utc=True, errors="coerce")
        return values.dt.as_unit("ns"), zoned & values.notna()
    if kind == "integer":
        whole = present & texts.fillna("").str.strip().str.match(_INTEGER)
        numbers = pd.to_numeric(texts.where(whole), errors="coerce")
        fits = whole & numbers.between(np.iinfo(np.int64).min, np.iinfo(np.int64).max)
        return numbers.where(fits, 0).astype("int64"), fits
    if kind == "number":
        numbers = pd.to_numeric(texts.where(present), errors="coerce").astype("float64")
        return numbers, present & numbers.map(math.isfinite)
    if kind == "boolean":
        lowered = texts.fillna("").str.strip().str.lower()
        return lowered.eq("true"), lowered.isin(["true", "false"])
    return texts.fillna(""), present


def decode(events: list[dict[str, str]], schema: pa.Schema) -> tuple[pd.DataFrame, dict[int, str]]:
    """The events as a frame of the columns of `schema` (times in UTC, nanoseconds; the frame's
    index is each event's position in `events`), without the refused ones; and {position: reason}
    for those, one line naming the first bad field."""
    refused: dict[int, str] = {}
    columns = {}
    for field in schema:
        kind = kind_of(field.type)
        texts = pd.Series([event.get(field.name) for event in events], dtype=object)
        values, parsed = _parsed(texts, kind)
        for position in np.flatnonzero(~parsed.to_numpy()):
            if position not in refused:
                text = texts.iloc[position]
                held = "missing" if text is None else repr(text)
                refused[int(position)] = f"field {field.name!r} is {held}; expected {EXPECTED[kind]}"
        columns[field.name] = values
    frame = pd.DataFrame(columns)
    return frame.drop(index=list(refused)), refused
