"""Serving integration_feature_store (outside its folder: these need Redis) with the real things: a redis-server as the online store,
and `feast serve` over HTTP. Both run on 127.0.0.1 on free ports, started by the tests."""

import http.client
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import redis
from this_repo import CODE_EDIT, REPO, VIEW, applied_copy, saved_table

from feast import FeatureStore
from feast.data_source import PushMode
from hamilton_feast.testing import copy_repo, edit, feature_server, free_port, generate_data, run, start_redis

REDIS_YAML = "feature_store.redis.yaml"


def test_redis_online_store_serves_materialized_refreshed_and_pushed_features(redis_server, tmp_path, monkeypatch):
    """Materialized rows; the same rows recomputed by changed code and refreshed (Feast's Redis
    store keeps a stored row unless the new one is newer: the refresh must replace it); a push."""
    host, port = redis_server.split(":")
    client = redis.Redis(host=host, port=int(port))
    client.flushall()  # the server is shared by the session: start from nothing
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir)
    monkeypatch.setenv("REDIS_CONNECTION_STRING", redis_server)
    run([sys.executable, "apply.py", "--feature-store-yaml", REDIS_YAML, "--materialize"], cwd=repo_dir,
        env={"REDIS_CONNECTION_STRING": redis_server})
    assert client.dbsize() > 0, "nothing was written to Redis"

    store = FeatureStore(repo_path=str(repo_dir), fs_yaml_file=repo_dir / REDIS_YAML)
    assert store.config.online_store.type == "redis"
    now = pd.Timestamp.now(tz="UTC")
    table = saved_table(repo_dir)
    latest = table.sort_values(["event_timestamp", "created"]).groupby("driver_id").last()
    driver_id = int(latest[latest.event_timestamp > now - pd.Timedelta(days=1)].index[0])
    request = {"driver_id": driver_id, "requested_at": now.to_pydatetime(), "requested_trip_dist": 5.0}
    service = store.get_feature_service("trip_rating_model_v1")
    served = store.get_online_features(features=service, entity_rows=[request]).to_dict()
    assert served["driver_trips_24h"] == [latest.loc[driver_id, "driver_trips_24h"]]
    assert served["month"] == [latest.loc[driver_id, "month"]]

    original = edit(repo_dir / CODE_EDIT.file, CODE_EDIT.old, CODE_EDIT.new)  # month % 12 + 1
    try:
        run(["hamilton-feast", "--feature-store-yaml", REDIS_YAML, "changes", "--refresh"], cwd=repo_dir,
            env={"REDIS_CONNECTION_STRING": redis_server})
    finally:
        (repo_dir / CODE_EDIT.file).write_text(original)
    served = store.get_online_features(features=service, entity_rows=[request]).to_dict()
    assert served["month"] == [latest.loc[driver_id, "month"] % 12 + 1], "the refresh left the old value online"

    pushed = table[table.driver_id == driver_id].tail(1).assign(
        event_timestamp=now.floor("us"), created=now.floor("us"), driver_trips_24h=4242
    )
    store.push("driver_trip_features_push_source", pushed, to=PushMode.ONLINE)
    served = store.get_online_features(features=service, entity_rows=[request]).to_dict()
    assert served["driver_trips_24h"] == [4242]


# --- the HTTP feature server ---------------------------------------------------------------


def post(base_url: str, path: str, body: dict) -> tuple[int, dict]:
    """POST a JSON body; (status, JSON answer) whatever the status."""
    request = urllib.request.Request(
        base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def answered(base_url: str, path: str, body: dict) -> dict:
    status, answer = post(base_url, path, body)
    assert status == 200, answer
    return answer


def as_columns(response: dict) -> dict:
    """The feature server's answer as {feature name: values}, like the SDK's to_dict()."""
    names = response["metadata"]["feature_names"]
    return {name: result["values"] for name, result in zip(names, response["results"])}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The integration repo, applied and materialized, served by `feast serve` on 127.0.0.1."""
    repo_dir = applied_copy(tmp_path_factory.mktemp("serve"), apply_args=["--materialize"])
    with feature_server(repo_dir) as base_url:
        yield repo_dir, base_url


DRIVERS = [1001, 1002, 1003]


def test_http_features_by_name_equal_the_sdk(served):
    repo_dir, base_url = served
    features = ["driver_trip_stats:driver_trips_24h", "driver_trip_stats:driver_trip_dist_mean_3h",
                "driver_trip_stats:is_weekend"]
    over_http = as_columns(answered(base_url, "/get-online-features",
                                {"features": features, "entities": {"driver_id": DRIVERS}}))
    sdk = FeatureStore(repo_path=str(repo_dir)).get_online_features(
        features=features, entity_rows=[{"driver_id": d} for d in DRIVERS]).to_dict()
    assert over_http["driver_id"] == DRIVERS
    for name in ["driver_trips_24h", "driver_trip_dist_mean_3h", "is_weekend"]:
        assert over_http[name] == sdk[name], name
    assert all(v is not None for v in over_http["driver_trips_24h"])


def test_http_feature_service_with_the_on_demand_feature_equals_the_sdk(served):
    repo_dir, base_url = served
    moment = pd.Timestamp("2026-03-08 13:30", tz="UTC")  # a Sunday
    distances = [2.0, 8.0, 12.5]
    over_http = as_columns(answered(base_url, "/get-online-features", {
        "feature_service": "trip_rating_model_v1",
        "entities": {"driver_id": DRIVERS, "requested_at": [int(moment.timestamp())] * 3,
                     "requested_trip_dist": distances},
    }))
    store = FeatureStore(repo_path=str(repo_dir))
    sdk = store.get_online_features(
        features=store.get_feature_service("trip_rating_model_v1"),
        entity_rows=[{"driver_id": d, "requested_at": moment.to_pydatetime(), "requested_trip_dist": x}
                     for d, x in zip(DRIVERS, distances)],
    ).to_dict()
    assert over_http["request_day_of_week"] == sdk["request_day_of_week"] == [6, 6, 6]
    assert over_http["request_is_weekend"] == [True, True, True]
    assert over_http["request_hour_of_day"] == [13, 13, 13]
    np.testing.assert_allclose(over_http["requested_dist_vs_driver_mean_3h"],
                               sdk["requested_dist_vs_driver_mean_3h"])
    assert over_http["driver_trips_24h"] == sdk["driver_trips_24h"]


def test_http_push_is_served_back(served):
    repo_dir, base_url = served
    now = pd.Timestamp.now(tz="UTC").floor("us")
    row = pd.read_parquet(repo_dir / VIEW.table).tail(1)
    row = row.assign(driver_id=1004, event_timestamp=now, created=now, driver_trips_24h=999)
    body = {col: [value.isoformat() if isinstance(value, pd.Timestamp) else
                  value.item() if hasattr(value, "item") else value]
            for col, value in row.iloc[0].items()}
    answered(base_url, "/push", {"push_source_name": "driver_trip_features_push_source", "df": body, "to": "online"})
    served = as_columns(answered(base_url, "/get-online-features", {
        "features": ["driver_trip_stats:driver_trips_24h"], "entities": {"driver_id": [1004]}}))
    assert served["driver_trips_24h"] == [999]


def test_bounded_loopback_load_completes_without_errors(served):
    """2,000 requests from 4 concurrent clients, each on its own keep-alive connection as a
    model server would hold one; prints the latency percentiles (not a target)."""
    _, base_url = served
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps({"feature_service": "trip_rating_model_v1",
                       "entities": {"driver_id": [1001], "requested_at": [1772976600],
                                    "requested_trip_dist": [5.0]}})
    latencies, errors, lock = [], [], threading.Lock()

    def client(requests: int):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        for _ in range(requests):
            started = time.perf_counter()
            try:
                connection.request("POST", "/get-online-features", body=body,
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
                assert response.status == 200 and answer["results"], answer
            except Exception as error:  # any failure counts; the test reports them all
                with lock:
                    errors.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
        connection.close()

    threads = [threading.Thread(target=client, args=(500,)) for _ in range(4)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    elapsed = time.perf_counter() - started
    assert errors == [] and len(latencies) == 2000
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    print(f"\nfeast serve, 2000 requests, 4 clients: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"{2000 / elapsed:.0f} requests/s")


# --- losing the online store --------------------------------------------------------------


def trips_24h(body: dict) -> list:
    """driver_trips_24h from a feature server's answer (its features come in any order)."""
    return body["results"][body["metadata"]["feature_names"].index("driver_trips_24h")]["values"]


def test_redis_lost_and_restarted_empty_is_detected_and_reloaded_while_serving(tmp_path):
    """Redis killed under a running feature server, then restarted empty: clear 5xx answers
    meanwhile, `online --check` exits 2 (Feast's materialize-incremental restores nothing), and
    `online --reload` brings back every entity's latest values, with the server still up."""
    port = free_port()
    redis_process = start_redis(port)
    env = {"REDIS_CONNECTION_STRING": f"127.0.0.1:{port}"}
    yaml_file = "feature_store.redis.yaml"
    check = ["hamilton-feast", "--feature-store-yaml", yaml_file, "online", "--check"]
    try:
        repo_dir = copy_repo(REPO, tmp_path)
        generate_data(repo_dir, "--trips", "5000", "--drivers", "30", "--days", "3")
        run([sys.executable, "apply.py", "--feature-store-yaml", yaml_file, "--materialize"], repo_dir, env=env)
        table = saved_table(repo_dir)
        now = pd.Timestamp.now(tz="UTC")
        latest = table[table.event_timestamp > now - pd.Timedelta(days=1)]
        latest = latest.sort_values(["event_timestamp", "created"]).groupby("driver_id").last()
        drivers = [int(d) for d in latest.index]
        request = {"features": ["driver_trip_stats:driver_trips_24h", "driver_trip_stats:driver_trip_dist_mean_3h"],
                   "entities": {"driver_id": drivers}}
        expected = latest.loc[drivers, "driver_trips_24h"].tolist()
        assert len(drivers) >= 20

        with feature_server(repo_dir, yaml_file, env=env) as base_url:
            status, body = post(base_url, "/get-online-features", request)
            assert status == 200, body
            assert trips_24h(body) == expected
            assert "ok (" in run(check, repo_dir, env=env).stdout

            redis_process.kill()
            redis_process.wait()
            for _ in range(3):  # each request fails on its own; the server stays up
                status, body = post(base_url, "/get-online-features", request)
                assert status >= 500, (status, body)
                assert "Connection" in json.dumps(body), body
            failed = run(check, repo_dir, expect_success=False, env=env)
            assert failed.returncode == 2 and "cannot read the online store" in failed.stdout

            redis_process = start_redis(port)  # back, empty
            status, body = post(base_url, "/get-online-features", request)
            assert status == 200 and trips_24h(body) == [None] * len(drivers)
            run(["feast", "--feature-store-yaml", yaml_file, "materialize-incremental", now.isoformat()],
                repo_dir, env=env)
            found = run(check, repo_dir, expect_success=False, env=env)
            assert found.returncode == 2
            empty = re.search(r"driver_trip_stats: empty: (\d+) of (\d+) entities", found.stdout)
            assert empty and empty[1] == empty[2] and int(empty[1]) >= len(drivers) - 2, found.stdout

            reloaded = run(["hamilton-feast", "--feature-store-yaml", yaml_file, "online", "--reload"], repo_dir, env=env)
            assert "Reloading driver_trip_stats" in reloaded.stdout
            assert f"driver_trip_stats: ok ({empty[1]} entities read back)" in reloaded.stdout
            status, body = post(base_url, "/get-online-features", request)
            assert status == 200 and trips_24h(body) == expected
            assert run(check, repo_dir, env=env).returncode == 0
    finally:
        redis_process.kill()
        redis_process.wait()
