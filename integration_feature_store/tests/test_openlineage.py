"""OpenLineage events of a run of apply.py: Hamilton's transform run and Feast's registration,
joined by Feast's lineage consumer from the raw trips to the feature service."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from this_repo import LOADER, ON_DEMAND_VIEWS, PROJECT, RAW_DATA, REPO, SERVICES, SMALL, VIEW, VIEWS, applied_copy

from feast.openlineage.processor import OpenLineageProcessor
from feast.openlineage.store import OpenLineageStore
from hamilton_feast.testing import copy_repo, generate_data, run


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    return applied_copy(tmp_path_factory.mktemp("openlineage"), *SMALL)


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
    assert (LOADER, str(applied / RAW_DATA)) in inputs
    assert {*(view.name for view in VIEWS), *ON_DEMAND_VIEWS, *SERVICES} <= outputs
    assert {str(applied / view.table) for view in VIEWS} <= outputs
    hamilton_run = [e for e in written if e["job"]["name"] == f"{PROJECT}.features"]
    assert [e["eventType"] for e in hamilton_run] == ["START", "RUNNING", "RUNNING", "COMPLETE"]
    schema = next(d for e in hamilton_run for d in e.get("inputs", []))["facets"]["schema"]
    assert {f["name"] for f in schema["fields"]} == set(pd.read_parquet(applied / RAW_DATA).columns)


def test_feasts_lineage_consumer_joins_the_events_from_raw_trips_to_the_service(applied):
    store = OpenLineageStore(connection_string="sqlite://")
    store.initialize()
    result = OpenLineageProcessor(store).process_batch(events(applied))
    assert result["failed"] == 0
    for service in SERVICES:
        graph = store.get_lineage_graph("dataset", PROJECT, service, depth=20, direction="upstream")
        names = {(node["type"], node["name"]) for node in graph["nodes"]}
        assert {("dataset", LOADER), ("job", f"{PROJECT}.features")} <= names, service
        assert {("dataset", str(applied / VIEW.table)), ("dataset", VIEW.source), ("dataset", VIEW.name)} <= names


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
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        run([sys.executable, "apply.py"], cwd=repo_dir, env={"OPENLINEAGE_URL": url})
    finally:
        server.shutdown()
    jobs = {event["job"]["name"] for _, event in _Collector.received}
    assert {f"{PROJECT}.features", f"feast_feature_views_{PROJECT}"} <= jobs
    assert {path for path, _ in _Collector.received} == {"/api/v1/lineage"}
    assert not (repo_dir / "data/openlineage").exists()
