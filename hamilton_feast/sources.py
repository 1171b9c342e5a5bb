"""What DuckDB reads for a feature view's batch source: its parquet files, with each column under
the name Feast gives it (the source's field mapping applied, as Feast's offline stores apply it),
and checked before any row is read, so that a column a view needs and its file lacks is an error
naming both, never a null feature.
"""

from dataclasses import dataclass
from pathlib import Path

import duckdb

from feast import FeatureStore, FeatureView, FileSource
from feast.data_format import ParquetFormat
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource


class UnreadableSource(ValueError):
    """A batch source that is not plain parquet files, which DuckDB cannot read directly."""


def parquet_files(store: FeatureStore, view: FeatureView) -> str:
    """What DuckDB reads for the view's source: a parquet file (a FileSource), or the parquet
    files of a folder (a SparkSource with a path); refused, naming the view, for anything else."""
    source = view.batch_source
    if isinstance(source, FileSource) and (  # what Feast's DuckDB store reads as parquet
        isinstance(source.file_format, ParquetFormat)
        or (source.file_format is None and source.path.endswith(".parquet"))
    ):
        return FileSource.get_uri_for_file_path(store.repo_path, source.path)
    if isinstance(source, SparkSource) and source.path and (source.file_format or "") == "parquet":
        path = source.path if source.path.startswith("/") else str(Path(store.repo_path) / source.path)
        return f"{path}/*.parquet" if Path(path).is_dir() else path
    what = getattr(source, "file_format", None) or getattr(source, "table", None) or getattr(source, "query", None)
    raise UnreadableSource(
        f"feature view {view.name!r} reads {type(source).__name__} {source.name!r} ({what}), which is "
        "not parquet files; get_training_set joins parquet files only (a FileSource, or a SparkSource "
        "of parquet files). Use get_training_set_from_feast for it, which asks the offline store"
    )


NUMBERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"}


def kind_of(duckdb_type: str) -> str:
    """What a join compares: "number", "text", "boolean", or the type itself."""
    if duckdb_type in NUMBERS or duckdb_type.startswith("DECIMAL"):
        return "number"
    return {"VARCHAR": "text", "BOOLEAN": "boolean"}.get(duckdb_type, duckdb_type)


@dataclass(frozen=True)
class SourceTable:
    """A view's source as DuckDB reads it: its files, and each column's type under Feast's name."""

    view: str
    files: str
    types: dict[str, str]  # Feast's column name -> DuckDB type
    file_names: dict[str, str]  # Feast's column name -> the file's own, where a field mapping renames

    def column(self, name: str, needed_for: str) -> str:
        """The SQL for the column Feast calls `name`; an error naming it, the view and the
        file when the file has no such column."""
        if name not in self.types:
            raise ValueError(
                f"feature view {self.view!r} needs the column {name!r} ({needed_for}), which its source "
                f"{self.files} does not have (columns: {sorted(self.types)})"
            )
        return f'"{self.file_names.get(name, name)}"'

    def timestamp(self, name: str, needed_for: str) -> str:
        """The column as nanoseconds since the epoch: a timestamp in any unit, in any zone or none
        (read as UTC, as Feast reads it), compared exactly whatever the session's time zone."""
        column = self.column(name, needed_for)
        if not self.types[name].startswith("TIMESTAMP"):
            raise ValueError(
                f"feature view {self.view!r}: its source column {name!r} ({needed_for}) is "
                f"{self.types[name]} in {self.files}; expected a timestamp"
            )
        return f"epoch_ns({column})"


def source_table(store: FeatureStore, view: FeatureView) -> SourceTable:
    """The view's source, its columns read from the files' metadata (no rows are read)."""
    files = parquet_files(store, view)
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{files}')").fetchall()
    in_file = {name: column_type for name, column_type, *_ in described}
    renamed = {new: old for old, new in view.batch_source.field_mapping.items() if old in in_file}
    for new, old in renamed.items():
        if new in in_file:
            raise ValueError(
                f"feature view {view.name!r}: the field mapping of its source renames {old!r} to {new!r}, "
                f"but {files} already has a column {new!r}"
            )
    feast_name = {old: new for new, old in renamed.items()}
    types = {feast_name.get(name, name): column_type for name, column_type in in_file.items()}
    return SourceTable(view.name, files, types, renamed)
