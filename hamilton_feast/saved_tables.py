"""The tables a repo's DAG saves for Feast to read, as Hamilton nodes made from its settings.

For a table `driver_trip_features` with columns [event_timestamp, ..., driver_trips_24h] this
makes the node `driver_trip_features` (the columns side by side, one function argument each)
saved with Hamilton's `@save_to` as the node `saved_driver_trip_features`, which returns where
it wrote (what the Feast source takes as its argument). The saver is `atomic_parquet`, Hamilton's
pandas parquet saver writing beside the file and renaming it over the old one (atomic.py), so a
killed run leaves the previous table whole. So no hand-written
function takes every feature as an argument just to build the table, and the DAG still runs
unbroken from the features through the saver to the source.
"""

import inspect
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow as pa
import pyarrow.dataset
import pyarrow.parquet as pq
from hamilton.ad_hoc_utils import create_temporary_module
from hamilton.function_modifiers import save_to, value

from hamilton_feast import atomic  # noqa: F401 (registers save_to.atomic_parquet)


def saver_name(table: str) -> str:
    return f"saved_{table}"


def schema_of(path: Path) -> pa.Schema:
    """The columns of a saved table: a parquet file, or (on Spark) a folder of parquet files."""
    if path.is_dir():
        return pyarrow.dataset.dataset(path, format="parquet").schema
    return pq.read_schema(path)


def _table_function(table: str, columns: list[str]):
    def build(**values: pd.Series) -> pd.DataFrame:
        # The columns as they are, side by side (no copy into one block per dtype).
        return pd.DataFrame({column: values[column] for column in columns}, copy=False)

    build.__name__ = build.__qualname__ = table
    build.__doc__ = (
        f"The table Feast reads: {', '.join(columns)}; one row per row of the columns, "
        "which share one index."
    )
    build.__signature__ = inspect.Signature(
        [inspect.Parameter(c, inspect.Parameter.KEYWORD_ONLY, annotation=pd.Series) for c in columns],
        return_annotation=pd.DataFrame,
    )
    build.__annotations__ = {**{c: pd.Series for c in columns}, "return": pd.DataFrame}
    return build


def module(tables: dict[str, tuple[Path, list[str]]]) -> ModuleType:
    """A module of table nodes and their savers: {table: (path, columns)}."""
    functions = [
        save_to.atomic_parquet(path=value(str(path)), output_name_=saver_name(table))(
            _table_function(table, columns)
        )
        for table, (path, columns) in tables.items()
    ]
    return create_temporary_module(*functions)
