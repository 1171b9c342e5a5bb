"""What does my change affect? Field lineage, code fingerprints and `hamilton-feast changes`
(integration_feature_store)."""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from hamilton.graph_types import hash_source_code
from this_repo import CALENDAR_FEATURES, ON_DEMAND_VIEWS, PER_DRIVER_FEATURES, RAW_DATA, REPO, VIEW, applied_copy

import hamilton_feast
from feast import FeatureStore
from hamilton_feast import Repo, windows
from hamilton_feast.lineage import CODE_VERSIONS_TAG, FINGERPRINT_LENGTH
from hamilton_feast.testing import copy_repo, edit, run

CHANGED = 2  # hamilton-feast changes --check: changes found
ON_DEMAND_FIELDS = ON_DEMAND_VIEWS["trip_request_features"]
# The functions of hamilton_feast/windows.py each kind of trailing window runs.
PER_DRIVER_WINDOW_CODE = {
    f"hamilton_feast.windows.{name}"
    for name in ["trailing_stats", "_times_and_width", "_group_codes", "_group_windows"]
}
PCT_RANK_WINDOW_CODE = {
    f"hamilton_feast.windows.{name}"
    for name in ["trailing_pct_rank", "_times_and_width", "_window_ranks", "_fenwick_add", "_fenwick_sum"]
}


@pytest.fixture
def applied(tmp_path):
    """A fresh copy, registered and materialized by `python apply.py --materialize`."""
    return applied_copy(tmp_path, "--trips", "3000", "--drivers", "15", "--days", "3",
                        apply_args=["--materialize"])


def tool(repo_dir, *args: str, exit_code: int = 0, env: dict | None = None) -> str:
    """What `hamilton-feast ARGS` prints in the repo (with extra environment variables `env`),
    having exited `exit_code`."""
    result = run(["hamilton-feast", *args], repo_dir, expect_success=exit_code == 0, env=env)
    assert result.returncode == exit_code, result.stdout + result.stderr
    return result.stdout


def online(repo_dir, features: list[str], request: dict | None = None) -> pd.DataFrame:
    """Every driver's online values (and the on-demand ones, for the given request)."""
    store = FeatureStore(repo_path=str(repo_dir))
    drivers = pd.read_parquet(repo_dir / RAW_DATA)["driver_id"].unique()
    rows = [{"driver_id": int(d), **(request or {})} for d in sorted(drivers)]
    return store.get_online_features(features=features, entity_rows=rows).to_df()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprints(repo_dir) -> dict[str, str]:
    """Every fingerprint the repo's lineage holds, read in a fresh process from the copy."""
    script = "import json; from hamilton_feast import Repo; print(json.dumps(Repo('.').lineage.versions))"
    return json.loads(run([sys.executable, "-c", script], repo_dir).stdout.splitlines()[-1])


# --- field lineage, from the code alone ----------------------------------------------------


def test_each_stored_feature_derives_from_exactly_the_raw_columns_its_transform_reads(repo):
    expected = {
        **{field: {"event_timestamp"} for field in CALENDAR_FEATURES},
        "trip_dist_pct_rank_3h_all_drivers": {"event_timestamp", "trip_dist"},
        **{field: {"event_timestamp", "driver_id", "trip_dist"} for field in PER_DRIVER_FEATURES},
    }
    found = {
        feature.field: {column.split(".")[1] for column in feature.raw_columns}
        for feature in repo.lineage.features.values()
        if feature.view == "driver_trip_stats"
    }
    assert found == expected


def test_no_feature_derives_from_the_label_the_rider_or_the_created_time(repo):
    for column in ("raw_trips.rider_rating", "raw_trips.rider_id", "raw_trips.created"):
        assert column in repo.lineage.raw_columns.values()
        assert repo.lineage.features_fed_by({column}) == []


def test_an_on_demand_feature_derives_from_the_stored_feature_its_udf_reads(repo):
    for field in ON_DEMAND_FIELDS:
        feature = repo.lineage.features[("trip_request_features", field)]
        assert feature.source_features == ("driver_trip_stats:driver_trip_dist_mean_3h",)
        assert {"trip_request.requested_at", "trip_request.requested_trip_dist"} <= set(feature.raw_columns)
        # the transforms its UDF embeds, and not the stored-only ones
        assert {"trip_features.day_of_week", "trip_features.hour_of_day"} <= set(feature.functions)
        assert "trip_features.month" not in feature.functions


def test_a_field_derives_from_its_own_transforms_and_the_private_helpers_they_call(repo):
    mean_3h = set(repo.lineage.features[("driver_trip_stats", "driver_trip_dist_mean_3h")].functions)
    assert {
        "trip_features.driver_trip_dist_mean_3h",
        "trip_features.driver_trip_dist_3h",
        "raw_data.raw_trips",
        "raw_data._schema_problems",  # a private helper the trips node calls by name
        "raw_data.trips",
        "feast_objects.driver_trip_stats",
    } <= mean_3h
    assert not mean_3h & {"trip_features.month", "trip_features.trip_dist_pct_rank_3h_all_drivers"}
    month = set(repo.lineage.features[("driver_trip_stats", "month")].functions)
    assert "trip_features.driver_trip_dist_3h" not in month


def test_a_per_driver_field_derives_from_the_window_kernels_of_the_package(repo):
    """trip_features calls windows.trailing_stats, which calls the numba kernel _group_windows:
    both are followed, the kernel through its Python function, and fingerprinted as a helper."""
    features = repo.lineage.features
    for field in PER_DRIVER_FEATURES:
        functions = set(features[("driver_trip_stats", field)].functions)
        assert PER_DRIVER_WINDOW_CODE <= functions, field
        assert not functions & (PCT_RANK_WINDOW_CODE - PER_DRIVER_WINDOW_CODE), field
    pct_rank = set(features[("driver_trip_stats", "trip_dist_pct_rank_3h_all_drivers")].functions)
    assert PCT_RANK_WINDOW_CODE <= pct_rank  # _fenwick_sum: called from inside a kernel
    assert not pct_rank & (PER_DRIVER_WINDOW_CODE - PCT_RANK_WINDOW_CODE)
    for field in CALENDAR_FEATURES:
        functions = features[("driver_trip_stats", field)].functions
        assert not [name for name in functions if name.startswith("hamilton_feast.windows.")], field
    kernel = hash_source_code(windows._group_windows.py_func, strip=True)[:FINGERPRINT_LENGTH]
    assert repo.lineage.versions["hamilton_feast.windows._group_windows"] == kernel


def test_each_view_is_tagged_with_the_fingerprints_of_exactly_its_code(repo):
    """Written out: what each view's values derive from, the functions they call included (in
    the repo folder and in the package hamilton_feast)."""
    objects = repo.feast_objects(overrides=repo.saved_tables_as_configured())
    stored = set(json.loads(objects["driver_trip_stats"].tags[CODE_VERSIONS_TAG]))
    assert stored == {
        "raw_data.raw_trips", "raw_data._schema_problems", "raw_data._value_problems", "raw_data.trips",
        *(f"trip_features.{name}" for name in [
            *CALENDAR_FEATURES, "trip_dist_pct_rank_3h_all_drivers", *PER_DRIVER_FEATURES,
            "driver_trip_dist_3h", "driver_trip_dist_24h"]),
        *PER_DRIVER_WINDOW_CODE, *PCT_RANK_WINDOW_CODE,
        "feast_objects.driver", "feast_objects.driver_trip_features_source",
        "feast_objects.driver_trip_features_push_source", "feast_objects.driver_trip_stats",
        # the view's schema: its fields, named, typed and described by the transforms
        "hamilton_feast.objects.feature_fields", "hamilton_feast.objects._declared_dtype",
    }
    # An on-demand view's own code: its UDF, the transforms it embeds, its Feast definitions,
    # and the package's functions that type its fields and write the source Feast stores.
    on_demand = set(json.loads(objects["trip_request_features"].tags[CODE_VERSIONS_TAG]))
    assert on_demand == {
        "feast_objects._trip_request_features", "feast_objects._request_time", "feast_objects.trip_request",
        "feast_objects.trip_request_features", "trip_features.day_of_week",
        "trip_features.is_weekend", "trip_features.hour_of_day",
        "hamilton_feast.objects.udf_fields", "hamilton_feast.objects.udf_source",
        "hamilton_feast.objects._global_names",
    }
    assert "hamilton_graph_version" in objects["project"].tags


def test_a_fingerprint_follows_the_code_not_its_docstring(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    before = fingerprints(repo_dir)
    edit(repo_dir / "trip_features.py", '"""Month of the trip, UTC (January=1)."""',
         '"""Month of the trip in UTC, January being 1."""')
    edit(repo_dir / "raw_data.py", "(trips: pd.DataFrame) -> list[str]:\n    problems = []\n",
         "(trips: pd.DataFrame) -> list[str]:\n    problems = []  # column by column\n")
    assert fingerprints(repo_dir) == before
    edit(repo_dir / "trip_features.py", 'return event_timestamp.dt.month.astype("int64")',
         'return (event_timestamp.dt.month % 12 + 1).astype("int64")')
    edit(repo_dir / "raw_data.py", "is missing; expected {expected}", "is not there; expected {expected}")
    after = fingerprints(repo_dir)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"trip_features.month", "raw_data._schema_problems"}


def test_lineage_command_answers_both_directions(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)  # no data: lineage reads only the code
    table = tool(repo_dir, "lineage")
    pct_rank = "trip_dist_pct_rank_3h_all_drivers  raw_trips.event_timestamp, raw_trips.trip_dist"
    assert pct_rank in table
    reverse = tool(repo_dir, "lineage", "month", "rider_rating", "driver_trip_dist_3h")
    assert "trip_features.month feeds\n  driver_trip_stats: month (1 of 11 fields)\n" in reverse
    assert "raw_trips.rider_rating feeds no feature" in reverse
    assert f"driver_trip_stats: {', '.join(PER_DRIVER_FEATURES[:4])} (4 of 11 fields)" in reverse
    assert f"trip_request_features: {', '.join(ON_DEMAND_FIELDS)} (all 4 fields)" in reverse
    # A package function, by its name or its module's and its own.
    kernels = tool(repo_dir, "lineage", "_group_windows", "windows.trailing_pct_rank")
    assert (
        "hamilton_feast.windows._group_windows feeds\n"
        f"  driver_trip_stats: {', '.join(PER_DRIVER_FEATURES)} (6 of 11 fields)\n"
    ) in kernels
    assert (
        "hamilton_feast.windows.trailing_pct_rank feeds\n"
        "  driver_trip_stats: trip_dist_pct_rank_3h_all_drivers (1 of 11 fields)\n"
        "  services: trip_rating_model_v1\n"
    ) in kernels
    mean_3h = next(line for line in table.splitlines() if line.startswith("  driver_trip_dist_mean_3h "))
    assert mean_3h.endswith("windows._group_codes, windows._group_windows, windows._times_and_width, "
                            "windows.trailing_stats, driver_trip_dist_3h, driver_trip_dist_mean_3h")


def test_lineage_of_an_unknown_name_is_a_clear_error(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    result = run(["hamilton-feast", "lineage", "trip_distance"], repo_dir, expect_success=False)
    assert result.returncode == 1
    assert "'trip_distance' is neither a raw column nor a function" in result.stderr
    assert "trip_dist" in result.stderr and "Traceback" not in result.stderr


# --- hamilton-feast changes against a registry ----------------------------------------------


def test_unchanged_code_reports_nothing_and_passes_the_check(applied):
    output = tool(applied, "changes", "--check")
    assert "nothing changed.\n" in output and "Hamilton DAG" not in output
    assert "unchanged: driver_trip_stats, trip_rating_model_v1, trip_request_features" in output


def test_new_code_that_feeds_no_view_changes_only_the_dag_version(applied):
    (applied / "trip_features.py").write_text(
        (applied / "trip_features.py").read_text()
        + '\n\ndef trip_dist_km(trip_dist: pd.Series) -> pd.Series:\n'
        + '    """Trip distance in kilometres."""\n    return trip_dist * 1.609\n'
    )
    output = tool(applied, "changes", "--check")
    assert "nothing changed.\n(the Hamilton DAG did, " in output
    assert "in code no view derives from)" in output
    assert "trip_features.trip_dist_km feeds no feature" in tool(applied, "lineage", "trip_dist_km")


def test_before_the_first_apply_every_view_is_new(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    output = tool(repo_dir, "changes", "--check", exit_code=CHANGED)
    assert "driver_trip_stats: new" in output and "trip_request_features: new" in output
    assert "trip_rating_model_v1 (service): new" in output
    assert "Hamilton DAG" not in output  # no version was registered to compare with
    assert not (repo_dir / "data").exists(), "the check must write nothing"


def test_an_error_exits_1_with_a_clear_message(applied):
    edit(applied / "settings.yaml", "driver_trip_stats_ttl: 1 day", "driver_trip_stats_ttl: soon")
    result = run(["hamilton-feast", "changes", "--check"], applied, expect_success=False)
    assert result.returncode == 1
    assert "error: cannot tell what changed:" in result.stderr
    assert "'driver_trip_stats_ttl' is 'soon'; expected a duration" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_changed_transform_reports_and_refreshes_exactly_its_dependent_views(applied):
    table = applied / VIEW.table
    before = pd.read_parquet(table)
    edit(
        applied / "trip_features.py",
        'return event_timestamp.dt.month.astype("int64")',
        'return (event_timestamp.dt.month % 12 + 1).astype("int64")',
    )
    output = tool(applied, "changes", "--check", exit_code=CHANGED)
    assert (
        "driver_trip_stats: changed\n"
        "  code changed: trip_features.month\n"
        "  fields affected: month (1 of 11)\n"
        "trip_rating_model_v1 (service): driver_trip_stats: month\n"
        "unchanged: trip_request_features\n"
    ) in output

    output = tool(applied, "changes", "--refresh")
    assert "Recomputing: saved_driver_trip_features (for driver_trip_stats)" in output
    assert "Re-materializing driver_trip_stats" in output
    after = pd.read_parquet(table)
    assert (after["month"] == before["month"] % 12 + 1).all()
    other = [c for c in before.columns if c != "month"]
    pd.testing.assert_frame_equal(after[other], before[other])
    served = online(applied, ["driver_trip_stats:month"])
    latest = after.sort_values("event_timestamp").groupby("driver_id")["month"].last()
    assert served["month"].notna().all() and (served["month"] == served["driver_id"].map(latest)).all()
    assert "nothing changed." in tool(applied, "changes", "--check")


def test_an_edit_inside_a_private_helper_is_seen_and_refreshed(applied):
    """_schema_problems is no node: only the helper-following fingerprints see it. Everything
    stored derives from the raw trips it checks; the on-demand view's inputs with them."""
    table = applied / VIEW.table
    before = pd.read_parquet(table)
    edit(applied / "raw_data.py", "is missing; expected {expected}", "is not there; expected {expected}")
    output = tool(applied, "changes", "--check", exit_code=CHANGED)
    assert (
        "driver_trip_stats: changed\n"
        "  code changed: raw_data._schema_problems\n"
        "  fields affected: day_of_week, is_weekend, month, hour_of_day, trip_dist_pct_rank_3h_all_drivers, "
        f"{', '.join(PER_DRIVER_FEATURES)} (11 of 11)\n"
    ) in output
    # The on-demand view reads driver_trip_dist_mean_3h: its inputs changed, not its code.
    assert (
        "trip_request_features: inputs changed (driver_trip_stats:driver_trip_dist_mean_3h)\n"
        f"  fields affected: {', '.join(ON_DEMAND_FIELDS)} (4 of 4)\n"
    ) in output
    output = tool(applied, "changes", "--refresh")
    assert "Recomputing: saved_driver_trip_features (for driver_trip_stats)" in output
    pd.testing.assert_frame_equal(pd.read_parquet(table), before)  # the same data, recomputed
    assert "nothing changed." in tool(applied, "changes", "--check")


def package_copy(destination: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the package hamilton_feast in `destination`: its folder, and the environment
    that imports it instead of the installed one (writing no bytecode beside it, so an edit is
    never hidden by a cached compile)."""
    package = Path(hamilton_feast.__file__).parent
    copy = destination / package.name
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = os.pathsep.join([str(destination), os.environ.get("PYTHONPATH", "")])
    return copy, {"PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}


def test_an_edit_of_a_window_kernel_in_the_package_reports_the_per_driver_fields(tmp_path):
    """The per-driver windows run in hamilton_feast/windows.py: trip_features calls
    windows.trailing_stats, which calls the numba kernel _group_windows. An edit there is
    reported for the six per-driver fields it computes, not for the calendar ones, and for the
    on-demand view through the 3-hour mean it reads."""
    repo_dir = applied_copy(tmp_path, "--trips", "3000", "--drivers", "15", "--days", "3")
    package, env = package_copy(tmp_path / "package")
    assert "nothing changed.\n" in tool(repo_dir, "changes", "--check", env=env)  # the same code, copied
    edit(package / "windows.py", "mean[row] = window_sum[group] / window_count[group]",
         "mean[row] = window_sum[group] / (window_count[group] + 1)")
    assert (
        "driver_trip_stats: changed\n"
        "  code changed: hamilton_feast.windows._group_windows\n"
        f"  fields affected: {', '.join(PER_DRIVER_FEATURES)} (6 of 11)\n"
        "trip_request_features: inputs changed (driver_trip_stats:driver_trip_dist_mean_3h)\n"
        f"  fields affected: {', '.join(ON_DEMAND_FIELDS)} (4 of 4)\n"
        f"trip_rating_model_v1 (service): driver_trip_stats: {', '.join(PER_DRIVER_FEATURES)}; "
        f"trip_request_features: {', '.join(ON_DEMAND_FIELDS)}\n"
    ) in tool(repo_dir, "changes", "--check", exit_code=CHANGED, env=env)


def test_an_edit_of_the_rank_kernel_in_the_package_reports_the_percentile_rank_alone(tmp_path):
    """_fenwick_sum is called only from inside the numba kernel _window_ranks, which
    windows.trailing_pct_rank calls: only trip_dist_pct_rank_3h_all_drivers derives from it."""
    repo_dir = applied_copy(tmp_path, "--trips", "3000", "--drivers", "15", "--days", "3")
    package, env = package_copy(tmp_path / "package")
    edit(package / "windows.py", "        total += tree[position]\n", "        total += 2 * tree[position]\n")
    assert (
        "driver_trip_stats: changed\n"
        "  code changed: hamilton_feast.windows._fenwick_sum\n"
        "  fields affected: trip_dist_pct_rank_3h_all_drivers (1 of 11)\n"
        "trip_rating_model_v1 (service): driver_trip_stats: trip_dist_pct_rank_3h_all_drivers\n"
        "unchanged: trip_request_features\n"
    ) in tool(repo_dir, "changes", "--check", exit_code=CHANGED, env=env)


def test_a_change_to_an_embedded_transform_reaches_the_on_demand_view_too(applied):
    edit(
        applied / "trip_features.py",
        "return ((event_timestamp - _EPOCH) // _DAY + 3) % 7",
        "return ((event_timestamp - _EPOCH) // _DAY + 4) % 7",
    )
    output = tool(applied, "changes", "--check", exit_code=CHANGED)
    assert (
        "driver_trip_stats: changed\n"
        "  code changed: trip_features.day_of_week\n"
        "  fields affected: day_of_week, is_weekend (2 of 11)\n"
    ) in output
    assert (
        "trip_request_features: changed\n"
        "  code changed: trip_features.day_of_week\n"
        f"  fields affected: {', '.join(ON_DEMAND_FIELDS)} (4 of 4)\n"
        "  definition: feature_transformation.body_text\n"  # Feast sees the embedded source change
    ) in output
    assert "unchanged:" not in output


def test_a_change_inside_the_on_demand_udf_refreshes_without_recomputing(applied):
    table = applied / VIEW.table
    table_before = sha256(table)
    edit(
        applied / "feast_objects.py",
        "else distance / mean",
        "else distance - mean",
    )
    output = tool(applied, "changes", "--refresh")
    assert (
        "trip_request_features: changed\n"
        "  code changed: feast_objects._trip_request_features\n"
    ) in output
    assert "unchanged: driver_trip_stats" in output
    assert "Recomputing: nothing (for no view)" in output
    assert "Re-materializing" not in output
    assert "Registered, nothing to materialize: trip_request_features" in output
    assert sha256(table) == table_before
    request = {"requested_at": pd.Timestamp.now(tz="UTC"), "requested_trip_dist": 10.0}
    served = online(
        applied,
        ["driver_trip_stats:driver_trip_dist_mean_3h", "trip_request_features:requested_dist_vs_driver_mean_3h"],
        request,
    ).dropna(subset=["driver_trip_dist_mean_3h"])
    assert len(served) > 0
    difference = 10.0 - served["driver_trip_dist_mean_3h"]
    assert (served["requested_dist_vs_driver_mean_3h"] - difference).abs().max() < 1e-9


def test_renaming_a_feature_is_one_edit_and_is_reported_as_a_schema_change(applied):
    edit(applied / "trip_features.py", "def month(", "def month_of_year(")
    output = tool(applied, "changes", "--check", exit_code=CHANGED)
    assert "  code changed: trip_features.month, trip_features.month_of_year\n" in output
    assert "  fields affected: month_of_year (1 of 11)\n" in output
    assert "  schema: + month_of_year (Int64); - month (Int64)\n" in output
    output = tool(applied, "changes", "--refresh")
    assert "month_of_year" in pd.read_parquet(applied / VIEW.table).columns
    assert "nothing changed." in tool(applied, "changes", "--check")


def test_a_retyped_feature_is_reported_as_a_schema_change(applied):
    edit(applied / "trip_features.py",
         '@check_output(data_type=np.int64, range=(1, 10_000), importance="fail")\n'
         "def driver_trips_3h(",
         '@check_output(data_type=np.float64, range=(1, 10_000), importance="fail")\n'
         "def driver_trips_3h(")
    edit(applied / "trip_features.py", 'return driver_trip_dist_3h["count"].astype("int64")',
         'return driver_trip_dist_3h["count"].astype("float64")')
    output = tool(applied, "changes", "--check", exit_code=CHANGED)
    assert "  code changed: trip_features.driver_trips_3h\n" in output
    assert "  schema: ~ driver_trips_3h (Int64 -> Float64)\n" in output


def test_a_ttl_change_is_a_definition_change_and_recomputes_nothing(applied):
    table_before = sha256(applied / VIEW.table)
    edit(applied / "settings.yaml", "driver_trip_stats_ttl: 1 day", "driver_trip_stats_ttl: 2 days")
    output = tool(applied, "changes", "--check", exit_code=CHANGED)
    assert "driver_trip_stats: changed\n  definition: ttl\n" in output
    assert "code changed" not in output
    output = tool(applied, "changes", "--refresh")
    assert "Recomputing: nothing (for no view)" in output
    assert sha256(applied / VIEW.table) == table_before
    assert FeatureStore(repo_path=str(applied)).get_feature_view("driver_trip_stats").ttl == pd.Timedelta(days=2)


def test_a_docstring_change_is_a_description_change_and_recomputes_nothing(applied):
    table = applied / VIEW.table
    table_before = sha256(table)
    edit(
        applied / "trip_features.py",
        '"""Month of the trip, UTC (January=1)."""',
        '"""Month of the trip in UTC, January=1."""',
    )
    output = tool(applied, "changes", "--refresh")
    assert "driver_trip_stats: changed\n  definition: descriptions of month\n" in output
    assert "code changed" not in output
    assert "Recomputing: nothing (for no view)" in output
    assert sha256(table) == table_before
    assert "nothing changed." in tool(applied, "changes", "--check")


def test_a_repo_that_does_not_tag_its_views_says_so(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    (repo_dir / "settings.yaml").write_text((repo_dir / "settings.yaml").read_text() + "tag_code_versions: false\n")
    assert Repo(repo_dir).lineage is None
    result = run(["hamilton-feast", "changes"], repo_dir, expect_success=False)
    assert "does not trace its views (tag_code_versions: false in settings.yaml)" in result.stderr
