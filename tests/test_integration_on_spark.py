"""integration_feature_store on Spark (feature_store.spark.yaml), in local mode and on a real
standalone cluster: the DAG's transforms run by Spark equal the one-process run, checks still stop
a bad run, and Feast's Spark store and engine serve the same values as the local configuration;
on the cluster, set up as docs/scale.md says, a wrong Python or a folder an executor does not see
is one line before the job starts. `pytest -k test_spark` selects these; they need the `spark`
extra and Java 17, and fail (not skip) without them."""

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hamilton import driver
from hamilton.data_quality.base import DataValidationError
from this_repo import PROJECT, RAW_DATA, REPO, SMALL, VIEW

from feast import FeatureStore
from hamilton_feast import Repo, feast_operations, spark, streaming, training_sets
from hamilton_feast.testing import copy_repo, generate_data, registry_objects, run, spark_cluster, wait_until

pytestmark = pytest.mark.xdist_group("spark")  # one worker, one Spark session
SPARK_YAML = "feature_store.spark.yaml"
SPARK_TABLE = "data/spark/driver_trip_features"


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """One copy with 20,000 trips over 14 days (several ranges of 4 days), applied and
    materialized twice: in one process, and with the Spark configuration. The raw times are
    pandas' default unit, nanoseconds, in New York time, which Spark reads only as numbers."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("spark"))
    generate_data(repo_dir, "--trips", "20000", "--drivers", "30")
    raw = pd.read_parquet(repo_dir / RAW_DATA)
    nanoseconds = {c: raw[c].dt.tz_convert("America/New_York").dt.as_unit("ns") for c in ("event_timestamp", "created")}
    raw.assign(**nanoseconds).to_parquet(repo_dir / RAW_DATA)
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    run([sys.executable, "apply.py", "--feature-store-yaml", SPARK_YAML, "--materialize"], cwd=repo_dir)
    return repo_dir


def spark_store(repo_dir) -> FeatureStore:
    """The Spark configuration's store, its session started as apply.py starts it."""
    store = FeatureStore(repo_path=str(repo_dir), fs_yaml_file=repo_dir / SPARK_YAML)
    spark.session(store)
    return store


def same_rows(one: pd.DataFrame, other: pd.DataFrame, order) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (one.sort_values(order, kind="stable").reset_index(drop=True),
            other.sort_values(order, kind="stable").reset_index(drop=True))


def assert_same_table(local: pd.DataFrame, on_spark: pd.DataFrame) -> None:
    """The Spark table holds the one-process table's rows: counts, ranks and calendar features
    exactly, means within 1e-9 relative."""
    assert list(on_spark.columns) == list(local.columns) and len(on_spark) == len(local) == 20000
    assert str(on_spark.event_timestamp.dtype).endswith("UTC]"), "times come back in UTC"
    on_spark = on_spark.astype({"event_timestamp": local.event_timestamp.dtype, "created": local.created.dtype})
    order = ["event_timestamp", "created", "driver_id", "trip_dist_pct_rank_3h_all_drivers"]
    local, on_spark = same_rows(local, on_spark, order)
    largest = 0.0
    for column in local.columns:
        if pd.api.types.is_float_dtype(local[column]):
            np.testing.assert_allclose(on_spark[column], local[column], rtol=1e-9, atol=0, err_msg=column)
            given = local[column].notna() & (local[column] != 0)
            largest = max(largest, ((on_spark[column] - local[column])[given] / local[column][given]).abs().max())
        else:
            np.testing.assert_array_equal(on_spark[column].to_numpy(), local[column].to_numpy(), column)
    print(f"Spark's table: the one-process values, floats within {largest:.2g} relative")


def test_spark_transforms_equal_the_one_process_run(both):
    assert_same_table(pd.read_parquet(both / VIEW.table), pd.read_parquet(both / SPARK_TABLE))


def test_spark_configuration_registers_a_spark_source_by_either_path(both):
    source = FeatureStore(repo_path=str(both), fs_yaml_file=both / SPARK_YAML).get_data_source("driver_trip_features_source")
    assert type(source).__name__ == "SparkSource" and source.path == str(both / SPARK_TABLE)
    by_script = registry_objects(both, fs_yaml_file=both / SPARK_YAML)
    (both / "data/spark/registry.db").rename(both / "data/spark/registry.by_script.db")
    try:
        run(["feast", "-f", SPARK_YAML, "apply"], cwd=both)  # feature_definitions.py sees the file
        by_cli = registry_objects(both, fs_yaml_file=both / SPARK_YAML)
    finally:
        (both / "data/spark/registry.by_script.db").replace(both / "data/spark/registry.db")
    strip = lambda objects: {k: {**v, "meta": {}} for k, v in objects.items()}  # materialization intervals
    assert strip(by_cli) == strip(by_script)


def test_spark_engine_serves_what_the_local_configuration_serves(both):
    drivers = [{"driver_id": d} for d in range(1001, 1031)]
    features = [f"driver_trip_stats:{f}" for f in VIEW.fields]
    local = FeatureStore(repo_path=str(both)).get_online_features(features=features, entity_rows=drivers).to_df()
    served = spark_store(both).get_online_features(features=features, entity_rows=drivers).to_df()
    assert local["driver_trips_24h"].notna().sum() >= 10
    pd.testing.assert_frame_equal(served, local, check_exact=False, rtol=1e-9)


def entity_rows(repo_dir) -> pd.DataFrame:
    """1,525 training questions: sampled trips, a quarter of them 41 minutes early, 25 twice."""
    trips = pd.read_parquet(repo_dir / RAW_DATA).sample(1500, random_state=8)
    entity_df = trips[["driver_id", "event_timestamp", "trip_dist"]].rename(columns={"trip_dist": "requested_trip_dist"})
    entity_df = entity_df.reset_index(drop=True)
    entity_df.loc[::4, "event_timestamp"] -= pd.Timedelta(minutes=41)
    entity_df = pd.concat([entity_df, entity_df.head(25)], ignore_index=True)  # duplicate rows
    entity_df["requested_at"] = entity_df["event_timestamp"]
    return entity_df


def test_spark_training_sets_equal_duckdbs_by_feasts_store_and_the_fast_path(both):
    entity_df = entity_rows(both)
    store = spark_store(both)
    service = store.get_feature_service("trip_rating_model_v1")
    by_spark = training_sets.get_training_set_from_feast(store, entity_df, service)
    fast_on_spark_table = training_sets.get_training_set(store, entity_df, service)
    local_store = FeatureStore(repo_path=str(both))
    by_duckdb = training_sets.get_training_set_from_feast(local_store, entity_df, local_store.get_feature_service("trip_rating_model_v1"))
    assert len(by_spark) == len(by_duckdb) == 1525
    for answer in (by_spark, fast_on_spark_table):  # the caller's columns as given (Spark's times have no zone)
        pd.testing.assert_frame_equal(answer[list(entity_df.columns)], entity_df)
    assert by_duckdb["driver_trips_3h"].isna().sum() > 0, "some rows fall outside the TTL"
    for name in [f.name for p in service.feature_view_projections for f in p.features]:
        for answer in (by_spark, fast_on_spark_table):
            np.testing.assert_allclose(answer[name].astype("float64"), by_duckdb[name].astype("float64"),
                                       rtol=1e-9, equal_nan=True, err_msg=name)


def test_spark_check_output_still_stops_a_bad_run_once_and_no_task_fails(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, "--trips", "3000", "--drivers", "10", "--days", "3")
    raw = pd.read_parquet(repo_dir / RAW_DATA)
    raw.loc[1500, "trip_dist"] = 50_000.0  # a plausible dtype, an impossible distance
    raw.to_parquet(repo_dir / RAW_DATA)
    repo = Repo(repo_dir, SPARK_YAML)
    dr = driver.Builder().with_modules(*repo.modules, repo.saved_tables, feast_operations).with_config(repo.config).build()
    tracker = spark.session(FeatureStore(repo_path=str(repo_dir), fs_yaml_file=repo_dir / SPARK_YAML)).sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup())
    with pytest.raises(DataValidationError) as caught:
        dr.execute(["registered"], inputs=repo.inputs)
    failed = [re.fullmatch(r"(\[driver_trip_dist_\w+:range_validator\] validator failed\..*) \(on Spark, in the range "
                           r"of event times (.*) UTC\)", message, re.S) for message in caught.value.args[0]]
    assert all(failed) and len({m[1] for m in failed}) == len(failed), "each failed check once"
    assert len({m[2] for m in failed}) == 1, "in one range of time"
    assert not (repo_dir / "data/spark/registry.db").exists() and not (repo_dir / SPARK_TABLE).exists()
    # The range's task returned its error instead of failing: nothing for Spark to retry (four
    # times on a cluster, logging each), and the job ran to its end.
    stages = [tracker.getStageInfo(stage) for job in set(tracker.getJobIdsForGroup()) - before
              for stage in tracker.getJobInfo(job).stageIds]
    assert stages and sum(s.numCompletedTasks for s in stages) >= 1
    assert sum(s.numFailedTasks for s in stages) == 0


def test_spark_a_table_without_the_rows_its_ranges_computed_is_refused(tmp_path):
    """What the driver checks after the job: the rows written are those the ranges yielded (were
    an executor to write where this machine does not see, they would be missing)."""
    written = tmp_path / "written"
    written.mkdir()
    pd.DataFrame({"x": range(5)}).to_parquet(written / "part-0.parquet")
    day = 86_400_000_000
    spark._check_outcomes([(0, day, 5, False, []), (day, 2 * day, 0, False, []), (0, day, 5, False, [])],
                          written, "table")  # a range computed twice counts once
    with pytest.raises(ValueError, match=r"^Spark's tasks computed 8 rows of table, but 5 are in the folder written"):
        spark._check_outcomes([(0, day, 5, False, []), (day, 2 * day, 3, False, [])], written, "table")


# --- On a real standalone cluster, set up as docs/scale.md says -------------------------------------

SCALE_PAGE = REPO.parent / "docs" / "scale.md"
CLUSTER_YAML = "feature_store.cluster.yaml"
DOCS_PYTHON = "/srv/features/.venv/bin/python"  # docs/scale.md's executors' Python
TRAINING_SET = """\
import json, sys
from pathlib import Path
import pandas as pd
from feast import FeatureStore
from hamilton_feast import spark, training_sets
store = FeatureStore(repo_path=str(Path.cwd()), fs_yaml_file=Path(sys.argv[1]))
print(json.dumps(spark.check_executors(spark.session(store), {})))  # where each executor runs
service = store.get_feature_service("trip_rating_model_v1")
training_sets.get_training_set_from_feast(store, pd.read_parquet(sys.argv[2]), service).to_parquet(sys.argv[3])
"""


@pytest.fixture(scope="session")
def standalone(tmp_path_factory):
    """A Spark standalone cluster for the session: a master and two workers of one core on
    127.0.0.1, started as docs/scale.md says; its folder hidden/ is not on the second worker (as
    on a host without that mount)."""
    folder = tmp_path_factory.mktemp("spark_cluster")
    with spark_cluster(folder, hide=folder / "hidden") as cluster:
        yield cluster


def cluster_configuration(repo_dir, cluster, python: str = sys.executable, events=None) -> str:
    """Write CLUSTER_YAML in repo_dir: feature_store.spark.yaml with the offline store of
    docs/scale.md's cluster section, its host names this cluster's and its executors' Python
    `python`; with `events`, Spark's event log in that folder."""
    section = SCALE_PAGE.read_text().split("## On a cluster\n")[1].split("\n## ")[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    block = "\n".join(line.removeprefix("   ") for line in block.splitlines())
    for placeholder, here in {"spark://MASTER_HOST:7077": cluster.master, "DRIVER_HOST": "127.0.0.1",
                              DOCS_PYTHON: python}.items():
        assert placeholder in block, f"docs/scale.md's cluster settings no longer say {placeholder}"
        block = block.replace(placeholder, here)
    settings = yaml.safe_load((repo_dir / SPARK_YAML).read_text())
    settings["offline_store"] = yaml.safe_load(block)["offline_store"]
    if events is not None:
        settings["offline_store"]["spark_conf"].update({
            "spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file:{events}",
            "spark.eventLog.rolling.enabled": "false", "spark.eventLog.compress": "false"})
    (repo_dir / CLUSTER_YAML).write_text(yaml.safe_dump(settings, sort_keys=False))
    return CLUSTER_YAML


def cluster_copy(source_dir, destination) -> Path:
    """A copy of the repo's code with the raw trips of `source_dir`."""
    repo_dir = copy_repo(REPO, destination)
    (repo_dir / RAW_DATA).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source_dir / RAW_DATA, repo_dir / RAW_DATA)
    return repo_dir


def spark_events(folder) -> list[dict]:
    """The events of Spark's event log (one application) in `folder`."""
    (log,) = [p for p in folder.iterdir() if p.name.startswith("app-")]
    return [json.loads(line) for line in log.read_text().splitlines()]


def refused(repo_dir, configuration: str) -> list[str]:
    """What apply.py prints on standard error when it refuses to run: it exits 1, registers
    nothing, and prints no Java traceback."""
    result = run([sys.executable, "apply.py", "--feature-store-yaml", configuration], cwd=repo_dir,
                 expect_success=False)
    assert result.returncode == 1 and not (repo_dir / "data/spark/registry.db").exists()
    lines = [line for line in result.stderr.splitlines() if not line.startswith("WARNING: Using incubator modules")]
    assert not any(re.match(r"\s+at |\S+(Exception|Error):", line) for line in lines), result.stderr
    return lines


@pytest.fixture(scope="module")
def on_cluster(both, standalone, tmp_path_factory):
    """A copy of `both` (its code and raw trips) applied and materialized on the cluster by
    apply.py, with the configuration of docs/scale.md; Spark's event log of the run in events/."""
    folder = tmp_path_factory.mktemp("on_cluster")
    repo_dir = cluster_copy(both, folder)
    (folder / "events").mkdir()
    configuration = cluster_configuration(repo_dir, standalone, events=folder / "events")
    run([sys.executable, "apply.py", "--feature-store-yaml", configuration, "--materialize"], cwd=repo_dir)
    return repo_dir, spark_events(folder / "events")


def test_spark_on_a_cluster_equals_the_one_process_run(both, on_cluster, standalone):
    repo_dir, _ = on_cluster
    assert_same_table(pd.read_parquet(both / VIEW.table), pd.read_parquet(repo_dir / SPARK_TABLE))
    # The online values the Spark engine's executors wrote.
    drivers = [{"driver_id": d} for d in range(1001, 1031)]
    features = [f"driver_trip_stats:{f}" for f in VIEW.fields]
    local = FeatureStore(repo_path=str(both)).get_online_features(features=features, entity_rows=drivers).to_df()
    served = FeatureStore(repo_path=str(repo_dir), fs_yaml_file=repo_dir / CLUSTER_YAML).get_online_features(
        features=features, entity_rows=drivers).to_df()
    assert local["driver_trips_24h"].notna().sum() >= 10
    pd.testing.assert_frame_equal(served, local, check_exact=False, rtol=1e-9)
    # A training set from Feast's Spark store on the cluster, in a process of its own.
    entity_df = entity_rows(both)
    entity_df.to_parquet(repo_dir / "data/questions.parquet")
    (repo_dir / "data/training_set.py").write_text(TRAINING_SET)
    result = run([sys.executable, "data/training_set.py", CLUSTER_YAML, "data/questions.parquet",
                  "data/training_set.parquet"], cwd=repo_dir)
    by_cluster = pd.read_parquet(repo_dir / "data/training_set.parquet")
    local_store = FeatureStore(repo_path=str(both))
    service = local_store.get_feature_service("trip_rating_model_v1")
    by_duckdb = training_sets.get_training_set_from_feast(local_store, entity_df, service)
    assert len(by_cluster) == len(by_duckdb) == 1525
    pd.testing.assert_frame_equal(by_cluster[list(entity_df.columns)], entity_df)
    for name in [f.name for p in service.feature_view_projections for f in p.features]:
        np.testing.assert_allclose(by_cluster[name].astype("float64"), by_duckdb[name].astype("float64"),
                                   rtol=1e-9, equal_nan=True, err_msg=name)
    # Its executors: one on each worker, running the configured Python, their temporary files in
    # the folder their worker was started with.
    executors = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(executors) == 2 and {e["python"] for e in executors} == {sys.executable}
    workers = {next(w for w in standalone.workers if e["temporary"].startswith(str(w / "local"))) for e in executors}
    assert workers == set(standalone.workers)


def test_spark_on_a_cluster_runs_a_task_per_range_named_after_the_repo_and_cleans_up(both, on_cluster, standalone):
    repo_dir, events = on_cluster
    times = pd.read_parquet(both / RAW_DATA)["event_timestamp"]
    partition = pd.Timedelta(yaml.safe_load((REPO / "settings.yaml").read_text())["spark"]["time_partitions"])
    ranges = (times.max() - times.min()) // partition + 1
    assert ranges >= 3
    jobs = [e for e in events if e["Event"] == "SparkListenerJobStart"  # the shuffle, then the ranges
            and e["Properties"].get("spark.job.description", "").startswith("driver_trip_features:")]
    assert {job["Properties"]["spark.job.description"] for job in jobs} == {
        f"driver_trip_features: {ranges} ranges of event time, one task each"}
    final = max(stage for job in jobs for stage in job["Stage IDs"])
    tasks = [e for e in events if e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] == final]
    assert len(tasks) == ranges and all(t["Task End Reason"]["Reason"] == "Success" for t in tasks)
    assert len({t["Task Info"]["Executor ID"] for t in tasks}) == 2, "both workers computed ranges"
    assert len(list((repo_dir / SPARK_TABLE).glob("*.parquet"))) == ranges
    # The run is named after the repo on the master's page; its folders on the workers are removed.
    (application,) = [e["App ID"] for e in events if e["Event"] == "SparkListenerApplicationStart"]
    (name,) = [a["name"] for a in standalone.applications()["completedapps"] if a["id"] == application]
    assert name == PROJECT
    wait_until(lambda: not any((w / "work" / application).exists() for w in standalone.workers),
               "the workers' cleanup of the finished run's folders", timeout_s=60)


def test_spark_on_a_cluster_a_missing_python_is_one_line_before_the_job(both, standalone, tmp_path):
    repo_dir = cluster_copy(both, tmp_path)
    missing = str(tmp_path / "no-venv" / "bin" / "python")
    lines = refused(repo_dir, cluster_configuration(repo_dir, standalone, python=missing))
    assert lines == [f"error: nothing was registered: the executors cannot run Python {missing} (error=2, "
                     "No such file or directory); expected this project's environment at that path on every "
                     f"host (spark.pyspark.python in {CLUSTER_YAML}; see docs/scale.md)"]


def test_spark_on_a_cluster_a_folder_an_executor_does_not_see_is_one_line_before_the_job(both, standalone):
    if standalone.hidden is None:
        pytest.fail("could not start a worker without the folder (unshare -m needs root with CAP_SYS_ADMIN)")
    repo_dir = cluster_copy(both, standalone.hidden)
    (line,) = refused(repo_dir, cluster_configuration(repo_dir, standalone))
    assert re.fullmatch(
        r"error: nothing was registered: the executor on \S+ \(\S+/worker2/work/app-[\d-]+/\d+\) does not see it as "
        rf"the driver does: {re.escape(str(repo_dir / 'data'))}, where Spark reads raw_trips.parquet \(settings.yaml "
        r"inputs: raw_trips_path\); expected the same folder at the same path on every host of the cluster \(a "
        r"shared mount; see docs/scale.md\)", line), line


def test_spark_stream_foreach_batch_equals_the_one_process_answer(tmp_path):
    """stream.py --landing with the Spark configuration: raw files landing in a folder, read by
    Spark Structured Streaming's file source, a micro-batch a file, each handed in foreachBatch to
    the one-process consumer's micro-batch function (padded, the repo's DAG, the push source).
    The rows equal the one-process DAG over the same raw trips, and each streamed trip is added once."""
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL, "--stream-days", "1")
    repo = Repo(repo_dir, SPARK_YAML)
    repo.driver().execute(["registered"], inputs=repo.inputs)  # apply.py, in this process's Spark session
    trips = pd.read_parquet(repo_dir / "data/stream_trips.parquet")
    landing = repo_dir / "data/landing"
    landing.mkdir()
    for part, rows in enumerate(np.array_split(trips, 2)):
        rows.to_parquet(landing / f"part-{part}.parquet", index=False)
    dag = driver.Builder().with_modules(*repo.modules, repo.table_nodes).with_config(repo.hamilton_config).build()
    counts = streaming.run(repo, dag, streaming.arguments("stream.py", ["--feature-store-yaml", SPARK_YAML,
                                                                        "--landing", "data/landing", "--until-idle"]))
    assert counts.rows == counts.flushed == len(trips) > 500
    keys = ["driver_id", "event_timestamp", "created"]
    on_spark = pd.read_parquet(repo_dir / SPARK_TABLE)
    on_spark = on_spark.astype({"event_timestamp": "datetime64[us, UTC]", "created": "datetime64[us, UTC]"})
    [table] = repo.saved_table_names
    one_process = dag.execute([table], inputs=repo.inputs)[table]
    assert not on_spark.duplicated(keys).any() and len(on_spark) == len(one_process)
    on_spark, one_process = same_rows(on_spark[list(one_process.columns)], one_process, keys)
    for column in one_process.columns:
        if column.startswith("driver_trip_dist_mean"):
            np.testing.assert_allclose(on_spark[column], one_process[column], rtol=1e-9, atol=0, err_msg=column)
        else:
            np.testing.assert_array_equal(on_spark[column].to_numpy(), one_process[column].to_numpy(), column)
    raw = pd.read_parquet(repo_dir / RAW_DATA)
    assert len(raw) == len(one_process) and not raw.duplicated().any()
    latest = one_process.sort_values(keys[1:]).groupby("driver_id").tail(1).set_index("driver_id")
    drivers = sorted(int(d) for d in latest.index)
    served = spark_store(repo_dir).get_online_features(
        features=[f"{VIEW.name}:driver_trips_24h"], entity_rows=[{"driver_id": d} for d in drivers]).to_dict()
    fresh = latest.event_timestamp > pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)
    assert fresh.sum() >= 5
    assert served["driver_trips_24h"] == [int(latest.loc[d, "driver_trips_24h"]) if fresh[d] else None for d in drivers]
