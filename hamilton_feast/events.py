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


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _parsed(texts: list, kind: str) -> tuple:
    """The values of a column of texts (None where missing), and a mask of those that parsed:
    a loop in Python over the values, one pandas call for the times (a micro-batch is small, and
    pandas' per-call cost would dominate)."""
    if kind == "time":
        zoned = np.array([isinstance(t, str) and _ZONED.search(t) is not None for t in texts], bool)
        values = pd.to_datetime(pd.Series([t if z else None for t, z in zip(texts, zoned)], dtype=object),
                                format="ISO8601", utc=True, errors="coerce").dt.as_unit("ns")
        return values, zoned & values.notna().to_numpy()
    if kind == "integer":
        numbers = [int(t) if isinstance(t, str) and _INTEGER.match(t.strip()) else None for t in texts]
        fits = np.array([n is not None and -(2**63) <= n < 2**63 for n in numbers], bool)
        return np.array([n if f else 0 for n, f in zip(numbers, fits)], np.int64), fits
    if kind == "number":
        numbers = [_number(t) for t in texts]
        return np.array([0.0 if n is None else n for n in numbers]), np.array([n is not None for n in numbers], bool)
    if kind == "boolean":
        lowered = [t.strip().lower() if isinstance(t, str) else "" for t in texts]
        return np.array([t == "true" for t in lowered]), np.array([t in ("true", "false") for t in lowered])
    return np.array(["" if t is None else t for t in texts], object), np.array([t is not None for t in texts])


def decode(events: list[dict[str, str]], schema: pa.Schema) -> tuple[pd.DataFrame, dict[int, str]]:
    """The events as a frame of the columns of `schema` (times in UTC, nanoseconds; the frame's
    index is each event's position in `events`), without the refused ones; and {position: reason}
    for those, one line naming the first bad field."""
    refused: dict[int, str] = {}
    columns = {}
    for field in schema:
        kind = kind_of(field.type)
        texts = [event.get(field.name) for event in events]
        values, parsed = _parsed(texts, kind)
        for position in np.flatnonzero(~parsed):
            if position not in refused:
                text = texts[position]
                held = "missing" if text is None else repr(text)
                refused[int(position)] = f"field {field.name!r} is {held}; expected {EXPECTED[kind]}"
        columns[field.name] = values
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(events)), copy=False)
    return frame.drop(index=list(refused)), refused
