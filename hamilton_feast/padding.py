"""A repo's DAG on part of the rows: the part padded with the rows before it that its trailing
windows need, the DAG run on both, the part's own rows kept. Spark's ranges of event time
(spark.py) and the stream's micro-batches (streaming.py) compute a saved table this way, with
the repo's own functions and checks: neither holds a second copy of the feature logic.

The rows are given to the DAG sorted by time, so a DAG that sorts by time with a stable sort (as
the integration repo's `trips` does) keeps their order, and the i-th row computed is the i-th row
given: rows computed in another order, or fewer of them, are refused. This module does not
import Feast or pyspark: it runs in Spark's Python workers too.
"""

import numpy as np
import pandas as pd


def _micros(times: pd.Series) -> np.ndarray:
    """Times of any unit and zone as UTC microseconds (int64)."""
    return times.dt.tz_convert("UTC").array.as_unit("us").asi8


def padded(history: pd.DataFrame, rows: pd.DataFrame, time_column: str,
           overlap: pd.Timedelta) -> tuple[pd.DataFrame, np.ndarray]:
    """`rows` after the rows of `history` whose time is within `overlap` before the first of them,
    in time order (on equal times, history first, then each frame's own order); and a mask of
    which rows are `rows`'. Columns are those of `rows`."""
    first = rows[time_column].min()
    before = history[history[time_column] >= first - overlap]
    both = pd.concat([before[rows.columns], rows], ignore_index=True)
    own = np.r_[np.zeros(len(before), bool), np.ones(len(rows), bool)]
    order = np.argsort(_micros(both[time_column]), kind="stable")
    if (order != np.arange(len(order))).any():
        both, own = both.take(order).reset_index(drop=True), own[order]
    return both, own


def computed(dag, table: str, loader: str, rows: pd.DataFrame, own: np.ndarray, time_column: str) -> pd.DataFrame:
    """The table `table` computed by `dag` from `rows` (sorted by time) given as the output of the
    data loader `loader`, keeping the rows marked `own`, indexed 0..n-1."""
    table_rows = dag.execute([table], overrides={loader: rows})[table]
    if len(table_rows) != len(rows) or (_micros(table_rows[time_column]) != _micros(rows[time_column])).any():
        raise ValueError(
            f"the DAG computed table {table!r} with {len(table_rows)} rows from {len(rows)} sorted by "
            f"{time_column!r}, not one row per row in their order; expected a DAG that keeps the order of "
            "rows sorted by time (a stable sort), so that part of the rows can be computed with their history"
        )
    return table_rows[own].reset_index(drop=True)
