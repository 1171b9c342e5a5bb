"""Monitoring integration_feature_store with Feast's own tools, on the real things (outside its
folder: these need Prometheus): `feast serve --metrics` scraped by a real Prometheus on
127.0.0.1, configured by the repo's monitoring/prometheus.yml and alerting by its alerts.yml;
the feature service's serving logs, written by the prediction server's app; `feast monitor run`
computing the baseline from the training data and the statistics of the serving logs; and
`hamilton-feast drift` comparing them. See docs/monitoring.md."""

import contextlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import uvicorn
import yaml
from click.testing import CliRunner
from this_repo import REPO, VIEW, applied_copy, saved_table

from feast import FeatureService, FeatureStore, FeatureView
from feast.cli.cli import cli as feast_cli
from feast.data_source import PushMode
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from hamilton_feast import Repo, serving_logs
from hamilton_feast.testing import feature_server, free_port, prometheus_server, run, wait_until

pytestmark = pytest.mark.xdist_group("monitoring")  # one worker: feast serve --metrics has one fixed port

MONITORING = REPO / "monitoring"
SERVICE = "trip_rating_model_v1"
# Enough drivers that the served sample (one row per driver) stands for the whole table.
DATA = ("--trips", "6000", "--drivers", "200", "--days", "3")
# The shift: the driver's trip distances served three times too large (a source switching units).
SHIFTED = ["driver_trip_dist_mean_3h", "driver_trip_dist_max_3h", "driver_trip_dist_min_3h", "driver_trip_dist_mean_24h"]
SERVED_DRIVERS = 200


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
            for rule in group["rules"]]


def rule(name: str) -> dict:
    return next(r for r in rules() if r.get("alert") == name)


# --- the rules, without a server ---------------------------------------------------------------


def test_the_prometheus_config_and_the_alert_rules_pass_promtool_and_their_unit_tests():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: sudo apt-get install prometheus")
    checked = run([promtool, "check", "config", "monitoring/prometheus.yml"], cwd=REPO).stdout
    assert f"SUCCESS: {len(rules())} rules found" in checked
    tested = run([promtool, "test", "rules", "monitoring/alerts.test.yml"], cwd=REPO).stdout
    assert "SUCCESS" in tested


def test_each_views_freshness_alert_fires_past_its_own_ttl():
    """The rules file states each TTL again (Prometheus cannot read the registry): it must be the
    view's TTL as the DAG defines it."""
    repo = Repo(REPO)
    views = [o for o in repo.feast_objects(overrides=repo.saved_tables_as_configured()).values()
             if isinstance(o, FeatureView) and o.ttl]
    expression = rule("FeatureViewOlderThanTTL")["expr"]
    thresholds = {name: float(seconds) for name, seconds in
                  re.findall(r'feast_feature_freshness_seconds\{feature_view="(\w+)"\}\s*>\s*([\d.]+)', expression)}
    assert thresholds == {view.name: view.ttl.total_seconds() for view in views}
    unknown = rule("FeatureFreshnessUnknown")["expr"]
    assert all(f'feature_view="{view.name}"' in unknown for view in views)


def test_request_times_are_logged_as_instants_whatever_their_form():
    """A request time arrives as epoch seconds (JSON clients), a zoned or a naive (UTC) datetime."""
    moment = pd.Timestamp("2026-03-08 13:30:00", tz="UTC")
    forms = [int(moment.timestamp()), moment.tz_convert("Europe/Berlin").to_pydatetime(),
             moment.tz_localize(None).to_pydatetime(), None]
    for arrow_type in (pa.timestamp("s"), pa.timestamp("s", tz="UTC")):
        logged = serving_logs._timestamps(forms, arrow_type).to_pylist()
        expected = moment.to_pydatetime() if arrow_type.tz else moment.tz_localize(None).to_pydatetime()
        assert logged == [expected, expected, expected, None], arrow_type


@pytest.mark.parametrize("path, refused", [("data/serving_logs", "relative path"), (None, "no logging_config")])
def test_a_service_logging_nowhere_readable_is_refused_naming_it(path, refused):
    logging = LoggingConfig(destination=FileLoggingDestination(path=path)) if path else None
    service = FeatureService(name="logged_service", features=[], logging_config=logging)
    with pytest.raises(ValueError, match=f"feature service 'logged_service' .*{refused}"):
        serving_logs._destination(service)


# --- the real servers --------------------------------------------------------------------------


@dataclass
class Monitored:
    repo_dir: Path
    store: FeatureStore
    feast_url: str
    prometheus_url: str
    baseline: subprocess.Popen  # `feast monitor run --set-baseline`, started beside the servers


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """The repo applied on fresh data, its view last loaded two TTLs ago (the loading job has
    stopped); `feast serve --metrics`; a Prometheus with the repo's config, scraping and
    evaluating every second instead of every 15; the baseline being computed meanwhile."""
    folder = tmp_path_factory.mktemp("monitoring")
    repo_dir = applied_copy(folder, *DATA)
    store = FeatureStore(repo_path=str(repo_dir))
    ttl = store.get_feature_view(VIEW.name).ttl
    now = pd.Timestamp.now(tz="UTC")
    store.materialize(start_date=(now - 4 * ttl).to_pydatetime(), end_date=(now - 2 * ttl).to_pydatetime())
    feast = str(Path(sys.executable).parent / "feast")
    baseline = subprocess.Popen([feast, "monitor", "run", "--set-baseline"], cwd=repo_dir, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    config = yaml.safe_load((repo_dir / "monitoring" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(repo_dir / "monitoring" / name) for name in config["rule_files"]]
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    try:
        with feature_server(repo_dir, metrics=True) as feast_url, \
                prometheus_server(config_file, folder / "prometheus") as prometheus_url:
            yield Monitored(repo_dir, store, feast_url, prometheus_url, baseline)
    finally:
        if baseline.poll() is None:
            baseline.kill()
        baseline.wait()


def prometheus(monitored: Monitored, promql: str) -> dict:
    """Prometheus's HTTP API answer to an instant query, as its JSON."""
    url = f"{monitored.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer


def results(monitored: Monitored, promql: str) -> list[dict]:
    return prometheus(monitored, promql)["data"]["result"]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.load(response)


def read_features(monitored: Monitored, drivers: list[int]) -> dict:
    """The feature server's answer for `drivers` through the feature service."""
    return post(f"{monitored.feast_url}/get-online-features", {"feature_service": SERVICE, "entities": {
        "driver_id": drivers, "requested_at": [int(pd.Timestamp.now(tz="UTC").timestamp())] * len(drivers),
        "requested_trip_dist": [5.0] * len(drivers)}})


def test_prometheus_scrapes_the_feature_servers_freshness_and_latency(monitored):
    ttl_s = monitored.store.get_feature_view(VIEW.name).ttl.total_seconds()
    freshness = f'feast_feature_freshness_seconds{{feature_view="{VIEW.name}"}}'
    wait_until(lambda: results(monitored, freshness), "the freshness gauge in Prometheus", timeout_s=60)
    answer = prometheus(monitored, freshness)
    print(f"\nGET /api/v1/query?query={freshness}\n{json.dumps(answer)}")
    seconds = float(answer["data"]["result"][0]["value"][1])
    assert 2 * ttl_s <= seconds < 2 * ttl_s + 600  # last loaded two TTLs ago, give or take the test's own time

    # Requests in two rounds, each scraped, so that the latency histogram's rate is not zero.
    count = 'sum(feast_feature_server_request_latency_seconds_count{endpoint="/get-online-features"})'
    for total in (10, 20):
        for driver in range(10):
            read_features(monitored, [1001 + driver])
        wait_until(lambda: results(monitored, count) and float(results(monitored, count)[0]["value"][1]) >= total,
                   f"{total} requests counted by Prometheus", timeout_s=30)
    # The latency alert's own expression, without its bound, answers a latency in seconds.
    quantile = re.sub(r"\)\s*>\s*[\d.]+\s*$", ")", rule("ServingLatencyP99High")["expr"].strip())
    assert quantile != rule("ServingLatencyP99High")["expr"].strip()
    wait_until(lambda: results(monitored, quantile) and np.isfinite(float(results(monitored, quantile)[0]["value"][1])),
               "the 99th percentile latency from the alert's expression", timeout_s=30)
    latency = results(monitored, quantile)[0]
    assert latency["metric"] == {"endpoint": "/get-online-features"}
    assert 0 < float(latency["value"][1]) < 10
    print(f"99th percentile of /get-online-features: {float(latency['value'][1]):.4f} s")


def test_the_freshness_alert_fires_for_a_view_last_loaded_longer_ago_than_its_ttl(monitored):
    firing = 'ALERTS{alertname="FeatureViewOlderThanTTL", alertstate="firing"}'
    # Only the alert tells: the feature server still answers the view's old rows, as PRESENT.
    answer = read_features(monitored, [1001])
    trips = answer["results"][answer["metadata"]["feature_names"].index("driver_trips_24h")]
    ttl = monitored.store.get_feature_view(VIEW.name).ttl
    assert trips["statuses"] == ["PRESENT"]
    assert pd.Timestamp(trips["event_timestamps"][0]) < pd.Timestamp.now(tz="UTC") - ttl
    wait_until(lambda: results(monitored, firing), "FeatureViewOlderThanTTL firing", timeout_s=60)
    answer = prometheus(monitored, "ALERTS")
    print(f"\nGET /api/v1/query?query=ALERTS\n{json.dumps(answer)}")
    alerts = {(a["metric"]["alertname"], a["metric"]["alertstate"]): a["metric"] for a in answer["data"]["result"]}
    assert alerts[("FeatureViewOlderThanTTL", "firing")]["feature_view"] == VIEW.name
    assert ("FeatureFreshnessUnknown", "pending") not in alerts  # the freshness is known
    with urllib.request.urlopen(f"{monitored.prometheus_url}/api/v1/rules", timeout=10) as response:
        evaluated = [r for g in json.load(response)["data"]["groups"] for r in g["rules"]]
    assert sorted(r["name"] for r in evaluated) == sorted(r["alert"] for r in rules())
    assert [(r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"] == []


def _prediction_app(repo_dir: Path, store: FeatureStore):
    """The prediction server's app (prediction_server.app_for) over the feature service, with a
    model that answers 0: what it serves and logs is the subject here, not the rating."""
    spec = importlib.util.spec_from_file_location("monitored_prediction_server", repo_dir / "prediction_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    service = store.get_feature_service(SERVICE)
    inputs = [f.name for p in service.feature_view_projections for f in p.features]
    served = {"service": service, "predict": lambda row: 0.0, "inputs": inputs, "version": 0}
    return module.app_for(store, served, "constant")


@contextlib.contextmanager
def prediction_server(app):
    """`app` served by uvicorn on 127.0.0.1, in a thread of this process; stopped (its lifespan
    ended) on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "the prediction server", timeout_s=30)
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the prediction server did not stop"


def test_shifted_served_features_are_logged_and_reported_as_drift(monitored):
    """Served: a random sample of the training rows, one per driver, with the distances tripled.
    The serving log holds exactly what was served; against the baseline of the training data,
    `hamilton-feast drift --check` names the tripled features and only them, and exits 2."""
    repo_dir, store = monitored.repo_dir, monitored.store
    table = saved_table(repo_dir)
    rows = np.random.default_rng(26).choice(len(table), SERVED_DRIVERS, replace=False)
    now = pd.Timestamp.now(tz="UTC").floor("us")
    served = table.iloc[rows].reset_index(drop=True).assign(
        driver_id=np.arange(SERVED_DRIVERS) + 900_001, event_timestamp=now, created=now)
    served[SHIFTED] = served[SHIFTED] * 3
    store.push(VIEW.push_source, served, to=PushMode.ONLINE)

    with prediction_server(_prediction_app(repo_dir, store)) as base_url:  # its shutdown writes the log
        for driver in served.driver_id:
            answer = post(f"{base_url}/predict", {"driver_id": int(driver), "requested_trip_dist": 5.0})
            assert answer["missing_features"] == [], answer

    log = pd.read_parquet(repo_dir / "data" / "serving_logs").sort_values("driver_id").reset_index(drop=True)
    assert len(log) == SERVED_DRIVERS
    assert log.driver_id.tolist() == served.driver_id.tolist()
    for feature in [*SHIFTED, "driver_trips_24h"]:
        np.testing.assert_allclose(log[f"{VIEW.name}__{feature}"], served[feature], err_msg=feature)

    baseline = monitored.baseline.communicate(timeout=300)[0]
    assert monitored.baseline.returncode == 0 and "Baseline: SET" in baseline, baseline
    # Feast's own command, in this process (it has imported Feast already).
    computed = CliRunner().invoke(feast_cli, ["--chdir", str(repo_dir), "monitor", "run", "--source-type", "log"])
    assert computed.exit_code == 0 and "Feature services computed: 1" in computed.output, computed.output
    computed = computed.output
    report = run(["hamilton-feast", "drift", "--check"], cwd=repo_dir, expect_success=False)
    print(f"\n$ feast monitor run --source-type log\n{computed}\n$ hamilton-feast drift --check\n{report.stdout}")
    assert report.returncode == 2, report.stdout + report.stderr
    verdicts = {line.split()[0]: line.split()[-1] for line in report.stdout.splitlines()
                if line.strip().startswith(f"{VIEW.name}:")}
    assert set(verdicts) == {f"{VIEW.name}:{feature}" for feature in VIEW.fields}
    assert {name for name, verdict in verdicts.items() if verdict == "DRIFTED"} == \
        {f"{VIEW.name}:{feature}" for feature in SHIFTED}
    assert f"{SERVICE}: the last day of serving logs ({SERVED_DRIVERS} rows" in report.stdout
