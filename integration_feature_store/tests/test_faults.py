"""Faults while the repo is written: a killed apply or refresh (SIGKILL at chosen moments, the
save among them), two applies at once, a corrupted registry, and a data folder that cannot be
written. Whatever happens, what Feast reads stays whole: the previous version or the new one."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from trip_repo import FEATURE_TABLE, REPO

from feast import FeatureStore
from hamilton_feast.testing import copy_repo, edit, generate_data, run

REGISTRY = "data/registry.db"
VIEWS = {"driver_trip_stats"}
# Large enough that the save of the feature table takes a moment to be caught in.
TRIPS = "200000"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(repo_dir: Path) -> list[str]:
    return sorted(p.name for p in (repo_dir / "data").iterdir() if ".tmp-" in p.name)


def killed(command: list[str], repo_dir: Path, when) -> str:
    """Start `command` in `repo_dir` and SIGKILL it as soon as `when(elapsed seconds)` is true;
    return what it was doing then, or "finished" if it ended first."""
    process = subprocess.Popen(command, cwd=repo_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    try:
        while process.poll() is None:
            moment = when(time.monotonic() - started)
            if moment:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return moment
            time.sleep(0.001)
        return "finished"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


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
