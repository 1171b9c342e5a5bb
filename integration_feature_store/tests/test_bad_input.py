"""Bad input gets a clear error naming the column or object and what was expected, a non-zero exit,
and leaves the registry, the online store and the saved features exactly as they were."""

import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from trip_repo import REPO, state_hashes

from hamilton_feast.testing import copy_repo, edit, generate_data, run

@pytest.fixture(scope="module")
def integration_repo(tmp_path_factory):
    """An integration repo copy, applied and materialized; with a pristine copy of its raw trips."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("bad_input"))
    generate_data(repo_dir, "--trips", "2000", "--drivers", "10", "--days", "2")
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    shutil.copy(repo_dir / "data/raw_trips.parquet", repo_dir / "raw_trips.good")
    return repo_dir


def with_raw_trips(repo_dir, change) -> None:
    """Replace the raw trips with a changed copy of the good ones (`change` gets and returns a frame)."""
    good = pd.read_parquet(repo_dir / "raw_trips.good")
    change(good).to_parquet(repo_dir / "data/raw_trips.parquet")


def set_row(column, value, row=5):
    def change(frame):
        frame = frame.copy()
        frame.loc[row, column] = value
        return frame
    return change


RAW_DATA_CASES = {
    "missing column": (lambda f: f.drop(columns=["driver_id"]),
                       "column 'driver_id' is missing; expected an integer"),
    "wrong dtype": (lambda f: f.assign(trip_dist=f.trip_dist.astype(str)),
                    "column 'trip_dist' has dtype object; expected a number"),
    "NaN": (set_row("trip_dist", np.nan), "column 'trip_dist' has 1 missing values; expected none"),
    "out of range": (set_row("trip_dist", 50_000.0),
                     "[driver_trip_dist_mean_3h:range_validator] validator failed"),
    "negative": (set_row("trip_dist", -1.0), "column 'trip_dist' has negative distances; expected >= 0"),
    "no timezone": (lambda f: f.assign(created=f.created.dt.tz_localize(None)),
                    "column 'created' has dtype datetime64[us]; expected a timezone-aware datetime (any unit and zone)"),
    "future": (set_row("event_timestamp", pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=3), row=1999),
               "column 'event_timestamp' has 1 trips in the future"),
    "no rows": (lambda f: f.iloc[:0], "it has no rows; expected at least one trip"),
}


@pytest.mark.parametrize("case", list(RAW_DATA_CASES))
def test_bad_raw_trips_are_refused_and_change_nothing(integration_repo, case):
    change, message = RAW_DATA_CASES[case]
    before = state_hashes(integration_repo)
    with_raw_trips(integration_repo, change)
    try:
        result = run([sys.executable, "apply.py", "--materialize"], integration_repo, expect_success=False)
    finally:
        shutil.copy(integration_repo / "raw_trips.good", integration_repo / "data/raw_trips.parquet")
    assert result.returncode == 1
    assert "error: nothing was registered" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert state_hashes(integration_repo) == before


def test_an_empty_raw_file_is_refused_and_changes_nothing(integration_repo):
    before = state_hashes(integration_repo)
    (integration_repo / "data/raw_trips.parquet").write_bytes(b"")
    try:
        result = run([sys.executable, "apply.py"], integration_repo, expect_success=False)
    finally:
        shutil.copy(integration_repo / "raw_trips.good", integration_repo / "data/raw_trips.parquet")
    assert "raw_trips.parquet: cannot be read" in result.stderr
    assert "expected a parquet file of trips" in result.stderr
    assert state_hashes(integration_repo) == before


DEFINITION_CASES = {
    "unknown entity": (
        "feast_objects.py",
        '        name="driver_trip_stats",\n        entities=[driver],',
        '        name="driver_trip_stats",\n        entities=[Entity(name="rider", join_keys=["rider_id"])],',
        "'driver_trip_stats' uses entity 'rider', which no node of the DAG defines; expected one of ['driver']",
    ),
    "duplicate name": (
        "feast_objects.py",
        'name="trip_request_features",',
        'name="driver_trip_stats",',
        "nodes 'driver_trip_stats' and 'trip_request_features' both define a view or service "
        "named 'driver_trip_stats'; expected each name once",
    ),
    "project mismatch": (
        "feast_objects.py",
        'Project(name=project_name,',
        'Project(name="another_project",',
        "the DAG defines project(s) ['another_project'], but feature_store.yaml names project "
        "'integration_feature_store'",
    ),
    "unknown setting": (
        "settings.yaml",
        "\nsaved_tables:",
        "\nsaved_table:",
        "settings.yaml has unknown key(s) ['saved_table']; expected ['inputs', 'modules', "
        "'saved_tables', 'spark', 'tag_code_versions']",
    ),
    "unknown Spark setting": (
        "settings.yaml",
        "time_partitions:",
        "time_partition:",
        "settings.yaml has unknown key(s) ['time_partition'] under spark:; expected "
        "['saved_tables', 'time_partitions', 'window_overlap']",
    ),
    "misspelled input": (
        "settings.yaml",
        "driver_trip_stats_ttl: 1 day",
        "driver_trip_stat_ttl: 1 day",
        "settings.yaml input 'driver_trip_stat_ttl' is used by no function of the DAG; expected one of:",
    ),
    "bad duration": (
        "settings.yaml",
        "driver_trip_stats_ttl: 1 day",
        "driver_trip_stats_ttl: 1 fortnight",
        "settings.yaml input 'driver_trip_stats_ttl' is '1 fortnight'; expected a duration such as '1 day'",
    ),
}


@pytest.mark.parametrize("case", list(DEFINITION_CASES))
def test_broken_definitions_are_refused_and_change_nothing(integration_repo, case):
    file_name, old, new, message = DEFINITION_CASES[case]
    before = state_hashes(integration_repo)
    original = edit(integration_repo / file_name, old, new)
    try:
        result = run([sys.executable, "apply.py"], integration_repo, expect_success=False)
    finally:
        (integration_repo / file_name).write_text(original)
    assert "error: nothing was registered" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert state_hashes(integration_repo) == before


def test_the_good_data_still_applies_after_all_the_bad(integration_repo):
    """The fixture's repo is intact: restoring the inputs is enough to apply again."""
    result = run([sys.executable, "apply.py"], integration_repo)
    assert "Applying changes for project integration_feature_store" in result.stdout
