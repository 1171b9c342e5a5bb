"""integration_feature_store's stream (outside its folder: these need Redis): raw trips published to
a real redis-server on 127.0.0.1, read by stream.py's consumer, computed by the repo's own DAG,
pushed through its push source. The streamed features equal a batch apply over the same trips,
a consumer killed at any moment loses and doubles nothing, bad and late trips go to the dead
letters with their reason, a Redis that restarts empty is reported, and `online --check` sees a
consumer that falls behind.

One repo copy is applied once with the history (the trips before the last day); each test starts
from a copy of that state (its data folder put back, with the same paths the registry names) and
an empty Redis database."""

import json
import random
import re
import shutil
import sys
import threading
import time
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis
from hamilton import driver
from this_repo import RAW_DATA, REPO, SMALL, VIEW

from feast import FeatureStore
from hamilton_feast import Repo, events, feast_operations, online, streaming
from hamilton_feast.redis_stream import ID_FIELD, REASON_FIELD, RedisStream
from hamilton_feast.testing import copy_repo, edit, free_port, generate_data, killed, run, start_redis, wait_until

pytestmark = pytest.mark.xdist_group("stream")  # one worker: the tests share the applied repo and Redis
STREAM_TRIPS = "data/stream_trips.parquet"
KEYS = ["driver_id", "event_timestamp", "created"]


@pytest.fixture(scope="module")
def redis_url():
    """A redis-server of this module's own, on a free port; each test empties it first."""
    port = free_port()
    server = start_redis(port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A copy of the repo with SMALL trips, the last day of them set aside to stream, applied and
    materialized with the rest; and a copy of its data folder and settings to start each test from."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("stream"))
    generate_data(repo_dir, *SMALL, "--stream-days", "1")
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    saved = tmp_path_factory.mktemp("applied") / "data"
    shutil.copytree(repo_dir / "data", saved)
    shutil.copy(repo_dir / "settings.yaml", saved.parent)
    return repo_dir, saved


@pytest.fixture
def repo(history, redis_url):
    """The applied history, as it was after apply (data folder and settings), and Redis empty."""
    repo_dir, saved = history
    shutil.rmtree(repo_dir / "data")
    shutil.copytree(saved, repo_dir / "data")
    shutil.copy(saved.parent / "settings.yaml", repo_dir)
    redis.Redis.from_url(redis_url).flushall()
    return repo_dir


@pytest.fixture(scope="module")
def batch(history, tmp_path_factory):
    """The batch answer: a copy applied and materialized over the history and the streamed day."""
    repo_dir, saved = history
    batch_dir = copy_repo(REPO, tmp_path_factory.mktemp("batch"))
    (batch_dir / "data").mkdir()
    trips = pd.concat([pd.read_parquet(saved / "raw_trips.parquet"), pd.read_parquet(saved / "stream_trips.parquet")])
    trips.to_parquet(batch_dir / RAW_DATA, index=False)
    run([sys.executable, "apply.py", "--materialize"], cwd=batch_dir)
    return batch_dir


def stream_of(repo_dir, url) -> RedisStream:
    names = Repo(repo_dir).stream_settings()
    return RedisStream(url, names["name"], names["group"], names["dead_letters"])


def publish_stream_trips(repo_dir, url) -> list[str]:
    """The day set aside, published in event-time order; their ids."""
    trips = pd.read_parquet(repo_dir / STREAM_TRIPS)
    return stream_of(repo_dir, url).publish(events.encode(trips, pq.read_schema(repo_dir / RAW_DATA)))


def consume(repo_dir, url, source=None, accept_loss=False, until_idle=True, stop=None) -> streaming.Counts:
    """stream.py --until-idle, in this process (the driver as stream.py builds it); with
    `source`, reading through it instead (it wraps the stream)."""
    repo = Repo(repo_dir)
    dag = driver.Builder().with_modules(*repo.modules, repo.table_nodes).with_config(repo.hamilton_config).build()
    if source is None:
        flags = [*(["--until-idle"] if until_idle else []), *(["--accept-loss"] if accept_loss else [])]
        return streaming.run(repo, dag, streaming.arguments("stream.py", ["--redis", url, *flags]), stop=stop)
    source.open()
    store = feast_operations.feature_store(str(repo_dir), "feature_store.yaml")
    micro = streaming.MicroBatches(repo, dag, store)
    return streaming.consume(micro, source, repo.stream_settings(), until_idle=True)


def sorted_table(repo_dir) -> pd.DataFrame:
    table = pd.read_parquet(repo_dir / VIEW.table)
    return table.sort_values(KEYS, kind="stable").reset_index(drop=True)


def assert_same_rows(streamed: pd.DataFrame, batch: pd.DataFrame):
    """Counts, ranks, calendar features and times exactly; means within 1e-9 relative."""
    assert list(streamed.columns) == list(batch.columns) and len(streamed) == len(batch)
    for column in batch.columns:
        if column.startswith("driver_trip_dist_mean"):
            np.testing.assert_allclose(streamed[column], batch[column], rtol=1e-9, atol=0, err_msg=column)
        else:
            np.testing.assert_array_equal(streamed[column].to_numpy(), batch[column].to_numpy(), column)


def online_rows(repo_dir, drivers) -> pd.DataFrame:
    answer = FeatureStore(repo_path=str(repo_dir)).get_online_features(
        features=[f"{VIEW.name}:{f}" for f in VIEW.fields], entity_rows=[{"driver_id": d} for d in drivers],
    ).to_dict(include_event_timestamps=True)
    return pd.DataFrame(answer)


def assert_online_equals_batch(repo_dir, batch_dir):
    drivers = sorted(int(d) for d in pd.read_parquet(batch_dir / RAW_DATA).driver_id.unique())
    streamed, loaded = online_rows(repo_dir, drivers), online_rows(batch_dir, drivers)
    assert loaded["driver_trips_24h"].notna().sum() >= len(drivers) // 2, "the batch loaded too few drivers to compare"
    served = streamed["driver_trips_24h"].notna()
    assert (served == loaded["driver_trips_24h"].notna()).all()
    for column in loaded.columns:
        if column.startswith("driver_trip_dist_mean"):
            np.testing.assert_allclose(streamed[column].astype(float), loaded[column].astype(float), rtol=1e-9,
                                       equal_nan=True, err_msg=column)
        elif column.endswith("__ts"):  # a row outside the TTL carries its time in one store and none in the other
            assert streamed.loc[served, column].tolist() == loaded.loc[served, column].tolist(), column
        else:
            assert streamed[column].tolist() == loaded[column].tolist(), column


def assert_each_streamed_row_once(repo_dir):
    streamed = pd.read_parquet(repo_dir / STREAM_TRIPS)
    table = pd.read_parquet(repo_dir / VIEW.table)
    assert not table.duplicated(KEYS).any(), "a row is in the offline store twice"
    assert len(table[table.event_timestamp >= streamed.event_timestamp.min()]) == len(streamed)


def test_streamed_features_equal_a_batch_apply_over_the_same_trips(repo, redis_url, batch):
    published = publish_stream_trips(repo, redis_url)
    counts = consume(repo, redis_url)
    assert counts.read == counts.rows == counts.flushed == len(published) > 500
    assert counts.refused == counts.late == counts.repeats == 0
    raw = pd.read_parquet(repo / RAW_DATA).sort_values(KEYS).reset_index(drop=True)
    pd.testing.assert_frame_equal(raw, pd.read_parquet(batch / RAW_DATA).sort_values(KEYS).reset_index(drop=True))
    assert_same_rows(sorted_table(repo), sorted_table(batch))
    assert_each_streamed_row_once(repo)
    assert_online_equals_batch(repo, batch)
    pending = stream_of(repo, redis_url).client.xpending("raw_trips", "driver_trip_features")
    assert pending["pending"] == 0, "every event is acknowledged"


def test_a_consumer_killed_at_any_moment_loses_and_doubles_nothing(repo, redis_url, batch, tmp_path):
    """stream.py SIGKILLed mid-batch (rows computed, not yet pushed), between its two writes (the
    raw data written, the offline store not), after them (not yet acknowledged), and at a random
    moment; then run to the end. Micro-batches of 100 trips, each written at once.
    (benchmarks/faults.py --stream kills it many more times.)"""
    edit(repo / "settings.yaml", "batch_events: 1000", "batch_events: 100")
    edit(repo / "settings.yaml", "offline_every: 30 seconds", "offline_every: 0 seconds")
    publish_stream_trips(repo, redis_url)
    status, log = repo / streaming.STATUS, tmp_path / "consumer.log"
    consumer = [sys.executable, "stream.py"]
    environment = {"STREAM_REDIS_URL": redis_url}
    kills = []
    for moment in ["computed", "raw", "offline"]:
        marker = repo / streaming.STATUS.parent / f"paused-{moment}"
        kills.append(killed(consumer, repo, lambda _, m=marker: m.exists() and m.name, log=log,
                            env={**environment, streaming.PAUSE_AT: moment}))
        marker.unlink()
    started, delay = time.time(), random.Random(25).uniform(0.0, 1.0)

    def at_random(_):  # once the consumer has started reading (its status written), after a delay
        begun = json.loads(status.read_text())["started"] if status.exists() else "1970-01-01T00:00Z"
        return pd.Timestamp(begun).timestamp() > started and time.time() - pd.Timestamp(begun).timestamp() > delay \
            and "random"

    kills.append(killed(consumer, repo, at_random, env=environment, log=log))
    assert kills == ["paused-computed", "paused-raw", "paused-offline", "random"], log.read_text()
    consume(repo, redis_url)
    assert_same_rows(sorted_table(repo), sorted_table(batch))
    assert_each_streamed_row_once(repo)
    assert_online_equals_batch(repo, batch)
    stream = stream_of(repo, redis_url)
    assert stream.client.xpending("raw_trips", "driver_trip_features")["pending"] == 0
    assert stream.client.xlen("raw_trips_dead_letters") == 0


def live_trip(at: pd.Timestamp, driver_id: int, trip_dist: str = "5.25", **fields) -> dict:
    """A trip event ending at `at`, as the trip system publishes it."""
    event = {"requested_at": (at - pd.Timedelta(minutes=12)).isoformat(), "event_timestamp": at.isoformat(),
             "created": (at + pd.Timedelta(seconds=20)).isoformat(), "driver_id": str(driver_id), "rider_id": "77",
             "trip_dist": trip_dist, "rider_rating": "4"}
    return {**event, **fields}


def dead_letters(stream: RedisStream) -> dict[str, str]:
    """{id of the refused event: reason}."""
    return {fields[ID_FIELD]: fields[REASON_FIELD] for _, fields in stream.client.xrange(stream.dead_letters)}


def batch_rows_of(repo_dir) -> pd.DataFrame:
    """The saved table computed in one go from the repo's raw data as it is now (what apply.py saves)."""
    repo = Repo(repo_dir)
    dag = driver.Builder().with_modules(*repo.modules, repo.table_nodes).with_config(repo.hamilton_config).build()
    table = dag.execute(["driver_trip_features"], inputs=repo.inputs)["driver_trip_features"]
    return table.sort_values(KEYS, kind="stable").reset_index(drop=True)


def test_malformed_unknown_and_refused_trips_go_to_the_dead_letters_and_the_rest_of_the_batch_proceeds(repo, redis_url):
    stream = stream_of(repo, redis_url)
    now = pd.Timestamp.now(tz="UTC").floor("us")
    latest = pd.read_parquet(repo / RAW_DATA).event_timestamp.max()
    second = pd.Timedelta(seconds=1)
    published = dict(zip(["good", "missing field", "wrong type", "sub-microsecond time", "unknown driver",
                          "impossible distance", "late", "good too", "good, again", "conflicting"], stream.publish([
        live_trip(now - 9 * second, 1001),
        {k: v for k, v in live_trip(now - 8 * second, 1002).items() if k != "rider_id"},
        live_trip(now - 7 * second, 1003, trip_dist="far"),
        live_trip(now - 6 * second, 1004, event_timestamp=(now - 6 * second).isoformat()[:-6] + "789+00:00"),
        live_trip(now - 5 * second, 424242),
        live_trip(now - 4 * second, 1005, trip_dist="50000.0"),  # a number, but no trip is that long
        live_trip(latest - pd.Timedelta(minutes=1), 1006),
        live_trip(now - 3 * second, 1007),
        live_trip(now - 9 * second, 1001),  # published twice
        live_trip(now - 3 * second, 1007, trip_dist="6.5"),  # the same keys, another distance
    ])))
    counts = consume(repo, redis_url)
    assert (counts.read, counts.rows, counts.refused, counts.late, counts.repeats) == (10, 2, 7, 1, 1)
    reasons = dead_letters(stream)
    assert set(reasons) == {published[k] for k in published if not k.startswith("good")}
    assert reasons[published["conflicting"]].startswith("it conflicts with a trip of the same driver_id, event_timestamp")
    assert reasons[published["missing field"]] == "field 'rider_id' is missing; expected an integer"
    assert reasons[published["wrong type"]] == "field 'trip_dist' is 'far'; expected a finite number"
    assert "column 'event_timestamp' has 1 times with sub-microsecond digits" in reasons[published["sub-microsecond time"]]
    assert reasons[published["unknown driver"]].startswith("driver_id 424242 is unknown: the raw data has no trip of it")
    assert re.search(r"^refused by a check: \[driver_trip_dist_\w+_3h:range_validator\] validator failed",
                     reasons[published["impossible distance"]])
    assert reasons[published["late"]].startswith(f"late: its event_timestamp {latest - pd.Timedelta(minutes=1)} is 0 days 00:01:00 before")
    table = sorted_table(repo)
    for good in ("good", "good too"):
        at = pd.Timestamp(stream.client.xrange(stream.name, published[good], published[good])[0][1]["event_timestamp"])
        assert (table.event_timestamp == at).sum() == 1, f"the {good} trip's row is in the offline store once"
    assert_same_rows(table, batch_rows_of(repo))
    assert stream.client.xpending(stream.name, stream.group)["pending"] == 0


class ArrivingLate:
    """The stream, with a trip published right after the first read returns others: it arrives
    after a trip with a later event time was read."""

    def __init__(self, stream: RedisStream, trip: dict):
        self.stream, self.trip, self.published = stream, trip, None

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def read(self, count, wait):
        events = self.stream.read(count, wait)
        if events and self.published is None:
            self.published = self.stream.publish([self.trip])[0]
        return events


def test_late_trips_within_the_allowed_lateness_are_merged_in_order_and_later_ones_dead_lettered(repo, redis_url):
    edit(repo / "settings.yaml", "allowed_lateness: 0 seconds", "allowed_lateness: 3 seconds")
    stream = stream_of(repo, redis_url)
    now = pd.Timestamp.now(tz="UTC").floor("us")
    first = stream.publish([live_trip(now - pd.Timedelta(seconds=1), 1001, "7.5")])[0]
    earlier = live_trip(now - pd.Timedelta(seconds=2), 1001, "2.5")  # the same driver, an earlier trip, arriving after
    source = ArrivingLate(stream, earlier)
    counts = consume(repo, redis_url, source=source)
    assert source.published and counts.read == 2 and counts.rows == 2 and counts.refused == 0
    table = sorted_table(repo)
    assert_same_rows(table, batch_rows_of(repo))  # each row as a batch over the raw data in time order computes it
    live = table[table.event_timestamp >= now - pd.Timedelta(seconds=2)]
    assert live.trip_dist_pct_rank_3h_all_drivers.notna().all() and len(live) == 2
    assert live.driver_trips_3h.diff().iloc[-1] == 1, "the earlier trip is counted in the later one's window"

    too_late = stream.publish([live_trip(now - pd.Timedelta(seconds=30), 1002)])[0]
    counts = consume(repo, redis_url)
    assert counts.late == 1 and dead_letters(stream)[too_late].startswith("late: ")
    assert first not in dead_letters(stream)


def test_redis_restarting_empty_is_detected_and_reported(repo, tmp_path):
    port = free_port()
    server = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    stream, status = stream_of(repo, url), repo / streaming.STATUS
    now = pd.Timestamp.now(tz="UTC").floor("us")
    first = [now - pd.Timedelta(seconds=s) for s in (5, 4, 3)]
    read = stream.publish([live_trip(at, 1001) for at in first])
    stopped, stop = {}, threading.Event()

    def consumer():  # stream.py, running in a thread of this process
        try:
            consume(repo, url, until_idle=False, stop=stop)
        except Exception as error:
            stopped["error"] = error

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    try:
        wait_until(lambda: status.exists() and json.loads(status.read_text())["counts"]["flushed"] == 3,
                   "the consumer wrote the first trips", timeout_s=120)
        server.kill()
        server.wait()
        server = start_redis(port)  # at the same address, empty
        stream.publish([live_trip(now - pd.Timedelta(seconds=1), 1002)])
        thread.join(timeout=120)
        lost = (f"Redis lost stream 'raw_trips' at {url}: its consumer group 'driver_trip_features' is gone, though "
                f"this consumer had read it up to {read[-1]}")
        assert str(stopped.get("error")).startswith(lost) and "Start the consumer with --accept-loss" in str(stopped["error"])
        assert pd.read_parquet(repo / RAW_DATA).event_timestamp.isin(first).sum() == 3, "what it read is written"
        refused = run([sys.executable, "stream.py", "--until-idle"], cwd=repo, env={"STREAM_REDIS_URL": url},
                      expect_success=False)
        assert refused.returncode == 1 and refused.stderr.startswith(f"error: the stream stopped: {lost}")
        consume(repo, url, accept_loss=True)
        assert (pd.read_parquet(repo / RAW_DATA).event_timestamp == now - pd.Timedelta(seconds=1)).sum() == 1
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=10)


def test_online_check_reports_a_consumer_that_falls_behind(repo, redis_url):
    stream = stream_of(repo, redis_url)
    consume(repo, redis_url)  # the consumer ran: its status names the stream
    now = pd.Timestamp.now(tz="UTC").floor("us")
    stream.publish([live_trip(now - pd.Timedelta(seconds=s), 1001) for s in (3, 2, 1)])
    time.sleep(1.5)
    behind = run(["hamilton-feast", "online", "--check", "--max-lag", "1s"], repo, expect_success=False)
    assert behind.returncode == 2
    line = next(line for line in behind.stdout.splitlines() if line.startswith("stream 'raw_trips'"))
    assert "behind: 3 events not yet processed, the oldest received 0:00:" in line
    assert line.endswith("is stream.py running?")
    consume(repo, redis_url)
    [caught_up] = online.check_stream(repo, max_lag=timedelta(seconds=1))
    assert caught_up.problems == [] and caught_up.summary.startswith("0 events waiting")


def test_a_feature_table_replaced_mid_stream_by_an_older_apply_gets_the_streamed_rows_back(repo, redis_url):
    """A batch apply that read the raw data before the consumer added trips to it, and saved its
    table after: the consumer's next write finds the table replaced and writes those rows again."""
    stream = stream_of(repo, redis_url)
    now = pd.Timestamp.now(tz="UTC").floor("us")
    table_path = repo / VIEW.table
    applied = pd.read_parquet(table_path)  # what such an apply saves: the rows of the raw data it read
    stream.publish([live_trip(now - pd.Timedelta(seconds=s), 1001 + s) for s in (6, 5)])
    consume(repo, redis_url)
    streamed_first = pd.read_parquet(table_path).merge(applied, how="left", indicator=True).query("_merge == 'left_only'")
    assert len(streamed_first) == 2
    applied.to_parquet(table_path, index=False)  # the apply saves the table without them
    stream.publish([live_trip(now - pd.Timedelta(seconds=s), 1001 + s) for s in (2, 1)])
    consume(repo, redis_url)
    table = sorted_table(repo)
    assert not table.duplicated(KEYS).any()
    assert_same_rows(table, batch_rows_of(repo))  # all four streamed rows, once
