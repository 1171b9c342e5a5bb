"""The rider-rating model (rating_model.py, train.py, prediction_server.py): its training rows
hold what serving held at each request, it beats both baselines on the later days, it is
registered with its feature service, served over HTTP by that service, and its predictions from
a training row and over HTTP are the same; a change to its features names it."""

import json
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import yaml
from this_repo import CODE_EDIT, MODEL_DATA, REPO, applied_copy

from feast import FeatureStore
from hamilton_feast import Repo, models, training_sets
from hamilton_feast.testing import edit, free_port, run, wait_until

SERVICE = "trip_rating_model_v1"
MODEL = "trip_rating_model"


@pytest.mark.parametrize("configuration", sorted(path.name for path in REPO.glob("feature_store*.yaml")))
def test_every_feast_configuration_of_the_repo_says_where_the_models_go(configuration):
    """The change check reads the registered models through the configuration in use."""
    assert "mlflow" in yaml.safe_load((REPO / configuration).read_text()), configuration


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A copy with ten days of trips, registered and trained once (`python train.py`)."""
    repo_dir = applied_copy(tmp_path_factory.mktemp("model"), *MODEL_DATA)
    output = run([sys.executable, "train.py"], cwd=repo_dir).stdout
    return repo_dir, output


def model_nodes(repo_dir, *names):
    """The model's nodes, computed as train.py computes them, in this process."""
    return Repo(repo_dir).on_saved_tables(names)


def last_load_and_the_trips_after_it(repo_dir, hours_before_now: int = 2):
    """Load the online store up to `hours_before_now` ago; then the trips requested after that
    whose driver ended no trip between the load and the request (so the online store holds
    each one's latest row at its request), as training questions."""
    store = FeatureStore(repo_path=str(repo_dir))
    end = pd.Timestamp.now(tz="UTC").floor("us") - pd.Timedelta(hours=hours_before_now)
    store.materialize_incremental(end_date=end.to_pydatetime())
    raw = pd.read_parquet(repo_dir / "data/raw_trips.parquet")
    after = raw[raw.requested_at > end]
    ended_since = raw[raw.event_timestamp > end].groupby("driver_id").event_timestamp.min()
    first_end = after.driver_id.map(ended_since)
    asked = after[after.requested_at < first_end].drop_duplicates("driver_id")
    # The online store measures the TTL from now, the training set from the request (up to the
    # hours before now earlier): rows near the TTL's edge would differ by that alone.
    table = pd.read_parquet(repo_dir / "data/driver_trip_features.parquet")
    latest = table[table.event_timestamp <= end].groupby("driver_id").event_timestamp.max()
    fresh = asked.driver_id.map(latest) > pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=22)
    questions = asked[fresh.to_numpy()]
    return store, pd.DataFrame({"driver_id": questions.driver_id, "event_timestamp": questions.requested_at,
                                "requested_at": questions.requested_at,
                                "requested_trip_dist": questions.trip_dist}).reset_index(drop=True)


def test_training_rows_hold_what_the_online_store_served_at_each_request(trained):
    """Every feature of the service, training row against the online read at the request: 0
    rows differ. Joined at each trip's end instead (the pitfall), most rows differ."""
    repo_dir, _ = trained
    store, questions = last_load_and_the_trips_after_it(repo_dir)
    assert len(questions) >= 10
    service = store.get_feature_service(SERVICE)
    names = [f.name for p in service.feature_view_projections for f in p.features]
    training = training_sets.get_training_set(store, questions, service)
    served = store.get_online_features(
        features=service, entity_rows=questions.drop(columns="event_timestamp").to_dict("records")).to_df()
    for name in names:
        np.testing.assert_allclose(served[name].astype("float64"), training[name].astype("float64"),
                                   rtol=1e-12, equal_nan=True, err_msg=name)
    raw = pd.read_parquet(repo_dir / "data/raw_trips.parquet")
    ends = questions.merge(raw[["driver_id", "requested_at", "event_timestamp"]],
                           on=["driver_id", "requested_at"], suffixes=("_asked", ""))["event_timestamp"]
    at_the_end = training_sets.get_training_set(store, questions.assign(event_timestamp=ends.to_numpy()), service)
    differ = ~np.isclose(at_the_end["driver_trip_dist_mean_3h"], training["driver_trip_dist_mean_3h"], equal_nan=True)
    assert differ.mean() > 0.5, "joined at the trip's end, the windows hold the trip itself"


def test_the_model_beats_both_baselines_on_the_later_days(trained):
    repo_dir, output = trained
    done = model_nodes(repo_dir, "model_evaluation", "training_set", "evaluated", "feature_importances")
    evaluation, rows, later = done["model_evaluation"], done["training_set"], done["evaluated"]
    assert rows.loc[~later, "requested_at"].max() < rows.loc[later, "requested_at"].min(), "split by time"
    assert later.sum() > 1000 and (~later).sum() > 3000
    model = evaluation.loc["model", "mae"]
    for baseline in ("training mean rating", "driver mean rating before"):
        assert model < 0.85 * evaluation.loc[baseline, "mae"], evaluation
    importances = done["feature_importances"]
    assert importances.index[0] in {"requested_dist_vs_driver_mean_3h", "request_hour_of_day"}, importances
    assert "model" in output and "Registered trip_rating_model version 1" in output


def test_each_run_registers_a_version_tagged_with_its_feature_service(trained):
    repo_dir, _ = trained
    store = FeatureStore(repo_path=str(repo_dir))
    served = models.served_model(store, MODEL)
    assert served["service"].name == SERVICE and served["version"] >= 1
    from mlflow import MlflowClient

    client = MlflowClient(models.tracking_uri(store))
    version = client.get_model_version(MODEL, str(served["version"]))
    assert version.tags[models.SERVICE_TAG] == SERVICE
    logged = client.get_run(version.run_id)
    assert {"mae_model", "mae_training_mean_rating", "mae_driver_mean_rating_before"} <= set(logged.data.metrics)
    assert logged.data.tags["feast.feature_service"] == SERVICE and "max_iter" in logged.data.params
    assert [d.dataset.name for d in logged.inputs.dataset_inputs] == ["training questions"]
    assert "feast_features.json" in {a.path for a in client.list_artifacts(version.run_id)}


@pytest.fixture(scope="module")
def prediction_server(trained):
    repo_dir, _ = trained
    last_load_and_the_trips_after_it(repo_dir)  # the online store loaded, whichever test runs first
    port = free_port()
    log = open(repo_dir / "data" / "prediction_server.log", "w")
    process = subprocess.Popen([sys.executable, "prediction_server.py", "--port", str(port)], cwd=repo_dir,
                               stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: post(base_url, {"driver_id": 1001, "requested_trip_dist": 1.0})[0] == 200,
                   "the prediction server", timeout_s=120, process=process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def post(base_url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base_url}/predict", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except urllib.error.URLError:
        return 0, {}


def test_predict_answers_the_rating_the_version_and_the_features_age(prediction_server):
    status, answer = post(prediction_server, {"driver_id": 1001, "requested_trip_dist": 4.2})
    assert status == 200, answer
    assert 0.0 < answer["rating"] < 6.0
    assert answer["model"] == MODEL and answer["version"] >= 1 and answer["feature_service"] == SERVICE
    assert answer["missing_features"] == [] and 0 <= answer["features_age_seconds"] < 24 * 3600


@pytest.mark.parametrize("body, field", [
    ({"requested_trip_dist": 4.2}, "driver_id"),
    ({"driver_id": "abc", "requested_trip_dist": 4.2}, "driver_id"),
    ({"driver_id": 1001}, "requested_trip_dist"),
    ({"driver_id": 1001, "requested_trip_dist": -1}, "requested_trip_dist"),
    ({"driver_id": 1001, "requested_trip_dist": 4.2, "requested_at": "yesterday"}, "requested_at"),
])
def test_bad_input_is_a_422_naming_the_field(prediction_server, body, field):
    status, answer = post(prediction_server, body)
    assert status == 422 and [error["loc"][-1] for error in answer["detail"]] == [field], answer


def test_an_unknown_driver_is_answered_with_the_features_it_lacks(prediction_server):
    status, answer = post(prediction_server, {"driver_id": 999_999, "requested_trip_dist": 4.2})
    assert status == 200, answer
    assert "driver_trips_24h" in answer["missing_features"] and answer["features_age_seconds"] is None
    assert np.isfinite(answer["rating"])


def test_a_prediction_from_a_training_row_equals_the_one_served_over_http(trained, prediction_server):
    """For trips after the last load, the same features and so the same prediction."""
    repo_dir, _ = trained
    store, questions = last_load_and_the_trips_after_it(repo_dir)
    served = models.served_model(store, MODEL)
    training = training_sets.get_training_set(store, questions, served["service"])
    offline = served["model"].predict(models.input_matrix(training, served["inputs"]))
    for i, row in questions.iterrows():
        status, answer = post(prediction_server, {"driver_id": int(row.driver_id),
                                                  "requested_trip_dist": float(row.requested_trip_dist),
                                                  "requested_at": row.requested_at.isoformat()})
        assert status == 200 and answer["rating"] == pytest.approx(offline[i], rel=1e-9), (row, answer)


def test_with_no_model_registered_the_server_does_not_start(trained, tmp_path):
    """Also after this process has read another repo's models: each repo keeps its own."""
    assert models.versions_using(FeatureStore(repo_path=str(trained[0])), [SERVICE])
    repo_dir = applied_copy(tmp_path, *MODEL_DATA[:2])
    result = run([sys.executable, "prediction_server.py", "--port", str(free_port())], repo_dir,
                 expect_success=False, timeout_s=300)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: the model is not served: no version of model 'trip_rating_model' is "
                                     f"registered in sqlite:///{repo_dir / 'data' / 'mlflow.db'}: train it first "
                                     "(python train.py)")


def test_a_change_to_the_models_features_names_its_registered_version(trained, tmp_path):
    """The change check and the lineage go on from the service to the model trained on it."""
    repo_dir, _ = trained
    lineage = run(["hamilton-feast", "lineage", "trip_dist"], repo_dir).stdout
    assert f"  models: {MODEL} v1 ({SERVICE})" in lineage
    original = edit(repo_dir / CODE_EDIT.file, CODE_EDIT.old, CODE_EDIT.new)
    try:
        result = run(["hamilton-feast", "changes", "--check"], repo_dir, expect_success=False)
    finally:
        (repo_dir / CODE_EDIT.file).write_text(original)
    assert result.returncode == 2
    assert f"models trained on a changed service (retrain them): {MODEL} v1 ({SERVICE})" in result.stdout
