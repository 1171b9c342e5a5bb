"""What Spark's Python workers run for spark.py: the repo's DAG on the ranges of event time of one
partition, and the check of an executor's environment before a job.

This module imports neither Feast nor pyspark.sql: the executors import it from their
environment, where this project is installed (spark.py checks they have the driver's code).

A task that raises is retried by Spark (four times on a cluster), each failure logged with its
traceback. So a range whose DAG raises (a failed @check_output, bad data) yields no rows and adds
its error to an accumulator instead, which the driver reads when the job is done: the error is
reported once, with its own message.
"""

import hashlib
import importlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pandas as pd
from pyspark.accumulators import AccumulatorParam

ROW, PART = "__row", "__part"  # the file order of a raw row; the range of time it is computed in


class Outcomes(AccumulatorParam):
    """What each range of time gave: [(start, end, rows, is a failed check, [message, ...])]:
    the rows it yielded, or (rows None) why its DAG raised; times in microseconds since the
    epoch. Each task adds its own."""

    def zero(self, value):
        return []

    def addInPlace(self, value1, value2):
        return value1 + value2


def range_of_rows(table: str, columns: list[str], modules: list[str], loader: str,
                  time_column: str) -> Callable[[pd.DataFrame, int], pd.DataFrame]:
    """The repo's DAG on the rows of one range (with its padding), sorted by time then file
    order, keeping those from `start` (microseconds since the epoch) on."""
    from hamilton import driver

    from hamilton_feast import padding, saved_tables

    def compute(rows: pd.DataFrame, start: int) -> pd.DataFrame:
        dag = driver.Builder().with_modules(
            *(importlib.import_module(name) for name in modules),
            saved_tables.module({table: (Path(table), columns)}),
        ).build()
        rows = rows.sort_values([time_column, ROW], kind="stable").reset_index(drop=True)
        for column in rows.columns:  # Spark hands timestamps over without a zone: they are UTC
            if pd.api.types.is_datetime64_dtype(rows[column]):
                rows[column] = rows[column].dt.tz_localize("UTC")
        own = rows[time_column].array.as_unit("us").asi8 >= start
        kept = padding.computed(dag, table, loader, rows.drop(columns=[ROW, PART]), own, time_column)
        kept[ROW] = rows[ROW].to_numpy()[own]
        return kept

    return compute


def ranges_of_rows(compute: Callable[[pd.DataFrame, int], pd.DataFrame], origin: int, partition: int,
                   outcomes) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The function mapInPandas runs on a partition: `compute` on each range of time in it (range
    n starts `n * partition` microseconds after `origin`), each adding its outcome to `outcomes`
    (an Outcomes accumulator): how many rows it yielded, or the error its DAG raised."""
    from hamilton.data_quality.base import DataValidationError

    def each_range(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        batches = list(batches)
        if not batches:
            return
        rows = pd.concat(batches, ignore_index=True)
        for part, range_rows in rows.groupby(PART, sort=True):
            start = origin + int(part) * partition
            try:
                computed = compute(range_rows, start)
            except Exception as error:  # noqa: BLE001 (reported by the driver, see above)
                checks = isinstance(error, DataValidationError)
                messages = list(error.args[0]) if checks else [f"{type(error).__name__}: {error}"]
                outcomes.add([(start, start + partition, None, checks, [m.strip() for m in messages])])
                continue
            outcomes.add([(start, start + partition, len(computed), False, [])])
            yield computed

    return each_range


def package_code() -> tuple[str, str]:
    """Where this package is imported from here, and a fingerprint of its code: the executors
    must run the driver's."""
    folder = Path(__file__).parent
    files = sorted(folder.glob("*.py"))
    return str(folder), hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()[:16]


def environment_check(markers: dict[str, str], writable: set[str], versions: dict[str, str], digest: str):
    """The function a check job runs on each executor: where it runs, and what it finds wrong
    there: a folder of `markers` ({folder: the name of a file the driver wrote in it, or "" if it
    could not}) that it does not see as the driver does, or cannot write in (those of `writable`); a distribution of
    `versions` ({name: the driver's version}) missing or at another version; hamilton_feast
    not the driver's code (`digest`; without hamilton_feast, the task fails to load this function)."""

    def check(_) -> Iterator[dict]:
        problems = []
        for folder, marker in markers.items():
            if not (Path(folder) / marker).is_file() if marker else not Path(folder).is_dir():
                problems.append(("folder", folder, "does not see it as the driver does"))
            elif folder in writable and not os.access(folder, os.W_OK | os.X_OK):
                problems.append(("folder", folder, "cannot write in it"))
        for name, version in versions.items():
            try:
                found = metadata.version(name)
            except metadata.PackageNotFoundError:
                found = None
            if found != version:
                problems.append(("package", name, f"has {name} {found}" if found else f"has no {name}"))
        folder, here = package_code()  # imported on unpickling this function: else the task fails
        if here != digest:
            problems.append(("code", folder, "has another version of hamilton_feast"))
        yield {"host": socket.gethostname(), "folder": os.getcwd(), "python": sys.executable,
               "temporary": os.environ.get("SPARK_LOCAL_DIRS", ""), "problems": problems}

    return check
