"""`hamilton-feast online --check`: exit 0 when every view's online rows are there and current,
2 with a line naming the view and the problem (incomplete, behind, stale), 1 when it cannot tell."""

import sqlite3

import pandas as pd
import pytest
from this_repo import ONLINE_STORE, PROJECT, REPO, SMALL, VIEW, applied_copy

from feast import FeatureStore
from hamilton_feast.testing import copy_repo, generate_data, run

CHECK = ["hamilton-feast", "online", "--check"]


@pytest.fixture
def loaded(tmp_path):
    return applied_copy(tmp_path, *SMALL, apply_args=["--materialize"])


def check(repo_dir, *args: str, exit_code: int) -> str:
    result = run([*CHECK, *args], repo_dir, expect_success=exit_code == 0)
    assert result.returncode == exit_code, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_a_loaded_store_is_ok(loaded):
    assert f"{VIEW.name}: ok (" in check(loaded, exit_code=0)


def test_entities_missing_online_make_it_incomplete(loaded):
    """Rows deleted from the online table, as a partial loss would."""
    with sqlite3.connect(loaded / ONLINE_STORE) as connection:
        table = f"{PROJECT}_{VIEW.name}"
        keys = connection.execute(f"SELECT DISTINCT entity_key FROM {table}").fetchall()
        connection.executemany(f"DELETE FROM {table} WHERE entity_key = ?", keys[: len(keys) // 3])
    output = check(loaded, exit_code=2)
    assert f"{VIEW.name}: incomplete: " in output and "run `hamilton-feast online --reload`" in output
    run(["hamilton-feast", "online", "--reload"], loaded)
    assert "ok (" in check(loaded, exit_code=0)


def test_an_older_row_online_than_offline_is_behind(loaded):
    """Online rows older than the offline data's latest, as a store restored from an old backup."""
    store = FeatureStore(repo_path=str(loaded))
    table = pd.read_parquet(loaded / VIEW.table)
    latest = table.sort_values([VIEW.timestamp, VIEW.created]).groupby(VIEW.keys).tail(1).tail(5)
    older = latest.assign(**{VIEW.timestamp: latest[VIEW.timestamp] - pd.Timedelta(hours=1)})
    store.write_to_online_store(VIEW.name, older)
    assert f"{VIEW.name}: behind: " in check(loaded, exit_code=2)


def test_a_load_older_than_the_allowed_age_is_stale(loaded):
    output = check(loaded, "--max-age", "1s", exit_code=2)
    assert f"{VIEW.name}: stale: last loaded " in output and "more than 0:00:01 ago" in output


def test_a_repo_never_applied_cannot_be_checked(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL)
    output = check(repo_dir, exit_code=1)
    assert output.strip() == (f"error: nothing was done: project {PROJECT} has no online feature view registered: "
                              "apply the repo first")
