"""Faults while the repo is written: a killed apply or refresh (SIGKILL at chosen moments, the
save among them), two applies at once, a corrupted registry, and a data folder that cannot be
written. Whatever happens, what Feast reads stays whole: the previous version or the new one."""

import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from trip_repo import FEATURE_TABLE, REPO, feature_table, state_hashes

from feast import FeatureStore
from hamilton_feast import atomic
from hamilton_feast.testing import (
    copy_repo, edit, feature_server, free_port, generate_data, killed, run, start_redis, wait_until,
)

REGISTRY = "data/registry.db"
VIEWS = {"driver_trip_stats"}
# Large enough that the save of the feature table takes a moment to be caught in.
TRIPS = "200000"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(repo_dir: Path) -> list[str]:
    return sorted(p.name for p in (repo_dir / "data").iterdir() if ".tmp-" in p.name)


def saving(table_or_registry: str, repo_dir: Path):
    """A kill moment: while the temporary of the table or the registry exists (mid-write)."""
    name = Path(table_or_registry).name
    return lambda _: f"writing {name}" if any(t.startswith(f".{name}.tmp-") for t in temporaries(repo_dir)) else None


def after(seconds: float):
    return lambda elapsed: f"after {seconds:.1f} s" if elapsed >= seconds else None


def assert_whole(repo_dir: Path) -> str:
    """The feature table and the registry can be read in full; return the table's digest."""
    table = pd.read_parquet(repo_dir / FEATURE_TABLE)
    assert len(table) > 0
    store = FeatureStore(repo_path=str(repo_dir))
    assert {view.name for view in store.list_feature_views()} == VIEWS
    assert {service.name for service in store.list_feature_services()} == {"trip_rating_model_v1"}
    return digest(repo_dir / FEATURE_TABLE)


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory):
    """A copy applied and materialized on TRIPS trips; then new raw trips for the next apply."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("faults"))
    generate_data(repo_dir, "--trips", TRIPS, "--drivers", "100", "--days", "7")
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    return repo_dir


def test_a_killed_apply_leaves_the_previous_table_and_registry_whole(big_repo):
    previous = assert_whole(big_repo)
    generate_data(big_repo, "--trips", TRIPS, "--drivers", "100", "--days", "7", "--seed", "7")
    apply = [sys.executable, "apply.py", "--materialize"]
    moments = [saving(FEATURE_TABLE, big_repo), saving(REGISTRY, big_repo), after(2.0), after(6.0)]
    seen, digests = [], set()
    for moment in moments:
        seen.append(killed(apply, big_repo, moment))
        digests.add(assert_whole(big_repo))
    run(apply, cwd=big_repo)  # the next run succeeds, and cleans up what the kills left
    new = assert_whole(big_repo)
    assert temporaries(big_repo) == []
    # Each kill left the previous table or the whole new one, nothing else.
    assert digests <= {previous, new} and new != previous
    assert seen[:2] == ["writing driver_trip_features.parquet", "writing registry.db"], seen


def test_a_killed_refresh_leaves_the_previous_table_whole(big_repo):
    previous = assert_whole(big_repo)
    edit(big_repo / "trip_features.py", 'return event_timestamp.dt.month.astype("int64")',
         'return (event_timestamp.dt.month % 12 + 1).astype("int64")')
    refresh = [str(Path(sys.executable).parent / "hamilton-feast"), "changes", "--refresh"]
    assert killed(refresh, big_repo, saving(FEATURE_TABLE, big_repo)) == "writing driver_trip_features.parquet"
    assert assert_whole(big_repo) == previous
    output = run(refresh, cwd=big_repo).stdout
    assert "Recomputing: saved_driver_trip_features" in output
    months = pd.read_parquet(big_repo / FEATURE_TABLE).month
    assert assert_whole(big_repo) != previous and months.between(1, 12).all()
    assert temporaries(big_repo) == []


# --- losing the online store --------------------------------------------------------------


def trips_24h(body: dict) -> list:
    """driver_trips_24h from a feature server's answer (its features come in any order)."""
    return body["results"][body["metadata"]["feature_names"].index("driver_trips_24h")]["values"]


def post(base_url: str, body: dict) -> tuple[int, dict]:
    """POST /get-online-features; (status, JSON body) whatever the status."""
    request = urllib.request.Request(base_url + "/get-online-features", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


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
        table = feature_table(repo_dir)
        now = pd.Timestamp.now(tz="UTC")
        latest = table[table.event_timestamp > now - pd.Timedelta(days=1)]
        latest = latest.sort_values(["event_timestamp", "created"]).groupby("driver_id").last()
        drivers = [int(d) for d in latest.index]
        request = {"features": ["driver_trip_stats:driver_trips_24h", "driver_trip_stats:driver_trip_dist_mean_3h"],
                   "entities": {"driver_id": drivers}}
        expected = latest.loc[drivers, "driver_trips_24h"].tolist()
        assert len(drivers) >= 20

        with feature_server(repo_dir, yaml_file, env=env) as base_url:
            status, body = post(base_url, request)
            assert status == 200, body
            assert trips_24h(body) == expected
            assert "ok (" in run(check, repo_dir, env=env).stdout

            redis_process.kill()
            redis_process.wait()
            for _ in range(3):  # each request fails on its own; the server stays up
                status, body = post(base_url, request)
                assert status >= 500, (status, body)
                assert "Connection" in json.dumps(body), body
            failed = run(check, repo_dir, expect_success=False, env=env)
            assert failed.returncode == 2 and "cannot read the online store" in failed.stdout

            redis_process = start_redis(port)  # back, empty
            status, body = post(base_url, request)
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
            status, body = post(base_url, request)
            assert status == 200 and trips_24h(body) == expected
            assert run(check, repo_dir, env=env).returncode == 0
    finally:
        redis_process.kill()
        redis_process.wait()


# --- two writers, a broken registry, a data folder that cannot be written ------------------


def test_two_applies_at_once_both_succeed_one_after_the_other(tmp_path):
    """Both runs compute at once; registering and materializing wait for the registry's lock,
    held here until both are waiting, so that they meet there every time."""
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, "--trips", "20000", "--drivers", "20", "--days", "3")
    apply = [sys.executable, "apply.py", "--materialize"]
    logs = [tmp_path / f"apply{i}.log" for i in range(2)]
    with atomic.locked(repo_dir / REGISTRY):
        processes = [subprocess.Popen(apply, cwd=repo_dir, stdout=log.open("w"), stderr=subprocess.STDOUT)
                     for log in logs]
        wait_until(lambda: all("Waiting for process" in log.read_text() for log in logs),
                   "both applies waiting for the registry", timeout_s=300)
    exit_codes = [process.wait(timeout=600) for process in processes]
    assert exit_codes == [0, 0], [log.read_text() for log in logs]
    assert_whole(repo_dir)
    assert temporaries(repo_dir) == []
    view = FeatureStore(repo_path=str(repo_dir)).get_feature_view("driver_trip_stats")
    assert view.materialization_intervals
    assert "ok (" in run(["hamilton-feast", "online", "--check"], repo_dir).stdout


def test_a_damaged_registry_is_an_error_naming_it_never_an_empty_store(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, "--trips", "2000", "--drivers", "10", "--days", "2")
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    registry = repo_dir / REGISTRY
    good = registry.read_bytes()
    damages = {"truncated": good[: len(good) // 2], "empty": b"", "overwritten": b"\x00garbage" + good[9:]}
    commands = {"apply": [sys.executable, "apply.py"], "check": ["hamilton-feast", "online", "--check"]}
    for damage, data in damages.items():
        registry.write_bytes(data)
        for command in [commands["apply"]] + ([commands["check"]] if damage == "truncated" else []):
            result = run(command, repo_dir, expect_success=False)
            assert result.returncode == 1, (damage, command, result.stdout)
            assert f"the registry {registry} is damaged" in result.stderr or \
                f"the registry {REGISTRY} is damaged" in result.stderr, (damage, result.stderr)
            assert "Traceback" not in result.stderr
        with pytest.raises(ValueError, match="is damaged"):
            FeatureStore(repo_path=str(repo_dir)).list_feature_views()
        assert registry.read_bytes() == data  # left for the operator to restore or delete
    # The documented recoveries: a copy from a backup (an older version of it) reads as before;
    # or delete it and apply again.
    registry.write_bytes(good)
    assert_whole(repo_dir)
    registry.unlink()
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    assert_whole(repo_dir)
    assert "ok (" in run(["hamilton-feast", "online", "--check"], repo_dir).stdout


def without_root_privileges() -> list[str]:
    """A command prefix that makes root obey file permissions (as every other user does)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture
def applied_small(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, "--trips", "20000", "--drivers", "20", "--days", "3")
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    generate_data(repo_dir, "--trips", "20000", "--drivers", "20", "--days", "3", "--seed", "9")
    return repo_dir


def test_a_data_folder_without_write_permission_is_a_clear_error_and_changes_nothing(applied_small):
    before = state_hashes(applied_small)
    data = applied_small / "data"
    data.chmod(0o555)
    try:
        result = run([*without_root_privileges(), sys.executable, "apply.py", "--materialize"], applied_small,
                     expect_success=False)
    finally:
        data.chmod(0o755)
    assert result.returncode == 1
    assert f"cannot write {data / 'driver_trip_features.parquet'}: Permission denied" in result.stderr
    assert "error: nothing was registered" in result.stderr and "Traceback" not in result.stderr
    assert state_hashes(applied_small) == before and temporaries(applied_small) == []


def test_no_space_for_the_table_is_a_clear_error_and_changes_nothing(applied_small):
    """The system refuses the table's bytes part-way, as a full disk does (here: a file size
    limit, RLIMIT_FSIZE, which needs no privileges; Python then gets EFBIG instead of ENOSPC)."""
    before = state_hashes(applied_small)
    limit = os.path.getsize(applied_small / FEATURE_TABLE) // 3

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, "apply.py", "--materialize"], cwd=applied_small, capture_output=True,
                            text=True, preexec_fn=limited)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot write {applied_small / FEATURE_TABLE}: " in result.stderr, result.stderr
    assert "File too large" in result.stderr
    assert "the previous version is unchanged" in result.stderr and "Traceback" not in result.stderr
    assert state_hashes(applied_small) == before and temporaries(applied_small) == []
    run([sys.executable, "apply.py", "--materialize"], cwd=applied_small)  # with room again: fine
    assert state_hashes(applied_small)[FEATURE_TABLE] != before[FEATURE_TABLE]
