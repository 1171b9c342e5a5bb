"""The repo's own Hamilton DAG on Spark, data-parallel; and the Spark session it shares with Feast.

When the Feast configuration's offline store is Spark (`feature_store.spark.yaml`), each saved
table is computed by Spark (see settings.yaml's `spark:` section):

- Spark reads the raw data the DAG's data loader would read, numbering the rows in file order;
- the rows are split into ranges of event time (`time_partitions`), each padded with the rows of
  `window_overlap` before it, so that every trailing window of its own rows is whole; each range
  is one partition, so one task;
- every range runs the repo's Hamilton DAG (the same modules, functions and @check_output
  checks) in a pandas function on an executor, and keeps the rows of its own range
  (spark_tasks.py, with padding.py, which the stream's micro-batches use
  too); a range whose DAG raises is reported once, by the driver, with its message;
- Spark writes the table as a folder of parquet files, through a Hamilton data saver.

So there is no second copy of the feature logic, and the values equal the one-process run's:
counts, ranks and calendar features exactly, means to the rounding of sums begun at another row.

On a cluster (a `spark.master` that is not `local`), the executors run the Python of
`spark.pyspark.python` (by default this Python's path), which must hold this project installed
(`pip install .`); the repo's modules are shipped with the job. Before the job starts, each
executor is checked to run that Python, with the driver's versions of the project's packages and
of hamilton_feast's code, and to see the folders Spark reads and writes (the raw data, the saved
tables, a sqlite online store) as the driver does: else one line says what is wrong where
(docs/scale.md).
"""

import dataclasses
import os
import re
import sys
import time
import uuid
import weakref
from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from importlib import metadata
from inspect import Parameter, Signature
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset
import pyarrow.parquet as pq
from hamilton import registry
from hamilton.ad_hoc_utils import create_temporary_module
from hamilton.data_quality.base import DataValidationError
from hamilton.function_modifiers import save_to, value
from hamilton.io.data_adapters import DataSaver
from hamilton.io.utils import get_file_metadata
from packaging.requirements import Requirement
from py4j.protocol import Py4JJavaError
from pyspark.errors import PythonException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from feast import FeatureStore
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from hamilton_feast import atomic, saved_tables, spark_tasks
from hamilton_feast.spark_tasks import PART, ROW

# How long a check waits for a cluster's first executor, and then for no new one to register.
EXECUTORS_WAIT_S, EXECUTORS_SETTLE_S = 120.0, 2.0
MARKER = ".hamilton-feast-check-"
DOCS = "see docs/scale.md"
# Spark's log on the driver: errors only, from the start (else its warnings about this host and the
# Hadoop libraries come before any setting applies), and for PySpark's gateway too (else Spark sets
# the level of a shell to WARN, saying so).
LOG_SETTINGS = """\
# Written by hamilton_feast.spark: the Spark driver's log, errors only, on standard error.
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.console.type = Console
appender.console.name = stderr
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.shell.name = org.apache.spark.api.python.PythonGatewayServer
logger.shell.level = error
"""
# What check_executors found, by application and folders checked.
_CHECKED: dict[tuple, list[dict]] = {}
# Of each table computed over ranges of time: {its DataFrame: (the accumulator of what each range
# gave, the description of the job that computes and writes it)}.
_RANGED_TABLES: "weakref.WeakKeyDictionary[DataFrame, Any]" = weakref.WeakKeyDictionary()


def session(feature_store: FeatureStore) -> SparkSession:
    """The Spark session of the Feast configuration (its offline store's `spark_conf`), which
    Feast's Spark store and engine then use too: named after the project; its Python workers run
    `spark.pyspark.python` (by default this Python); the driver's temporary and warehouse folders
    in the repo's data/spark/, its log errors only; its time zone UTC. One per process: another
    configuration's `spark.master` is refused while a session runs."""
    # The configuration's repo folder (a store made from a RepoConfig has the working directory as
    # its own repo_path).
    folder = Path(feature_store.config.repo_path or feature_store.repo_path) / "data" / "spark"
    conf = {
        "spark.app.name": feature_store.project,
        "spark.local.dir": str(folder / "tmp"),
        "spark.sql.warehouse.dir": str(folder / "warehouse"),
        "spark.sql.session.timeZone": "UTC",
        # Parquet timestamps as UTC microseconds (Spark's default, INT96, reads back without a zone).
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        **(feature_store.config.offline_store.spark_conf or {}),
    }
    active = SparkSession.getActiveSession()
    if active is not None:
        running, wanted = active.sparkContext.master, conf.get("spark.master")
        if wanted and running != wanted:
            raise ValueError(f"this process already runs a Spark session on {running}, and the Feast "
                             f"configuration's spark.master is {wanted}: expected one session per process "
                             "(stop the running one first)")
        return active
    # PySpark starts the Python workers with PYSPARK_PYTHON; `spark.pyspark.python` is read only
    # by spark-submit, so it is passed on here.
    os.environ["PYSPARK_PYTHON"] = str(conf.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON")
                                       or sys.executable)
    if "spark.driver.extraJavaOptions" not in conf:
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{_log_settings(folder)}"
    builder = SparkSession.builder
    for key, setting in conf.items():
        builder = builder.config(key, setting)
    started = builder.getOrCreate()
    started.sparkContext.setLogLevel("ERROR")
    return started


def _log_settings(folder: Path) -> Path:
    """LOG_SETTINGS as a file in `folder`, for the driver's JVM."""
    path = folder / "log4j2.properties"
    if not path.is_file() or path.read_text() != LOG_SETTINGS:
        with atomic.replaced(path) as temporary:
            temporary.write_text(LOG_SETTINGS)
    return path


def on_cluster(spark: SparkSession) -> bool:
    """Whether the executors are other processes (possibly on other hosts) than this one."""
    return not re.fullmatch(r"local(\[.*\])?", spark.sparkContext.master)


# --- before the job: the executors' Python, packages and folders ------------------------------------

def project_versions() -> dict[str, str]:
    """{distribution: version} of this project's packages here (the requirements of the
    distribution that installed hamilton_feast, without extras): what the executors need too."""
    project = (metadata.packages_distributions().get("hamilton_feast") or [None])[0]
    if project is None:  # not installed as a distribution: nothing to compare
        return {}
    names = {Requirement(r).name for r in metadata.requires(project) or [] if "extra ==" not in r}
    versions = {}
    for name in sorted(names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _executor_count(spark: SparkSession) -> int:
    return len(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()) - 1  # less the driver


def _wait_for_executors(spark: SparkSession) -> int:
    """The number of executors, once at least one has registered and no new one for a moment
    (with dynamic allocation, those running now: the check's tasks will ask for more)."""
    if spark.sparkContext.getConf().get("spark.dynamicAllocation.enabled", "false") == "true":
        return max(1, _executor_count(spark))
    started, count, changed = time.monotonic(), 0, time.monotonic()
    while True:
        now, found = time.monotonic(), _executor_count(spark)
        if found != count:
            count, changed = found, now
        if count and now - changed >= EXECUTORS_SETTLE_S:
            return count
        if not count and now - started > EXECUTORS_WAIT_S:
            raise ValueError(f"no executor of {spark.sparkContext.master} started within {EXECUTORS_WAIT_S:.0f} s; "
                             "expected workers with the free cores and memory the application asks for "
                             f"(spark.executor.cores, spark.executor.memory; {DOCS})")
        time.sleep(0.2)


def _failed_job(error: Exception) -> str:
    """The reason a Spark job failed, in one line: the Python exception a task raised, or the
    Java exception that stopped it, from the traceback Spark carries back."""
    text = str(error.java_exception.toString() if isinstance(error, Py4JJavaError) else error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    reason = next((line for line in lines if "Cannot run program" in line), None)
    if reason is None:
        reason = (raised[-1] if raised else lines[-1]) if lines else type(error).__name__
    return re.sub(r"^.*?Lost task \S+ in stage \S+ \(TID \d+\) \([^)]*\): ", "", reason)


def check_executors(spark: SparkSession, folders: dict[Path, tuple[str, bool]],
                    configuration: str = "the Feast configuration") -> list[dict]:
    """On a cluster: wait for the executors, then check, on each, that it runs its Python with
    the driver's versions of this project's packages, and sees each of `folders` ({folder: (why
    Spark needs it, whether executors write in it)}) as the driver does (a file written here is
    there). Return what each executor reported; raise a ValueError in one line for the first
    problem, naming the setting to change (in `configuration`, the Feast configuration's file).
    Checked once per session and set of folders. In local mode the executors are this process:
    nothing to check."""
    if not on_cluster(spark):
        return []
    context = spark.sparkContext
    key = (context.applicationId, *sorted(map(str, folders)))
    if key in _CHECKED:  # once per session and set of folders
        return _CHECKED[key]
    executors = _wait_for_executors(spark)
    markers = {}
    try:
        for folder in folders:
            markers[str(folder)] = f"{MARKER}{uuid.uuid4().hex}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / markers[str(folder)]).touch()
            except OSError:  # a folder this machine only reads: the executors are asked whether it exists
                markers[str(folder)] = ""
        check = spark_tasks.environment_check(markers, {str(f) for f, (_, w) in folders.items() if w},
                                              project_versions(), spark_tasks.package_code()[1])
        reports = {}
        context.setLogLevel("OFF")  # a failed task is reported below, in one line
        for _ in range(3):  # until every executor has run a check task
            tasks = max(context.defaultParallelism, executors)
            try:
                found = context.parallelize(range(tasks), tasks).mapPartitions(check).collect()
            except (Py4JJavaError, PythonException) as error:
                raise ValueError(_python_problem(_failed_job(error), configuration)) from None
            reports.update({(r["host"], r["folder"]): r for r in found})
            if len(reports) >= executors:
                break
    finally:
        context.setLogLevel("ERROR")
        for folder, marker in markers.items():
            if marker:
                (Path(folder) / marker).unlink(missing_ok=True)
    for report in reports.values():
        for kind, name, problem in report["problems"]:
            where = f"the executor on {report['host']} ({report['folder']})"
            if kind == "folder":
                why = folders[Path(name)][0]
                raise ValueError(f"{where} {problem}: {name}, {why}; expected the same folder at the same "
                                 f"path on every host of the cluster (a shared mount; {DOCS})")
            if kind == "code":
                raise ValueError(f"{where} runs {report['python']}, which {problem} (in {name}) than this "
                                 f"one ({spark_tasks.package_code()[0]}): expected this project's code installed in "
                                 f"the executors' environment (`pip install .`; {DOCS})")
            raise ValueError(f"{where} runs {report['python']}, which {problem}; this Python has "
                             f"{project_versions()[name]}: expected this project's environment on every host "
                             f"(spark.pyspark.python in {configuration}; {DOCS})")
    _CHECKED[key] = list(reports.values())
    return _CHECKED[key]


def _python_problem(reason: str, configuration: str) -> str:
    """A failed check job in one line: the executors' Python cannot start, or cannot load this
    package (hamilton_feast is not installed there, or is an editable install whose source
    folder is not there), or another reason."""
    python = os.environ.get("PYSPARK_PYTHON", "")
    setting = f"spark.pyspark.python in {configuration}; {DOCS}"
    if "Cannot run program" in reason:
        cause = reason.rsplit(": ", 1)[-1]
        return (f"the executors cannot run Python {python} ({cause}); expected this project's environment "
                f"at that path on every host ({setting})")
    if "hamilton_feast" in reason and re.search(r"ModuleNotFoundError|FileNotFoundError", reason):
        return (f"the executors' Python {python} cannot import hamilton_feast ({reason}); expected this project "
                f"installed in the executors' environment with `pip install .` (an editable install points at "
                f"a source folder on the host that installed it; {setting})")
    return f"a check of the executors failed: {reason}"


# --- the job ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class SparkParquetWriter(DataSaver):
    """Hamilton's `to.parquet` / `@save_to.parquet` for a Spark DataFrame: a folder of parquet
    files, written beside the old folder and renamed over it. For a table computed over ranges of
    time (partitioned_table), nothing is replaced if a range's DAG raised (see spark_tasks.py),
    which is raised here (a failed check as Hamilton's DataValidationError, anything else as a
    ValueError, with its message), or if the folder written holds other than the rows the ranges
    yielded (an executor wrote where this machine does not see)."""

    path: str

    @classmethod
    def applicable_types(cls) -> Collection[type]:
        return [DataFrame]

    @classmethod
    def name(cls) -> str:
        return "parquet"

    def save_data(self, data: DataFrame) -> dict[str, Any]:
        outcomes, description = _RANGED_TABLES.get(data, (None, None))
        context = data.sparkSession.sparkContext
        try:
            with atomic.replaced(self.path) as temporary:  # the old folder stays whole until done
                context.setJobDescription(description)  # in the Spark UI and event log
                data.write.parquet(str(temporary))
                if outcomes is not None:
                    _check_outcomes(outcomes.value, temporary, self.path)
        except (Py4JJavaError, PythonException) as error:
            raise ValueError(f"a Spark task failed: {_failed_job(error)}") from None
        finally:
            context.setJobDescription(None)
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


def _check_outcomes(outcomes: list, written: Path, path: str) -> None:
    """Raise the error of the earliest range of time whose DAG raised (a bad row also fails the
    range whose padding holds it: one is reported); or an error if the folder `written` holds
    other than the rows the ranges yielded (a range computed twice, as Spark may, counts once)."""
    failed = sorted(o for o in outcomes if o[2] is None)
    if failed:
        start, end, _, checks, messages = failed[0]
        when = " to ".join(datetime.fromtimestamp(t / 1e6, timezone.utc).strftime("%Y-%m-%d %H:%M")
                           for t in (start, end))
        if checks:
            raise DataValidationError([f"{m} (on Spark, in the range of event times {when} UTC)" for m in messages])
        raise ValueError(f"the range of event times {when} UTC failed on Spark: {messages[0]}")
    yielded = sum({start: rows for start, _, rows, _, _ in outcomes}.values())
    found = sum(piece.count_rows() for piece in pyarrow.dataset.dataset(written, format="parquet").get_fragments())
    if found != yielded:
        raise ValueError(f"Spark's tasks computed {yielded} rows of {Path(path).name}, but {found} are in the "
                         f"folder written ({path}): some were written where this machine does not see; expected "
                         f"the folder at the same path on every host of the cluster (a shared mount; {DOCS})")


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
    """The table `table` of the repo's DAG, computed by Spark over ranges of time (see above):
    one partition, so one task, per range."""
    for path in modules.values():
        spark.sparkContext.addPyFile(str(path))
    raw = _read_raw(spark, raw_path).withColumn(ROW, F.monotonically_increasing_id())
    micros = F.unix_micros(F.col(time_column))
    origin, last = raw.agg(F.min(micros), F.max(micros)).first()
    if origin is None:
        raise ValueError(f"raw data in {raw_path}: it has no rows; expected at least one")
    partition, overlap = time_partitions.value // 1000, window_overlap.value // 1000
    ranges = (last - origin) // partition + 1
    outcomes = spark.sparkContext.accumulator([], spark_tasks.Outcomes())
    compute = spark_tasks.range_of_rows(table, columns, list(modules), loader, time_column)
    each_range = spark_tasks.ranges_of_rows(compute, origin, partition, outcomes)
    # The schema of the result: the same DAG on the first rows, here.
    sample = raw.orderBy(time_column, ROW).limit(1000).withColumn(PART, F.lit(0)).toPandas()
    schema = from_arrow_schema(pa.Schema.from_pandas(compute(sample, origin), preserve_index=False))
    parts = F.sequence(F.floor((micros - origin) / partition).cast("int"),
                       F.least(F.floor((micros + overlap - origin) / partition), F.lit(ranges - 1)).cast("int"))
    computed = (raw.withColumn(PART, F.explode(parts))
                .repartitionById(ranges, PART).mapInPandas(each_range, schema).drop(ROW))
    _RANGED_TABLES[computed] = (outcomes, f"{table}: {ranges} ranges of event time, one task each")
    return computed


def module(tables: dict[str, dict], time_partitions: timedelta, window_overlap: timedelta,
           feature_store_yaml: str = "the Feast configuration") -> ModuleType:
    """Hamilton nodes for the saved tables, computed and written by Spark over ranges of
    `time_partitions` padded with `window_overlap`: {table: {"path": a folder, "columns": [...],
    "modules": {name: file}, "loader": the loader node, "loader_input": its path input,
    "time_column": ...}}; and the Spark session they use, its executors checked first."""
    partitions, overlap = pd.Timedelta(time_partitions), pd.Timedelta(window_overlap)
    loader_inputs = sorted({spec["loader_input"] for spec in tables.values()})

    def spark_session(feature_store: FeatureStore, **raw_paths: Path) -> SparkSession:
        """The Spark session shared with Feast's Spark store and engine; on a cluster, its
        executors checked before any job (check_executors)."""
        started = session(feature_store)
        folders = {Path(path).parent: (f"where Spark reads {Path(path).name} (settings.yaml inputs: {name})", False)
                   for name, path in raw_paths.items()}
        for table, spec in tables.items():
            folders[Path(spec["path"]).parent] = (
                f"where Spark writes the saved table {table} (settings.yaml spark: saved_tables)", True)
        config = feature_store.config
        if config.batch_engine.type == "spark.engine" and config.online_store.type == "sqlite":
            folders[Path(SqliteOnlineStore._get_db_path(config)).parent] = (
                f"where the Spark engine's executors write the sqlite online store (online_store: path "
                f"in {feature_store_yaml})", True)
        check_executors(started, folders, feature_store_yaml)
        return started

    spark_session.__signature__ = Signature(
        [Parameter("feature_store", Parameter.POSITIONAL_OR_KEYWORD, annotation=FeatureStore),
         *(Parameter(name, Parameter.KEYWORD_ONLY, annotation=Path) for name in loader_inputs)],
        return_annotation=SparkSession)
    spark_session.__annotations__ = {"feature_store": FeatureStore, **dict.fromkeys(loader_inputs, Path),
                                     "return": SparkSession}
    functions = [spark_session]
    for table, spec in tables.items():
        def build(_spec=spec, _table=table, **inputs) -> DataFrame:
            return partitioned_table(
                inputs["spark_session"], inputs[_spec["loader_input"]], table=_table,
                columns=_spec["columns"], modules=_spec["modules"], loader=_spec["loader"],
                time_column=_spec["time_column"], time_partitions=partitions, window_overlap=overlap,
            )

        build.__name__ = build.__qualname__ = table
        build.__doc__ = f"The table Feast reads ({', '.join(spec['columns'])}), computed by Spark."
        parameters = [Parameter(spec["loader_input"], Parameter.KEYWORD_ONLY, annotation=Path),
                      Parameter("spark_session", Parameter.KEYWORD_ONLY, annotation=SparkSession)]
        build.__signature__ = Signature(parameters, return_annotation=DataFrame)
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
