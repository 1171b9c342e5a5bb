"""The repo's own Hamilton DAG on Spark, data-parallel; and the Spark session it shares with Feast.

When the Feast configuration's offline store is Spark (`feature_store.spark.yaml`), each saved
table is computed by Spark (see settings.yaml's `spark:` section):

- Spark reads the raw data the DAG's data loader would read, numbering the rows in file order;
- the rows are split into ranges of event time (`time_partitions`), each padded with the rows of
  `window_overlap` before it, so that every trailing window of its own rows is whole;
- every range runs the repo's Hamilton DAG (the same modules, functions and @check_output
  checks) in a pandas function on an executor, and keeps the rows of its own range (padding.py,
  which the stream's micro-batches use too);
- Spark writes the table as a folder of parquet files, through a Hamilton data saver.

So there is no second copy of the feature logic, and the values equal the one-process run's:
counts, ranks and calendar features exactly, means to the rounding of sums begun at another row.
On a cluster the executors need this environment's packages; the repo's modules are shipped to
them with the job.
"""

import dataclasses
import importlib
import inspect
import os
import re
import sys
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hamilton import driver, registry
from hamilton.ad_hoc_utils import create_temporary_module
from hamilton.function_modifiers import save_to, value
from hamilton.io.data_adapters import DataSaver
from hamilton.io.utils import get_file_metadata
from pyspark.errors import PythonException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from feast import FeatureStore
from hamilton_feast import atomic, padding, saved_tables

ROW, PART = "__row", "__part"  # the file order of a raw row; the range of time it is computed in


def session(feature_store: FeatureStore) -> SparkSession:
    """The Spark session of the Feast configuration (its offline store's `spark_conf`), which
    Feast's Spark store and engine then use too; its Python workers run this environment's
    Python, its temporary folders are in the repo's data/spark/, and its time zone is UTC."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    folder = Path(feature_store.repo_path) / "data" / "spark"
    conf = {
        "spark.local.dir": str(folder / "tmp"),
        "spark.sql.warehouse.dir": str(folder / "warehouse"),
        "spark.sql.session.timeZone": "UTC",
        # Parquet timestamps as UTC microseconds (Spark's default, INT96, reads back without a zone).
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        **(feature_store.config.offline_store.spark_conf or {}),
    }
    builder = SparkSession.builder
    for key, setting in conf.items():
        builder = builder.config(key, setting)
    started = builder.getOrCreate()
    started.sparkContext.setLogLevel("ERROR")
    return started


@dataclasses.dataclass
class SparkParquetWriter(DataSaver):
    """Hamilton's `to.parquet` / `@save_to.parquet` for a Spark DataFrame: a folder of parquet
    files, written beside the old folder and renamed over it. A failure in a Spark task is raised as a ValueError with its message."""

    path: str

    @classmethod
    def applicable_types(cls) -> Collection[type]:
        return [DataFrame]

    @classmethod
    def name(cls) -> str:
        return "parquet"

    def save_data(self, data: DataFrame) -> dict[str, Any]:
        try:
            with atomic.replaced(self.path) as temporary:  # the old folder stays whole until done
                data.write.parquet(str(temporary))
        except PythonException as error:
            raise ValueError(f"a Spark task failed: {_task_error(error)}") from error
        fields = data.schema.fields
        return {
            **get_file_metadata(self.path),
            "dataframe_metadata": {
                "columns": len(fields),
                "column_names": [f.name for f in fields],
                "datatypes": [f.dataType.simpleString() for f in fields],
            },
        }


registry.register_adapter(SparkParquetWriter)


def _task_error(error: PythonException) -> str:
    """The exception a Python task raised, from the traceback Spark carries back."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return raised[-1] if raised else lines[-1]


def _range_of_rows(table: str, columns: list[str], modules: list[str], loader: str,
                   time_column: str, origin: int, partition: int):
    """The pandas function an executor runs on one range of time: the repo's DAG on its rows
    (sorted by time, then file order), keeping those of its own range."""

    def compute(rows: pd.DataFrame) -> pd.DataFrame:
        dag = driver.Builder().with_modules(
            *(importlib.import_module(name) for name in modules),
            saved_tables.module({table: (Path(table), columns)}),
        ).build()
        start = origin + int(rows[PART].iloc[0]) * partition
        rows = rows.sort_values([time_column, ROW], kind="stable").reset_index(drop=True)
        for column in rows.columns:  # Spark hands timestamps over without a zone: they are UTC
            if pd.api.types.is_datetime64_dtype(rows[column]):
                rows[column] = rows[column].dt.tz_localize("UTC")
        own = rows[time_column].array.as_unit("us").asi8 >= start
        kept = padding.computed(dag, table, loader, rows.drop(columns=[ROW, PART]), own, time_column)
        kept[ROW] = rows[ROW].to_numpy()[own]
        return kept

    return compute


def _read_raw(spark: SparkSession, raw_path: Path) -> DataFrame:
    """The raw parquet data, with times in any unit. Spark refuses parquet nanosecond times
    (pandas' default unit) unless it reads them as numbers (`nanosAsLong`); those are turned
    back into times here, exactly, and sub-microsecond digits are refused as the one-process run
    refuses them."""
    schema = pq.ParquetDataset(str(raw_path)).schema
    nanos = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    if not nanos:
        return spark.read.parquet(str(raw_path))
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    raw = spark.read.parquet(str(raw_path))
    finer = raw.select(*(F.sum((F.col(c) % 1000 != 0).cast("long")).alias(c) for c in nanos)).first()
    for column in nanos:
        if finer[column]:
            raise ValueError(
                f"raw data in {raw_path}: column '{column}' has {finer[column]} times with "
                "sub-microsecond digits; expected whole microseconds, which Feast's stores keep"
            )
    micros = {c: F.timestamp_micros(F.expr(f"`{c}` div 1000")).alias(c) for c in nanos}
    return raw.select(*(micros.get(c, F.col(c)) for c in raw.columns))


def partitioned_table(spark: SparkSession, raw_path: Path, *, table: str, columns: list[str],
                      modules: dict[str, Path], loader: str, time_column: str,
                      time_partitions: pd.Timedelta, window_overlap: pd.Timedelta) -> DataFrame:
    """The table `table` of the repo's DAG, computed by Spark over ranges of time (see above)."""
    for path in modules.values():
        spark.sparkContext.addPyFile(str(path))
    raw = _read_raw(spark, raw_path).withColumn(ROW, F.monotonically_increasing_id())
    micros = F.unix_micros(F.col(time_column))
    origin = raw.agg(F.min(micros)).first()[0]
    if origin is None:
        raise ValueError(f"raw data in {raw_path}: it has no rows; expected at least one")
    partition, overlap = time_partitions.value // 1000, window_overlap.value // 1000
    compute = _range_of_rows(table, columns, list(modules), loader, time_column, origin, partition)
    # The schema of the result: the same DAG on the first rows, here.
    sample = raw.orderBy(time_column, ROW).limit(1000).withColumn(PART, F.lit(0)).toPandas()
    schema = from_arrow_schema(pa.Schema.from_pandas(compute(sample), preserve_index=False))
    ranges = raw.withColumn(PART, F.explode(F.sequence(
        F.floor((micros - origin) / partition), F.floor((micros + overlap - origin) / partition))))
    return ranges.groupBy(PART).applyInPandas(compute, schema).drop(ROW)


def spark_session(feature_store: FeatureStore) -> SparkSession:
    """The Spark session shared with Feast's Spark store and engine."""
    return session(feature_store)


def module(tables: dict[str, dict], time_partitions: timedelta, window_overlap: timedelta) -> ModuleType:
    """Hamilton nodes for the saved tables, computed and written by Spark over ranges of
    `time_partitions` padded with `window_overlap`: {table: {"path": a folder, "columns": [...],
    "modules": {name: file}, "loader": the loader node, "loader_input": its path input,
    "time_column": ...}}."""
    functions = [spark_session]
    partitions, overlap = pd.Timedelta(time_partitions), pd.Timedelta(window_overlap)
    for table, spec in tables.items():
        def build(_spec=spec, _table=table, **inputs) -> DataFrame:
            return partitioned_table(
                inputs["spark_session"], inputs[_spec["loader_input"]], table=_table,
                columns=_spec["columns"], modules=_spec["modules"], loader=_spec["loader"],
                time_column=_spec["time_column"], time_partitions=partitions, window_overlap=overlap,
            )

        build.__name__ = build.__qualname__ = table
        build.__doc__ = f"The table Feast reads ({', '.join(spec['columns'])}), computed by Spark."
        parameters = [inspect.Parameter(spec["loader_input"], inspect.Parameter.KEYWORD_ONLY, annotation=Path),
                      inspect.Parameter("spark_session", inspect.Parameter.KEYWORD_ONLY, annotation=SparkSession)]
        build.__signature__ = inspect.Signature(parameters, return_annotation=DataFrame)
        build.__annotations__ = {spec["loader_input"]: Path, "spark_session": SparkSession, "return": DataFrame}
        functions.append(save_to.parquet(path=value(str(spec["path"])),
                                         output_name_=saved_tables.saver_name(table))(build))
    return create_temporary_module(*functions)


def stream(micro, landing: Path, checkpoint: Path, files_per_batch: int | None = None):
    """The stream's micro-batches (streaming.MicroBatches: the repo's DAG on each batch padded
    with its history, pushed through the push source) in Spark Structured Streaming: raw files
    landing in the folder `landing` (parquet, the raw data's columns), read by Spark's file
    source, each micro-batch handed to `micro` in `foreachBatch` and written before Spark commits
    it (`checkpoint` keeps which files were read). Refused trips go to parquet files beside the
    checkpoint, `dead_letters/batch-<id>.parquet`, each with its reason. Returns the query."""
    spark = session(micro.store)
    schema = from_arrow_schema(micro.schema)
    reader = spark.readStream.schema(schema)
    if files_per_batch:
        reader = reader.option("maxFilesPerTrigger", files_per_batch)
    dead_letters = Path(checkpoint) / "dead_letters"

    def each(batch: DataFrame, batch_id: int) -> None:
        trips = batch.toPandas()
        for column in trips.columns:  # Spark hands timestamps over without a zone: they are UTC
            if pd.api.types.is_datetime64_dtype(trips[column]):
                trips[column] = trips[column].dt.tz_localize("UTC")
        outcome = micro.process(trips)
        if outcome.refused:
            refused = trips.loc[list(outcome.refused)].assign(reason=list(outcome.refused.values()))
            with atomic.replaced(dead_letters / f"batch-{batch_id}.parquet") as temporary:
                refused.to_parquet(temporary, index=False)
        micro.flush()

    return (reader.parquet(str(landing)).writeStream.foreachBatch(each)
            .option("checkpointLocation", str(checkpoint)).start())
