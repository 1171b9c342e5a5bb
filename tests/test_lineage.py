"""What does my change affect? Field lineage, code fingerprints, changes.py and OpenLineage events
(integration_feature_store)."""

import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from conftest import (
    CALENDAR_FEATURES,
    PER_DRIVER_FEATURES,
    ROOT,
    copy_repo,
    edit,
    generate_data,
    repo_modules,
    run,
)
from feast import FeatureStore
from feast.openlineage.processor import OpenLineageProcessor
from feast.openlineage.store import OpenLineageStore

NAME = "integration_feature_store"
REPO = ROOT / NAME
ON_DEMAND = [
    "request_day_of_week",
    "request_is_weekend",
    "request_hour_of_day",
    "requested_dist_vs_driver_mean_3h",
]
CHANGED = 2  # changes.py --check: changes found


@pytest.fixture(scope="module")
def code():
    """The lineage of the repo's own code, and its modules."""
    with repo_modules(REPO) as import_module:
        dataflow = import_module("dataflow")
        yield dataflow.current_lineage(), import_module


@pytest.fixture
def applied(tmp_path):
    """A fresh copy, registered and materialized by `python apply.py --materialize`."""
    repo_dir = copy_repo(NAME, tmp_path)
    generate_data(repo_dir, "--trips", "3000", "--drivers", "15", "--days", "3")
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    return repo_dir


def changes(repo_dir, *args: str, exit_code: int = 0) -> str:
    result = run([sys.executable, "changes.py", *args], cwd=repo_dir, expect_success=exit_code == 0)
    assert result.returncode == exit_code, result.stdout + result.stderr
    return result.stdout


def online(repo_dir, features: list[str], request: dict | None = None) -> pd.DataFrame:
    """Every driver's online values (and the on-demand ones, for the given request)."""
    store = FeatureStore(repo_path=str(repo_dir))
    drivers = pd.read_parquet(repo_dir / "data/raw_trips.parquet")["driver_id"].unique()
    rows = [{"driver_id": int(d), **(request or {})} for d in sorted(drivers)]
    return store.get_online_features(features=features, entity_rows=rows).to_df()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- field lineage, from the code alone ----------------------------------------------------


def test_each_stored_feature_derives_from_exactly_the_raw_columns_its_transform_reads(code):
    lineage, _ = code
    expected = {
        **{field: {"event_timestamp"} for field in CALENDAR_FEATURES},
        "trip_dist_pct_rank_3h_all_drivers": {"event_timestamp", "trip_dist"},
        **{field: {"event_timestamp", "driver_id", "trip_dist"} for field in PER_DRIVER_FEATURES},
    }
    found = {
        feature.field: {column.split(".")[1] for column in feature.raw_columns}
        for feature in lineage.features.values()
        if feature.view == "driver_trip_stats"
    }
    assert found == expected


def test_no_feature_derives_from_the_label_the_rider_or_the_created_time(code):
    lineage, _ = code
    for column in ("raw_trips.rider_rating", "raw_trips.rider_id", "raw_trips.created"):
        assert column in lineage.raw_columns
        assert lineage.features_fed_by({column}) == []


def test_an_on_demand_feature_derives_from_the_stored_feature_its_udf_reads(code):
    lineage, _ = code
    for field in ON_DEMAND:
        feature = lineage.features[("trip_request_features", field)]
        assert feature.source_features == ("driver_trip_stats:driver_trip_dist_mean_3h",)
        assert {"trip_request.requested_at", "trip_request.requested_trip_dist"} <= set(
            feature.raw_columns
        )
        # the transforms its UDF embeds, and not the stored-only ones
        assert {"trip_features.day_of_week", "trip_features.hour_of_day"} <= set(feature.functions)
        assert "trip_features.month" not in feature.functions


def test_a_field_derives_from_its_own_transforms_and_the_private_helpers_they_call(code):
    lineage, _ = code
    mean_3h = set(lineage.features[("driver_trip_stats", "driver_trip_dist_mean_3h")].functions)
    assert {
        "trip_features.driver_trip_dist_mean_3h",
        "trip_features.driver_trip_dist_3h",
        "trip_features._rolling_by_driver",
        "trip_features._sliding_extreme",
        "raw_data.raw_trips",
        "feature_table.driver_trip_features",
        "feast_objects.driver_trip_stats",
    } <= mean_3h
    assert not mean_3h & {"trip_features.month", "trip_features.trip_dist_pct_rank_3h_all_drivers"}
    month = set(lineage.features[("driver_trip_stats", "month")].functions)
    assert "trip_features._rolling_by_driver" not in month


def test_fingerprints_are_hamiltons_own_node_versions(code):
    lineage, import_module = code
    from hamilton.graph_types import hash_source_code

    dr = import_module("dataflow").build_driver()
    checked = 0
    for node in dr.list_available_variables():
        functions = node.originating_functions or ()
        name = f"{functions[0].__module__}.{functions[0].__name__}" if functions else None
        if name in lineage.versions:
            assert lineage.versions[name] == node.version[:12], node.name
            checked += 1
    assert checked >= 20
    helper = import_module("trip_features")._rolling_by_driver
    assert lineage.versions["trip_features._rolling_by_driver"] == hash_source_code(
        helper, strip=True
    )[:12]


def test_every_view_is_stamped_with_the_fingerprints_of_its_code(code):
    lineage, import_module = code
    lineage_module = import_module("lineage")
    objects = {o.name: o for o in lineage.objects.values()}
    for view in lineage.views():
        stamped = json.loads(objects[view.name].tags[lineage_module.CODE_VERSIONS_TAG])
        features = [f for f in lineage.features.values() if f.view == view.name]
        functions = {fn for f in features for fn in f.functions}
        assert functions <= set(stamped), view.name
        assert all(stamped[fn] == lineage.versions[fn] for fn in stamped)


def test_lineage_command_answers_both_directions(tmp_path):
    repo_dir = copy_repo(NAME, tmp_path)  # no data: lineage reads only the code
    table = changes(repo_dir, "--lineage")
    pct_rank = "trip_dist_pct_rank_3h_all_drivers  raw_trips.event_timestamp, raw_trips.trip_dist"
    assert pct_rank in table
    reverse = changes(repo_dir, "--lineage", "month", "rider_rating", "_rolling_by_driver")
    assert "trip_features.month feeds\n  driver_trip_stats: month (1 of 11 fields)\n" in reverse
    assert "raw_trips.rider_rating feeds no feature" in reverse
    assert f"driver_trip_stats: {', '.join(PER_DRIVER_FEATURES)} (6 of 11 fields)" in reverse
    assert f"trip_request_features: {', '.join(ON_DEMAND)} (all 4 fields)" in reverse


def test_lineage_of_an_unknown_name_is_a_clear_error(tmp_path):
    repo_dir = copy_repo(NAME, tmp_path)
    command = [sys.executable, "changes.py", "--lineage", "trip_distance"]
    result = run(command, repo_dir, expect_success=False)
    assert result.returncode == 1
    assert "'trip_distance' is neither a raw column nor a function" in result.stderr
    assert "trip_dist" in result.stderr and "Traceback" not in result.stderr


def test_committed_lineage_picture_is_current(code):
    _, import_module = code
    drawn = import_module("lineage").lineage_picture(import_module("dataflow").current_lineage())
    assert (REPO / "lineage.dot").read_text() == drawn.source


# --- changes.py against a registry ---------------------------------------------------------


def test_unchanged_code_reports_nothing_and_passes_the_check(applied):
    output = changes(applied, "--check")
    assert "nothing changed." in output
    assert "unchanged: driver_trip_stats, trip_rating_model_v1, trip_request_features" in output


def test_new_code_that_feeds_no_view_changes_only_the_dag_version(applied):
    (applied / "trip_features.py").write_text(
        (applied / "trip_features.py").read_text()
        + '\n\ndef trip_dist_km(trip_dist: pd.Series) -> pd.Series:\n'
        + '    """Trip distance in kilometres."""\n    return trip_dist * 1.609\n'
    )
    output = changes(applied, "--check")
    assert "nothing changed.\n(the Hamilton DAG did, " in output
    assert "in code no view derives from)" in output
    assert "trip_features.trip_dist_km feeds no feature" in changes(
        applied, "--lineage", "trip_dist_km"
    )


def test_before_the_first_apply_every_view_is_new(tmp_path):
    repo_dir = copy_repo(NAME, tmp_path)
    output = changes(repo_dir, "--check", exit_code=CHANGED)
    assert "driver_trip_stats: new" in output and "trip_request_features: new" in output
    assert "trip_rating_model_v1 (service): new" in output


def test_a_changed_transform_reports_and_refreshes_exactly_its_dependent_views(applied):
    table = applied / "data/driver_trip_features.parquet"
    before = pd.read_parquet(table)
    edit(
        applied / "trip_features.py",
        'return event_timestamp.dt.month.astype("int64")',
        'return (event_timestamp.dt.month % 12 + 1).astype("int64")',
    )
    output = changes(applied, "--check", exit_code=CHANGED)
    assert (
        "driver_trip_stats: changed\n"
        "  code changed: trip_features.month\n"
        "  fields affected: month (1 of 11)\n"
        "trip_rating_model_v1 (service): driver_trip_stats: month\n"
        "unchanged: trip_request_features\n"
    ) in output

    output = changes(applied, "--refresh")
    assert "Recomputing: saved_driver_trip_features (for driver_trip_stats)" in output
    assert "Re-materializing driver_trip_stats" in output
    after = pd.read_parquet(table)
    assert (after["month"] == before["month"] % 12 + 1).all()
    other = [c for c in before.columns if c != "month"]
    pd.testing.assert_frame_equal(after[other], before[other])
    served = online(applied, ["driver_trip_stats:month"])
    latest = after.sort_values("event_timestamp").groupby("driver_id")["month"].last()
    expected = served["driver_id"].map(latest)
    assert served["month"].notna().all() and (served["month"] == expected).all()
    assert "nothing changed." in changes(applied, "--check")


def test_a_change_to_an_embedded_transform_reaches_the_on_demand_view_too(applied):
    edit(
        applied / "trip_features.py",
        'return event_timestamp.dt.dayofweek.astype("int64")',
        'return ((event_timestamp.dt.dayofweek + 1) % 7).astype("int64")',
    )
    output = changes(applied, "--check", exit_code=CHANGED)
    assert (
        "driver_trip_stats: changed\n"
        "  code changed: trip_features.day_of_week\n"
        "  fields affected: day_of_week, is_weekend (2 of 11)\n"
    ) in output
    assert (
        "trip_request_features: changed\n"
        "  code changed: trip_features.day_of_week\n"
        f"  fields affected: {', '.join(ON_DEMAND)} (4 of 4)\n"
        "  definition: feature_transformation.body_text\n"  # Feast sees the embedded source change
    ) in output
    assert "unchanged:" not in output


def test_a_change_inside_the_on_demand_udf_refreshes_without_recomputing(applied):
    table = applied / "data/driver_trip_features.parquet"
    table_before = sha256(table)
    edit(
        applied / "feast_objects.py",
        'inputs["requested_trip_dist"] / inputs["driver_trip_dist_mean_3h"]',
        'inputs["requested_trip_dist"] - inputs["driver_trip_dist_mean_3h"]',
    )
    output = changes(applied, "--refresh")
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
        [
            "driver_trip_stats:driver_trip_dist_mean_3h",
            "trip_request_features:requested_dist_vs_driver_mean_3h",
        ],
        request,
    ).dropna(subset=["driver_trip_dist_mean_3h"])
    assert len(served) > 0
    difference = 10.0 - served["driver_trip_dist_mean_3h"]
    assert (served["requested_dist_vs_driver_mean_3h"] - difference).abs().max() < 1e-9


def test_renaming_a_feature_reports_the_schema_change_too(applied):
    edit(applied / "trip_features.py", "def month(", "def month_of_year(")
    edit(applied / "feature_table.py", "    month: pd.Series,", "    month_of_year: pd.Series,")
    edit(applied / "feature_table.py", '"month": month,', '"month_of_year": month_of_year,')
    edit(
        applied / "feast_objects.py",
        "(trip_features.month, Int64)",
        "(trip_features.month_of_year, Int64)",
    )
    output = changes(applied, "--check", exit_code=CHANGED)
    assert (
        "  code changed: feature_table.driver_trip_features, trip_features.month, "
        "trip_features.month_of_year\n"
    ) in output
    assert "  schema: + month_of_year (Int64); - month (Int64)\n" in output
    # The table builder changed too, and every stored field passes through it.
    assert "month_of_year, hour_of_day" in output and "(11 of 11)" in output


def test_a_docstring_change_is_a_description_change_and_recomputes_nothing(applied):
    table = applied / "data/driver_trip_features.parquet"
    table_before = sha256(table)
    edit(
        applied / "trip_features.py",
        '"""Month of the trip, UTC (January=1)."""',
        '"""Month of the trip in UTC, January=1."""',
    )
    output = changes(applied, "--refresh")
    assert "driver_trip_stats: changed\n  definition: descriptions of month\n" in output
    assert "code changed" not in output
    assert "Recomputing: nothing (for no view)" in output
    assert sha256(table) == table_before
    assert "nothing changed." in changes(applied, "--check")


# --- OpenLineage ----------------------------------------------------------------------------


def events(repo_dir) -> list[dict]:
    lines = (repo_dir / "data/openlineage/events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_openlineage_events_of_a_run_name_the_raw_input_and_the_feature_view_outputs(applied):
    written = events(applied)
    inputs = {
        (dataset["name"], dataset["facets"]["dataSource"]["uri"])
        for event in written
        for dataset in event.get("inputs", [])
        if "dataSource" in (dataset.get("facets") or {})
    }
    outputs = {d["name"] for e in written for d in e.get("outputs", [])}
    assert ("raw_trips", str(applied / "data/raw_trips.parquet")) in inputs
    assert {"driver_trip_stats", "trip_request_features", "trip_rating_model_v1"} <= outputs
    assert str(applied / "data/driver_trip_features.parquet") in outputs
    hamilton_run = [e for e in written if e["job"]["name"] == f"{NAME}.features"]
    assert [e["eventType"] for e in hamilton_run] == ["START", "RUNNING", "RUNNING", "COMPLETE"]
    schema = next(d for e in hamilton_run for d in e.get("inputs", []))["facets"]["schema"]
    assert {f["name"] for f in schema["fields"]} >= {"trip_dist", "rider_rating", "event_timestamp"}


def test_feasts_lineage_consumer_joins_the_events_from_raw_trips_to_the_service(applied):
    store = OpenLineageStore(connection_string="sqlite://")
    store.initialize()
    result = OpenLineageProcessor(store).process_batch(events(applied))
    assert result["failed"] == 0
    graph = store.get_lineage_graph(
        "dataset", NAME, "trip_rating_model_v1", depth=20, direction="upstream"
    )
    names = {(node["type"], node["name"]) for node in graph["nodes"]}
    assert {
        ("dataset", "raw_trips"),
        ("job", f"{NAME}.features"),
        ("dataset", str(applied / "data/driver_trip_features.parquet")),
        ("dataset", "driver_trip_features_source"),
        ("dataset", "driver_trip_stats"),
    } <= names


class _Collector(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_with_openlineage_url_set_the_events_go_to_that_server(tmp_path):
    repo_dir = copy_repo(NAME, tmp_path)
    generate_data(repo_dir, "--trips", "500")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        run([sys.executable, "apply.py"], cwd=repo_dir, env={"OPENLINEAGE_URL": url})
    finally:
        server.shutdown()
    jobs = {event["job"]["name"] for _, event in _Collector.received}
    assert {f"{NAME}.features", f"feast_feature_views_{NAME}"} <= jobs
    assert {path for path, _ in _Collector.received} == {"/api/v1/lineage"}
    assert not (repo_dir / "data/openlineage").exists()
