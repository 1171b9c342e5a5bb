"""The main job, on embedded defaults: for each feature repo, generate its data, register its
objects, load the online store, and retrieve features the ways a model would; then execute the
integration repo's retrieval notebook (into its data/ folder, leaving the committed one as is).

Run through ./scripts/demo.sh, which sets up the environment first. Each repo is registered
the way its README says (`feast apply`, or its apply script); the rest happens in this one
process, since every `feast` command would pay for importing Feast again.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

from feast import FeatureStore
from feast.data_source import PushMode
from hamilton_feast.notices import IBIS_DUCKDB_NOTICE, ON_DEMAND_NOTICE, known_notices_hidden

ROOT = Path(__file__).resolve().parent.parent

# The `feast` command (its entry point is feast.cli.cli:cli) with the known notices hidden.
FEAST_CLI = (
    "import warnings\n"
    "from feast.cli.cli import cli\n"
    f"warnings.filterwarnings('ignore', message={ON_DEMAND_NOTICE!r}, category=RuntimeWarning)\n"
    f"warnings.filterwarnings('ignore', message={IBIS_DUCKDB_NOTICE!r}, category=DeprecationWarning)\n"
    "cli(prog_name='feast')\n"
)
# repo folder -> the command that registers its objects, run inside the folder
REGISTER_COMMANDS = {
    "default_feature_store": ["feast", "apply"],
    "simple_feature_store": [sys.executable, "apply.py"],
}


def step(message: str) -> None:
    print(f"\n--- {message}", flush=True)


def run_in(repo_dir: Path, command: list[str]) -> None:
    """Run a command in a repo folder as a user would type it; `feast` and `hamilton-feast`
    are those of this environment."""
    shown = " ".join("python" if c == sys.executable else c for c in command)
    print(f"$ (cd {repo_dir.name} && {shown})", flush=True)
    if command[0] == "feast":
        # Feast's own command line, with its notice about on-demand views hidden: Feast sets its
        # warning filters when imported, so the filter is added after that, in the same process.
        command = [sys.executable, "-c", FEAST_CLI, *command[1:]]
    elif command[0] == "hamilton-feast":
        command = [str(Path(sys.executable).parent / command[0]), *command[1:]]
    subprocess.run(command, cwd=repo_dir, check=True)


def training_set(store: FeatureStore, now: pd.Timestamp) -> pd.DataFrame:
    """Point-in-time features and a label for three drivers at three past moments."""
    entity_df = pd.DataFrame(
        {
            "driver_id": [1001, 1002, 1003],
            "event_timestamp": [now - pd.Timedelta(hours=h) for h in (2, 26, 50)],
            "val_to_add": [1, 2, 3],
            "val_to_add_2": [10, 20, 30],
        }
    )
    return store.get_historical_features(
        entity_df=entity_df,
        features=[
            "driver_hourly_stats:conv_rate",
            "driver_hourly_stats:acc_rate",
            "driver_hourly_stats:avg_daily_trips",
            "transformed_conv_rate:conv_rate_plus_val1",
            "driver_quality_labels:is_reliable",
        ],
    ).to_df()


def online_features(store: FeatureStore, service: str) -> pd.DataFrame:
    rows = [
        {"driver_id": 1001, "val_to_add": 1000, "val_to_add_2": 2000},
        {"driver_id": 1002, "val_to_add": 1001, "val_to_add_2": 2002},
    ]
    response = store.get_online_features(
        features=store.get_feature_service(service), entity_rows=rows
    )
    return pd.DataFrame(response.to_dict())


def push_fresh_stats(store: FeatureStore, now: pd.Timestamp) -> None:
    """A stream event for driver 1001, written to the online and offline stores."""
    event = pd.DataFrame(
        {
            "driver_id": [1001],
            "event_timestamp": [now],
            "created": [now],
            "conv_rate": [1.0],
            "acc_rate": [1.0],
            "avg_daily_trips": [1000],
            "driver_metadata": [{"vehicle_type": "truck", "rating": "5.0"}],
            "driver_config": ['{"max_distance_km": 500, "preferred_zones": ["north"]}'],
            "driver_profile": [{"name": "driver_1001_updated", "age": "30"}],
        }
    )
    store.push("driver_stats_push_source", event, to=PushMode.ONLINE_AND_OFFLINE)


def walk_through(repo_name: str) -> None:
    repo_dir = ROOT / repo_name
    step(f"{repo_name}: generate data, register objects")
    run_in(repo_dir, [sys.executable, "generate_data.py"])
    run_in(repo_dir, REGISTER_COMMANDS[repo_name])

    store = FeatureStore(repo_path=str(repo_dir))
    now = pd.Timestamp.now(tz="UTC").floor("s")
    step(f"{repo_name}: materialize-incremental to {now}")
    store.materialize_incremental(end_date=now.to_pydatetime())

    step(f"{repo_name}: training set (historical, point in time)")
    print(training_set(store, now).sort_values("driver_id").to_string(index=False))

    step(f"{repo_name}: online features through feature service driver_activity_v1")
    print(online_features(store, "driver_activity_v1").to_string(index=False))

    step(f"{repo_name}: push a fresh event for driver 1001, read it through driver_activity_v3")
    push_fresh_stats(store, now)
    fresh = online_features(store, "driver_activity_v3")
    print(fresh[["driver_id", "conv_rate", "avg_daily_trips", "conv_rate_plus_val1"]].to_string(index=False))


def walk_through_integration() -> None:
    repo_dir = ROOT / "integration_feature_store"
    step("integration_feature_store: raw trips -> Hamilton transforms -> Feast")
    run_in(repo_dir, [sys.executable, "generate_data.py"])
    run_in(repo_dir, [sys.executable, "apply.py", "--materialize"])
    events = repo_dir / "data" / "openlineage" / "events.jsonl"
    print(f"OpenLineage events of the run and the registration: {events.relative_to(ROOT)}")

    step("integration_feature_store: what raw trip_dist and the label rider_rating feed")
    run_in(repo_dir, ["hamilton-feast", "lineage", "trip_dist", "rider_rating"])
    step("integration_feature_store: has the code changed since it was registered? (CI check)")
    run_in(repo_dir, ["hamilton-feast", "changes", "--check"])

    store = FeatureStore(repo_path=str(repo_dir))
    service = store.get_feature_service("trip_rating_model_v1")
    trips = pd.read_parquet(repo_dir / "data" / "raw_trips.parquet").tail(3)
    entity_df = trips[["driver_id", "requested_at", "trip_dist", "rider_rating"]].rename(
        columns={"trip_dist": "requested_trip_dist"}
    )
    entity_df["event_timestamp"] = entity_df["requested_at"]  # as of the request, before the trip's own row
    step("integration_feature_store: training rows for the last three trips, as of their requests (label: rider_rating)")
    training = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    print(training.T.to_string())

    step("integration_feature_store: online features through feature service trip_rating_model_v1")
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    online = store.get_online_features(
        features=service,
        entity_rows=[{"driver_id": 1001, "requested_at": now, "requested_trip_dist": 5.0}],
    )
    print(pd.DataFrame(online.to_dict()).T.to_string())

    for name in ("retrieval", "model"):
        execute_notebook(repo_dir, name)

    step("integration_feature_store: train, evaluate against the baselines, register (MLflow: data/mlflow.db)")
    run_in(repo_dir, [sys.executable, "train.py"])
    step("integration_feature_store: the model served over HTTP (POST /predict)")
    print(served_prediction(repo_dir, {"driver_id": 1001, "requested_trip_dist": 4.2}))


def execute_notebook(repo_dir: Path, name: str) -> None:
    """Execute a notebook of the repo into its data/ folder and print its summary cell."""
    executed = repo_dir / "data" / f"{name}.executed.ipynb"
    step(f"integration_feature_store: execute {name}.ipynb into {executed.relative_to(ROOT)}")
    notebook = nbformat.read(repo_dir / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=900, resources={"metadata": {"path": str(repo_dir)}}).execute()
    nbformat.write(notebook, executed)
    summary = next(c for c in notebook.cells if "summary" in c.metadata.get("tags", []))
    print(summary.outputs[0]["text"])


def served_prediction(repo_dir: Path, body: dict) -> str:
    """The prediction server started on a free port of 127.0.0.1, asked once, stopped."""
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    print(f"$ (cd {repo_dir.name} && python prediction_server.py --port {port})")
    server = subprocess.Popen([sys.executable, "prediction_server.py", "--port", str(port)], cwd=repo_dir)
    try:
        print(f"$ curl -s 127.0.0.1:{port}/predict -H 'Content-Type: application/json' -d '{json.dumps(body)}'")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        for _ in range(600):  # the app starts in seconds; up to a minute on a busy machine
            if server.poll() is not None:
                raise RuntimeError(f"the prediction server exited with {server.returncode}")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.read().decode()
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the prediction server did not answer within a minute")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    started = time.perf_counter()
    with known_notices_hidden():  # Feast's and ibis' notices about themselves, on every retrieval
        for repo_name in REGISTER_COMMANDS:
            walk_through(repo_name)
        walk_through_integration()
    print(f"\nDemo finished in {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
