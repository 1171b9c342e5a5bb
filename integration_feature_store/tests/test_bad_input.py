"""Bad input gets one error line naming the column, object or setting and what was expected,
exit code 1, and leaves the registry, the online store and the saved features exactly as they
were. The bad raw data and the broken code here are this repo's own (rewritten with the repo);
the checks hold for any."""

import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from this_repo import PROJECT, RAW_DATA, REPO, SMALL, STATE_FILES, VIEW, state_hashes

from hamilton_feast.testing import copy_repo, edit, generate_data, run

@pytest.fixture(scope="module")
def integration_repo(tmp_path_factory):
    """An integration repo copy, applied and materialized; with a pristine copy of its raw trips."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("bad_input"))
    generate_data(repo_dir, *SMALL)
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    shutil.copy(repo_dir / RAW_DATA, repo_dir / "raw_data.good")
    return repo_dir


def assert_refused(result, message: str, only_line: bool = True) -> None:
    """Exit code 1 and, on standard error, one line (the last one, under Feast's command line,
    which logs Hamilton's notices at INFO first): the outcome and the message."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or not only_line, result.stderr
    assert lines[-1].startswith("error: nothing was registered: ") and "Traceback" not in result.stderr, result.stderr
    assert message in lines[-1], result.stderr


def with_raw_trips(repo_dir, change) -> None:
    """Replace the raw trips with a changed copy of the good ones (`change` gets and returns a frame)."""
    good = pd.read_parquet(repo_dir / "raw_data.good")
    change(good).to_parquet(repo_dir / RAW_DATA)


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
    "sub-microsecond": (lambda f: f.assign(created=f.created.dt.as_unit("ns") + pd.Timedelta(1, "ns")),
                        "times with sub-microsecond digits; expected whole microseconds"),
}


@pytest.mark.parametrize("case", list(RAW_DATA_CASES))
def test_bad_raw_trips_are_refused_and_change_nothing(integration_repo, case):
    change, message = RAW_DATA_CASES[case]
    before = state_hashes(integration_repo)
    with_raw_trips(integration_repo, change)
    try:
        result = run([sys.executable, "apply.py", "--materialize"], integration_repo, expect_success=False)
    finally:
        shutil.copy(integration_repo / "raw_data.good", integration_repo / RAW_DATA)
    assert_refused(result, message)
    assert state_hashes(integration_repo) == before


def test_an_empty_raw_file_is_refused_and_changes_nothing(integration_repo):
    before = state_hashes(integration_repo)
    (integration_repo / RAW_DATA).write_bytes(b"")
    try:
        result = run([sys.executable, "apply.py"], integration_repo, expect_success=False)
    finally:
        shutil.copy(integration_repo / "raw_data.good", integration_repo / RAW_DATA)
    assert_refused(result, f"{RAW_DATA.split('/')[-1]}: cannot be read")
    assert "expected a parquet file of trips" in result.stderr
    assert state_hashes(integration_repo) == before


def test_a_failed_check_on_the_first_run_writes_nothing_at_all(tmp_path):
    """No table, no registry, no online store (the OpenLineage events record the failed run)."""
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL)
    with_raw_trips_of(repo_dir, RAW_DATA_CASES["out of range"][0])
    result = run([sys.executable, "apply.py"], cwd=repo_dir, expect_success=False)
    assert_refused(result, RAW_DATA_CASES["out of range"][1])
    assert not [name for name in STATE_FILES if (repo_dir / name).exists()]


def with_raw_trips_of(repo_dir, change) -> None:
    change(pd.read_parquet(repo_dir / RAW_DATA)).to_parquet(repo_dir / RAW_DATA)


def settings_line(repo_dir, fragment: str) -> int:
    """The line of settings.yaml where `fragment` starts."""
    text = (repo_dir / "settings.yaml").read_text()
    return text[: text.index(fragment)].count("\n") + 1


def new_feature(view: str, name: str, reads: str) -> str:
    """A feature function to append to trip_features.py."""
    return f'''

@tag(feast_view="{view}")
@check_output(data_type=np.float64, range=(0.0, 1e9), importance="fail")
def {name}({reads}: pd.Series) -> pd.Series:
    """Twice the {reads}."""
    return {reads} * 2.0
'''


APPEND = object()  # in place of the old text: append the new text to the file
# case -> (file, old text, new text, the message; a function of the repo folder where the
# message names a line of settings.yaml)
DEFINITION_CASES = {
    "unknown entity": (
        "feast_objects.py",
        '        name="driver_trip_stats",\n        entities=[driver],',
        '        name="driver_trip_stats",\n        entities=[Entity(name="rider", join_keys=["rider_id"], value_type=ValueType.INT64)],',
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
        f"the DAG defines project(s) ['another_project'], but feature_store.yaml names project {PROJECT!r}",
    ),
    "misspelled view tag": (
        "trip_features.py",
        '@tag(feast_view="driver_trip_stats")\n@check_output(data_type=np.int64, range=(1, 10_000)',
        '@tag(feast_view="driver_trip_stat")\n@check_output(data_type=np.int64, range=(1, 10_000)',
        "trip_features.driver_trips_3h is tagged @tag(feast_view='driver_trip_stat'), but the DAG defines no "
        "feature view 'driver_trip_stat'; expected one of ['driver_trip_stats']",
    ),
    "new feature, misspelled view tag": (
        "trip_features.py", APPEND, new_feature("driver_trip_stat", "trip_dist_doubled", "trip_dist"),
        "trip_features.trip_dist_doubled is tagged @tag(feast_view='driver_trip_stat'), but the DAG defines "
        "no feature view 'driver_trip_stat'",
    ),
    "new feature of a raw column not loaded": (
        "trip_features.py", APPEND, new_feature(VIEW.name, "distance_doubled", "distance_km"),
        "trip_features.distance_doubled read 'distance_km', which no function of the DAG computes and "
        "settings.yaml does not set: if it is a raw column, add it to the columns raw_data.trips extracts; "
        "if it is a setting, add it under inputs: in settings.yaml",
    ),
    "unknown setting": (
        "settings.yaml", "\nsaved_tables:", "\nsaved_table:",
        lambda repo: f"settings.yaml line {settings_line(repo, 'saved_table:')}: unknown key 'saved_table'; "
                     "expected one of ['inputs', 'modules', 'saved_tables', 'spark', 'stream', 'tag_code_versions', "
                     "'window_overlap']",
    ),
    "misspelled saved table": (
        "settings.yaml", "\n  driver_trip_features: data/", "\n  driver_trip_featurs: data/",
        lambda repo: "feast_objects.driver_trip_features_source read 'saved_driver_trip_features', where the "
                     f"table 'driver_trip_features' is saved, but settings.yaml line "
                     f"{settings_line(repo, 'saved_tables:')}: saved_tables: has no 'driver_trip_features' (it "
                     "lists: driver_trip_featurs)",
    ),
    "unknown Spark setting": (
        "settings.yaml", "time_partitions:", "time_partition:",
        lambda repo: f"settings.yaml line {settings_line(repo, 'time_partition:')}: unknown key 'time_partition' "
                     "under spark:; expected one of ['saved_tables', 'time_partitions']",
    ),
    "YAML indentation": (
        "settings.yaml", "\n  driver_trip_stats_ttl:", "\n    driver_trip_stats_ttl:",
        lambda repo: f"settings.yaml line {settings_line(repo, '    driver_trip_stats_ttl:')}: not valid YAML",
    ),
    "misspelled input": (
        "settings.yaml", "driver_trip_stats_ttl: 1 day", "driver_trip_stat_ttl: 1 day",
        lambda repo: f"settings.yaml line {settings_line(repo, '  driver_trip_stat_ttl')}: input "
                     "'driver_trip_stat_ttl' is used by no function of the DAG; expected one of: "
                     "driver_trip_stats_ttl, evaluation_days, model_name, raw_trips_path",
    ),
    "an input the repo sets": (
        "settings.yaml", "  driver_trip_stats_ttl: 1 day", "  driver_trip_stats_ttl: 1 day\n  project_name: other",
        lambda repo: f"settings.yaml line {settings_line(repo, '  project_name:')}: input 'project_name' is set by "
                     "the repo itself (from the folder and feature_store.yaml); remove it",
    ),
    "bad duration": (
        "settings.yaml", "driver_trip_stats_ttl: 1 day", "driver_trip_stats_ttl: 1 fortnight",
        lambda repo: f"settings.yaml line {settings_line(repo, '  driver_trip_stats_ttl')}: input "
                     "'driver_trip_stats_ttl' is '1 fortnight'; expected a duration such as '1 day'",
    ),
}


def edited(repo_dir, file_name: str, old, new: str) -> str:
    """Apply a case's edit; return the file's original text."""
    path = repo_dir / file_name
    if old is APPEND:
        original = path.read_text()
        path.write_text(original + new)
        return original
    return edit(path, old, new)


# Both paths read the definitions through hamilton_feast.Repo; Feast's command line for these too.
FEAST_TOO = ["misspelled view tag", "new feature of a raw column not loaded", "misspelled saved table"]


@pytest.mark.parametrize("case, command", [(case, "apply.py") for case in DEFINITION_CASES]
                         + [(case, "feast apply") for case in FEAST_TOO])
def test_broken_definitions_are_refused_and_change_nothing(integration_repo, case, command):
    file_name, old, new, message = DEFINITION_CASES[case]
    before = state_hashes(integration_repo)
    original = edited(integration_repo, file_name, old, new)
    try:
        expected = message(integration_repo) if callable(message) else message
        by_feast = command == "feast apply"
        result = run(["feast", "apply"] if by_feast else [sys.executable, "apply.py"], integration_repo,
                     expect_success=False)
    finally:
        (integration_repo / file_name).write_text(original)
    assert_refused(result, expected, only_line=not by_feast)
    assert state_hashes(integration_repo) == before


SAVED_TABLE_CASES = {
    "a new feature": (new_feature(VIEW.name, "trip_dist_doubled", "trip_dist"), None,
                      f"{VIEW.table} has no column 'trip_dist_doubled', which feature view {VIEW.name!r} declares"),
    "a retyped feature": (None, ("@check_output(data_type=np.int64, range=(0, 6)",
                                 "@check_output(data_type=np.float64, range=(0, 6)"),
                          f"{VIEW.table} holds 'day_of_week' as int64, but feature view {VIEW.name!r} declares it "
                          "Float64"),
}


@pytest.mark.parametrize("case", list(SAVED_TABLE_CASES))
@pytest.mark.parametrize("command", ["apply", "plan"])
def test_feast_refuses_views_the_saved_table_does_not_hold_and_says_what_to_run(integration_repo, case, command):
    """Plain `feast apply` reads the table apply.py saved last: code with a new or retyped
    field would register a view the table does not hold (and retrieval would fail later)."""
    appended, replaced, message = SAVED_TABLE_CASES[case]
    before = state_hashes(integration_repo)
    original = edited(integration_repo, "trip_features.py", *((APPEND, appended) if appended else replaced))
    try:
        result = run(["feast", command], integration_repo, expect_success=False)
    finally:
        (integration_repo / "trip_features.py").write_text(original)
    assert_refused(result, message, only_line=False)
    assert "the table was saved by older code. Run `python apply.py`" in result.stderr
    assert state_hashes(integration_repo) == before


def test_the_good_data_still_applies_after_all_the_bad(integration_repo):
    """The fixture's repo is intact: restoring the inputs is enough to apply again."""
    result = run([sys.executable, "apply.py"], integration_repo)
    assert f"Applying changes for project {PROJECT}" in result.stdout
