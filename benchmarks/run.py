"""Benchmarks of the example's data path: prints one table (medians of repeated runs).

    python benchmarks/run.py            # 1M raw trips; 10k and 100k entity rows
    python benchmarks/run.py --large    # adds 10M raw trips and 1M entity rows (minutes, ~10 GB)

Measured, each as a ratio taken in the same run:
1. transforms: the integration DAG through the Hamilton driver vs the same functions called by
   hand, and the rolling 3 h percentile rank's throughput; then the whole DAG from raw file to
   saved table per node at 1M and 10M trips (500 drivers, 30 days), with the growth and the peak
   memory of each size's process;
   and the same saved table computed by Spark in local mode on 1 and 2 cores (100k, 1M, 10M
   trips), with what the partitioning predicts for more executor cores (an estimate); and on a
   Spark standalone cluster of two one-core workers on this machine beside local[2] (100k, 1M);
2. training sets: Feast's DuckDB offline store (the integration repo's) and file offline store
   (the template's; at 10k rows only: at 100k it was killed for memory) and the integration
   repo's get_training_set vs a hand-written DuckDB ASOF JOIN with the same semantics, the
   limit; time and peak memory, each in a fresh process, with results compared;
3. online reads: the 11 stored features and the feature service with its on-demand view, SDK
   with sqlite and Redis (with and without -O; what the on-demand view adds), and `feast serve`
   with several settings, in interleaved rounds, on one keep-alive connection and with 4
   concurrent clients, for 1 and 100 entities; beside two floors: Feast's app with its reads
   answered from a cache, and an empty endpoint on the same server stack;
4. the model: its training set and fit at 100k (and 1M) labelled trips, and POST /predict
   beside `feast serve`'s read of the same feature service, with what the model adds;
5. the stream (`--only stream`; needs redis-server): a day of trips replayed onto Redis Streams
   at 100 and 1,000 events a second and read by one consumer (`stream.py`) on one core: the
   time from publishing a trip to its driver's row showing through get_online_features (p50,
   p99), the highest rate with a p99 under 1 s, what padding a micro-batch with its 24 h of
   history costs, and the batch path's freshness (how long `apply.py --materialize` takes).
Run from the project root in the project's environment (./scripts/test.sh makes .venv).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "integration_feature_store"
sys.path.insert(0, str(REPO))

import generate_data  # noqa: E402  (the integration repo's generator)
from hamilton import driver  # noqa: E402

from hamilton_feast import Repo, feast_operations, models, training_sets  # noqa: E402
from hamilton_feast.testing import free_port, wait_until  # noqa: E402

INTEGRATION = Repo(REPO)
raw_data, trip_features = (next(m for m in INTEGRATION.modules if m.__name__ == name)
                           for name in ("raw_data", "trip_features"))

END = pd.Timestamp("2026-11-01T00:00Z")
ROWS = []


def record(section: str, case: str, seconds: float, note: str = "") -> None:
    ROWS.append((section, case, seconds, note))
    print(f"  {section:12s} {case:55s} {seconds:9.4f} s  {note}", flush=True)


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- 1. transforms -----------------------------------------------------------------------

FEATURE_COLUMNS = [
    "day_of_week", "is_weekend", "month", "hour_of_day", "trip_dist_pct_rank_3h_all_drivers",
    "driver_trip_dist_mean_3h", "driver_trip_dist_max_3h", "driver_trip_dist_min_3h",
    "driver_trips_3h", "driver_trip_dist_mean_24h", "driver_trips_24h",
]


def features_by_hand(raw: pd.DataFrame) -> pd.DataFrame:
    """The same functions, called in dependency order with no framework."""
    trips = raw_data.trips(raw)
    ts, dist, driver = trips["event_timestamp"], trips["trip_dist"], trips["driver_id"]
    day = trip_features.day_of_week(ts)
    stats_3h = trip_features.driver_trip_dist_3h(dist, driver, ts)
    stats_24h = trip_features.driver_trip_dist_24h(dist, driver, ts)
    return pd.DataFrame({
        "event_timestamp": ts, "created": trips["created"], "driver_id": driver,
        "day_of_week": day,
        "is_weekend": trip_features.is_weekend(day),
        "month": trip_features.month(ts),
        "hour_of_day": trip_features.hour_of_day(ts),
        "trip_dist_pct_rank_3h_all_drivers": trip_features.trip_dist_pct_rank_3h_all_drivers(dist, ts),
        "driver_trip_dist_mean_3h": trip_features.driver_trip_dist_mean_3h(stats_3h),
        "driver_trip_dist_max_3h": trip_features.driver_trip_dist_max_3h(stats_3h),
        "driver_trip_dist_min_3h": trip_features.driver_trip_dist_min_3h(stats_3h),
        "driver_trips_3h": trip_features.driver_trips_3h(stats_3h),
        "driver_trip_dist_mean_24h": trip_features.driver_trip_dist_mean_24h(stats_24h),
        "driver_trips_24h": trip_features.driver_trips_24h(stats_24h),
    })


def bench_transforms(trips: int, repeats: int) -> None:
    raw = generate_data.raw_trips(END, days=28, trips=trips, drivers=max(50, trips // 2000)).to_pandas()
    dr = driver.Builder().with_modules(*INTEGRATION.modules, INTEGRATION.saved_tables).build()
    label = f"{trips / 1e6:g}M trips"

    def through_hamilton():
        return dr.execute(["driver_trip_features"], overrides={"raw_trips": raw})

    if not features_by_hand(raw).equals(through_hamilton()["driver_trip_features"]):
        raise AssertionError("the Hamilton DAG and the functions by hand disagree")
    # Interleaved, so that a slow moment of the machine hits both alike.
    by_hand_times, hamilton_times = [], []
    for _ in range(repeats):
        by_hand_times.append(median_time(lambda: features_by_hand(raw), 1))
        hamilton_times.append(median_time(through_hamilton, 1))
    by_hand, hamilton = statistics.median(by_hand_times), statistics.median(hamilton_times)
    record("transforms", f"{label}: functions by hand", by_hand)
    record("transforms", f"{label}: Hamilton driver (with @check_output)", hamilton,
           f"ratio {hamilton / by_hand:.3f}")
    trip_table = raw_data.trips(raw)
    rank = median_time(lambda: trip_features.trip_dist_pct_rank_3h_all_drivers(
        trip_table["trip_dist"], trip_table["event_timestamp"]), repeats)
    record("transforms", f"{label}: rolling 3h percentile rank alone", rank,
           f"{trips / rank / 1e6:.2f} M rows/s")


def run_child(*arguments, flags: tuple = ()) -> dict:
    """This script run in a fresh process with `arguments` (and the interpreter's `flags`): the
    JSON its last line printed."""
    out = subprocess.run([sys.executable, *flags, __file__, *map(str, arguments)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def write_raw_trips(folder: Path, trips: int) -> Path:
    """`trips` raw trips of 500 drivers over 30 days, as the parquet file the DAG's loader reads."""
    import pyarrow.parquet as pq

    raw_path = folder / f"raw_{trips}.parquet"
    pq.write_table(generate_data.raw_trips(END, days=30, trips=trips, drivers=500), raw_path)
    return raw_path


# --- 1b. scale: the whole DAG per node, at 1M and 10M trips --------------------------------

SCALE_NODES = ["raw_trips.loader", "trips", "day_of_week_raw", "month_raw", "hour_of_day_raw",
               "trip_dist_pct_rank_3h_all_drivers_raw", "driver_trip_dist_3h", "driver_trip_dist_24h",
               "driver_trip_features", "saved_driver_trip_features"]


def scale_child(raw_path: Path, repeats: int) -> None:
    """In a fresh process: the integration DAG from the raw file to the saved table (load,
    transforms, checks, save), `repeats` times; print the median seconds per node and in all,
    and the process's peak memory, as JSON."""
    from hamilton.lifecycle import NodeExecutionHook

    class NodeTimes(NodeExecutionHook):
        def __init__(self):
            self.started, self.seconds = {}, {}

        def run_before_node_execution(self, *, node_name, **kwargs):
            self.started[node_name] = time.perf_counter()

        def run_after_node_execution(self, *, node_name, **kwargs):
            self.seconds.setdefault(node_name, []).append(time.perf_counter() - self.started[node_name])

    timer = NodeTimes()
    dr = driver.Builder().with_modules(*INTEGRATION.modules, INTEGRATION.saved_tables).with_adapters(timer).build()
    inputs = {**INTEGRATION.inputs, "raw_trips_path": raw_path}
    totals = []
    for _ in range(repeats):
        started = time.perf_counter()
        dr.execute(["saved_driver_trip_features"], inputs=inputs)
        totals.append(time.perf_counter() - started)
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    result = {name: statistics.median(times) for name, times in timer.seconds.items()}
    print(json.dumps({**result, "TOTAL": statistics.median(totals), "peak_gb": peak_kb / 1024 / 1024}))


def bench_scale(folder: Path, sizes: list[int]) -> dict:
    """Per node and in all, each size in a fresh process (500 drivers, 30 days of trips)."""
    measured = {}
    for trips in sizes:
        raw_path = write_raw_trips(folder, trips)
        measured[trips] = run_child("--scale-child", raw_path, 3)
        raw_path.unlink()
    smallest, largest = sizes[0], sizes[-1]
    for name in SCALE_NODES + ["TOTAL"]:
        for trips in sizes:
            note = ""
            if trips == largest and trips != smallest:
                note = f"x{measured[largest][name] / measured[smallest][name]:.1f} of {smallest / 1e6:g}M"
            if name == "TOTAL":
                note += f"{', ' if note else ''}peak {measured[trips]['peak_gb']:.2f} GB"
            label = "whole DAG (load, transforms, checks, save)" if name == "TOTAL" else f"node {name}"
            record("scale", f"{trips / 1e6:g}M trips: {label}", measured[trips][name], note)
    return measured


# --- 1c. the same DAG on Spark, local mode -------------------------------------------------

SPARK_MASTERS = ["local[1]", "local[2]"]


def spark_child(raw_path: Path, master: str, repeats: int) -> None:
    """In a fresh process: a copy of the integration repo with feature_store.spark.yaml pointed
    at `master` (a cluster's with the driver's address, as docs/scale.md says); the JVM's start,
    on a cluster the check of its executors (their start included), then the saved table computed
    and written by Spark `repeats` times (the first of them pays Spark's warm-up); print the times
    as JSON."""
    import yaml

    from hamilton_feast import spark as on_spark
    from hamilton_feast.testing import copy_repo

    from feast import FeatureStore

    with tempfile.TemporaryDirectory() as folder:
        repo_dir = copy_repo(REPO, Path(folder))
        config = repo_dir / "feature_store.spark.yaml"
        settings = yaml.safe_load(config.read_text())
        settings["offline_store"]["spark_conf"]["spark.master"] = master
        if master.startswith("spark://"):
            settings["offline_store"]["spark_conf"]["spark.driver.host"] = "127.0.0.1"
        config.write_text(yaml.safe_dump(settings))
        (repo_dir / "data").mkdir()
        (repo_dir / "data" / "raw_trips.parquet").symlink_to(raw_path)
        started = time.perf_counter()
        store = FeatureStore(repo_path=str(repo_dir), fs_yaml_file=config)
        session = on_spark.session(store)
        session_start = time.perf_counter() - started
        repo = Repo(repo_dir, "feature_store.spark.yaml")
        dr = driver.Builder().with_modules(*repo.modules, repo.saved_tables).with_config(repo.hamilton_config).build()
        started = time.perf_counter()
        dr.execute(["spark_session"], inputs={**repo.inputs, "feature_store": store})
        check = time.perf_counter() - started
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            dr.execute(["saved_driver_trip_features"], inputs={**repo.inputs, "feature_store": store})
            times.append(time.perf_counter() - started)
        tasks = len(list((repo_dir / "data" / "spark" / "driver_trip_features").glob("*.parquet")))  # a file each
        session.stop()
    print(json.dumps({"session_start": session_start, "check": check, "first": times[0],
                      "warm": statistics.median(times[1:]), "tasks": tasks}))


def bench_spark(folder: Path, sizes: list[int], one_process: dict) -> None:
    """The saved table on Spark (local[1] and local[2], a fresh process each) beside the one-process
    run of the same size; then what the partitioning predicts for N machines."""
    measured = {}
    for trips in sizes:
        raw_path = write_raw_trips(folder, trips)
        if trips not in one_process:
            one_process[trips] = run_child("--scale-child", raw_path, 3)
        label = f"{trips / 1e6:g}M trips"
        alone = one_process[trips]["TOTAL"]
        record("spark", f"{label}: one process (load, transforms, checks, save)", alone)
        for master in SPARK_MASTERS:
            measured[trips, master] = run_child("--spark-child", raw_path, master, 3)
            warm = measured[trips, master]["warm"]
            record("spark", f"{label}: Spark {master}, warm (same table)", warm,
                   f"x{warm / alone:.1f} of one process; first run {measured[trips, master]['first']:.1f}, "
                   f"JVM start {measured[trips, master]['session_start']:.1f}")
        raw_path.unlink()
    # Amdahl's law through the two measured points: T(n) = serial + parallel / n, n executor cores.
    largest = sizes[-1]
    t1, t2 = measured[largest, "local[1]"]["warm"], measured[largest, "local[2]"]["warm"]
    parallel = 2 * (t1 - t2)
    serial = t1 - parallel
    ranges = 30 // 4 + 1  # 30 days in ranges of 4 days: at most this many tasks run at once
    for cores in (4, 8, 16):
        predicted = serial + parallel / min(cores, ranges)
        record("spark", f"{largest / 1e6:g}M trips: {cores} executor cores, PREDICTED", predicted,
               f"estimate: {serial:.1f} s serial + {parallel:.1f} s / min(cores, {ranges} time ranges)")



def bench_cluster(folder: Path, sizes: list[int]) -> None:
    """The saved table in one process, on Spark local[2], and on a Spark standalone cluster of two
    workers of one core each (started as docs/scale.md says, on this machine), each size in a
    fresh process per case, interleaved: what the cluster's machinery costs over local mode."""
    from hamilton_feast.testing import spark_cluster

    with spark_cluster(folder / "cluster") as cluster:
        for trips in sizes:
            raw_path = write_raw_trips(folder, trips)
            label = f"{trips / 1e6:g}M trips"
            alone = run_child("--scale-child", raw_path, 3)["TOTAL"]
            record("cluster", f"{label}: one process (load, transforms, checks, save)", alone)
            for name, master in (("Spark local[2]", "local[2]"), ("Spark cluster, 2 workers x 1 core", cluster.master)):
                measured = run_child("--spark-child", raw_path, master, 3)
                record("cluster", f"{label}: {name}, warm (same table)", measured["warm"],
                       f"x{measured['warm'] / alone:.1f} of one process; first run {measured['first']:.1f}, "
                       f"JVM start {measured['session_start']:.1f}, executors started and checked "
                       f"{measured['check']:.1f}; {measured['tasks']} tasks (ranges of time)")
            raw_path.unlink()


# --- 2. training sets ----------------------------------------------------------------------


def write_retrieval_inputs(folder: Path, entity_rows: int) -> None:
    """The integration repo's feature table from 1M raw trips (and, for the view without
    entities, the last trip's row of each hour: 672 rows, like a table of global statistics),
    and `entity_rows` random (driver, moment) rows with a row id, as parquet files in `folder`."""
    table = folder / "features.parquet"
    if not table.exists():
        raw = generate_data.raw_trips(END, days=28, trips=1_000_000, drivers=500).to_pandas()
        features = features_by_hand(raw)
        features.to_parquet(table)
        hourly = features.groupby(features.event_timestamp.dt.floor("h")).tail(1)
        hourly.drop(columns="driver_id").to_parquet(folder / "global.parquet")
    features = pd.read_parquet(table, columns=["driver_id", "event_timestamp"])
    rng = np.random.default_rng(entity_rows)
    start, end = features.event_timestamp.min(), features.event_timestamp.max()
    seconds = rng.integers(0, int((end - start).total_seconds()), entity_rows)
    entities = pd.DataFrame({
        "row_id": np.arange(entity_rows),
        "driver_id": rng.choice(features.driver_id.unique(), entity_rows),
        "event_timestamp": (start + pd.to_timedelta(seconds, "s")).astype("datetime64[us, UTC]"),
    })
    entities.to_parquet(folder / f"entities_{entity_rows}.parquet")


ALIASES = ["a", "b", "c", "d"]


def bench_store(offline_store: str, folder: Path):
    """A Feast store over the benchmark's feature table, like the integration repo's view; with
    a service of four aliased projections of it, and the same features in a view without
    entities (over one row per event time)."""
    from datetime import timedelta

    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.repo_config import RegistryConfig
    from feast.types import Bool, Float64, Int64

    store = FeatureStore(config=RepoConfig(
        project="bench", registry=RegistryConfig(path=str(folder / f"registry_{offline_store}.db")),
        provider="local", offline_store={"type": offline_store},
        online_store={"type": "sqlite", "path": str(folder / "online.db")},
        entity_key_serialization_version=3, repo_path=str(folder),
    ))
    types = {"is_weekend": Bool, "day_of_week": Int64, "month": Int64, "hour_of_day": Int64,
             "driver_trips_3h": Int64, "driver_trips_24h": Int64}
    schema = [Field(name=c, dtype=types.get(c, Float64)) for c in FEATURE_COLUMNS]
    driver = Entity(name="driver", join_keys=["driver_id"])
    sources = {name: FileSource(name=name, path=str(folder / f"{name}.parquet"), timestamp_field="event_timestamp",
                                created_timestamp_column="created") for name in ("features", "global")}
    view = FeatureView(name="driver_trip_stats", entities=[driver], ttl=timedelta(days=1), source=sources["features"],
                       schema=schema)
    everyone = FeatureView(name="all_trip_stats", entities=[], ttl=timedelta(days=1), source=sources["global"],
                           schema=schema)
    four = FeatureService(name="four_projections", features=[view.with_name(alias) for alias in ALIASES])
    store.apply([driver, *sources.values(), view, everyone, four])
    return store


REFERENCES = [f"driver_trip_stats:{c}" for c in FEATURE_COLUMNS]
# The cases beyond one view (each: its request, its options, and the columns to compare).
REQUESTS = {
    "plain": (REFERENCES, {}),
    "four": ("four_projections", {"full_feature_names": True}),
    "created": (REFERENCES, {"filter_by_created_timestamp": True}),
    "global": ([f"all_trip_stats:{c}" for c in FEATURE_COLUMNS], {}),
}


def result_columns(request: str) -> list[str]:
    return [f"{a}__{c}" for a in ALIASES for c in FEATURE_COLUMNS] if request == "four" else FEATURE_COLUMNS


def retrieve_with_asof(folder: Path, entities: pd.DataFrame) -> pd.DataFrame:
    """Feast's semantics in one DuckDB query: the latest row per (driver, time) by `created`,
    ASOF-joined backwards, nulled when older than the TTL (one day)."""
    import duckdb

    within_ttl = "f.event_timestamp >= e.event_timestamp - INTERVAL 1 DAY"
    columns = ", ".join(f"CASE WHEN {within_ttl} THEN f.{c} END AS {c}" for c in FEATURE_COLUMNS)
    connection = duckdb.connect()
    connection.register("entities", entities)
    return connection.execute(f"""
        WITH f AS (
            SELECT * FROM read_parquet('{folder / "features.parquet"}')
            QUALIFY row_number() OVER (PARTITION BY driver_id, event_timestamp ORDER BY created DESC) = 1
        )
        SELECT e.row_id, e.driver_id, e.event_timestamp, {columns}
        FROM entities e ASOF LEFT JOIN f
          ON e.driver_id = f.driver_id AND e.event_timestamp >= f.event_timestamp
    """).df()


def child(method: str, folder: Path, entity_rows: int) -> None:
    """Run one retrieval in this (fresh) process; print its time and peak memory as JSON.
    `method` is asof, file, or (fast|duckdb)-(a request of REQUESTS)."""
    entities = pd.read_parquet(folder / f"entities_{entity_rows}.parquet")
    how, _, request = method.partition("-")
    store = None if how == "asof" else bench_store("duckdb" if how == "fast" else how, folder)
    features, options = REQUESTS[request or "plain"]
    if store is not None and isinstance(features, str):
        features = store.get_feature_service(features)
    started = time.perf_counter()
    if how == "asof":
        result = retrieve_with_asof(folder, entities)
    elif how == "fast":
        result = training_sets.get_training_set(store, entities, features, **options)
    else:
        result = store.get_historical_features(entity_df=entities, features=features, **options).to_df()
    seconds = time.perf_counter() - started
    result = result.sort_values("row_id")[["row_id", *result_columns(request)]]
    result.to_parquet(folder / f"result_{method}_{entity_rows}.parquet")
    # VmHWM, not ru_maxrss: the latter keeps the parent's size from before exec.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    peak_gb = peak_kb / 1024 / 1024
    print(json.dumps({"seconds": seconds, "rows": len(result), "peak_gb": peak_gb}))


def same_values(answer: pd.DataFrame, reference: pd.DataFrame, columns: list[str], reference_columns=None) -> bool:
    if len(answer) != len(reference):
        return False
    for column, reference_column in zip(columns, reference_columns or columns):
        a = pd.to_numeric(answer[column].astype("float64"), errors="coerce").to_numpy()
        b = pd.to_numeric(reference[reference_column].astype("float64"), errors="coerce").to_numpy()
        if not np.allclose(a, b, rtol=1e-9, equal_nan=True):
            return False
    return (answer["row_id"].to_numpy() == reference["row_id"].to_numpy()).all()


NAMES = {"asof": "DuckDB ASOF JOIN by hand (the limit)", "duckdb": "Feast DuckDB offline store",
         "fast": "get_training_set (hamilton_feast)", "file": "Feast file offline store",
         "fast-four": "get_training_set, 4 aliased projections (44 features, full names)",
         "fast-created": "get_training_set, filter_by_created_timestamp",
         "fast-global": "get_training_set, a view without entities",
         "duckdb-four": "Feast DuckDB offline store, 4 aliased projections",
         "duckdb-created": "Feast DuckDB offline store, filter_by_created_timestamp",
         "duckdb-global": "Feast DuckDB offline store, a view without entities"}
RUNS = 5  # fresh processes per case, interleaved


def bench_retrieval(folder: Path, sizes: list[int], file_store_sizes: list[int], feast_sizes: list[int]) -> None:
    """Each case in RUNS interleaved fresh processes: median, min and max. The new cases'
    answers are checked against Feast's DuckDB store's (timed too) at `feast_sizes`; the
    plain cases' against the hand-written limit."""
    for entity_rows in sizes:
        write_retrieval_inputs(folder, entity_rows)
        methods = ["asof", "fast", "duckdb", "fast-four", "fast-created", "fast-global"]
        methods += ["file"] if entity_rows in file_store_sizes else []
        methods += ["duckdb-four", "duckdb-created", "duckdb-global"] if entity_rows in feast_sizes else []
        runs = {method: [] for method in methods}
        for _ in range(RUNS):
            for method in methods:
                runs[method].append(run_child("--child", method, folder, entity_rows))
        limit = statistics.median(r["seconds"] for r in runs["asof"])
        answer = lambda method: pd.read_parquet(folder / f"result_{method}_{entity_rows}.parquet").reset_index(drop=True)  # noqa: E731
        for method, measured in runs.items():
            request = method.partition("-")[2]
            columns = result_columns(request)
            if request == "four":  # each projection's columns equal the limit's
                same = all(same_values(answer(method), answer("asof"), [f"{a}__{c}" for c in FEATURE_COLUMNS],
                                       FEATURE_COLUMNS) for a in ALIASES)
            elif request:
                reference = f"duckdb-{request}" if entity_rows in feast_sizes else None
                same = None if reference is None else same_values(answer(method), answer(reference), columns)
            else:
                same = same_values(answer(method), answer("asof"), columns)
            verdict = {True: "same values", False: "DIFFERENT values", None: "not checked"}[same]
            seconds = sorted(r["seconds"] for r in measured)
            median = statistics.median(seconds)
            record("training", f"{entity_rows:>9,} entity rows: {NAMES[method]}", median,
                   f"x{median / limit:.2f} of limit (min {seconds[0]:.3f}, max {seconds[-1]:.3f} s, "
                   f"{len(seconds)} runs), peak {max(r['peak_gb'] for r in measured):.2f} GB, "
                   f"{measured[0]['rows']:,} rows back, {verdict}")


# --- 3. online reads ------------------------------------------------------------------------

SERVICE = "trip_rating_model_v1"
REQUESTED_AT = 1_772_928_000  # epoch seconds, as JSON clients send it
ROUNDS = 3  # interleaved rounds of every setting; the figures are the medians across rounds
BIN = Path(sys.executable).parent
OPTIMIZED = {"PYTHONOPTIMIZE": "1"}
LIMITS = ["--max-requests", "100000", "--max-requests-jitter", "10000"]  # gunicorn's flags, as feast serve's
RECOMMENDED = ["--no-access-log", *LIMITS]
CHOSEN = "recommended, 2 workers"  # docs/serving.md's: also read with 100 entities, and on Redis
PIN_SERVER = ["taskset", "-c", "1"]


def feast_serve(*arguments: str, pinned: bool = False):
    """`feast serve` with these arguments (on CPU core 1 alone when pinned; serve_once then keeps
    the clients on core 0)."""
    return lambda fs_yaml, port: [*(PIN_SERVER if pinned else []), str(BIN / "feast"), "-f", fs_yaml,
                                  "serve", "--host", "127.0.0.1", "--port", str(port), *arguments]


def gunicorn(worker: str, app: str):
    """A server `feast serve` cannot start (benchmarks/serving_variants.py), run by gunicorn as
    `feast serve` runs Feast's app: one worker, the recommended limits, no access log."""
    return lambda fs_yaml, port: [str(BIN / "gunicorn"), "-k", worker, "-w", "1", "-b", f"127.0.0.1:{port}",
                                  *LIMITS, app]


SERVE_SETTINGS = {  # name: (environment, command)
    "defaults, 1 worker": ({}, feast_serve("--workers", "1")),
    "-O only, 1 worker": (OPTIMIZED, feast_serve("--workers", "1")),
    "recommended, 1 worker": (OPTIMIZED, feast_serve("--workers", "1", *RECOMMENDED)),
    CHOSEN: (OPTIMIZED, feast_serve("--workers", "2", *RECOMMENDED)),
    "recommended, 2 workers, registry refreshed every 1 s": (
        OPTIMIZED, feast_serve("--workers", "2", *RECOMMENDED, "--registry_ttl_sec", "1")),
    "recommended, 1 worker pinned to core 1, clients on core 0": (
        OPTIMIZED, feast_serve("--workers", "1", *RECOMMENDED, pinned=True)),
    "recommended, 1 worker, asyncio instead of uvloop": (
        OPTIMIZED, gunicorn("serving_variants.AsyncioWorker", "serving_variants:feast_app()")),
    "floor: Feast's app, 1 worker, reads answered from a cache": (
        OPTIMIZED, gunicorn("uvicorn_worker.UvicornWorker", "serving_variants:feast_app(cached_reads=True)")),
    "floor: an empty endpoint, 1 worker, same server stack": (
        OPTIMIZED, gunicorn("uvicorn_worker.UvicornWorker", "serving_variants:empty_app()")),
}
ALL_CASES = ["plain 1", "service 1", "plain 100", "service 100"]


def percentiles_ms(read, repeats: int = 1000, warm_up: int = 100) -> tuple[float, float]:
    for _ in range(warm_up):
        read()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    p50, p99 = np.percentile(times, [50, 99]) * 1000
    return float(p50), float(p99)


def repeats(case: str) -> int:
    """Sequential reads per case and round: fewer of 100 entities, which take 10-50 ms each."""
    return 300 if case.endswith(" 100") else 1000


def entities(drivers: list[int], service: bool) -> dict:
    """The columns of a request for these drivers; a service request carries the trip requested."""
    columns = {"driver_id": drivers}
    if service:
        columns |= {"requested_at": [REQUESTED_AT] * len(drivers), "requested_trip_dist": [3.0] * len(drivers)}
    return columns


def online_child(repo: Path, fs_yaml: str, drivers: list[int]) -> None:
    """In a fresh process (run with or without -O), ROUNDS interleaved rounds of SDK reads: the
    11 stored features; the feature service held by the caller; and the feature service looked
    up by name on each read, as the feature server does. 1 and 100 entities. Prints each case's
    p50 and p99 per round."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / fs_yaml)
    held = store.get_feature_service(SERVICE, allow_cache=True)
    reads = {}
    for n in (1, 100):
        plain, request = entities(drivers[:n], False), entities(drivers[:n], True)
        reads[f"plain {n}"] = lambda rows=plain: store.get_online_features(features=REFERENCES, entity_rows=rows)
        reads[f"held {n}"] = lambda rows=request: store.get_online_features(features=held, entity_rows=rows)
        reads[f"service {n}"] = lambda rows=request: store.get_online_features(
            features=store.get_feature_service(SERVICE, allow_cache=True), entity_rows=rows)
    result = {case: [] for case in reads}
    for _ in range(ROUNDS):
        for case, read in reads.items():
            result[case].append(percentiles_ms(read, repeats=repeats(case)))
    print(json.dumps(result))


class Client:
    """One keep-alive connection to the feature server; a request that fails (such as on a
    connection the server closed when it recycled a worker) is counted, and the next one opens
    a new connection."""

    def __init__(self, port: int, path: str = "/get-online-features"):
        self.port, self.path, self.errors, self.connection = port, path, 0, None

    def read(self, body: bytes) -> None:
        import http.client

        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            self.connection.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
            response = self.connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"{self.path} answered {response.status}: {answer[:200]!r}")
        except (OSError, http.client.HTTPException, RuntimeError):
            self.errors += 1
            self.connection.close()
            self.connection = None


def bodies(drivers: list[int]) -> dict[str, bytes]:
    plain = lambda n: {"features": REFERENCES, "entities": entities(drivers[:n], False)}
    service = lambda n: {"feature_service": SERVICE, "entities": entities(drivers[:n], True)}
    return {f"{kind} {n}": json.dumps(make(n)).encode()
            for kind, make in (("plain", plain), ("service", service)) for n in (1, 100)}


def concurrent_ms(port: int, body: bytes, clients: int = 4, each: int = 500,
                  path: str = "/get-online-features") -> tuple[float, float, int]:
    """p50 and p99 of `clients` threads reading at once, each on its own keep-alive connection,
    and the number of failed requests."""
    import threading

    times, connections = [], [Client(port, path) for _ in range(clients)]

    def client(connection):
        for _ in range(each):
            started = time.perf_counter()
            connection.read(body)
            times.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(connection,)) for connection in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    p50, p99 = np.percentile(times, [50, 99]) * 1000
    return float(p50), float(p99), sum(connection.errors for connection in connections)


def serve_once(repo: Path, fs_yaml: str, drivers: list[int], settings: str, cases: list[str]) -> dict:
    """One round of one server setting: the first request after the server answers /health,
    then each case's sequential reads on one keep-alive connection, then 4 concurrent clients
    through the feature service. Returns {case: (p50, p99, errors)}."""
    import os
    import urllib.request

    environment, command = SERVE_SETTINGS[settings]
    port = free_port()
    argv, log_path = command(fs_yaml, port), repo / f"feast_serve_{port}.log"
    log = open(log_path, "w")
    server = subprocess.Popen(argv, cwd=repo, stdout=log, stderr=log, env={
        **os.environ, **environment, "PYTHONPATH": str(Path(__file__).parent),
        "BENCHMARK_REPO": str(repo), "BENCHMARK_FS_YAML": str(repo / fs_yaml)})
    all_cores = os.sched_getaffinity(0)
    try:
        def up() -> bool:
            if server.poll() is not None:
                raise RuntimeError(f"{settings}: the server exited: {log_path.read_text()[-2000:]}")
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200

        wait_until(up, settings, timeout_s=90)
        if argv[:len(PIN_SERVER)] == PIN_SERVER:
            os.sched_setaffinity(0, {0})
        requests, measured = bodies(drivers), {}
        first = Client(port)
        started = time.perf_counter()
        first.read(requests["service 1"])
        measured["first"] = ((time.perf_counter() - started) * 1000, 0.0, first.errors)
        for case in cases:
            connection = Client(port)
            measured[case] = (*percentiles_ms(lambda: connection.read(requests[case]), repeats=repeats(case)),
                              connection.errors)
        measured["4 clients"] = concurrent_ms(port, requests["service 1"])
        return measured
    finally:
        os.sched_setaffinity(0, all_cores)
        server.terminate()
        server.wait(timeout=20)
        log.close()


def describe(case: str) -> str:
    if case == "first":
        return f"{SERVICE}, 1 entity, the first request after start"
    if case == "4 clients":
        return f"{SERVICE}, 1 entity, 4 concurrent clients"
    kind, n = case.split()
    what = {"plain": "11 stored features", "held": f"{SERVICE} held by the caller",
            "service": f"{SERVICE} looked up by name"}[kind]
    return f"{what}, {n} entit{'y' if n == '1' else 'ies'}"


def median_of_rounds(rounds: list) -> tuple:
    """Each figure's median across rounds (errors: their sum)."""
    columns = list(zip(*rounds))
    return (*(statistics.median(column) for column in columns[:2]), *(sum(column) for column in columns[2:]))


def bench_serving(repo: Path, fs_yaml: str, label: str, drivers: list[int], settings: list[str],
                  rounds: int = ROUNDS) -> None:
    """The settings in interleaved rounds (one server start each), reported as medians."""
    measured_rounds = {name: [] for name in settings}
    for _ in range(rounds):
        for name in settings:
            cases = ALL_CASES if name == CHOSEN else ["plain 1", "service 1"]
            measured_rounds[name].append(serve_once(repo, fs_yaml, drivers, name, cases))
    for name, measured in measured_rounds.items():
        for case in measured[0]:
            p50, p99, errors = median_of_rounds([each[case] for each in measured])
            note = f"{p50:.2f} ms" if case == "first" else f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors"
            record("online", f"HTTP ({label}, {name}): {describe(case)}", p50 / 1000, note)


def bench_online(folder: Path) -> None:
    """The integration repo's 11 stored features and its feature service (with the on-demand
    view), 1 and 100 drivers: SDK reads from sqlite and Redis (with and without -O), and HTTP
    reads from `feast serve` with several settings."""
    import os
    import shutil

    repo = folder / "integration_feature_store"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    python = [sys.executable]
    subprocess.run([*python, "generate_data.py", "--drivers", "200"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*python, "apply.py", "--materialize"], cwd=repo, check=True, capture_output=True)
    table = pd.read_parquet(repo / "data" / "driver_trip_features.parquet")
    drivers = [int(d) for d in table.driver_id.unique()[:100]]

    def sdk_cases(fs_yaml, label):
        for flags, named in (((), "python"), (("-O",), "python -O")):
            measured = run_child("--online-child", repo, fs_yaml, json.dumps(drivers), flags=flags)
            for case, rounds in measured.items():
                p50, p99 = median_of_rounds(rounds)
                record("online", f"SDK ({label}, {named}): {describe(case)}", p50 / 1000,
                       f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
            added = statistics.median(held[0] - plain[0] for held, plain in zip(measured["held 1"], measured["plain 1"]))
            record("online", f"SDK ({label}, {named}): what the on-demand view adds, 1 entity", added / 1000,
                   f"{added:.2f} ms at p50 (held service - stored features, per round)")

    sdk_cases("feature_store.yaml", "sqlite")
    bench_serving(repo, "feature_store.yaml", "sqlite", drivers, list(SERVE_SETTINGS))

    redis_server = shutil.which("redis-server")
    if not redis_server:
        print("  online       (no redis-server installed: Redis cases left out)")
        return
    port = free_port()
    server = subprocess.Popen([redis_server, "--bind", "127.0.0.1", "--port", str(port), "--save", ""],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ["REDIS_CONNECTION_STRING"] = f"127.0.0.1:{port}"
        time.sleep(1)
        subprocess.run([*python, "apply.py", "--feature-store-yaml", "feature_store.redis.yaml", "--materialize"],
                       cwd=repo, check=True, capture_output=True)
        sdk_cases("feature_store.redis.yaml", "Redis")
        bench_serving(repo, "feature_store.redis.yaml", "Redis", drivers, [CHOSEN], rounds=1)
    finally:
        server.terminate()


# --- 4. the model ---------------------------------------------------------------------------

MODEL_ROUNDS = 3  # fresh processes per size, interleaved; the figures are medians


def model_repo(folder: Path, trips: int) -> Path:
    """A copy of the integration repo with `trips` raw trips of 500 drivers over 30 days,
    registered (its features computed and saved)."""
    import shutil

    repo = folder / f"model_{trips}" / "integration_feature_store"
    if not repo.exists():
        shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
        for command in (["generate_data.py", "--trips", str(trips), "--drivers", "500", "--days", "30"], ["apply.py"]):
            subprocess.run([sys.executable, *command], cwd=repo, check=True, capture_output=True)
    return repo


def model_child(repo: Path) -> None:
    """In a fresh process: the model's training set (the node `training_set`: every trip as of
    its request, through the feature service) and the model's fit, each timed; print both, the
    rows and the peak memory as JSON."""
    repo_ = Repo(repo)
    dr = driver.Builder().with_modules(*repo_.modules, feast_operations).with_config(repo_.config).build()
    started = time.perf_counter()
    done = dr.execute(["training_set", "model_inputs", "evaluated"], inputs={**repo_.inputs, **repo_.saved_tables_found()})
    built = time.perf_counter()
    model_module = next(m for m in repo_.modules if m.__name__ == "rating_model")
    model_module.rating_model(done["training_set"], done["model_inputs"], done["evaluated"])
    fitted = time.perf_counter()
    status = Path("/proc/self/status").read_text().splitlines()
    peak_gb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024 / 1024
    print(json.dumps({"training_set": built - started, "fit": fitted - built, "rows": len(done["training_set"]),
                      "peak_gb": peak_gb}))


def bench_model_training(folder: Path, sizes: list[int]) -> Path:
    """Training set and fit at each size, MODEL_ROUNDS interleaved fresh processes; returns the
    smallest size's repo."""
    repos = {trips: model_repo(folder, trips) for trips in sizes}
    runs = {trips: [] for trips in sizes}
    for _ in range(MODEL_ROUNDS):
        for trips, repo in repos.items():
            runs[trips].append(run_child("--model-child", repo))
    for trips, measured in runs.items():
        for step in ("training_set", "fit"):
            seconds = sorted(r[step] for r in measured)
            record("model", f"{trips:>9,} labelled trips: {'training set (the node training_set)' if step == 'training_set' else 'fit'}",
                   statistics.median(seconds), f"min {seconds[0]:.3f}, max {seconds[-1]:.3f} s ({len(seconds)} runs), "
                   f"peak {max(r['peak_gb'] for r in measured):.2f} GB, {measured[0]['rows']:,} rows")
    return repos[min(sizes)]


def predict_child(repo: Path) -> None:
    """In a fresh process: the in-process costs of one prediction, ROUNDS interleaved rounds of
    1,000: the online read through the model's feature service (held), and the prediction of one
    row by the served predictor (compiled trees) and by scikit-learn's predict. Prints each one's
    p50 and p99 per round."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    served = models.served_model(store, "trip_rating_model")
    row = {"driver_id": 1001, "requested_at": REQUESTED_AT, "requested_trip_dist": 3.0}
    online = store.get_online_features(features=served["service"], entity_rows=[row]).to_dict()
    values = models.input_row(online, served["inputs"])
    matrix = models.input_matrix(pd.DataFrame(online), served["inputs"])
    reads = {"read": lambda: store.get_online_features(features=served["service"], entity_rows=[row]),
             "predict": lambda: served["predict"](values),
             "scikit-learn": lambda: served["model"].predict(matrix)}
    result = {case: [] for case in reads}
    for _ in range(ROUNDS):
        for case, read in reads.items():
            result[case].append(percentiles_ms(read))
    print(json.dumps({**result, "kind": served["predict"].kind}))


def answered(port: int, path: str, body: bytes) -> bool:
    client = Client(port, path)
    client.read(body)
    return client.errors == 0


def bench_prediction(repo: Path) -> None:
    """POST /predict (prediction_server.py, one uvicorn worker) against `feast serve`'s read of
    the same feature service (one worker, the recommended settings), sequential and with 4
    clients, ROUNDS interleaved rounds each; and in process, the read and the model's predict."""
    import os

    subprocess.run([sys.executable, "train.py"], cwd=repo, check=True, capture_output=True)
    servers = {
        "POST /predict (prediction_server.py)": ([sys.executable, "prediction_server.py", "--port", "{port}"], "/predict",
                                                 json.dumps({"driver_id": 1001, "requested_trip_dist": 3.0,
                                                             "requested_at": "2026-03-08T00:00:00Z"}).encode()),
        "feast serve, the same service": (feast_serve("--workers", "1", *RECOMMENDED)("feature_store.yaml", "{port}"),
                                          "/get-online-features", bodies([1001])["service 1"]),
    }
    measured = {name: {"sequential": [], "4 clients": []} for name in servers}
    for _ in range(ROUNDS):
        for name, (command, path, body) in servers.items():
            port = free_port()
            log = open(repo / f"server_{port}.log", "w")
            server = subprocess.Popen([part.replace("{port}", str(port)) for part in map(str, command)], cwd=repo,
                                      stdout=log, stderr=log, env={**os.environ, **OPTIMIZED})
            try:
                wait_until(lambda: answered(port, path, body), name, timeout_s=120)
                connection = Client(port, path)
                measured[name]["sequential"].append((*percentiles_ms(lambda: connection.read(body)), connection.errors))
                measured[name]["4 clients"].append(concurrent_ms(port, body, path=path))
            finally:
                server.terminate()
                server.wait(timeout=30)
                log.close()
    for name, cases in measured.items():
        for case, rounds in cases.items():
            p50, p99, errors = median_of_rounds(rounds)
            record("model", f"{name}, 1 driver, {case}", p50 / 1000, f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors")
    in_process = run_child("--predict-child", repo, flags=("-O",))
    for case, label in (("read", "the online read through the model's service, in process"),
                        ("predict", f"the served predictor ({in_process['kind']}) on one row, in process"),
                        ("scikit-learn", "scikit-learn's predict of one row, in process")):
        p50, p99 = median_of_rounds(in_process[case])
        record("model", label, p50 / 1000, f"p50 {p50:.3f} ms, p99 {p99:.3f} ms (python -O)")
    http_p50 = median_of_rounds(measured["POST /predict (prediction_server.py)"]["sequential"])[0]
    read_p50 = median_of_rounds(in_process["read"])[0]
    record("model", "what the prediction service adds over the in-process read", (http_p50 - read_p50) / 1000,
           f"{http_p50 - read_p50:.2f} ms at p50 (goal: at most 1 ms)")


# --- 5. the stream ---------------------------------------------------------------------------

STREAM_DRIVERS, STREAM_TRIPS_PER_DAY = 500, 60_000  # the history is one day of them, the stream the next
STREAM_SECONDS = 30  # how long each rate is replayed (fewer seconds when the day runs out)
STREAM_SAMPLES_PER_SECOND = 20  # published trips whose freshness is measured
STREAM_WARM_UP = 5  # seconds of each run before the samples start
STREAM_ROUNDS = 3  # runs of each rate, interleaved; the figures are medians across them
CONSUMER_CORE, CLIENT_CORE = 1, 0


def stream_repo(folder: Path) -> tuple[Path, Path, float]:
    """A copy of the integration repo with STREAM_DRIVERS drivers and two days of trips, the
    first applied and materialized (timed: the batch path), the second set aside to stream; a
    copy of its data folder to start each run from; and the apply's seconds."""
    import shutil

    repo = folder / "integration_feature_store"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    # A TTL of 3 days: the replayed day's first trips are more than a day old by the time they are read.
    settings = (repo / "settings.yaml").read_text()
    (repo / "settings.yaml").write_text(settings.replace("driver_trip_stats_ttl: 1 day", "driver_trip_stats_ttl: 3 days"))
    subprocess.run([sys.executable, "generate_data.py", "--days", "2", "--stream-days", "1", "--drivers",
                    str(STREAM_DRIVERS), "--trips", str(2 * STREAM_TRIPS_PER_DAY)], cwd=repo, check=True,
                   capture_output=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "apply.py", "--materialize"], cwd=repo, check=True, capture_output=True)
    applied = time.perf_counter() - started
    saved = folder / "applied"
    shutil.copytree(repo / "data", saved)
    return repo, saved, applied


def stream_child(repo: Path, url: str, rate: float, count: int) -> None:
    """In a fresh process (python -O), on core CLIENT_CORE: start stream.py on core CONSUMER_CORE,
    replay `count` trips of the day set aside at `rate` a second, and poll get_online_features for
    the drivers of about STREAM_SAMPLES_PER_SECOND of them a second until each shows its trip's
    row (or a later one), after the first STREAM_WARM_UP seconds. Prints the freshness of each
    sample and the consumer's counts, as JSON."""
    import os

    import pyarrow.parquet as pq

    from hamilton_feast import events, redis_stream, streaming

    os.sched_setaffinity(0, {CLIENT_CORE})
    trips = pd.read_parquet(repo / "data" / "stream_trips.parquet").sort_values("event_timestamp").head(count)
    drivers, seconds = trips.driver_id.to_numpy(), trips.event_timestamp.astype("int64").to_numpy() // 10**6
    encoded = events.encode(trips, pq.read_schema(repo / "data" / "raw_trips.parquet"))
    stream = redis_stream.RedisStream(url, "raw_trips", "driver_trip_features", "raw_trips_dead_letters")
    log = open(repo / "data" / "consumer.log", "a")
    consumer = subprocess.Popen(["taskset", "-c", str(CONSUMER_CORE), sys.executable, "-O", "stream.py"], cwd=repo,
                                stdout=log, stderr=log, env={**os.environ, "STREAM_REDIS_URL": url, "NUMBA_NUM_THREADS": "1"})
    try:
        measured = _measured_stream(repo, consumer, stream, encoded, drivers, seconds, rate)
    finally:
        consumer.terminate()
        try:
            consumer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            consumer.kill()
        log.close()
    print(json.dumps({**measured, "counts": json.loads((repo / streaming.STATUS).read_text())["counts"]}))


def _measured_stream(repo, consumer, stream, encoded, drivers, seconds, rate) -> dict:
    """The replay and the probing of stream_child, with the consumer started."""
    import collections
    import threading

    from hamilton_feast import streaming
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    status = repo / streaming.STATUS
    wait_until(status.exists, "stream.py started", timeout_s=120, process=consumer)
    every = max(1, round(rate / STREAM_SAMPLES_PER_SECOND))
    outstanding, published, lock = collections.deque(), [0], threading.Lock()

    warm_up = rate * STREAM_WARM_UP  # trips published before the samples start

    def on_published(ids, at):
        with lock:
            for i in range(published[0], published[0] + len(ids)):
                if i % every == 0 and i >= warm_up:
                    outstanding.append((int(drivers[i]), int(seconds[i]), at))
            published[0] += len(ids)

    producer = threading.Thread(target=lambda: stream.replay(encoded, rate, on_published))
    producer.start()
    freshness, feature = [], ["driver_trip_stats:driver_trips_24h"]
    deadline = None
    while True:
        if deadline is None and not producer.is_alive():
            deadline = time.monotonic() + 30  # time for the last trips to show
        if deadline is not None and (not outstanding or time.monotonic() >= deadline):
            break
        with lock:
            waiting = list(outstanding)
        if not waiting:
            time.sleep(0.002)
            continue
        probed = sorted({driver for driver, _, _ in waiting})[:16]
        answer = store.get_online_features(features=feature, entity_rows=[{"driver_id": d} for d in probed]
                                           ).to_dict(include_event_timestamps=True)
        seen, now = dict(zip(answer["driver_id"], answer["driver_trips_24h__ts"])), time.monotonic()
        with lock:
            for sample in list(outstanding):
                driver, second, at = sample
                if driver in seen and (seen[driver] or 0) >= second:
                    freshness.append(now - at)
                    outstanding.remove(sample)
    return {"freshness": freshness, "never_seen": len(outstanding)}


def batch_timings(history_rows: list[int], batch: int) -> list[tuple[int, float, float]]:
    """The repo's DAG on a micro-batch of the last `batch` trips of a day alone, and padded with
    the day's other trips (its 24 h of history), for days of each number of trips."""
    from hamilton_feast import padding

    dag = driver.Builder().with_modules(*INTEGRATION.modules, INTEGRATION.table_nodes).build()
    measured = []
    for rows in history_rows:
        day = generate_data.raw_trips(END, days=1, trips=rows + batch, drivers=STREAM_DRIVERS).to_pandas()
        history, trips = day.head(rows), day.tail(batch).reset_index(drop=True)
        padded, own = padding.padded(history, trips, "event_timestamp", pd.Timedelta(days=1))
        alone_times, padded_times = [], []
        for _ in range(10):  # interleaved, so that a slow moment of the machine hits both alike
            alone_times.append(median_time(lambda: padding.computed(
                dag, "driver_trip_features", "raw_trips", trips, np.ones(len(trips), bool), "event_timestamp"), 1))
            padded_times.append(median_time(lambda: padding.computed(
                dag, "driver_trip_features", "raw_trips", padded, own, "event_timestamp"), 1))
        # The first of each warms up (numba's threads, pandas' caches); medians of the 9 after.
        measured.append((len(padded) - batch, statistics.median(alone_times[1:]), statistics.median(padded_times[1:])))
    return measured


def bench_stream(folder: Path, rates: list[float]) -> None:
    import os
    import shutil

    redis_server = shutil.which("redis-server")
    if not redis_server or not shutil.which("taskset"):
        print("  stream       (no redis-server or taskset installed: left out)")
        return
    repo, saved, applied = stream_repo(folder)
    record("stream", f"batch path: apply.py --materialize, {STREAM_TRIPS_PER_DAY:,} trips of one day", applied,
           "features are as fresh as the last run: its interval plus this")
    for rows, alone, padded in batch_timings([1_400, STREAM_TRIPS_PER_DAY, 500_000], 1000):
        record("stream", f"a micro-batch of 1,000 trips through the DAG, padded with {rows:,} trips (24 h)", padded,
               f"{alone * 1000:.0f} ms alone: the padding costs {(padded - alone) * 1000:.0f} ms")
    port = free_port()
    server = subprocess.Popen([redis_server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    os.sched_setaffinity(server.pid, {CLIENT_CORE})
    import redis

    wait_until(lambda: redis.Redis.from_url(url).ping(), "redis-server", timeout_s=20)
    try:
        measured = {rate: [] for rate in rates}
        for _ in range(STREAM_ROUNDS):  # interleaved, so that a busy moment of the machine hits every rate alike
            for rate in rates:
                count = min(STREAM_TRIPS_PER_DAY, int(rate * STREAM_SECONDS))
                shutil.rmtree(repo / "data")
                shutil.copytree(saved, repo / "data")
                redis.Redis.from_url(url).flushall()
                child = subprocess.run([sys.executable, "-O", __file__, "--stream-child", repo, url, str(rate),
                                        str(count)], capture_output=True, text=True)
                if child.returncode:
                    raise RuntimeError(f"the stream's run at {rate:g}/s failed:\n{child.stderr[-3000:]}")
                run = json.loads(child.stdout.strip().splitlines()[-1])
                fresh = np.array(run["freshness"]) * 1000
                counts = run["counts"]
                measured[rate].append((*np.percentile(fresh, [50, 99]), fresh.max(), run["never_seen"],
                                       counts["rows"] / max(counts["batches"], 1), counts["batch_seconds"] * 1000))
                print(f"    {rate:,.0f}/s: p50 {measured[rate][-1][0]:.0f} ms, p99 {measured[rate][-1][1]:.0f} ms, "
                      f"{counts['rows']:,} rows, {counts['refused']} refused", flush=True)
        for rate, rounds in measured.items():
            p50, p99, largest, unseen, size, seconds = (statistics.median(column) for column in zip(*rounds))
            p99s = [r[1] for r in rounds]
            record("stream", f"published -> visible online, {rate:,.0f} events/s, consumer on 1 core", p50 / 1000,
                   f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (rounds {min(p99s):.0f}-{max(p99s):.0f}), max {largest:.0f} ms; "
                   f"micro-batches of {size:.0f} trips taking {seconds:.0f} ms; {unseen:g} not seen within 30 s")
    finally:
        server.terminate()


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--online-child":
        online_child(Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--scale-child":
        scale_child(Path(sys.argv[2]), int(sys.argv[3]))
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--spark-child":
        spark_child(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "--stream-child":
        stream_child(Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
        return
    if len(sys.argv) == 3 and sys.argv[1] in ("--model-child", "--predict-child"):
        (model_child if sys.argv[1] == "--model-child" else predict_child)(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 10M trips and 1M entity rows")
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1000, 1500, 2000],
                        help="the stream's rates to replay, events a second (default: 100 1000 1500 2000)")
    parser.add_argument("--only", action="append", help="run only these sections (repeatable)",
                        choices=["transforms", "scale", "spark", "cluster", "training", "online", "model", "stream"])
    args = parser.parse_args()
    wanted = lambda section: not args.only or section in args.only

    if wanted("transforms"):
        print("1. transforms (median of 5 interleaved runs; 10M: 1 run)")
        bench_transforms(1_000_000, repeats=5)
        if args.large:
            bench_transforms(10_000_000, repeats=1)
    one_process = {}
    if wanted("scale"):
        print("1b. scale: the whole DAG per node (median of 3 runs in a fresh process per size)")
        with tempfile.TemporaryDirectory() as folder:
            one_process = bench_scale(Path(folder), [1_000_000, 10_000_000])
    if wanted("spark"):
        print("1c. Spark, local mode (needs the spark extra and Java 17; a fresh process per case)")
        with tempfile.TemporaryDirectory() as folder:
            bench_spark(Path(folder), [100_000, 1_000_000, 10_000_000], one_process)
    if wanted("cluster"):
        print("1d. Spark on a standalone cluster of two workers on this machine (a fresh process per case)")
        with tempfile.TemporaryDirectory() as folder:
            bench_cluster(Path(folder), [100_000, 1_000_000])
    if wanted("training"):
        print(f"2. training sets (median of {RUNS} interleaved fresh processes each; peak = max RSS of those)")
        with tempfile.TemporaryDirectory() as folder:
            sizes = [10_000, 100_000] + ([1_000_000] if args.large else [])
            bench_retrieval(Path(folder), sizes, file_store_sizes=[10_000], feast_sizes=[10_000, 100_000])
    if wanted("online"):
        print(f"3. online reads (1,000 sequential reads after 100 to warm up, 300 of 100 entities; medians of "
              f"{ROUNDS} interleaved rounds; p50 in the seconds column)")
        with tempfile.TemporaryDirectory() as folder:
            bench_online(Path(folder))

    if wanted("model"):
        print(f"4. the model: training set and fit ({MODEL_ROUNDS} interleaved fresh processes per size), and "
              f"predictions over HTTP ({ROUNDS} rounds)")
        with tempfile.TemporaryDirectory() as folder:
            smallest = bench_model_training(Path(folder), [100_000] + ([1_000_000] if args.large else []))
            bench_prediction(smallest)

    if wanted("stream"):
        print(f"5. the stream ({STREAM_DRIVERS} drivers, {STREAM_TRIPS_PER_DAY:,} trips a day; each rate from the same "
              f"applied day of history, replayed for up to {STREAM_SECONDS} s, {STREAM_ROUNDS} interleaved rounds; the DAG "
              f"timings medians of 9 interleaved runs)")
        with tempfile.TemporaryDirectory() as folder:
            bench_stream(Path(folder), args.rates)

    print("\n| section | case | seconds | notes |\n| --- | --- | ---: | --- |")
    for section, case, seconds, note in ROWS:
        print(f"| {section} | {case} | {seconds:.4f} | {note} |")


if __name__ == "__main__":
    main()
